// A key's usage by day as chart series: the API returns only the days that had traffic.
import type { ApiUsageRow } from './types.js';

const DAY_MS = 86_400_000;
export const HISTORY_DAYS = 30;

/** Daily rows with the missing days filled in as zero, oldest first. */
export function dailySeries(rows: readonly ApiUsageRow[], now: number, days = HISTORY_DAYS) {
  const byDay = new Map(rows.filter((r) => r.day !== undefined).map((r) => [r.day as string, r]));
  const t: number[] = [];
  const pick = (f: (r: ApiUsageRow) => number) => {
    const out: number[] = [];
    for (let i = days - 1; i >= 0; i--) {
      const d = new Date(now - i * DAY_MS);
      const id = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
      const row = byDay.get(id);
      out.push(row === undefined ? 0 : f(row));
    }
    return out;
  };
  for (let i = days - 1; i >= 0; i--) {
    const d = new Date(now - i * DAY_MS);
    t.push(new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() / 1000);
  }
  return {
    t,
    requests: pick((r) => r.requests),
    errors: pick((r) => r.errors),
    inputTokens: pick((r) => r.inputTokens),
    outputTokens: pick((r) => r.outputTokens),
    costUsd: pick((r) => r.costUsd),
  };
}
