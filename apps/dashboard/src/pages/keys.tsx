import { memo, useDeferredValue, useMemo, useState } from 'react';
import { HeadroomBars } from '../components/headroom.js';
import { ScrollRegion } from '../components/scroll-region.js';
import { BreakerBadge, StatusBadge } from '../components/status-badge.js';
import { formatAgo, formatCount, formatMs, formatPercent, formatUsd } from '../format.js';
import {
  DEFAULT_QUERY,
  joinKeys,
  type KeyQuery,
  type KeyRow,
  providersOf,
  type SortColumn,
  type StatusFilter,
  selectKeys,
} from '../key-table.js';
import { useLive } from '../live.js';
import { useHealth, useKeys } from '../queries.js';
import { href } from '../route.js';
import { useProgressiveCount } from '../use-progressive.js';

const COLUMNS: Array<{ id: SortColumn; label: string; numeric?: boolean }> = [
  { id: 'alias', label: 'Key' },
  { id: 'provider', label: 'Provider' },
  { id: 'tier', label: 'Tier', numeric: true },
  { id: 'status', label: 'Status' },
  { id: 'breaker', label: 'Breaker' },
  { id: 'headroom', label: 'Headroom' },
  { id: 'successRate', label: 'Success', numeric: true },
  { id: 'latency', label: 'Latency', numeric: true },
  { id: 'requests', label: 'Requests', numeric: true },
  { id: 'spend', label: 'Spend (month)', numeric: true },
  { id: 'lastError', label: 'Last error' },
];

const STATUS_FILTERS: Array<{ value: StatusFilter; label: string }> = [
  { value: 'all', label: 'All statuses' },
  { value: 'attention', label: 'Needs attention' },
  { value: 'active', label: 'Active' },
  { value: 'cooling', label: 'Cooling' },
  { value: 'exhausted', label: 'Exhausted' },
  { value: 'invalid', label: 'Invalid' },
  { value: 'disabled', label: 'Disabled' },
];

/** Same content, same row: a health refresh re-renders only the keys that changed. */
function sameRow(a: { row: KeyRow }, b: { row: KeyRow }): boolean {
  const x = a.row;
  const y = b.row;
  return (
    x === y ||
    (x.id === y.id &&
      x.status === y.status &&
      x.until === y.until &&
      x.reason === y.reason &&
      x.breaker === y.breaker &&
      x.requests === y.requests &&
      x.errors === y.errors &&
      x.latencyEwmaMs === y.latencyEwmaMs &&
      x.spendUsd === y.spendUsd &&
      x.lastError?.at === y.lastError?.at &&
      x.disabledReason === y.disabledReason &&
      x.alias === y.alias &&
      x.organization === y.organization &&
      x.priority === y.priority &&
      JSON.stringify(x.headroom) === JSON.stringify(y.headroom))
  );
}

const KeyRowView = memo(function KeyRowView({ row }: { row: KeyRow }) {
  return (
    <tr data-key={row.alias} data-status={row.status}>
      <th scope="row">
        <a href={href({ page: 'key', id: row.id })}>{row.alias}</a>
        <div className="muted small mono">{row.maskedSecret}</div>
      </th>
      <td>
        {row.provider}
        {row.organization !== undefined && (
          <div className="muted small" data-testid="key-organization">
            {row.organization}
          </div>
        )}
      </td>
      <td className="num">{row.priority}</td>
      <td>
        <StatusBadge status={row.status} until={row.until} />
        {(row.reason ?? row.disabledReason) !== undefined && (
          <div className="muted small reason">{row.reason ?? row.disabledReason}</div>
        )}
      </td>
      <td>
        <BreakerBadge breaker={row.breaker} />
      </td>
      <td>
        <HeadroomBars headroom={row.headroom} />
      </td>
      <td className="num">{row.requests === 0 ? '—' : formatPercent(row.successRate)}</td>
      <td className="num">{formatMs(row.latencyEwmaMs)}</td>
      <td className="num">{formatCount(row.requests)}</td>
      <td className="num">{formatUsd(row.spendUsd)}</td>
      <td className="last-error">
        {row.lastError === undefined ? (
          <span className="muted">—</span>
        ) : (
          <>
            <span>
              {row.lastError.failure}
              {row.lastError.status !== undefined && ` ${row.lastError.status}`}
            </span>
            <div className="muted small">{formatAgo(row.lastError.at, Date.now())}</div>
          </>
        )}
      </td>
    </tr>
  );
}, sameRow);

export function Keys() {
  const live = useLive();
  const health = useHealth(!live.isStale);
  const keys = useKeys(health.data !== undefined);
  const [query, setQuery] = useState<KeyQuery>(DEFAULT_QUERY);
  // Typing stays responsive with hundreds of rows: the table catches up a frame later.
  const deferredQuery = useDeferredValue(query);
  const rows = useMemo(() => joinKeys(health.data?.keys ?? [], keys.data), [health.data, keys.data]);
  const shown = useMemo(() => selectKeys(rows, deferredQuery), [rows, deferredQuery]);
  const providers = useMemo(() => providersOf(rows), [rows]);
  const rendered = useProgressiveCount(shown.length);

  const sortBy = (column: SortColumn) =>
    setQuery((q) =>
      q.sort === column
        ? { ...q, direction: q.direction === 'asc' ? 'desc' : 'asc' }
        : { ...q, sort: column, direction: column === 'alias' || column === 'provider' ? 'asc' : 'desc' },
    );

  if (health.isLoading) return <p>Loading keys…</p>;
  if (health.error !== null && health.data === undefined)
    return <p role="alert">Could not load keys: {health.error.message}</p>;

  return (
    <>
      <h1>Keys</h1>
      <form className="toolbar" aria-label="Filter keys" onSubmit={(e) => e.preventDefault()}>
        <label>
          <span>Search</span>
          <input
            type="search"
            value={query.search}
            placeholder="alias, id, error…"
            onChange={(e) => setQuery((q) => ({ ...q, search: e.target.value }))}
          />
        </label>
        <label>
          <span>Status</span>
          <select
            value={query.status}
            onChange={(e) => setQuery((q) => ({ ...q, status: e.target.value as StatusFilter }))}
          >
            {STATUS_FILTERS.map((f) => (
              <option key={f.value} value={f.value}>
                {f.label}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>Provider</span>
          <select
            value={query.provider}
            onChange={(e) => setQuery((q) => ({ ...q, provider: e.target.value }))}
          >
            <option value="all">All providers</option>
            {providers.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
        <p className="muted small" aria-live="polite" data-testid="key-count">
          {shown.length} of {rows.length} keys
        </p>
      </form>
      <ScrollRegion label="Keys table">
        <table className="keys-table">
          <thead>
            <tr>
              {COLUMNS.map((c) => (
                <th
                  key={c.id}
                  scope="col"
                  className={c.numeric ? 'num' : undefined}
                  aria-sort={
                    query.sort === c.id ? (query.direction === 'asc' ? 'ascending' : 'descending') : undefined
                  }
                >
                  <button type="button" className="sort" onClick={() => sortBy(c.id)}>
                    {c.label}
                    <span aria-hidden="true" className="sort-mark">
                      {query.sort === c.id ? (query.direction === 'asc' ? '▲' : '▼') : ''}
                    </span>
                  </button>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {shown.slice(0, rendered).map((row) => (
              <KeyRowView key={row.id} row={row} />
            ))}
          </tbody>
        </table>
        {shown.length === 0 && <p className="empty">No key matches.</p>}
      </ScrollRegion>
    </>
  );
}
