import { useState } from 'react';
import { ScrollRegion } from '../components/scroll-region.js';
import { formatDateTime } from '../format.js';
import { useAudit } from '../queries.js';
import { href } from '../route.js';
import type { AuditEntry } from '../types.js';

function details(entry: AuditEntry): string {
  if (entry.details === undefined) return '';
  // The Who column already names the actor's token (older entries call it tokenId).
  return Object.entries(entry.details)
    .filter(([name]) => name !== 'actorTokenId' && name !== 'tokenId')
    .map(([name, value]) => `${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(', ');
}

export function AuditTable({ entries, label }: { entries: AuditEntry[] | undefined; label: string }) {
  if (entries === undefined) return <p>Loading…</p>;
  if (entries.length === 0) return <p className="muted">No entries.</p>;
  return (
    <ScrollRegion label={label}>
      <table className="audit-table" data-testid="audit-table">
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Who</th>
            <th scope="col">Action</th>
            <th scope="col">Target</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {entries.map((e) => (
            <tr key={e.id}>
              <td className="nowrap">{formatDateTime(e.time)}</td>
              <td>{e.actor}</td>
              <td className="mono">{e.action}</td>
              <td>
                {e.action.startsWith('key.') && e.target !== undefined ? (
                  <a href={href({ page: 'key', id: e.target })}>{e.target}</a>
                ) : (
                  e.target
                )}
              </td>
              <td className="small">{details(e)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </ScrollRegion>
  );
}

export function Audit() {
  const [action, setAction] = useState('');
  const audit = useAudit({ limit: 200, ...(action !== '' && { action }) });
  return (
    <>
      <h1>Audit log</h1>
      <div className="toolbar">
        <label>
          <span>Action</span>
          <select value={action} onChange={(e) => setAction(e.target.value)}>
            <option value="">All actions</option>
            {[
              'key.create',
              'key.update',
              'key.delete',
              'key.enable',
              'key.disable',
              'key.reset',
              'key.test',
              'key.import',
              'token.create',
              'token.delete',
            ].map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
      </div>
      {audit.error !== null ? (
        <p role="alert">{audit.error.message}</p>
      ) : (
        <AuditTable entries={audit.data} label="Audit log" />
      )}
    </>
  );
}
