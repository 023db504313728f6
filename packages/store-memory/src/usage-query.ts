import type { UsageGroupBy, UsageQuery, UsageRecord, UsageRow } from '@keypool/spec';

type GroupValue = string | null;

const fieldOf: Record<UsageGroupBy, keyof UsageRow> = {
  key: 'keyId',
  model: 'model',
  pool: 'pool',
  provider: 'provider',
  day: 'day',
  month: 'month',
};

function groupValue(record: UsageRecord, by: UsageGroupBy): GroupValue {
  switch (by) {
    case 'key':
      return record.keyId;
    case 'model':
      return record.model ?? null;
    case 'pool':
      return record.pool ?? null;
    case 'provider':
      return record.provider;
    case 'day':
      return record.day;
    case 'month':
      return record.month;
  }
}

function matches(record: UsageRecord, query: UsageQuery): boolean {
  return (
    (query.from === undefined || record.time >= query.from) &&
    (query.to === undefined || record.time < query.to) &&
    (query.keyId === undefined || record.keyId === query.keyId) &&
    (query.model === undefined || record.model === query.model) &&
    (query.pool === undefined || record.pool === query.pool) &&
    (query.provider === undefined || record.provider === query.provider)
  );
}

/** null sorts first, then strings by code unit (what `testStore` documents). */
function compareValues(a: GroupValue, b: GroupValue): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  return a < b ? -1 : 1;
}

interface Group {
  values: GroupValue[];
  row: UsageRow;
}

function emptyRow(): UsageRow {
  return { requests: 0, errors: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 };
}

function add(row: UsageRow, record: UsageRecord): void {
  row.requests += 1;
  if (record.status === 'error') row.errors += 1;
  row.inputTokens += record.inputTokens;
  row.outputTokens += record.outputTokens;
  row.costUsd += record.costUsd;
}

/** Filters and aggregates usage records as `Store.queryUsage` documents. */
export function aggregateUsage(records: Iterable<UsageRecord>, query: UsageQuery): UsageRow[] {
  const groupBy = query.groupBy ?? [];
  if (groupBy.length === 0) {
    const total = emptyRow();
    for (const record of records) if (matches(record, query)) add(total, record);
    return [total];
  }
  const groups = new Map<string, Group>();
  for (const record of records) {
    if (!matches(record, query)) continue;
    const values = groupBy.map((by) => groupValue(record, by));
    // JSON keeps null and '' apart, which a joined string would not.
    const id = JSON.stringify(values);
    let group = groups.get(id);
    if (!group) {
      const row = {} as UsageRow;
      groupBy.forEach((by, i) => {
        (row as unknown as Record<string, GroupValue>)[fieldOf[by]] = values[i]!;
      });
      Object.assign(row, emptyRow());
      group = { values, row };
      groups.set(id, group);
    }
    add(group.row, record);
  }
  return [...groups.values()]
    .sort((a, b) => {
      for (let i = 0; i < a.values.length; i++) {
        const order = compareValues(a.values[i]!, b.values[i]!);
        if (order !== 0) return order;
      }
      return 0;
    })
    .map((group) => group.row);
}
