import type { DatabaseSync } from 'node:sqlite';
import type {
  IneligibleReason,
  KeyLimits,
  KeyState,
  KeyStateUpdate,
  KeyUsageSnapshot,
  LeaseRecord,
  ReserveCandidate,
  ReserveRequest,
  ReserveResult,
  Settlement,
  SettleResult,
  UsageSnapshotQuery,
} from '@keypool/spec';
import { grantedLease } from '@keypool/store-memory';
import { CompiledQuery, type RawBuilder, sql } from 'kysely';
import type { AnyKysely, PgQueryable } from './connection.js';
import { num, rollbackQuietly, type SqlContext } from './context.js';
import { postgresHotPath } from './postgres-hot-path.js';
import {
  defaultState,
  leaseFromRow,
  leaseToRow,
  type Row,
  stateFromRow,
  stateToRow,
  usageToRow,
} from './rows.js';
import { sqliteHotPath } from './sqlite-hot-path.js';

/** A key's (or a group's) consumption as the reservation checks see it. */
export interface Consumption {
  windowRequests: number;
  windowTokens: number;
  /** Stamp of the oldest stamped entry still in the window (entries in flight have none). */
  oldestStamp: number | undefined;
  dayRequests: number;
  dayTokens: number;
  monthCostUsd: number;
}

/** The ids a lease charged: its key, and its group when it has one. */
export const chargedIds = (lease: LeaseRecord): string[] =>
  lease.sharedId === undefined ? [lease.keyId] : [lease.keyId, lease.sharedId];

/** Ids in code-unit order, as `Array.prototype.sort` puts them. */
const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

const emptyConsumption = (): Consumption => ({
  windowRequests: 0,
  windowTokens: 0,
  oldestStamp: undefined,
  dayRequests: 0,
  dayTokens: 0,
  monthCostUsd: 0,
});

/** Settled leases and old window entries are purged this long after they stop mattering. */
const retentionMs = 60 * 60_000;
const expiredLeaseRetentionMs = 24 * 60 * 60_000;

/**
 * Hot state in SQL: key states, sliding-window entries, day/month counters
 * and leases. Every change that must be atomic runs in one transaction that
 * first locks the key_state rows it depends on.
 */
export interface NativeHandles {
  sqliteNative?: () => Promise<DatabaseSync>;
  pgPool?: () => Promise<PgQueryable>;
  /** MySQL opened from a URL: the pool takes multi-statement queries (see `Connection`). */
  hasMultiStatements?: boolean;
}

/** A statement built on some Kysely instance: run on its own, or compiled into a batch. */
interface Statement {
  compile(): CompiledQuery;
  execute(): Promise<unknown>;
}

const rawStatement = (db: AnyKysely, query: RawBuilder<unknown>): Statement => ({
  compile: () => query.compile(db),
  execute: () => query.execute(db),
});

/** One round trip's statements on MySQL (a multi-statement query): each one's result, in order. */
type SendBatch = (statements: readonly CompiledQuery[]) => Promise<unknown[]>;

