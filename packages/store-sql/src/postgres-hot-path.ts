import { createHash } from 'node:crypto';
import type {
  IneligibleReason,
  KeyLimits,
  LeaseRecord,
  ReserveRequest,
  ReserveResult,
  Settlement,
  SettleResult,
} from '@keypool/spec';
import { grantedLease } from '@keypool/store-memory';
import { CompiledQuery, sql } from 'kysely';
import type { AnyKysely, PgQueryable } from './connection.js';
import { num, type SqlContext } from './context.js';
import { SqlStoreError } from './errors.js';
import { leaseFromRow, type Row, usageToRow } from './rows.js';
import type { Layout } from './schema.js';

/**
 * PostgreSQL's hot path: `reserve` and `settle` as PL/pgSQL functions, one
 * round trip each (installed by migration 0009; 0002, 0003 and 0005 installed
 * earlier versions, frozen in their own files). They
 * apply the checks of `check()` in hot-state.ts in the same order (MySQL and
 * SQLite run that TypeScript path) and take their locks in the
 * same order as the TypeScript transactions: key_state rows (sorted, the
 * candidates' groups among them), window_totals, counters.
 *
 * The sliding window (see "Window entries" in @keypool/spec's README) is kept
 * as running totals per key in `window_totals`: the entries in flight
 * (`inflight_requests`, `inflight_tokens`: unstamped, they always count) and
 * the stamped entries with stamp > floor_at (`requests`, `tokens`). Totals
 * whose floor lags the window's start can only count more than the window
 * holds, so a check that passes on them is exact; a reservation moves floor_at
 * up to its window's start (subtracting the stamped entries that left) only
 * when a check fails on them or the floor lags by more than a quarter window.
 * So it costs the same with 10 or 10,000 requests in the window and, most of
 * the time, reads no entries at all; a settle or an expiry moves its entry from in flight to stamped
 * (counted only if the stamp is above the floor: otherwise it has already left).
 * When a request's window starts before floor_at (clocks differ, or a longer
 * window), the function counts the stamped entries exactly instead.
 * Invariants: every key with window entries has a totals row; the totals equal
 * the entries they describe; stamped entries above floor_at are never purged.
 *
 * Hot-state commits (the settle's usage row included: it is the same atomic
 * step) skip the WAL flush unless `durableHotState` is set, as the
 * TypeScript transactions do.
 */
