import type { UsageGroupBy, UsageQuery, UsageRow } from '@keypool/spec';
import { sql } from 'kysely';
import { num, type SqlContext } from './context.js';
import type { Row } from './rows.js';

const groupColumns: Record<UsageGroupBy, { column: string; field: keyof UsageRow }> = {
  key: { column: 'key_id', field: 'keyId' },
  model: { column: 'model', field: 'model' },
  pool: { column: 'pool', field: 'pool' },
  provider: { column: 'provider', field: 'provider' },
  day: { column: 'day', field: 'day' },
  month: { column: 'month', field: 'month' },
};

/** Filters and aggregates the usage log in SQL (GROUP BY), one row per group. */
export async function queryUsage(ctx: SqlContext, query: UsageQuery): Promise<UsageRow[]> {
  const groups = [...new Set(query.groupBy ?? [])].map((g) => groupColumns[g]);
  let q = ctx.db
    .selectFrom(ctx.t('usage'))
    .select([
      sql<string>`count(*)`.as('requests'),
      sql<string>`coalesce(sum(case when status = 'error' then 1 else 0 end), 0)`.as('errors'),
      sql<string>`coalesce(sum(input_tokens), 0)`.as('input_tokens'),
      sql<string>`coalesce(sum(output_tokens), 0)`.as('output_tokens'),
      sql<string>`coalesce(sum(cost_usd), 0)`.as('cost_usd'),
    ]);
  if (query.from !== undefined) q = q.where('time', '>=', query.from);
  if (query.to !== undefined) q = q.where('time', '<', query.to);
  if (query.keyId !== undefined) q = q.where('key_id', '=', query.keyId);
  if (query.model !== undefined) q = q.where('model', '=', query.model);
  if (query.pool !== undefined) q = q.where('pool', '=', query.pool);
  if (query.provider !== undefined) q = q.where('provider', '=', query.provider);
  if (groups.length > 0) {
    const columns = groups.map((g) => g.column);
    q = q.select(columns).groupBy(columns);
  }
  const rows = (await q.execute()) as Row[];
  const result = rows.map((r) => {
    const row: UsageRow = {
      requests: num(r.requests),
      errors: num(r.errors),
      inputTokens: num(r.input_tokens),
      outputTokens: num(r.output_tokens),
      costUsd: num(r.cost_usd),
    };
    const withGroups = row as unknown as Record<string, string | null>;
    for (const g of groups) withGroups[g.field] = r[g.column] === null ? null : String(r[g.column]);
    return row;
  });
  // Sorted here rather than in SQL: collations and NULL placement differ per
  // dialect, and the contract wants one order everywhere (nulls first, then
  // code-unit order, as JavaScript compares strings).
  const fields = groups.map((g) => g.field);
  return result.sort((a, b) => {
    for (const f of fields) {
      const x = a[f] as string | null;
      const y = b[f] as string | null;
      if (x === y) continue;
      if (x === null) return -1;
      if (y === null) return 1;
      return x < y ? -1 : 1;
    }
    return 0;
  });
}