export function hotStateMethods(
  ctx: SqlContext,
  { sqliteNative, pgPool, hasMultiStatements }: NativeHandles = {},
) {
  const t = (name: Parameters<SqlContext['t']>[0]) => ctx.t(name);
  let lastPurgeAt = Number.NEGATIVE_INFINITY;
  const hotTransaction = <T>(fn: (tx: AnyKysely) => Promise<T>) => ctx.transaction(fn, { isHotState: true });
  const pg = ctx.dialect === 'postgres' ? postgresHotPath(ctx, pgPool) : undefined;
  // A key's window entries, its running window totals (which go with the entries) and counters.
  const hotTables = ['window_entries', 'window_totals', 'counters'] as const;
  // SQLite opened from a URL: synchronous prepared statements (sqlite-hot-path.ts). SQLite on
  // your own Kysely instance runs the TypeScript path below and keeps the totals with it.
  const sq = ctx.dialect === 'sqlite' && sqliteNative ? sqliteHotPath(ctx, sqliteNative) : undefined;
  const tsTotals = ctx.dialect === 'sqlite' && !sq;
  // MySQL opened from a URL: reserve and settle send their transaction's statements in two
  // round trips (the reads that decide, then the writes with the commit) instead of one each.
  const isBatched = ctx.dialect === 'mysql' && hasMultiStatements === true;
  // MySQL keeps running window totals (migration 0010) with the same statements on both paths.
  const mysqlTotals = ctx.dialect === 'mysql';

  function selectStatesQuery(db: AnyKysely, ids: readonly string[]) {
    let q = db.selectFrom(t('key_state')).selectAll().where('key_id', 'in', ids).orderBy('key_id');
    if (ctx.hasRowLocks) q = q.forUpdate();
    return q;
  }

  async function selectStates(tx: AnyKysely, ids: readonly string[]): Promise<Row[]> {
    return selectStatesQuery(tx, ids).execute();
  }

  /** MySQL's no-op upsert that creates missing state rows and takes their exclusive locks (see `lockStates`). */
  function upsertStatesQuery(db: AnyKysely, ids: readonly string[]) {
    return db
      .insertInto(t('key_state'))
      .values(ids.map((id) => stateToRow(defaultState(id))))
      .onDuplicateKeyUpdate({ key_id: sql.ref('key_id') });
  }

  /**
   * Runs `fn` on one connection, retried as transactions are; `fn` sends its statements with
   * `send`, its first batch opening the transaction and its last committing it. On an error the
   * transaction is rolled back (a no-op when none is open).
   */
  function batchedTransaction<T>(fn: (send: SendBatch) => Promise<T>): Promise<T> {
    return ctx.retrying(() =>
      ctx.root.connection().execute(async (conn) => {
        const send: SendBatch = async (statements) => {
          const text = statements.map((s) => s.sql).join(';\n');
          const parameters = statements.flatMap((s) => s.parameters);
          const { rows } = await conn.executeQuery(CompiledQuery.raw(text, [...parameters]));
          // mysql2 answers a multi-statement query with one result per statement.
          return statements.length === 1 ? [rows] : rows;
        };
        try {
          return await fn(send);
        } catch (error) {
          await rollbackQuietly(conn);
          throw error;
        }
      }),
    );
  }

  /**
   * Locks the state rows of `ids`, creating missing ones, and reads them. Ids
   * are sorted so concurrent lockers queue instead of deadlocking.
   * PostgreSQL: one upsert that locks and returns every row. MySQL: a no-op
   * upsert takes the exclusive locks directly (INSERT IGNORE would take shared
   * ones, and two sharers upgrading deadlock), then a locking read.
   * SQLite: the write transaction already excludes everyone else.
   */
  async function lockStates(tx: AnyKysely, ids: readonly string[]): Promise<Map<string, KeyState>> {
    const defaults = ids.map((id) => stateToRow(defaultState(id)));
    let rows: Row[];
    if (ctx.dialect === 'postgres') {
      rows = await tx
        .insertInto(t('key_state'))
        .values(defaults)
        .onConflict((oc) => oc.column('key_id').doUpdateSet({ key_id: sql.ref('excluded.key_id') }))
        .returningAll()
        .execute();
    } else if (ctx.dialect === 'mysql') {
      await upsertStatesQuery(tx, ids).execute();
      rows = await selectStates(tx, ids);
    } else {
      rows = await selectStates(tx, ids);
      if (rows.length < ids.length) {
        const present = new Set(rows.map((r) => String(r.key_id)));
        const missing = defaults.filter((row) => !present.has(String(row.key_id)));
        await tx.insertInto(t('key_state')).values(missing).execute();
        rows = await selectStates(tx, ids);
      }
    }
    return new Map(rows.map((r) => [String(r.key_id), stateFromRow(r)]));
  }

  /** Window, day and month consumption of `ids` in one round trip. */
  async function readConsumption(
    db: AnyKysely,
    ids: readonly string[],
    q: ConsumptionQuery,
    parts: { window: boolean; counters: boolean },
  ): Promise<Map<string, Consumption>> {
    const query = consumptionQuery(ids, q, parts);
    const rows = query ? (await query.execute(db)).rows : [];
    return consumptionByKey(ids, q, rows);
  }

  /** The select of `readConsumption`; undefined when neither part is needed. */
  function consumptionQuery(
    ids: readonly string[],
    q: ConsumptionQuery,
    parts: { window: boolean; counters: boolean },
  ): RawBuilder<Row> | undefined {
    const selects = [];
    const idList = sql.join(ids);
    if (parts.window) {
      // Entries in flight (no stamp) always count; stamped ones until stamp + windowMs.
      selects.push(sql`select key_id, null as window_id, count(*) as a, coalesce(sum(tokens), 0) as b, min(stamp) as c
        from ${ctx.ref('window_entries')} where key_id in (${idList}) and (stamp is null or stamp > ${q.now - q.windowMs})
        group by key_id`);
    }
    if (parts.counters) {
      selects.push(sql`select key_id, window_id, requests as a, tokens as b, cost_usd as c
        from ${ctx.ref('counters')} where key_id in (${idList}) and window_id in (${q.day}, ${q.month})`);
    }
    if (selects.length === 0) return undefined;
    return sql<Row>`${sql.join(selects, sql` union all `)}`;
  }

  /**
   * MySQL: creates missing totals rows (empty, floored at the window's start: a key without one has
   * no entries) and takes their exclusive locks, after key_state's and in the same order, as
   * `upsertStatesQuery` does.
   */
  function upsertTotalsQuery(ids: readonly string[], cutoff: number) {
    const values = sql.join(ids.map((id) => sql`(${id}, ${cutoff}, 0, 0, 0, 0)`));
    return sql`insert into ${ctx.ref('window_totals')} (key_id, floor_at, requests, tokens, inflight_requests, inflight_tokens)
      values ${values} on duplicate key update key_id = key_id`;
  }

  /**
   * MySQL: each key's totals row with the stamped entries between its floor and `cutoff` (the
   * window's start) and the oldest stamp in the window. One select per key, each reading the floor
   * in an uncorrelated subquery: MySQL then ranges over (key_id, stamp) instead of every entry of
   * the key. One statement, so one snapshot even outside a transaction.
   */
  function windowTotalsQuery(ids: readonly string[], cutoff: number): RawBuilder<Row> {
    const totals = ctx.ref('window_totals');
    const entries = ctx.ref('window_entries');
    const perKey = ids.map((id) => {
      const floor = sql`(select floor_at from ${totals} where key_id = ${id})`;
      return sql`select w.key_id, w.floor_at, w.requests, w.tokens, w.inflight_requests, w.inflight_tokens,
          m.moved_requests, m.moved_tokens, m.oldest
        from ${totals} w, (select count(*) as moved_requests, coalesce(sum(tokens), 0) as moved_tokens,
            (select min(stamp) from ${entries} where key_id = ${id} and stamp > ${cutoff}) as oldest
          from ${entries} where key_id = ${id}
            and stamp > least(${floor}, ${cutoff}) and stamp <= greatest(${floor}, ${cutoff})) m
        where w.key_id = ${id}`;
    });
    return sql<Row>`${sql.join(perKey, sql` union all `)}`;
  }

  /**
   * Each key's window from its totals row. A floor at or below the window's start moves up to it
   * (what left is subtracted: `next`, which a granted reservation writes); a window that starts below
   * the floor (a clock behind, a longer window) counts exactly, the totals left alone.
   */
  function windowsFromTotals(rows: readonly Row[], cutoff: number): Map<string, TotalsWindow> {
    const windows = new Map<string, TotalsWindow>();
    for (const r of rows) {
      const floor = num(r.floor_at);
      const stamped = { requests: num(r.requests), tokens: num(r.tokens) };
      let next: TotalsWindow['next'];
      if (floor <= cutoff) {
        stamped.requests -= num(r.moved_requests);
        stamped.tokens -= num(r.moved_tokens);
        next = { floor: cutoff, ...stamped };
      } else {
        stamped.requests += num(r.moved_requests);
        stamped.tokens += num(r.moved_tokens);
      }
      windows.set(String(r.key_id), {
        requests: stamped.requests + num(r.inflight_requests),
        tokens: stamped.tokens + num(r.inflight_tokens),
        oldestStamp: r.oldest === null ? undefined : num(r.oldest),
        next,
      });
    }
    return windows;
  }

  /** Puts windows read from totals into the consumption read without them. */
  function withWindows(consumption: Map<string, Consumption>, windows: ReadonlyMap<string, TotalsWindow>) {
    for (const [id, w] of windows) {
      const c = consumption.get(id);
      if (!c) continue;
      c.windowRequests = w.requests;
      c.windowTokens = w.tokens;
      c.oldestStamp = w.oldestStamp;
    }
    return consumption;
  }

  /** MySQL: one more in flight on the totals of a lease's key and group, with the floors their window reads moved. */
  function chargeTotalsStatements(
    db: AnyKysely,
    lease: LeaseRecord,
    windows: ReadonlyMap<string, TotalsWindow> | undefined,
  ): Statement[] {
    return [...chargedIds(lease)].sort().map((keyId) => {
      const next = windows?.get(keyId)?.next;
      const floor = next
        ? sql`floor_at = ${next.floor}, requests = ${next.requests}, tokens = ${next.tokens}, `
        : sql``;
      return rawStatement(
        db,
        sql`update ${ctx.ref('window_totals')} set ${floor}inflight_requests = inflight_requests + 1,
          inflight_tokens = inflight_tokens + ${lease.estimatedTokens} where key_id = ${keyId}`,
      );
    });
  }

  /**
   * MySQL: a lease's entries (its key's and its group's) leave the in-flight totals and count as
   * stamped (only above the floor: below, they have left). One update, rows locked in key order.
   */
  function stampTotalsQuery(lease: LeaseRecord, stamp: number, tokens: number) {
    return sql`update ${ctx.ref('window_totals')} set inflight_requests = inflight_requests - 1,
      inflight_tokens = inflight_tokens - ${lease.estimatedTokens},
      requests = requests + (case when ${stamp} > floor_at then 1 else 0 end),
      tokens = tokens + (case when ${stamp} > floor_at then ${tokens} else 0 end)
      where key_id in (${sql.join(chargedIds(lease))})`;
  }

  function consumptionByKey(
    ids: readonly string[],
    q: ConsumptionQuery,
    rows: readonly Row[],
  ): Map<string, Consumption> {
    const byKey = new Map<string, Consumption>(ids.map((id) => [id, emptyConsumption()]));
    for (const r of rows) {
      const c = byKey.get(String(r.key_id));
      if (!c) continue;
      if (r.window_id === null) {
        c.windowRequests = num(r.a);
        c.windowTokens = num(r.b);
        c.oldestStamp = r.c === null ? undefined : num(r.c);
      } else if (r.window_id === q.day) {
        c.dayRequests = num(r.a);
        c.dayTokens = num(r.b);
      } else {
        c.monthCostUsd = num(r.c);
      }
    }
    return byKey;
  }

  /**
   * Adds to the day and month counters of keys (a key and its group), creating them on first use.
   * Rows go in primary-key order, the order a settle's update locks them in, so the two never
   * deadlock (MySQL locks each row as it inserts it).
   */
  function countersUpsert(
    keyIds: readonly string[],
    windows: readonly string[],
    add: { requests: number; tokens: number; costUsd: number },
  ) {
    const rows = keyIds.flatMap((keyId) => windows.map((window) => [keyId, window] as const));
    rows.sort(([k1, w1], [k2, w2]) => compare(k1, k2) || compare(w1, w2));
    const values = sql.join(
      rows.map(([keyId, w]) => sql`(${keyId}, ${w}, ${add.requests}, ${add.tokens}, ${add.costUsd})`),
    );
    const table = ctx.ref('counters');
    const columns = sql`(key_id, window_id, requests, tokens, cost_usd)`;
    if (ctx.dialect === 'mysql') {
      return sql`insert into ${table} ${columns} values ${values} on duplicate key update
        requests = requests + values(requests), tokens = tokens + values(tokens), cost_usd = cost_usd + values(cost_usd)`;
    }
    return sql`insert into ${table} as c ${columns} values ${values} on conflict (key_id, window_id) do update set
      requests = c.requests + excluded.requests, tokens = c.tokens + excluded.tokens, cost_usd = c.cost_usd + excluded.cost_usd`;
  }

  /**
   * Window entries (unstamped: in flight), day/month counters, lease and (for a probe) the
   * breaker's probe slot (MySQL, SQLite); the key's and, for a lease with `sharedId`, its group's.
   */
  function reservationStatements(db: AnyKysely, lease: LeaseRecord, now: number): Statement[] {
    const entries = chargedIds(lease).map((keyId) => ({
      lease_id: lease.id,
      key_id: keyId,
      reserved_at: lease.reservedAt,
      tokens: lease.estimatedTokens,
      stamp: null,
    }));
    const add = { requests: 1, tokens: lease.estimatedTokens, costUsd: lease.estimatedCostUsd };
    const probe = { breaker: 'half-open', probe_lease_id: lease.id, updated_at: now };
    const statements: Statement[] = [
      db.insertInto(t('window_entries')).values(entries),
      rawStatement(db, countersUpsert(chargedIds(lease), [lease.day, lease.month], add)),
      db.insertInto(t('leases')).values(leaseToRow(lease)),
    ];
    if (lease.isProbe)
      statements.push(db.updateTable(t('key_state')).set(probe).where('key_id', '=', lease.keyId));
    return statements;
  }

  /**
   * The TypeScript path on SQLite: rebuilds the running totals of `keyIds` from
   * their entries (floor an hour back), so a hot-path store on the same file
   * finds them true. Costs a count of the key's last hour; only stores on your
   * own Kysely instance run it.
   */
  async function refreshTotals(tx: AnyKysely, keyIds: readonly string[], now: number): Promise<void> {
    const floor = now - retentionMs;
    for (const keyId of new Set(keyIds)) {
      await sql`insert into ${ctx.ref('window_totals')} (key_id, floor_at, requests, tokens, inflight_requests, inflight_tokens)
        select ${keyId}, ${floor}, coalesce(sum(case when stamp > ${floor} then 1 else 0 end), 0),
          coalesce(sum(case when stamp > ${floor} then tokens else 0 end), 0),
          coalesce(sum(case when stamp is null then 1 else 0 end), 0),
          coalesce(sum(case when stamp is null then tokens else 0 end), 0)
        from ${ctx.ref('window_entries')} where key_id = ${keyId} and (stamp is null or stamp > ${floor})
        on conflict (key_id) do update set floor_at = excluded.floor_at, requests = excluded.requests,
          tokens = excluded.tokens, inflight_requests = excluded.inflight_requests,
          inflight_tokens = excluded.inflight_tokens`.execute(tx);
    }
  }

  function freeProbeSlotsQuery(db: AnyKysely, leaseIds: readonly string[]) {
    return db
      .updateTable(t('key_state'))
      .set({ probe_lease_id: null })
      .where('probe_lease_id', 'in', leaseIds);
  }

  async function freeProbeSlots(tx: AnyKysely, leaseIds: readonly string[]): Promise<void> {
    if (leaseIds.length === 0) return;
    await freeProbeSlotsQuery(tx, leaseIds).execute();
  }

  /**
   * A settle's writes once its lease is claimed, in its lock order: the lease goes (settled leases
   * are deleted, as on the hot paths: nothing reads them afterwards), then key_state before
   * counters (reserve's order, so the two never deadlock).
   */
  function settleStatements(
    db: AnyKysely,
    lease: LeaseRecord,
    settlement: Settlement,
    outcome: { wasActive: boolean; isExpired: boolean },
  ): Statement[] {
    const statements: Statement[] = [db.deleteFrom(t('leases')).where('id', '=', lease.id)];
    if (outcome.wasActive && lease.isProbe) statements.push(freeProbeSlotsQuery(db, [lease.id]));
    // An entry swept earlier is stamped already; an active lease's entry is stamped now.
    if (outcome.wasActive) {
      const entry = outcome.isExpired
        ? { stamp: lease.expiresAt, tokens: lease.estimatedTokens }
        : { stamp: settledStamp(lease, settlement), tokens: settlement.tokens };
      // The whole primary key: MySQL then locks the rows alone, not the gaps beside them.
      statements.push(
        db
          .updateTable(t('window_entries'))
          .set(entry)
          .where('lease_id', '=', lease.id)
          .where('key_id', 'in', chargedIds(lease)),
      );
      // Entries, then totals, then counters: the order of expireLeases and resetKeyState.
      if (mysqlTotals) statements.push(rawStatement(db, stampTotalsQuery(lease, entry.stamp, entry.tokens)));
    }
    if (!outcome.isExpired) {
      statements.push(
        db
          .updateTable(t('counters'))
          .set({
            tokens: sql`tokens + ${settlement.tokens - lease.estimatedTokens}`,
            cost_usd: sql`cost_usd + ${settlement.costUsd - lease.estimatedCostUsd}`,
          })
          .where('key_id', 'in', chargedIds(lease))
          .where('window_id', 'in', [lease.day, lease.month]),
      );
    }
    // Same transaction as the lease claim: the record lands once, with the settlement or not at all.
    if (settlement.usage) statements.push(db.insertInto(t('usage')).values(usageToRow(settlement.usage)));
    return statements;
  }

  /** The expiries of probe leases still in flight (a probe in flight recovers when its lease expires). */
  function probeExpiriesQuery(db: AnyKysely, leaseIds: readonly string[]) {
    return db
      .selectFrom(t('leases'))
      .select('expires_at')
      .where('id', 'in', leaseIds)
      .where('status', '=', 'active');
  }

  function selectLeaseQuery(db: AnyKysely, leaseId: string) {
    let q = db.selectFrom(t('leases')).selectAll().where('id', '=', leaseId);
    if (ctx.hasRowLocks) q = q.forUpdate();
    return q;
  }

  async function purgeOld(now: number): Promise<void> {
    lastPurgeAt = now;
    await hotTransaction(async (tx) => {
      // Entries in flight have no stamp and are never purged (their lease stamps them when it ends).
      // Stamped entries still inside a key's running totals stay until a reservation moves past them.
      await tx
        .deleteFrom(t('window_entries'))
        .where('stamp', '<', now - retentionMs)
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom(`${t('window_totals')} as wt`)
                .select('wt.key_id')
                .whereRef('wt.key_id', '=', `${t('window_entries')}.key_id`)
                .whereRef('wt.floor_at', '<', `${t('window_entries')}.stamp`),
            ),
          ),
        )
        .execute();
      await tx
        .deleteFrom(t('leases'))
        .where((eb) =>
          eb.or([
            eb.and([eb('status', '=', 'settled'), eb('expires_at', '<', now - retentionMs)]),
            eb.and([eb('status', '=', 'expired'), eb('expires_at', '<', now - expiredLeaseRetentionMs)]),
          ]),
        )
        .execute();
    });
  }

  return {
    async reserve(request: ReserveRequest): Promise<ReserveResult> {
      if (pg) return pg.reserve(request);
      if (sq) return sq.reserve(request);
      if (request.candidates.length === 0) return { ok: false, retryAfterMs: null, reasons: {} };
      // Groups lock with the keys, in the same order: a group's state row is its lock.
      const ids = [
        ...new Set(request.candidates.flatMap((c) => (c.shared ? [c.keyId, c.shared.id] : [c.keyId]))),
      ].sort();
      const limits = request.candidates.flatMap((c) => (c.shared ? [c.limits, c.shared.limits] : [c.limits]));
      const parts = {
        window: limits.some((l) => l.rpm !== undefined || l.tpm !== undefined),
        counters: limits.some(
          (l) =>
            l.requestsPerDay !== undefined ||
            l.tokensPerDay !== undefined ||
            l.monthlyBudgetUsd !== undefined,
        ),
      };
      if (isBatched) {
        return batchedTransaction(async (send) => {
          // One round trip: open, lock (creating missing rows) and read; the same statements as lockStates,
          // then the totals' lock and window read and the counters' read, in the same order as unbatched.
          const cutoff = request.now - request.windowMs;
          const consumptionSelect = consumptionQuery(ids, request, { ...parts, window: false });
          const results = await send([
            CompiledQuery.raw('begin'),
            upsertStatesQuery(ctx.db, ids).compile(),
            selectStatesQuery(ctx.db, ids).compile(),
            upsertTotalsQuery(ids, cutoff).compile(ctx.db),
            ...(parts.window ? [windowTotalsQuery(ids, cutoff).compile(ctx.db)] : []),
            ...(consumptionSelect ? [consumptionSelect.compile(ctx.db)] : []),
          ]);
          const states = new Map(
            (results[2] as Row[]).map((r) => [String(r.key_id), stateFromRow(r)] as const),
          );
          const windows = parts.window ? windowsFromTotals(results[4] as Row[], cutoff) : undefined;
          const counters = (consumptionSelect ? results.at(-1) : []) as Row[];
          const consumption = withWindows(consumptionByKey(ids, request, counters), windows ?? new Map());
          const decision = decide(request, states, consumption);
          // The other: the writes (or the probe leases' expiries) and the commit.
          if (decision.ok) {
            const writes = [
              ...chargeTotalsStatements(ctx.db, decision.lease, windows),
              ...reservationStatements(ctx.db, decision.lease, request.now),
            ].map((s) => s.compile());
            await send([...writes, CompiledQuery.raw('commit')]);
            return decision;
          }
          const { probesInFlight } = decision;
          if (probesInFlight.length === 0) {
            await send([CompiledQuery.raw('commit')]);
            return refusal(request, decision);
          }
          const [expiries] = await send([
            probeExpiriesQuery(ctx.db, probesInFlight).compile(),
            CompiledQuery.raw('commit'),
          ]);
          return refusal(request, decision, expiries as Row[]);
        });
      }
      return hotTransaction(async (tx) => {
        const states = await lockStates(tx, ids);
        let windows: Map<string, TotalsWindow> | undefined;
        if (mysqlTotals) {
          // The batched path's statements, one at a time.
          const cutoff = request.now - request.windowMs;
          await upsertTotalsQuery(ids, cutoff).execute(tx);
          if (parts.window)
            windows = windowsFromTotals((await windowTotalsQuery(ids, cutoff).execute(tx)).rows, cutoff);
        }
        const consumption = withWindows(
          await readConsumption(tx, ids, request, mysqlTotals ? { ...parts, window: false } : parts),
          windows ?? new Map(),
        );
        const decision = decide(request, states, consumption);
        if (decision.ok) {
          const charges = mysqlTotals ? chargeTotalsStatements(tx, decision.lease, windows) : [];
          for (const statement of [...charges, ...reservationStatements(tx, decision.lease, request.now)]) {
            await statement.execute();
          }
          if (tsTotals) await refreshTotals(tx, chargedIds(decision.lease), request.now);
          return decision;
        }
        // Rare: a probe in flight recovers when its lease expires.
        const expiries =
          decision.probesInFlight.length > 0
            ? await probeExpiriesQuery(tx, decision.probesInFlight).execute()
            : [];
        return refusal(request, decision, expiries);
      });
    },

    async settle(leaseId: string, settlement: Settlement): Promise<SettleResult> {
      if (pg) return pg.settle(leaseId, settlement);
      if (sq) return sq.settle(leaseId, settlement);
      if (isBatched) {
        return batchedTransaction(async (send) => {
          // One round trip claims the lease; the other writes and commits.
          const [, rows] = await send([
            CompiledQuery.raw('begin'),
            selectLeaseQuery(ctx.db, leaseId).compile(),
          ]);
          const row = (rows as Row[])[0];
          if (!row || row.status === 'settled') {
            await send([CompiledQuery.raw('commit')]);
            return { status: 'already-settled' };
          }
          const lease = leaseFromRow(row);
          const outcome = settleOutcome(row, lease, settlement);
          const writes = settleStatements(ctx.db, lease, settlement, outcome).map((s) => s.compile());
          await send([...writes, CompiledQuery.raw('commit')]);
          return { status: outcome.isExpired ? 'expired' : 'settled', lease };
        });
      }
      return hotTransaction(async (tx) => {
        const row = await selectLeaseQuery(tx, leaseId).executeTakeFirst();
        if (!row || row.status === 'settled') return { status: 'already-settled' };
        const lease = leaseFromRow(row);
        const outcome = settleOutcome(row, lease, settlement);
        for (const statement of settleStatements(tx, lease, settlement, outcome)) await statement.execute();
        if (tsTotals && outcome.wasActive) await refreshTotals(tx, chargedIds(lease), settlement.now);
        return { status: outcome.isExpired ? 'expired' : 'settled', lease };
      });
    },

    async getLease(leaseId: string): Promise<LeaseRecord | undefined> {
      const row = await ctx.db
        .selectFrom(t('leases'))
        .selectAll()
        .where('id', '=', leaseId)
        .where('status', '=', 'active')
        .executeTakeFirst();
      return row ? leaseFromRow(row) : undefined;
    },

    async expireLeases(now: number): Promise<LeaseRecord[]> {
      const leases = sq
        ? await sq.expire(now)
        : await hotTransaction(async (tx) => {
            let q = tx
              .selectFrom(t('leases'))
              .selectAll()
              .where('status', '=', 'active')
              .where('expires_at', '<=', now)
              .orderBy('id');
            // Another process sweeping at the same moment takes the rows we skip: each lease is returned once.
            if (ctx.hasRowLocks) q = q.forUpdate().skipLocked();
            const rows = await q.execute();
            if (rows.length === 0) return [];
            const ids = rows.map((r) => String(r.id));
            await tx.updateTable(t('leases')).set({ status: 'expired' }).where('id', 'in', ids).execute();
            const expired = rows.map(leaseFromRow);
            // PostgreSQL: the running totals first (key_state, then totals, in key order, as reserve locks).
            await pg?.expireEntries(tx, expired);
            await freeProbeSlots(
              tx,
              expired.filter((l) => l.isProbe).map((l) => l.id),
            );
            // Unreported: the entry counts until expiresAt + windowMs, at its estimate.
            const entries = t('window_entries');
            await tx
              .updateTable(entries)
              .set((eb) => ({
                stamp: eb
                  .selectFrom(t('leases'))
                  .select('expires_at')
                  .whereRef(`${t('leases')}.id`, '=', `${entries}.lease_id`),
              }))
              .where('lease_id', 'in', ids)
              .execute();
            if (tsTotals) await refreshTotals(tx, expired.flatMap(chargedIds), now);
            if (mysqlTotals) {
              // Entries, then totals (settle's order); rows in key order, as reserve locks them.
              const byKey = [...expired].sort((a, b) => compare(a.keyId, b.keyId));
              for (const lease of byKey) {
                await stampTotalsQuery(lease, lease.expiresAt, lease.estimatedTokens).execute(tx);
              }
            }
            return expired;
          });
      if (now - lastPurgeAt >= 60_000) await purgeOld(now);
      return leases;
    },

    async getKeyStates(keyIds: readonly string[]): Promise<KeyState[]> {
      if (keyIds.length === 0) return [];
      const rows = await ctx.db
        .selectFrom(t('key_state'))
        .selectAll()
        .where('key_id', 'in', [...new Set(keyIds)])
        .execute();
      const byId = new Map(rows.map((r) => [String(r.key_id), stateFromRow(r)]));
      return keyIds.map((id) => byId.get(id) ?? defaultState(id));
    },

    async updateKeyState(keyId: string, update: KeyStateUpdate): Promise<KeyState> {
      return hotTransaction(async (tx) => {
        const current = (await lockStates(tx, [keyId])).get(keyId) ?? defaultState(keyId);
        const next = applyUpdate(current, update);
        await tx.updateTable(t('key_state')).set(stateToRow(next)).where('key_id', '=', keyId).execute();
        return next;
      });
    },

    async resetKeyState(keyId: string, options: { counters?: boolean; now: number }): Promise<void> {
      await hotTransaction(async (tx) => {
        await lockStates(tx, [keyId]);
        await tx
          .updateTable(t('key_state'))
          .set(stateToRow({ ...defaultState(keyId), updatedAt: options.now }))
          .where('key_id', '=', keyId)
          .execute();
        if (options.counters) {
          // Entries in flight are live requests, not counters: they stay (and keep counting).
          await tx
            .deleteFrom(t('window_entries'))
            .where('key_id', '=', keyId)
            .where('stamp', 'is not', null)
            .execute();
          // Entries, totals, counters: settle's order, so the two never deadlock.
          await tx
            .updateTable(t('window_totals'))
            .set({ requests: 0, tokens: 0 })
            .where('key_id', '=', keyId)
            .execute();
          await tx.deleteFrom(t('counters')).where('key_id', '=', keyId).execute();
        }
      });
    },

    /**
     * The claim lives on the key's state row (column probe_claimed_until, migration 0007): its
     * lock makes the claim atomic on every dialect, and deleting the key drops it.
     */
    async claimProbe(keyId: string, options: { now: number; ttlMs: number }): Promise<boolean> {
      return hotTransaction(async (tx) => {
        await lockStates(tx, [keyId]);
        const claimed = await tx
          .updateTable(t('key_state'))
          .set({ probe_claimed_until: options.now + options.ttlMs })
          .where('key_id', '=', keyId)
          .where((eb) =>
            eb.or([eb('probe_claimed_until', 'is', null), eb('probe_claimed_until', '<=', options.now)]),
          )
          .executeTakeFirst();
        return Number(claimed.numUpdatedRows) === 1;
      });
    },

    /** Drops every piece of hot state of a deleted key. */
    async dropKeyState(keyId: string): Promise<void> {
      await hotTransaction(async (tx) => {
        for (const table of ['key_state', ...hotTables] as const) {
          await tx.deleteFrom(t(table)).where('key_id', '=', keyId).execute();
        }
      });
    },

    async usageSnapshot(keyIds: readonly string[], query: UsageSnapshotQuery): Promise<KeyUsageSnapshot[]> {
      if (keyIds.length === 0) return [];
      const ids = [...new Set(keyIds)];
      const consumption = await readConsumption(ctx.db, ids, query, { window: !mysqlTotals, counters: true });
      if (mysqlTotals) {
        const cutoff = query.now - query.windowMs;
        const { rows } = await windowTotalsQuery(ids, cutoff).execute(ctx.db);
        withWindows(consumption, windowsFromTotals(rows, cutoff));
      }
      // A group's leases in flight are those charged to it (shared_id); a key's, its own.
      const activeBy = (column: 'key_id' | 'shared_id') =>
        ctx.db
          .selectFrom(t('leases'))
          .select([sql.ref(column).as('id'), sql<string>`count(*)`.as('n')])
          .where(column, 'in', ids)
          .where('status', '=', 'active')
          .groupBy(column);
      const inFlight = await activeBy('key_id').unionAll(activeBy('shared_id')).execute();
      const inFlightByKey = new Map<string, number>();
      for (const r of inFlight) {
        const id = String(r.id);
        inFlightByKey.set(id, (inFlightByKey.get(id) ?? 0) + num(r.n));
      }
      return keyIds.map((keyId) => {
        const c = consumption.get(keyId) ?? emptyConsumption();
        return {
          keyId,
          requestsInWindow: c.windowRequests,
          tokensInWindow: c.windowTokens,
          requestsToday: c.dayRequests,
          tokensToday: c.dayTokens,
          costThisMonthUsd: c.monthCostUsd,
          inFlight: inFlightByKey.get(keyId) ?? 0,
        };
      });
    },
  };
}

