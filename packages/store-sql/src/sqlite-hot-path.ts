import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
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
import { isTransient, type SqlContext } from './context.js';
import { type Consumption, chargedIds, check, checkLimits, settledStamp } from './hot-state.js';
import { defaultState, leaseFromRow, leaseToRow, type Row, stateFromRow, usageToRow } from './rows.js';
import { sqliteMinFloor, type TableName } from './schema.js';

type Params = SQLInputValue[];
// Taken at load: fake timers in a user's tests must not stall the store.
const deferred = setImmediate;
interface QueuedCall {
  fn: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

const usageColumns = Object.keys(
  usageToRow({
    id: '',
    time: 0,
    day: '',
    month: '',
    keyId: '',
    keyAlias: '',
    provider: '',
    inputTokens: 0,
    outputTokens: 0,
    costUsd: 0,
    status: 'ok',
  }),
);
const leaseColumns = Object.keys(
  leaseToRow({
    id: '',
    keyId: '',
    estimatedTokens: 0,
    estimatedCostUsd: 0,
    reservedAt: 0,
    expiresAt: 0,
    day: '',
    month: '',
    isProbe: false,
  }),
);

/**
 * SQLite's hot path: `reserve`, `settle` and the lease sweep of `expireLeases`
 * as synchronous `node:sqlite` calls on the store's own connection, with
 * prepared statements cached per store, each in one `BEGIN IMMEDIATE … COMMIT`
 * (the file's write lock: other processes queue on it) while holding the
 * in-process writer queue (the Kysely transactions on the same file queue there
 * too). No await between BEGIN and COMMIT, so nothing else in this process runs
 * in between.
 *
 * It makes the same decisions as `check()` in hot-state.ts and PostgreSQL's
 * functions, and keeps the sliding window as the same running totals
 * (`window_totals`, migration 0004; see postgres-hot-path.ts): entries in
 * flight, and stamped entries above `floor_at`. A reservation moves the floor
 * up to its window's start, subtracting the stamped entries that left (an
 * index range on (key_id, stamp)), so it costs the same with 10 or 10,000
 * requests in the window; a window that starts below the floor (a clock
 * behind, a longer window) counts exactly instead.
 */
export function sqliteHotPath(ctx: SqlContext, open: () => Promise<DatabaseSync>) {
  let native: DatabaseSync | undefined;
  const statements = new Map<string, StatementSync>();
  const queue: QueuedCall[] = [];
  let isScheduled = false;
  const t = (name: TableName) => `"${ctx.t(name)}"`;
  const states = t('key_state');
  const entries = t('window_entries');
  const totals = t('window_totals');
  const counters = t('counters');
  const leases = t('leases');
  const usage = t('usage');

  function stmt(text: string): StatementSync {
    let s = statements.get(text);
    if (!s) {
      s = native!.prepare(text);
      statements.set(text, s);
    }
    return s;
  }
  const get = (text: string, ...params: Params) => stmt(text).get(...params) as Row | undefined;
  const run = (text: string, ...params: Params) => stmt(text).run(...params);

  /**
   * Runs `fn` in a write transaction. Calls that arrive while one is queued or
   * running share the next transaction (group commit: one WAL commit for many,
   * which is most of a call's cost), each inside its own savepoint so a failing
   * call rolls back alone and rejects alone; every caller hears back only after
   * the COMMIT. The batch runs again as a whole when another process holds the
   * file (busy).
   */
  async function immediate<T>(fn: () => T): Promise<T> {
    native ??= await open();
    return new Promise<T>((resolve, reject) => {
      queue.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      if (!isScheduled) schedule(native!);
    });
  }

  function schedule(db: DatabaseSync): void {
    isScheduled = true;
    // The batch starts on the next check phase, not in a microtask: callers that
    // arrive in separate I/O callbacks (one per HTTP request) then still share it.
    deferred(
      () =>
        void ctx.exclusive(async () => {
          isScheduled = false;
          const batch = queue.splice(0);
          try {
            const outcomes = await ctx.retrying(async () => runBatch(db, batch));
            outcomes.forEach((outcome, i) => {
              if (outcome.ok) batch[i]!.resolve(outcome.value);
              else batch[i]!.reject(outcome.error);
            });
          } catch (error) {
            for (const op of batch) op.reject(error);
          }
        }),
    );
  }

  function runBatch(db: DatabaseSync, batch: readonly QueuedCall[]): Outcome[] {
    stmt('BEGIN IMMEDIATE').run();
    try {
      const isAlone = batch.length === 1;
      const outcomes = batch.map((op): Outcome => {
        if (!isAlone) stmt('SAVEPOINT keypool_call').run();
        try {
          const value = op.fn();
          if (!isAlone) stmt('RELEASE keypool_call').run();
          return { ok: true, value };
        } catch (error) {
          if (isAlone) throw error;
          db.exec('ROLLBACK TO keypool_call; RELEASE keypool_call');
          return { ok: false, error };
        }
      });
      stmt('COMMIT').run();
      return outcomes;
    } catch (error) {
      if (db.isTransaction) db.exec('ROLLBACK');
      if (batch.length === 1 && !isTransient(error)) return [{ ok: false, error }];
      throw error;
    }
  }

  /**
   * A key's window: its totals row with the floor moved up to `cutoff` when it
   * may (what left is subtracted), and the counted requests and tokens.
   */
  function readWindow(keyId: string, cutoff: number) {
    const row = get(
      `select floor_at, requests, tokens, inflight_requests, inflight_tokens from ${totals} where key_id = ?`,
      keyId,
    );
    const was = row
      ? {
          floor: Number(row.floor_at),
          requests: Number(row.requests),
          tokens: Number(row.tokens),
          inflightRequests: Number(row.inflight_requests),
          inflightTokens: Number(row.inflight_tokens),
        }
      : { floor: sqliteMinFloor, requests: 0, tokens: 0, inflightRequests: 0, inflightTokens: 0 };
    const next = { ...was };
    let counted: { requests: number; tokens: number };
    if (!row) {
      // No totals row: the key has no window entries (every key with entries has one).
      next.floor = cutoff;
      counted = { requests: 0, tokens: 0 };
    } else if (was.floor <= cutoff) {
      const gone = get(
        `select count(*) as n, coalesce(sum(tokens), 0) as tokens from ${entries}
          where key_id = ? and stamp > ? and stamp <= ?`,
        keyId,
        was.floor,
        cutoff,
      )!;
      next.requests -= Number(gone.n);
      next.tokens -= Number(gone.tokens);
      next.floor = cutoff;
      counted = { requests: next.requests, tokens: next.tokens };
    } else {
      // The window starts below the floor: count exactly, leave the totals alone.
      const exact = get(
        `select count(*) as n, coalesce(sum(tokens), 0) as tokens from ${entries} where key_id = ? and stamp > ?`,
        keyId,
        cutoff,
      )!;
      counted = { requests: Number(exact.n), tokens: Number(exact.tokens) };
    }
    // Entries in flight always count.
    counted.requests += was.inflightRequests;
    counted.tokens += was.inflightTokens;
    return { exists: row !== undefined, was, next, counted };
  }

  type Window = ReturnType<typeof readWindow>;

  function writeFloor(keyId: string, w: Window): void {
    if (!w.exists || w.next.floor === w.was.floor) return;
    run(
      `update ${totals} set floor_at = ?, requests = ?, tokens = ? where key_id = ?`,
      w.next.floor,
      w.next.requests,
      w.next.tokens,
      keyId,
    );
  }

  /**
   * A lease's entries (its key's and its group's) leave the in-flight totals and count as
   * stamped (only above the floor: below, they have left).
   */
  function stampEntry(lease: LeaseRecord, stamp: number, tokens: number): void {
    for (const keyId of chargedIds(lease)) {
      run(
        `update ${totals} set inflight_requests = inflight_requests - 1, inflight_tokens = inflight_tokens - ?,
          requests = requests + (case when ? > floor_at then 1 else 0 end),
          tokens = tokens + (case when ? > floor_at then ? else 0 end)
          where key_id = ?`,
        lease.estimatedTokens,
        stamp,
        stamp,
        tokens,
        keyId,
      );
    }
    run(`update ${entries} set stamp = ?, tokens = ? where lease_id = ?`, stamp, tokens, lease.id);
  }

  function freeProbeSlot(leaseId: string): void {
    run(`update ${states} set probe_lease_id = null where probe_lease_id = ?`, leaseId);
  }

  /**
   * What `check` reads of a key's (or a group's) hot state: its window (only for rpm or tpm; the
   * oldest stamp only when it is full) and its day and month counters (only for their limits).
   */
  function readUsage(id: string, limits: KeyLimits, request: ReserveRequest, cutoff: number) {
    const hasWindow = limits.rpm !== undefined || limits.tpm !== undefined;
    const window = hasWindow ? readWindow(id, cutoff) : undefined;
    const used: Consumption = {
      windowRequests: window?.counted.requests ?? 0,
      windowTokens: window?.counted.tokens ?? 0,
      oldestStamp: undefined,
      dayRequests: 0,
      dayTokens: 0,
      monthCostUsd: 0,
    };
    if (window) {
      const isFull =
        (limits.rpm !== undefined && used.windowRequests + 1 > limits.rpm) ||
        (limits.tpm !== undefined && used.windowTokens + request.estimatedTokens > limits.tpm);
      // Only a refusal needs the oldest stamp (when the window frees up): an index seek.
      if (isFull) {
        const oldest = get(
          `select min(stamp) as s from ${entries} where key_id = ? and stamp > ?`,
          id,
          cutoff,
        );
        if (oldest?.s !== null && oldest?.s !== undefined) used.oldestStamp = Number(oldest.s);
      }
    }
    if (
      limits.requestsPerDay !== undefined ||
      limits.tokensPerDay !== undefined ||
      limits.monthlyBudgetUsd !== undefined
    ) {
      const rows = stmt(
        `select window_id, requests, tokens, cost_usd from ${counters} where key_id = ? and window_id in (?, ?)`,
      ).all(id, request.day, request.month) as Row[];
      for (const r of rows) {
        if (r.window_id === request.day) {
          used.dayRequests = Number(r.requests);
          used.dayTokens = Number(r.tokens);
        }
        if (r.window_id === request.month) used.monthCostUsd = Number(r.cost_usd);
      }
    }
    return { window, used };
  }

  function reserveNow(request: ReserveRequest): ReserveResult {
    const { now } = request;
    const cutoff = now - request.windowMs;
    const reasons: Record<string, IneligibleReason> = {};
    let retryAt: number | null = null;
    for (const candidate of request.candidates) {
      const keyId = candidate.keyId;
      // The first occurrence of a key decides, as on the other paths.
      if (reasons[keyId]) continue;
      const row = get(`select * from ${states} where key_id = ?`, keyId);
      if (!row) {
        run(
          `insert or ignore into ${states} (key_id, breaker, consecutive_failures, updated_at) values (?, 'closed', 0, 0)`,
          keyId,
        );
      }
      const state = row ? stateFromRow(row) : defaultState(keyId);
      const key = readUsage(keyId, candidate.limits, request, cutoff);
      let verdict = check(candidate, state, key.used, request);
      // The group's limits only once the key passes: a refusal names the key's own reason first.
      let group: { id: string; window: Window | undefined } | undefined;
      if (verdict.ok && candidate.shared) {
        const { id, limits } = candidate.shared;
        const usage = readUsage(id, limits, request, cutoff);
        group = { id, window: usage.window };
        verdict = checkLimits(limits, usage.used, request) ?? verdict;
      }
      if (verdict.ok) {
        const lease = grantedLease(request, keyId, verdict.isProbe, group?.id);
        recordReservation(lease, key.window, group?.window);
        return { ok: true, lease };
      }
      if (key.window) writeFloor(keyId, key.window);
      if (group?.window) writeFloor(group.id, group.window);
      reasons[keyId] = verdict.reason;
      let at = verdict.retryAt;
      // Rare: a probe in flight recovers when its lease expires.
      if (verdict.reason === 'probe-in-flight') {
        const probe = get(
          `select expires_at from ${leases} where id = ? and status = 'active'`,
          state.probeLeaseId!,
        );
        at = probe ? Number(probe.expires_at) : null;
      }
      if (at !== null && (retryAt === null || at < retryAt)) retryAt = at;
    }
    return { ok: false, retryAfterMs: retryAt === null ? null : Math.max(0, retryAt - now), reasons };
  }

  /** One more in flight on a key's (or a group's) totals, with the floor its window read moved. */
  function chargeTotals(keyId: string, window: Window | undefined, tokens: number): void {
    if (window?.exists) {
      run(
        `update ${totals} set floor_at = ?, requests = ?, tokens = ?, inflight_requests = ?, inflight_tokens = ?
          where key_id = ?`,
        window.next.floor,
        window.next.requests,
        window.next.tokens,
        window.was.inflightRequests + 1,
        window.was.inflightTokens + tokens,
        keyId,
      );
    } else {
      run(
        `insert into ${totals} as w (key_id, floor_at, requests, tokens, inflight_requests, inflight_tokens)
          values (?, ?, 0, 0, 1, ?) on conflict (key_id) do update
          set inflight_requests = w.inflight_requests + 1, inflight_tokens = w.inflight_tokens + excluded.inflight_tokens`,
        keyId,
        sqliteMinFloor,
        tokens,
      );
    }
  }

  /** Totals (one more in flight), the unstamped entry and day/month counters of the key and its group, lease, probe slot. */
  function recordReservation(
    lease: LeaseRecord,
    window: Window | undefined,
    groupWindow: Window | undefined,
  ): void {
    const { estimatedTokens: tokens, estimatedCostUsd: cost } = lease;
    for (const keyId of chargedIds(lease)) {
      chargeTotals(keyId, keyId === lease.keyId ? window : groupWindow, tokens);
      run(
        `insert into ${entries} (lease_id, key_id, reserved_at, tokens, stamp) values (?, ?, ?, ?, null)`,
        lease.id,
        keyId,
        lease.reservedAt,
        tokens,
      );
      run(
        `insert into ${counters} as c (key_id, window_id, requests, tokens, cost_usd) values (?, ?, 1, ?, ?), (?, ?, 1, ?, ?)
          on conflict (key_id, window_id) do update set requests = c.requests + excluded.requests,
            tokens = c.tokens + excluded.tokens, cost_usd = c.cost_usd + excluded.cost_usd`,
        keyId,
        lease.day,
        tokens,
        cost,
        keyId,
        lease.month,
        tokens,
        cost,
      );
    }
    const row = leaseToRow(lease);
    run(
      `insert into ${leases} (${leaseColumns.join(', ')}) values (${leaseColumns.map(() => '?').join(', ')})`,
      ...(leaseColumns.map((c) => row[c]) as Params),
    );
    if (lease.isProbe) {
      run(
        `update ${states} set breaker = 'half-open', probe_lease_id = ?, updated_at = ? where key_id = ?`,
        lease.id,
        lease.reservedAt,
        lease.keyId,
      );
    }
  }

  function settleNow(leaseId: string, settlement: Settlement): SettleResult {
    // A settled lease has nothing left to say (an unknown id answers already-settled too), so
    // the claim deletes it: one statement, and the lease table holds only live and swept leases.
    // Rows marked 'settled' by earlier versions stay until the purge.
    const row = get(`delete from ${leases} where id = ? and status <> 'settled' returning *`, leaseId);
    if (!row) return { status: 'already-settled' };
    const lease = leaseFromRow(row);
    const wasActive = row.status === 'active';
    const isExpired = !wasActive || lease.expiresAt <= settlement.now;
    // An entry swept earlier is stamped already; an active lease's entry is stamped now.
    if (wasActive) {
      if (lease.isProbe) freeProbeSlot(leaseId);
      if (isExpired) stampEntry(lease, lease.expiresAt, lease.estimatedTokens);
      else stampEntry(lease, settledStamp(lease, settlement), settlement.tokens);
    }
    if (!isExpired) {
      for (const keyId of chargedIds(lease)) {
        run(
          `update ${counters} set tokens = tokens + ?, cost_usd = cost_usd + ? where key_id = ? and window_id in (?, ?)`,
          settlement.tokens - lease.estimatedTokens,
          settlement.costUsd - lease.estimatedCostUsd,
          keyId,
          lease.day,
          lease.month,
        );
      }
    }
    // Same transaction as the lease claim: the record lands once, with the settlement or not at all.
    if (settlement.usage) {
      const u = usageToRow(settlement.usage);
      run(
        `insert into ${usage} (${usageColumns.join(', ')}) values (${usageColumns.map(() => '?').join(', ')})`,
        ...(usageColumns.map((c) => u[c]) as Params),
      );
    }
    return { status: isExpired ? 'expired' : 'settled', lease };
  }

  function expireNow(now: number): LeaseRecord[] {
    const rows = stmt(`select * from ${leases} where status = 'active' and expires_at <= ? order by id`).all(
      now,
    ) as Row[];
    const expired = rows.map(leaseFromRow);
    for (const lease of expired) {
      run(`update ${leases} set status = 'expired' where id = ?`, lease.id);
      if (lease.isProbe) freeProbeSlot(lease.id);
      // Unreported: the entry counts until expiresAt + windowMs, at its estimate.
      stampEntry(lease, lease.expiresAt, lease.estimatedTokens);
    }
    return expired;
  }

  return {
    reserve(request: ReserveRequest): Promise<ReserveResult> {
      if (request.candidates.length === 0) {
        return Promise.resolve({ ok: false, retryAfterMs: null, reasons: {} });
      }
      return immediate(() => reserveNow(request));
    },
    settle: (leaseId: string, settlement: Settlement) => immediate(() => settleNow(leaseId, settlement)),
    /** Claims the active leases that expired (each returned once: the write lock excludes other sweepers). */
    expire: (now: number) => immediate(() => expireNow(now)),
  };
}