export function postgresHotPath(ctx: SqlContext, pgPool?: () => Promise<PgQueryable>) {
  const isDurable = ctx.layout.isHotStateDurable;
  const reserveCall = functionCall(ctx, 'keypool_reserve', 26);
  const settleCall = functionCall(ctx, 'keypool_settle', 7);
  const createStatesCall = createStatesStatement(ctx);
  // On a pool we opened, named statements: PostgreSQL parses and plans each call once per
  // connection instead of on every call (Kysely sends unnamed ones). On the user's Kysely
  // instance, the same text through Kysely.
  const call = async (fn: FunctionCall, values: unknown[]): Promise<Row[]> => {
    if (pgPool) {
      const pool = await pgPool();
      return ctx.retrying(
        async () => (await pool.query({ name: fn.name, text: fn.text, values })).rows as Row[],
      );
    }
    return ctx.retrying(
      async () => (await ctx.root.executeQuery<Row>(CompiledQuery.raw(fn.text, values))).rows,
    );
  };
  return {
    async reserve(request: ReserveRequest): Promise<ReserveResult> {
      // The first occurrence of a key decides, as in the TypeScript path.
      const seen = new Set<string>();
      const candidates = request.candidates.filter((c) => !seen.has(c.keyId) && seen.add(c.keyId));
      if (candidates.length === 0) return { ok: false, retryAfterMs: null, reasons: {} };
      const limit = (pick: (c: (typeof candidates)[number]) => number | undefined) =>
        candidates.map((c) => pick(c) ?? null);
      // Without groups the function gets nulls, and skips them.
      const hasShared = candidates.some((c) => c.shared !== undefined);
      const sharedLimit = (field: keyof KeyLimits) =>
        hasShared ? candidates.map((c) => c.shared?.limits[field] ?? null) : null;
      const values = [
        request.leaseId,
        candidates.map((c) => c.keyId),
        limit((c) => c.limits.rpm),
        limit((c) => c.limits.tpm),
        limit((c) => c.limits.requestsPerDay),
        limit((c) => c.limits.tokensPerDay),
        limit((c) => c.limits.monthlyBudgetUsd),
        request.model ?? null,
        request.estimatedTokens,
        request.estimatedCostUsd,
        request.now,
        request.windowMs,
        request.day,
        request.month,
        request.dayEndsAt,
        request.monthEndsAt,
        request.leaseTtlMs,
        request.meta === undefined ? null : JSON.stringify(request.meta),
        isDurable,
        request.ignoreCooldown === true,
        hasShared ? candidates.map((c) => c.shared?.id ?? null) : null,
        sharedLimit('rpm'),
        sharedLimit('tpm'),
        sharedLimit('requestsPerDay'),
        sharedLimit('tokensPerDay'),
        sharedLimit('monthlyBudgetUsd'),
      ];
      let row = (await call(reserveCall, values))[0] ?? {};
      // A reservation with groups finds a state row missing (a key's or group's first use): the
      // rows are created on their own, then it runs again (see "missing state rows" in the function).
      for (let attempt = 1; hasShared && row.refusals === null && row.lease_key_id === null; attempt++) {
        if (attempt > maxStateAttempts) throw stateRowsVanishing();
        const ids = candidates.flatMap((c) => (c.shared ? [c.keyId, c.shared.id] : [c.keyId]));
        await call(createStatesCall, [[...new Set(ids)]]);
        row = (await call(reserveCall, values))[0] ?? {};
      }
      if (row.lease_key_id !== null && row.lease_key_id !== undefined) {
        const keyId = String(row.lease_key_id);
        const shared = candidates.find((c) => c.keyId === keyId)?.shared;
        return { ok: true, lease: grantedLease(request, keyId, row.lease_is_probe === true, shared?.id) };
      }
      const refusals = (row.refusals ?? []) as Array<string | null>;
      const reasons: Record<string, IneligibleReason> = {};
      candidates.forEach((c, i) => {
        const reason = refusals[i];
        if (reason) reasons[c.keyId] = reason as IneligibleReason;
      });
      const retryAt = row.retry_at === null || row.retry_at === undefined ? null : num(row.retry_at);
      return {
        ok: false,
        retryAfterMs: retryAt === null ? null : Math.max(0, retryAt - request.now),
        reasons,
      };
    },

    async settle(leaseId: string, settlement: Settlement): Promise<SettleResult> {
      const usage = settlement.usage === undefined ? null : JSON.stringify(usageToRow(settlement.usage));
      // Stamps are whole ms; rounding up keeps the entry in the window a little longer, never shorter.
      const respondedAt = settlement.respondedAt === undefined ? null : Math.ceil(settlement.respondedAt);
      const rows = await call(settleCall, [
        leaseId,
        settlement.tokens,
        settlement.costUsd,
        settlement.now,
        respondedAt,
        usage,
        isDurable,
      ]);
      const row = rows[0];
      if (!row) return { status: 'already-settled' };
      return { status: row.status === 'expired' ? 'expired' : 'settled', lease: leaseFromRow(row) };
    },

    /**
     * Part of `expireLeases`' transaction, after the leases are claimed: their
     * entries leave the in-flight totals and count as stamped at expiresAt
     * (the TypeScript side then stamps the rows); a lease's group's entry
     * with its key's. Locks key_state, then window_totals, each in key order
     * (groups among the keys), as a reservation does, so the two queue instead
     * of deadlocking.
     */
    async expireEntries(tx: AnyKysely, leases: readonly LeaseRecord[]): Promise<void> {
      if (leases.length === 0) return;
      const ids = sql.join(leases.map((l) => l.id));
      const charged = leases.flatMap((l) => (l.sharedId === undefined ? [l.keyId] : [l.keyId, l.sharedId]));
      const keys = sql.join([...new Set(charged)].sort());
      const totals = ctx.ref('window_totals');
      await sql`select 1 from ${ctx.ref('key_state')} where key_id in (${keys}) order by key_id for update`.execute(
        tx,
      );
      await sql`select 1 from ${totals} where key_id in (${keys}) order by key_id for update`.execute(tx);
      await sql`with gone as (
          select e.key_id, e.tokens, l.expires_at as stamp
          from ${ctx.ref('window_entries')} e join ${ctx.ref('leases')} l on l.id = e.lease_id
          where e.lease_id in (${ids}) and e.stamp is null
        ), moved as (
          select g.key_id, count(*) as n, sum(g.tokens) as tokens,
            count(*) filter (where g.stamp > w.floor_at) as n_in,
            coalesce(sum(g.tokens) filter (where g.stamp > w.floor_at), 0) as tokens_in
          from gone g join ${totals} w on w.key_id = g.key_id group by g.key_id
        )
        update ${totals} t set inflight_requests = t.inflight_requests - m.n,
          inflight_tokens = t.inflight_tokens - m.tokens,
          requests = t.requests + m.n_in, tokens = t.tokens + m.tokens_in
        from moved m where t.key_id = m.key_id`.execute(tx);
    },
  };
}