/** A key's window as its totals row gives it; `next`: the row with its floor moved up to the window's start. */
interface TotalsWindow {
  requests: number;
  tokens: number;
  oldestStamp: number | undefined;
  next: { floor: number; requests: number; tokens: number } | undefined;
}

type ConsumptionQuery = { now: number; windowMs: number; day: string; month: string };

type Decision =
  | { ok: true; lease: LeaseRecord }
  | {
      ok: false;
      reasons: Record<string, IneligibleReason>;
      retryAts: Array<number | null>;
      probesInFlight: string[];
    };

/** The first candidate that passes its checks (and its group's) gets the lease; the others say why not. */
function decide(
  request: ReserveRequest,
  states: ReadonlyMap<string, KeyState>,
  consumption: ReadonlyMap<string, Consumption>,
): Decision {
  const reasons: Record<string, IneligibleReason> = {};
  const retryAts: Array<number | null> = [];
  const probesInFlight: string[] = [];
  for (const candidate of request.candidates) {
    if (reasons[candidate.keyId]) continue;
    const state = states.get(candidate.keyId) ?? defaultState(candidate.keyId);
    let verdict = check(candidate, state, consumption.get(candidate.keyId) ?? emptyConsumption(), request);
    // The group's limits only once the key passes: a refusal names the key's own reason first.
    if (verdict.ok && candidate.shared) {
      const { id, limits } = candidate.shared;
      verdict = checkLimits(limits, consumption.get(id) ?? emptyConsumption(), request) ?? verdict;
    }
    if (verdict.ok) {
      const lease = grantedLease(request, candidate.keyId, verdict.isProbe, candidate.shared?.id);
      return { ok: true, lease };
    }
    reasons[candidate.keyId] = verdict.reason;
    if (verdict.reason === 'probe-in-flight') probesInFlight.push(state.probeLeaseId!);
    else retryAts.push(verdict.retryAt);
  }
  return { ok: false, reasons, retryAts, probesInFlight };
}

