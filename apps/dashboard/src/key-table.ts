// The keys table's rows: live health joined with key metadata, then searched, filtered, sorted.
import type { KeyLimits } from '@keypool/spec';
import type { ApiKey, KeyHealth, KeyStatus } from './types.js';

export interface KeyRow extends KeyHealth {
  limits: KeyLimits;
  disabledReason?: string;
  /** The upstream organization whose shared limits and rate-limit waits the key shares. */
  organization?: string;
  /** Spend this calendar month, from the store's usage snapshot. */
  spendUsd: number;
}

export type SortColumn =
  | 'alias'
  | 'provider'
  | 'tier'
  | 'status'
  | 'breaker'
  | 'headroom'
  | 'successRate'
  | 'latency'
  | 'spend'
  | 'requests'
  | 'lastError';

export type StatusFilter = KeyStatus | 'all' | 'attention';

export interface KeyQuery {
  search: string;
  status: StatusFilter;
  provider: string;
  sort: SortColumn;
  direction: 'asc' | 'desc';
}

export const DEFAULT_QUERY: KeyQuery = {
  search: '',
  status: 'all',
  provider: 'all',
  sort: 'status',
  direction: 'desc',
};

/** Worse is higher, so "status, descending" puts the keys that need a person first. */
export const STATUS_SEVERITY: Record<KeyStatus, number> = {
  active: 0,
  disabled: 1,
  cooling: 2,
  exhausted: 3,
  invalid: 4,
};

const BREAKER_SEVERITY = { closed: 0, 'half-open': 1, open: 2 } as const;

export function joinKeys(health: readonly KeyHealth[], keys: readonly ApiKey[] | undefined): KeyRow[] {
  const byId = new Map((keys ?? []).map((k) => [k.id, k]));
  return health.map((h) => {
    const info = byId.get(h.id);
    return {
      ...h,
      limits: info?.limits ?? {},
      ...(info?.disabledReason !== undefined && { disabledReason: info.disabledReason }),
      ...(info?.organization !== undefined && { organization: info.organization }),
      spendUsd: h.usage?.costThisMonthUsd ?? 0,
    };
  });
}

/** The tightest remaining share over every limit the key has; undefined when it has none. */
export function minHeadroom(row: Pick<KeyHealth, 'headroom'>): number | undefined {
  const values = Object.values(row.headroom).filter((v): v is number => typeof v === 'number');
  return values.length === 0 ? undefined : Math.min(...values);
}

export function needsAttention(row: Pick<KeyHealth, 'status' | 'breaker'>): boolean {
  return row.status !== 'active' || row.breaker !== 'closed';
}

function sortValue(row: KeyRow, column: SortColumn): string | number | undefined {
  switch (column) {
    case 'alias':
      return row.alias.toLowerCase();
    case 'provider':
      return row.provider;
    case 'tier':
      return row.priority;
    case 'status':
      return STATUS_SEVERITY[row.status];
    case 'breaker':
      return BREAKER_SEVERITY[row.breaker];
    case 'headroom':
      return minHeadroom(row);
    case 'successRate':
      return row.requests === 0 ? undefined : row.successRate;
    case 'latency':
      return row.latencyEwmaMs;
    case 'spend':
      return row.spendUsd;
    case 'requests':
      return row.requests;
    case 'lastError':
      return row.lastError?.at;
  }
}

function compare(a: string | number | undefined, b: string | number | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return 1;
  if (b === undefined) return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b));
}

/** Search (alias, id, provider, organization, masked secret, reason, last error), filter, then a stable sort. */
export function selectKeys(rows: readonly KeyRow[], query: KeyQuery): KeyRow[] {
  const needle = query.search.trim().toLowerCase();
  const picked = rows.filter((row) => {
    if (query.provider !== 'all' && row.provider !== query.provider) return false;
    if (
      query.status === 'attention'
        ? !needsAttention(row)
        : query.status !== 'all' && row.status !== query.status
    )
      return false;
    if (needle === '') return true;
    return [
      row.alias,
      row.id,
      row.provider,
      row.organization,
      row.maskedSecret,
      row.reason,
      row.disabledReason,
      row.lastError?.message,
    ]
      .filter((v): v is string => typeof v === 'string')
      .some((v) => v.toLowerCase().includes(needle));
  });
  const sign = query.direction === 'asc' ? 1 : -1;
  return picked
    .map((row, index) => ({ row, index }))
    .sort((x, y) => {
      const a = sortValue(x.row, query.sort);
      const b = sortValue(y.row, query.sort);
      // Missing values go last whichever the direction.
      if (a === undefined || b === undefined) return compare(a, b) || x.index - y.index;
      return sign * compare(a, b) || compare(x.row.alias, y.row.alias) || x.index - y.index;
    })
    .map(({ row }) => row);
}

export function providersOf(rows: readonly Pick<KeyHealth, 'provider'>[]): string[] {
  return [...new Set(rows.map((r) => r.provider))].sort();
}