const maxStateAttempts = 5;

function stateRowsVanishing(): SqlStoreError {
  return new SqlStoreError(
    'KEYPOOL_STORE',
    'sqlStore: the key state rows of a reservation were deleted each time they were created. Check nothing else deletes rows of the key_state table.',
  );
}

/**
 * Creates missing key_state rows in a statement of its own (autocommit), in key order: it holds no
 * other lock while it waits for another creator of the same row, so it cannot deadlock.
 */
function createStatesStatement(ctx: SqlContext): FunctionCall {
  const table = `${ctx.layout.prefix}key_state`;
  const target = ctx.layout.schema ? `${ident(ctx.layout.schema)}.${ident(table)}` : ident(table);
  const text = `insert into ${target} (key_id, breaker, consecutive_failures, updated_at)
    select x, 'closed', 0, 0 from unnest($1::text[]) x order by x on conflict do nothing`;
  return { text, name: `keypool_states_${createHash('sha256').update(text).digest('hex').slice(0, 16)}` };
}

interface FunctionCall {
  text: string;
  /** Statement name: one per text, so stores on other schemas or prefixes never share a plan. */
  name: string;
}

function functionCall(ctx: SqlContext, fn: string, arity: number): FunctionCall {
  const qualified = `${ctx.layout.prefix}${fn}`;
  const target = ctx.layout.schema ? `${ident(ctx.layout.schema)}.${ident(qualified)}` : ident(qualified);
  const params = Array.from({ length: arity }, (_, i) => `$${i + 1}`).join(', ');
  const text = `select * from ${target}(${params})`;
  return { text, name: `${fn}_${createHash('sha256').update(text).digest('hex').slice(0, 16)}` };
}

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * Migration 0009 on PostgreSQL: shared limits. keypool_reserve takes each candidate's group
 * (`p_shared_ids`, null when no candidate has one) and the group's limits, checks them after the
 * key's and charges both: a new signature, so 0005's 20-argument reserve stays for processes not
 * upgraded yet (they never send a group). keypool_settle keeps its signature and reconciles the
 * group's entry, totals and counters with the key's. A candidate without a group runs the same
 * statements as in 0005.
 */
export async function installPostgresSharedLimits(db: AnyKysely, layout: Layout): Promise<void> {
  const schema =
    layout.schema ??
    String((await sql<{ s: string }>`select current_schema() as s`.execute(db)).rows[0]?.s ?? 'public');
  const q = (name: string) => `${ident(schema)}.${ident(`${layout.prefix}${name}`)}`;
  for (const statement of functionsDdl(q)) await sql.raw(statement).execute(db);
}

const minBigint = '-9223372036854775808';

/** Whose limits a block of keypool_reserve checks: the candidate's key, or its group. */
interface Subject {
  /** PL/pgSQL expression holding its id. */
  id: string;
  /** Prefix of its window-totals variables (`<v>floor`, `<v>requests`, …). */
  v: string;
  limits: { rpm: string; tpm: string; rpd: string; tpd: string; budget: string };
  /** PL/pgSQL expressions of today's requests and tokens and this month's cost (null when none). */
  used: { dayRequests: string; dayTokens: string; monthCost: string };
}