/** A refused reservation's answer; `probeExpiries`: the expiries of the probe leases still in flight. */
function refusal(
  request: ReserveRequest,
  decision: Extract<Decision, { ok: false }>,
  probeExpiries: readonly Row[] = [],
): ReserveResult {
  const retryAts = [...decision.retryAts, ...probeExpiries.map((r) => num(r.expires_at))];
  const known = retryAts.filter((at): at is number => at !== null);
  const retryAfterMs = known.length > 0 ? Math.max(0, Math.min(...known) - request.now) : null;
  return { ok: false, retryAfterMs, reasons: decision.reasons };
}

/** Whether a claimed lease was still active, and whether it settles as expired. */
function settleOutcome(row: Row, lease: LeaseRecord, settlement: Settlement) {
  const wasActive = row.status === 'active';
  return { wasActive, isExpired: !wasActive || lease.expiresAt <= settlement.now };
}

type Refusal = { ok: false; reason: IneligibleReason; retryAt: number | null };
type Verdict = { ok: true; isProbe: boolean } | Refusal;
const refuse = (reason: IneligibleReason, retryAt: number | null): Refusal => ({
  ok: false,
  reason,
  retryAt,
});

/** The documented checks, in the documented order; the first that fails is the reason. */
export function check(
  candidate: ReserveCandidate,
  state: KeyState,
  used: Consumption,
  request: ReserveRequest,
): Verdict {
  const { now } = request;
  if (state.invalidSince !== undefined) return refuse('invalid', null);
  if (state.exhaustedUntil !== undefined && state.exhaustedUntil > now)
    return refuse('exhausted', state.exhaustedUntil);
  // A last resort (ignoreCooldown) passes cooldowns, nothing else.
  const isCooldownHard = request.ignoreCooldown !== true;
  if (isCooldownHard && state.coolingUntil !== undefined && state.coolingUntil > now) {
    return refuse('cooling', state.coolingUntil);
  }
  const blockedUntil = request.model === undefined ? undefined : state.blockedModels?.[request.model];
  if (blockedUntil !== undefined && blockedUntil > now) return refuse('model-blocked', blockedUntil);
  let isProbe = false;
  if (
    isCooldownHard &&
    state.breaker === 'open' &&
    state.breakerOpenUntil !== undefined &&
    state.breakerOpenUntil > now
  ) {
    return refuse('breaker-open', state.breakerOpenUntil);
  }
  if (state.breaker === 'open' || state.breaker === 'half-open') {
    if (state.probeLeaseId !== undefined) return refuse('probe-in-flight', null);
    isProbe = true;
  }
  return checkLimits(candidate.limits, used, request) ?? { ok: true, isProbe };
}

