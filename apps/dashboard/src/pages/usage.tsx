import { useMemo, useState } from 'react';
import { ScrollRegion } from '../components/scroll-region.js';
import { type CsvColumn, downloadText, toCsv } from '../csv.js';
import { formatCount, formatUsd } from '../format.js';
import { useUsage } from '../queries.js';
import type { ApiUsageRow } from '../types.js';

export type UsageGroup = 'key' | 'model' | 'pool' | 'provider' | 'day' | 'month';

const GROUPS: Array<{ value: UsageGroup; label: string }> = [
  { value: 'key', label: 'Key' },
  { value: 'model', label: 'Model' },
  { value: 'pool', label: 'Pool' },
  { value: 'provider', label: 'Provider' },
  { value: 'day', label: 'Day' },
  { value: 'month', label: 'Month' },
];

/** The label of a row for its grouping; model and pool are null when requests had none. */
export function groupLabel(row: ApiUsageRow, group: UsageGroup): string {
  switch (group) {
    case 'key':
      return row.keyAlias ?? row.keyId ?? '—';
    case 'model':
      return row.model ?? '(no model)';
    case 'pool':
      return row.pool ?? '(no pool)';
    case 'provider':
      return row.provider ?? '—';
    case 'day':
      return row.day ?? '—';
    case 'month':
      return row.month ?? '—';
  }
}

export function usageCsv(rows: readonly ApiUsageRow[], group: UsageGroup): string {
  const columns: CsvColumn<ApiUsageRow>[] = [
    { header: group, value: (r) => groupLabel(r, group) },
    ...(group === 'key' ? [{ header: 'key_id', value: (r: ApiUsageRow) => r.keyId }] : []),
    { header: 'requests', value: (r) => r.requests },
    { header: 'errors', value: (r) => r.errors },
    { header: 'input_tokens', value: (r) => r.inputTokens },
    { header: 'output_tokens', value: (r) => r.outputTokens },
    { header: 'cost_usd', value: (r) => Math.round(r.costUsd * 1e6) / 1e6 },
  ];
  return toCsv(rows, columns);
}

function isoDay(at: number): string {
  const d = new Date(at);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

function localMidnight(day: string): number | undefined {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (match === null) return undefined;
  return new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3])).getTime();
}

export function Usage() {
  const [group, setGroup] = useState<UsageGroup>('key');
  const [fromDay, setFromDay] = useState(() => isoDay(Date.now() - 29 * 86_400_000));
  const [toDay, setToDay] = useState(() => isoDay(Date.now()));
  const from = localMidnight(fromDay);
  const toStart = localMidnight(toDay);
  // `to` is exclusive: the whole last day counts.
  const to = toStart === undefined ? undefined : toStart + 86_400_000;
  const invalidRange = from !== undefined && to !== undefined && from >= to;
  const usage = useUsage({ groupBy: group, from, to: invalidRange ? undefined : to });
  const rows = usage.data ?? [];
  const totals = useMemo(
    () =>
      rows.reduce(
        (t, r) => ({
          requests: t.requests + r.requests,
          errors: t.errors + r.errors,
          inputTokens: t.inputTokens + r.inputTokens,
          outputTokens: t.outputTokens + r.outputTokens,
          costUsd: t.costUsd + r.costUsd,
        }),
        { requests: 0, errors: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 },
      ),
    [rows],
  );

  return (
    <>
      <h1>Usage</h1>
      <form className="toolbar" onSubmit={(e) => e.preventDefault()} aria-label="Usage query">
        <label>
          <span>Group by</span>
          <select
            value={group}
            onChange={(e) => setGroup(e.target.value as UsageGroup)}
            data-testid="group-by"
          >
            {GROUPS.map((g) => (
              <option key={g.value} value={g.value}>
                {g.label}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>From</span>
          <input type="date" value={fromDay} onChange={(e) => setFromDay(e.target.value)} />
        </label>
        <label>
          <span>To (inclusive)</span>
          <input type="date" value={toDay} onChange={(e) => setToDay(e.target.value)} />
        </label>
        <button
          type="button"
          disabled={rows.length === 0}
          onClick={() =>
            downloadText(`keypool-usage-by-${group}-${fromDay}-to-${toDay}.csv`, usageCsv(rows, group))
          }
        >
          Export CSV
        </button>
      </form>
      {invalidRange && (
        <p role="alert" className="error">
          "From" must be on or before "To".
        </p>
      )}
      {usage.error !== null && <p role="alert">Could not load usage: {usage.error.message}</p>}
      <ScrollRegion label={`Usage by ${group}`}>
        <table className="usage-table" data-testid="usage-table">
          <thead>
            <tr>
              <th scope="col">{GROUPS.find((g) => g.value === group)?.label}</th>
              <th scope="col" className="num">
                Requests
              </th>
              <th scope="col" className="num">
                Errors
              </th>
              <th scope="col" className="num">
                Input tokens
              </th>
              <th scope="col" className="num">
                Output tokens
              </th>
              <th scope="col" className="num">
                Cost
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={`${groupLabel(r, group)}|${r.keyId ?? ''}`}>
                <th scope="row">{groupLabel(r, group)}</th>
                <td className="num">{formatCount(r.requests)}</td>
                <td className="num">{formatCount(r.errors)}</td>
                <td className="num">{formatCount(r.inputTokens)}</td>
                <td className="num">{formatCount(r.outputTokens)}</td>
                <td className="num">{formatUsd(r.costUsd)}</td>
              </tr>
            ))}
          </tbody>
          {rows.length > 0 && (
            <tfoot>
              <tr>
                <th scope="row">Total</th>
                <td className="num">{formatCount(totals.requests)}</td>
                <td className="num">{formatCount(totals.errors)}</td>
                <td className="num">{formatCount(totals.inputTokens)}</td>
                <td className="num">{formatCount(totals.outputTokens)}</td>
                <td className="num">{formatUsd(totals.costUsd)}</td>
              </tr>
            </tfoot>
          )}
        </table>
        {!usage.isLoading && rows.length === 0 && <p className="empty">No usage in this range.</p>}
      </ScrollRegion>
    </>
  );
}