function functionsDdl(q: (name: string) => string): string[] {
  const states = q('key_state');
  const entries = q('window_entries');
  const totals = q('window_totals');
  const counters = q('counters');
  const leases = q('leases');
  const usage = q('usage');
  const key: Subject = {
    id: 'k',
    v: 'k_',
    limits: { rpm: 'p_rpm[i]', tpm: 'p_tpm[i]', rpd: 'p_rpd[i]', tpd: 'p_tpd[i]', budget: 'p_budget[i]' },
    used: { dayRequests: 'st.d_requests', dayTokens: 'st.d_tokens', monthCost: 'st.m_cost' },
  };
  const group: Subject = {
    id: 'g',
    v: 'g_',
    limits: {
      rpm: 'p_shared_rpm[i]',
      tpm: 'p_shared_tpm[i]',
      rpd: 'p_shared_rpd[i]',
      tpd: 'p_shared_tpd[i]',
      budget: 'p_shared_budget[i]',
    },
    used: { dayRequests: 'g_d_requests', dayTokens: 'g_d_tokens', monthCost: 'g_m_cost' },
  };
  const totalsVariables = (v: string) => `
      ${v}has_totals boolean;
      ${v}is_floor_moved boolean;
      ${v}floor bigint;
      ${v}requests bigint;
      ${v}tokens bigint;
      ${v}fl_requests bigint;
      ${v}fl_tokens bigint;`;

  /** The window, day and month checks of `check()` on one subject; sets reason and r_at when one fails. */
  const limitChecks = ({ id, v, limits, used }: Subject) => {
    const isRpmOver = `(${limits.rpm} is not null and w_requests + 1 > ${limits.rpm})`;
    const isTpmOver = `(${limits.tpm} is not null and w_tokens + p_tokens > ${limits.tpm})`;
    return `
          if ${limits.rpm} is not null or ${limits.tpm} is not null then
            -- Window totals: lock (a settle moving an entry waits, or is seen whole).
            select * into wt from ${totals} t where t.key_id = ${id} for update;
            if not found then
              insert into ${totals} (key_id, floor_at, requests, tokens, inflight_requests, inflight_tokens)
                values (${id}, ${minBigint}, 0, 0, 0, 0);
              ${v}floor := ${minBigint}; ${v}requests := 0; ${v}tokens := 0;
              ${v}fl_requests := 0; ${v}fl_tokens := 0;
            else
              ${v}floor := wt.floor_at; ${v}requests := wt.requests; ${v}tokens := wt.tokens;
              ${v}fl_requests := wt.inflight_requests; ${v}fl_tokens := wt.inflight_tokens;
            end if;
            ${v}has_totals := true;
            -- Entries in flight always count.
            w_requests := ${v}requests + ${v}fl_requests;
            w_tokens := ${v}tokens + ${v}fl_tokens;
            if ${v}floor > cutoff then
              -- The window starts before the totals' floor: count exactly, leave the totals alone.
              select count(*), coalesce(sum(e.tokens), 0) into w_requests, w_tokens
                from ${entries} e where e.key_id = ${id} and e.stamp > cutoff;
              w_requests := w_requests + ${v}fl_requests;
              w_tokens := w_tokens + ${v}fl_tokens;
            elsif ${v}floor <= stale_floor or ${isRpmOver} or ${isTpmOver} then
              -- Totals since a floor before the window can only count more: move the floor up.
              select count(*), coalesce(sum(e.tokens), 0) into gone_requests, gone_tokens
                from ${entries} e where e.key_id = ${id} and e.stamp > ${v}floor and e.stamp <= cutoff;
              ${v}requests := ${v}requests - gone_requests;
              ${v}tokens := ${v}tokens - gone_tokens;
              ${v}floor := cutoff;
              ${v}is_floor_moved := true;
              w_requests := ${v}requests + ${v}fl_requests;
              w_tokens := ${v}tokens + ${v}fl_tokens;
            end if;
            if ${isRpmOver} or ${isTpmOver} then
              -- The oldest stamped entry leaves first; entries in flight no sooner than a window from now.
              select coalesce(min(e.stamp), p_now) + p_window_ms into frees_at
                from ${entries} e where e.key_id = ${id} and e.stamp > cutoff;
              if ${isRpmOver} then
                reason := 'rpm'; r_at := frees_at;
              else
                reason := 'tpm'; r_at := case when p_tokens > ${limits.tpm} then null else frees_at end;
              end if;
            end if;
          end if;
          if reason is null then
            if ${limits.rpd} is not null and coalesce(${used.dayRequests}, 0) + 1 > ${limits.rpd} then
              reason := 'requests-per-day'; r_at := p_day_ends_at;
            elsif ${limits.tpd} is not null and coalesce(${used.dayTokens}, 0) + p_tokens > ${limits.tpd} then
              reason := 'tokens-per-day'; r_at := p_day_ends_at;
            elsif ${limits.budget} is not null and coalesce(${used.monthCost}, 0) + p_cost > ${limits.budget} then
              reason := 'monthly-budget'; r_at := p_month_ends_at;
            end if;
          end if;`;
  };

  /** One more in flight on the subject's totals (locked by its checks when it has any). */
  const chargeTotals = ({ id, v }: Subject) => `
          if ${v}has_totals then
            update ${totals} t set floor_at = ${v}floor, requests = ${v}requests, tokens = ${v}tokens,
                inflight_requests = ${v}fl_requests + 1, inflight_tokens = ${v}fl_tokens + p_tokens
              where t.key_id = ${id};
          else
            insert into ${totals} as t (key_id, floor_at, requests, tokens, inflight_requests, inflight_tokens)
              values (${id}, ${minBigint}, 0, 0, 1, p_tokens)
              on conflict (key_id) do update
              set inflight_requests = t.inflight_requests + 1, inflight_tokens = t.inflight_tokens + p_tokens;
          end if;`;

  /** The unstamped window entries, day/month counters and lease, in one statement. */
  const recordLease = (charged: readonly Subject[]) => {
    const isShared = charged.length > 1;
    const entryRows = charged.map((s) => `(p_lease_id, ${s.id}, p_now, p_tokens, null)`);
    const counterRows = charged.flatMap((s) => [
      `(${s.id}, p_day, 1, p_tokens, p_cost)`,
      `(${s.id}, p_month, 1, p_tokens, p_cost)`,
    ]);
    return `
          with entry as (
            insert into ${entries} (lease_id, key_id, reserved_at, tokens, stamp)
              values ${entryRows.join(', ')}
          ), counted as (
            insert into ${counters} as c (key_id, window_id, requests, tokens, cost_usd)
              values ${counterRows.join(', ')}
              on conflict (key_id, window_id) do update set requests = c.requests + excluded.requests,
                tokens = c.tokens + excluded.tokens, cost_usd = c.cost_usd + excluded.cost_usd
          )
          insert into ${leases} (id, key_id, model, estimated_tokens, estimated_cost_usd, reserved_at, expires_at,
              day, month, is_probe, meta, status${isShared ? ', shared_id' : ''})
            values (p_lease_id, k, p_model, p_tokens, p_cost, p_now, p_now + p_ttl_ms, p_day, p_month,
              case when probe then 1 else 0 end, p_meta, 'active'${isShared ? ', g' : ''});`;
  };

  /** Keeps the totals moving for a subject checked but not chosen. */
  const writeFloor = ({ id, v }: Subject) => `
        if ${v}is_floor_moved then
          update ${totals} t set floor_at = ${v}floor, requests = ${v}requests, tokens = ${v}tokens
            where t.key_id = ${id};
        end if;`;

  return [
    `create or replace function ${q('keypool_reserve')}(
      p_lease_id text, p_key_ids text[], p_rpm float8[], p_tpm float8[], p_rpd float8[], p_tpd float8[],
      p_budget float8[], p_model text, p_tokens bigint, p_cost float8, p_now bigint, p_window_ms bigint,
      p_day text, p_month text, p_day_ends_at bigint, p_month_ends_at bigint, p_ttl_ms bigint, p_meta text,
      p_is_durable boolean, p_ignore_cooldown boolean,
      p_shared_ids text[], p_shared_rpm float8[], p_shared_tpm float8[], p_shared_rpd float8[],
      p_shared_tpd float8[], p_shared_budget float8[],
      out lease_key_id text, out lease_is_probe boolean, out refusals text[], out retry_at bigint)
    language plpgsql as $fn$
    declare
      n int := cardinality(p_key_ids);
      cutoff bigint := p_now - p_window_ms;
      -- Past this, the floor moves even when every check passes (keeps the totals' backlog short).
      stale_floor bigint := p_now - p_window_ms - p_window_ms / 4;
      lock_ids text[];
      locked int;
      k text;
      g text;
      st record;
      wt record;${totalsVariables('k_')}${totalsVariables('g_')}
      g_d_requests bigint;
      g_d_tokens bigint;
      g_m_cost float8;
      w_requests bigint;
      w_tokens bigint;
      gone_requests bigint;
      gone_tokens bigint;
      frees_at bigint;
      reason text;
      r_at bigint;
      probe boolean;
    begin
      if not p_is_durable then
        perform set_config('synchronous_commit', 'off', true);
      end if;
      refusals := array_fill(null::text, array[n]);
      -- Lock every candidate's state in key order (so lockers queue, never deadlock), creating missing
      -- rows (see below with groups). A group's state row is its lock: it joins the keys' in that order.
      lock_ids := p_key_ids;
      if p_shared_ids is not null then
        lock_ids := array(select distinct x from unnest(p_key_ids || p_shared_ids) x where x is not null);
      end if;
      perform 1 from ${states} s where s.key_id = any(lock_ids) order by s.key_id for update;
      get diagnostics locked = row_count;
      if locked < cardinality(lock_ids) then
        if p_shared_ids is not null then
          -- Missing state rows: inserting them here, holding the rows locked above out of key order,
          -- could deadlock with another creator (every reservation of an organization takes its
          -- group's row). Return nothing instead (no lease, no refusals): the caller creates the rows
          -- in a statement of its own and calls again.
          refusals := null;
          return;
        end if;
        insert into ${states} (key_id, breaker, consecutive_failures, updated_at)
          select x, 'closed', 0, 0 from unnest(lock_ids) x order by x on conflict do nothing;
        perform 1 from ${states} s where s.key_id = any(lock_ids) order by s.key_id for update;
      end if;

      for i in 1..n loop
        k := p_key_ids[i];
        -- The candidate's group (null without one, and for every candidate when p_shared_ids is null).
        g := p_shared_ids[i];
        reason := null;
        r_at := null;
        probe := false;
        k_has_totals := false;
        k_is_floor_moved := false;
        g_has_totals := false;
        g_is_floor_moved := false;
        -- The state (locked above) and today's and this month's counters, in one read.
        select s.invalid_since, s.exhausted_until, s.cooling_until, s.blocked_models, s.breaker,
            s.breaker_open_until, s.probe_lease_id,
            d.requests as d_requests, d.tokens as d_tokens, m.cost_usd as m_cost
          into st
          from ${states} s
          left join ${counters} d on d.key_id = s.key_id and d.window_id = p_day
          left join ${counters} m on m.key_id = s.key_id and m.window_id = p_month
          where s.key_id = k;
        if st.invalid_since is not null then
          reason := 'invalid';
        elsif st.exhausted_until > p_now then
          reason := 'exhausted'; r_at := st.exhausted_until;
        elsif st.cooling_until > p_now and not p_ignore_cooldown then
          reason := 'cooling'; r_at := st.cooling_until;
        elsif p_model is not null and st.blocked_models is not null
            and (st.blocked_models::jsonb ->> p_model)::float8 > p_now then
          reason := 'model-blocked'; r_at := (st.blocked_models::jsonb ->> p_model)::float8;
        elsif st.breaker = 'open' and st.breaker_open_until > p_now and not p_ignore_cooldown then
          reason := 'breaker-open'; r_at := st.breaker_open_until;
        elsif st.breaker in ('open', 'half-open') and st.probe_lease_id is not null then
          reason := 'probe-in-flight';
          select l.expires_at into r_at from ${leases} l where l.id = st.probe_lease_id and l.status = 'active';
        else
          probe := st.breaker in ('open', 'half-open');${limitChecks(key)}
          -- Only then the group's limits (a group has no state of its own to check).
          if reason is null and g is not null then
            if ${group.limits.rpd} is not null or ${group.limits.tpd} is not null
                or ${group.limits.budget} is not null then
              select d.requests, d.tokens, m.cost_usd into g_d_requests, g_d_tokens, g_m_cost
                from (select g as key_id) s
                left join ${counters} d on d.key_id = s.key_id and d.window_id = p_day
                left join ${counters} m on m.key_id = s.key_id and m.window_id = p_month;
            end if;${limitChecks(group)}
          end if;
        end if;

        if reason is null then
          -- Reserve on the key and its group: window totals, then entries, counters and lease, then
          -- the probe slot.${chargeTotals(key)}
          if g is null then${recordLease([key])}
          else${chargeTotals(group)}${recordLease([key, group])}
          end if;
          if probe then
            update ${states} s set breaker = 'half-open', probe_lease_id = p_lease_id, updated_at = p_now
              where s.key_id = k;
          end if;
          lease_key_id := k;
          lease_is_probe := probe;
          refusals := null;
          retry_at := null;
          return;
        end if;

        refusals[i] := reason;${writeFloor(key)}${writeFloor(group)}
        if r_at is not null and (retry_at is null or r_at < retry_at) then
          retry_at := r_at;
        end if;
      end loop;
    end
    $fn$`,

    `create or replace function ${q('keypool_settle')}(
      p_lease_id text, p_tokens bigint, p_cost float8, p_now bigint, p_responded_at bigint, p_usage text,
      p_is_durable boolean)
    returns setof ${leases}
    language plpgsql as $fn$
    declare
      l ${leases}%rowtype;
      is_on_time boolean;
      v_stamp bigint;
      v_tokens bigint;
    begin
      if not p_is_durable then
        perform set_config('synchronous_commit', 'off', true);
      end if;
      -- Claim the lease: a settled lease has nothing left to say (an unknown id answers
      -- already-settled too), so it is deleted; a settle that lost the race finds nothing.
      -- Rows marked 'settled' by earlier versions stay until the purge.
      delete from ${leases} x where x.id = p_lease_id and x.status <> 'settled' returning * into l;
      if not found then
        return;
      end if;
      if l.status = 'active' then
        -- Lock order as in reserve: key_state, then window totals, then counters. A lease charged to a
        -- group takes the two state rows first, in key order, as a reservation holds them while it
        -- takes either's totals (one totals row alone needs no state lock).
        if l.shared_id is not null then
          perform 1 from ${states} s where s.key_id in (l.key_id, l.shared_id) order by s.key_id for update;
        end if;
        if l.is_probe = 1 then
          update ${states} s set probe_lease_id = null where s.probe_lease_id = p_lease_id;
        end if;
        is_on_time := l.expires_at > p_now;
        if is_on_time then
          -- The upstream had the request by the time it responded: the entry counts from there.
          v_stamp := least(p_now, greatest(l.reserved_at, coalesce(p_responded_at, p_now)));
          v_tokens := p_tokens;
        else
          -- Expired unreported: stamped at expiresAt, kept at the estimate.
          v_stamp := l.expires_at;
          v_tokens := l.estimated_tokens;
        end if;
        -- In flight -> stamped; counted only above the floor (below it the entry has left already).
        -- The group's totals and counters as the key's, in statements of their own (a lease without
        -- a group runs the same statements as in 0005).
        update ${totals} t set inflight_requests = t.inflight_requests - 1,
            inflight_tokens = t.inflight_tokens - l.estimated_tokens,
            requests = t.requests + case when v_stamp > t.floor_at then 1 else 0 end,
            tokens = t.tokens + case when v_stamp > t.floor_at then v_tokens else 0 end
          where t.key_id = l.key_id;
        if l.shared_id is not null then
          update ${totals} t set inflight_requests = t.inflight_requests - 1,
              inflight_tokens = t.inflight_tokens - l.estimated_tokens,
              requests = t.requests + case when v_stamp > t.floor_at then 1 else 0 end,
              tokens = t.tokens + case when v_stamp > t.floor_at then v_tokens else 0 end
            where t.key_id = l.shared_id;
        end if;
        -- Both entries (the key's and the group's) are the lease's.
        with stamped as (
          update ${entries} e set stamp = v_stamp, tokens = v_tokens where e.lease_id = p_lease_id
        ), counted as (
          update ${counters} c set tokens = c.tokens + (p_tokens - l.estimated_tokens),
              cost_usd = c.cost_usd + (p_cost - l.estimated_cost_usd)
            where is_on_time and c.key_id = l.key_id and c.window_id in (l.day, l.month)
        )
        insert into ${usage} select * from jsonb_populate_record(null::${usage}, p_usage::jsonb)
          where p_usage is not null;
        if l.shared_id is not null and is_on_time then
          update ${counters} c set tokens = c.tokens + (p_tokens - l.estimated_tokens),
              cost_usd = c.cost_usd + (p_cost - l.estimated_cost_usd)
            where c.key_id = l.shared_id and c.window_id in (l.day, l.month);
        end if;
        l.status := case when is_on_time then 'settled' else 'expired' end;
      elsif p_usage is not null then
        insert into ${usage} select * from jsonb_populate_record(null::${usage}, p_usage::jsonb);
      end if;
      return next l;
    end
    $fn$`,
  ];
}