/**
 * The limit checks of `check`, in its order: a key's after its state, and a candidate's group's
 * (`ReserveCandidate.shared`, which has no state) after its key's.
 */
export function checkLimits(
  limits: KeyLimits,
  used: Consumption,
  request: ReserveRequest,
): Refusal | undefined {
  const { now } = request;
  // The oldest stamped entry leaves first; entries in flight leave no sooner than a window from now.
  const windowFreesAt = (used.oldestStamp ?? now) + request.windowMs;
  if (limits.rpm !== undefined && used.windowRequests + 1 > limits.rpm) return refuse('rpm', windowFreesAt);
  if (limits.tpm !== undefined && used.windowTokens + request.estimatedTokens > limits.tpm) {
    return refuse('tpm', request.estimatedTokens > limits.tpm ? null : windowFreesAt);
  }
  if (limits.requestsPerDay !== undefined && used.dayRequests + 1 > limits.requestsPerDay) {
    return refuse('requests-per-day', request.dayEndsAt);
  }
  if (limits.tokensPerDay !== undefined && used.dayTokens + request.estimatedTokens > limits.tokensPerDay) {
    return refuse('tokens-per-day', request.dayEndsAt);
  }
  if (
    limits.monthlyBudgetUsd !== undefined &&
    used.monthCostUsd + request.estimatedCostUsd > limits.monthlyBudgetUsd
  ) {
    return refuse('monthly-budget', request.monthEndsAt);
  }
  return undefined;
}

/**
 * Where a settled entry counts from: the upstream had the request by the time
 * it responded (default: now), never before it was reserved nor after now.
 * Whole ms, rounded up (later is the safe side), as on PostgreSQL.
 */
export function settledStamp(lease: LeaseRecord, settlement: Settlement): number {
  const respondedAt = Math.ceil(settlement.respondedAt ?? settlement.now);
  return Math.min(settlement.now, Math.max(lease.reservedAt, respondedAt));
}

/** resetFailures, incrementFailures, set (blockedModels merged per model), clear; then updatedAt. */
export function applyUpdate(current: KeyState, update: KeyStateUpdate): KeyState {
  const next: KeyState = { ...current };
  if (update.resetFailures) next.consecutiveFailures = 0;
  if (update.incrementFailures) next.consecutiveFailures += 1;
  for (const [field, value] of Object.entries(update.set ?? {})) {
    if (value === undefined) continue;
    if (field === 'blockedModels') {
      next.blockedModels = { ...next.blockedModels, ...(value as Record<string, number>) };
    } else {
      (next as unknown as Record<string, unknown>)[field] = value;
    }
  }
  for (const field of update.clear ?? []) delete next[field];
  next.updatedAt = update.now;
  return next;
}
