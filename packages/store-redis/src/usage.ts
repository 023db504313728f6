import type { UsageGroupBy, UsageQuery, UsageRecord, UsageRow } from '@keypool/spec';

const groupField = {
  key: 'keyId',
  model: 'model',
  pool: 'pool',
  provider: 'provider',
  day: 'day',
  month: 'month',
} as const satisfies Record<UsageGroupBy, keyof UsageRow>;

function matches(record: UsageRecord, query: UsageQuery): boolean {
  return (
    (query.keyId === undefined || record.keyId === query.keyId) &&
    (query.model === undefined || record.model === query.model) &&
    (query.pool === undefined || record.pool === query.pool) &&
    (query.provider === undefined || record.provider === query.provider)
  );
}

function compareGroupValues(a: unknown, b: unknown): number {
  // A missing model/pool groups as null and sorts first.
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  return String(a) < String(b) ? -1 : 1;
}

/**
 * Filters records already narrowed to the time range and aggregates them as the
 * spec says: one totals row without groupBy, else one row per group sorted by
 * the group fields in groupBy order.
 */
export function aggregateUsage(records: Iterable<UsageRecord>, query: UsageQuery): UsageRow[] {
  const groupBy = query.groupBy ?? [];
  const rows = new Map<string, UsageRow>();
  for (const record of records) {
    if (!matches(record, query)) continue;
    const group: Partial<UsageRow> = {};
    const parts: unknown[] = [];
    for (const by of groupBy) {
      const field = groupField[by];
      const value =
        by === 'model' || by === 'pool' ? (record[field as 'model' | 'pool'] ?? null) : record[field];
      (group as Record<string, unknown>)[field] = value;
      parts.push(value);
    }
    const id = JSON.stringify(parts);
    let row = rows.get(id);
    if (!row) {
      row = { ...group, requests: 0, errors: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 };
      rows.set(id, row);
    }
    row.requests += 1;
    if (record.status === 'error') row.errors += 1;
    row.inputTokens += record.inputTokens;
    row.outputTokens += record.outputTokens;
    row.costUsd += record.costUsd;
  }
  if (groupBy.length === 0) {
    return [rows.get('[]') ?? { requests: 0, errors: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 }];
  }
  const fields = groupBy.map((by) => groupField[by]);
  return [...rows.values()].sort((a, b) => {
    for (const field of fields) {
      const order = compareGroupValues(a[field], b[field]);
      if (order !== 0) return order;
    }
    return 0;
  });
}
