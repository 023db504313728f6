import type {
  IneligibleReason,
  KeyState,
  KeyStateUpdate,
  KeyUsageSnapshot,
  LeaseRecord,
  ReserveRequest,
  ReserveResult,
  Settlement,
  SettleResult,
  UsageSnapshotQuery,
} from '@keypool/spec';
import { defaultKeyState } from './state.js';

interface Entry {
  reservedAt: number;
  tokens: number;
}

interface Counters {
  window: Map<string, Entry>;
  requestsByDay: Map<string, number>;
  tokensByDay: Map<string, number>;
  costByMonth: Map<string, number>;
  inFlight: number;
}

/**
 * Per-process hot state that serves while Redis is unreachable: the store's
 * reserve/settle semantics on plain Maps. The caller scales limits down to this
 * process's share of the fleet before reserving.
 */
export class LocalHotState {
  private readonly states = new Map<string, KeyState>();
  private readonly counters = new Map<string, Counters>();
  private readonly leases = new Map<string, LeaseRecord>();

  /** Starts an outage from the last states read from Redis (they win over any earlier outage's). */
  seed(states: Iterable<KeyState>): void {
    for (const state of states) this.states.set(state.keyId, state);
  }

  hasLease(leaseId: string): boolean {
    return this.leases.has(leaseId);
  }

  getLease(leaseId: string): LeaseRecord | undefined {
    return this.leases.get(leaseId);
  }

  private state(keyId: string): KeyState {
    return this.states.get(keyId) ?? defaultKeyState(keyId);
  }

  private countersOf(keyId: string): Counters {
    let counters = this.counters.get(keyId);
    if (!counters) {
      counters = {
        window: new Map(),
        requestsByDay: new Map(),
        tokensByDay: new Map(),
        costByMonth: new Map(),
        inFlight: 0,
      };
      this.counters.set(keyId, counters);
    }
    return counters;
  }

  reserve(request: ReserveRequest): ReserveResult {
    const { now, windowMs, estimatedTokens: est, estimatedCostUsd: cost, model } = request;
    const reasons: Record<string, IneligibleReason> = {};
    let best: number | null = null;
    const retry = (at: number | undefined) => {
      if (at !== undefined && (best === null || at < best)) best = at;
    };
    for (const { keyId, limits } of request.candidates) {
      const state = this.state(keyId);
      const counters = this.countersOf(keyId);
      for (const [id, entry] of counters.window) {
        if (entry.reservedAt <= now - windowMs) counters.window.delete(id);
      }
      const oldest = () => {
        let min: number | undefined;
        for (const entry of counters.window.values())
          min = Math.min(min ?? entry.reservedAt, entry.reservedAt);
        return min === undefined ? undefined : min + windowMs;
      };
      let reason: IneligibleReason | undefined;
      let isProbe = false;
      const blockedUntil = model ? state.blockedModels?.[model] : undefined;
      if (state.invalidSince !== undefined) reason = 'invalid';
      else if ((state.exhaustedUntil ?? 0) > now) [reason] = ['exhausted', retry(state.exhaustedUntil)];
      else if ((state.coolingUntil ?? 0) > now) [reason] = ['cooling', retry(state.coolingUntil)];
      else if (blockedUntil !== undefined && blockedUntil > now)
        [reason] = ['model-blocked', retry(blockedUntil)];
      else if (state.breaker !== 'closed') {
        if (state.breaker === 'open' && (state.breakerOpenUntil ?? 0) > now) {
          [reason] = ['breaker-open', retry(state.breakerOpenUntil)];
        } else if (state.probeLeaseId !== undefined) {
          [reason] = ['probe-in-flight', retry(this.leases.get(state.probeLeaseId)?.expiresAt)];
        } else isProbe = true;
      }
      if (!reason) {
        let windowTokens = 0;
        for (const entry of counters.window.values()) windowTokens += entry.tokens;
        const today = counters.requestsByDay.get(request.day) ?? 0;
        const tokensToday = counters.tokensByDay.get(request.day) ?? 0;
        const spent = counters.costByMonth.get(request.month) ?? 0;
        if (limits.rpm !== undefined && counters.window.size + 1 > limits.rpm)
          [reason] = ['rpm', retry(oldest())];
        else if (limits.tpm !== undefined && windowTokens + est > limits.tpm) {
          [reason] = ['tpm', est <= limits.tpm ? retry(oldest()) : undefined];
        } else if (limits.requestsPerDay !== undefined && today + 1 > limits.requestsPerDay) {
          [reason] = ['requests-per-day', retry(request.dayEndsAt)];
        } else if (limits.tokensPerDay !== undefined && tokensToday + est > limits.tokensPerDay) {
          [reason] = ['tokens-per-day', retry(request.dayEndsAt)];
        } else if (limits.monthlyBudgetUsd !== undefined && spent + cost > limits.monthlyBudgetUsd) {
          [reason] = ['monthly-budget', retry(request.monthEndsAt)];
        }
      }
      if (reason) {
        reasons[keyId] = reason;
        continue;
      }
      counters.window.set(request.leaseId, { reservedAt: now, tokens: est });
      counters.requestsByDay.set(request.day, (counters.requestsByDay.get(request.day) ?? 0) + 1);
      counters.tokensByDay.set(request.day, (counters.tokensByDay.get(request.day) ?? 0) + est);
      counters.costByMonth.set(request.month, (counters.costByMonth.get(request.month) ?? 0) + cost);
      counters.inFlight += 1;
      const lease: LeaseRecord = {
        id: request.leaseId,
        keyId,
        ...(model !== undefined && { model }),
        estimatedTokens: est,
        estimatedCostUsd: cost,
        reservedAt: now,
        expiresAt: now + request.leaseTtlMs,
        day: request.day,
        month: request.month,
        isProbe,
        ...(request.meta !== undefined && { meta: request.meta }),
      };
      this.leases.set(lease.id, lease);
      if (isProbe) this.states.set(keyId, { ...state, breaker: 'half-open', probeLeaseId: lease.id });
      return { ok: true, lease };
    }
    const retryAt: number | null = best;
    return { ok: false, retryAfterMs: retryAt === null ? null : retryAt - now, reasons };
  }

  private end(lease: LeaseRecord): void {
    this.leases.delete(lease.id);
    const counters = this.countersOf(lease.keyId);
    counters.inFlight = Math.max(0, counters.inFlight - 1);
    const state = this.states.get(lease.keyId);
    if (state?.probeLeaseId === lease.id) {
      const { probeLeaseId: _, ...rest } = state;
      this.states.set(lease.keyId, rest);
    }
  }

  settle(leaseId: string, settlement: Settlement): SettleResult {
    const lease = this.leases.get(leaseId);
    if (!lease) return { status: 'already-settled' };
    this.end(lease);
    if (lease.expiresAt <= settlement.now) return { status: 'expired', lease };
    const counters = this.countersOf(lease.keyId);
    const entry = counters.window.get(leaseId);
    if (entry) entry.tokens = settlement.tokens;
    const dayTokens = counters.tokensByDay.get(lease.day);
    if (dayTokens !== undefined) {
      counters.tokensByDay.set(lease.day, dayTokens + settlement.tokens - lease.estimatedTokens);
    }
    const monthCost = counters.costByMonth.get(lease.month);
    if (monthCost !== undefined) {
      counters.costByMonth.set(lease.month, monthCost + settlement.costUsd - lease.estimatedCostUsd);
    }
    return { status: 'settled', lease };
  }

  expireLeases(now: number): LeaseRecord[] {
    const expired = [...this.leases.values()].filter((lease) => lease.expiresAt <= now);
    for (const lease of expired) this.end(lease);
    return expired;
  }

  getKeyStates(keyIds: readonly string[]): KeyState[] {
    return keyIds.map((id) => this.state(id));
  }

  updateKeyState(keyId: string, update: KeyStateUpdate): KeyState {
    const state: KeyState = { ...this.state(keyId) };
    if (update.resetFailures) state.consecutiveFailures = 0;
    if (update.incrementFailures) state.consecutiveFailures += 1;
    const { blockedModels, ...rest } = update.set ?? {};
    Object.assign(state, rest);
    if (blockedModels) state.blockedModels = { ...state.blockedModels, ...blockedModels };
    for (const field of update.clear ?? []) delete state[field];
    state.updatedAt = update.now;
    this.states.set(keyId, state);
    return state;
  }

  resetKeyState(keyId: string, counters: boolean, now: number): void {
    this.states.set(keyId, { ...defaultKeyState(keyId), updatedAt: now });
    if (counters) {
      const inFlight = this.counters.get(keyId)?.inFlight ?? 0;
      this.counters.delete(keyId);
      this.countersOf(keyId).inFlight = inFlight;
    }
  }

  usageSnapshot(keyIds: readonly string[], query: UsageSnapshotQuery): KeyUsageSnapshot[] {
    return keyIds.map((keyId) => {
      const counters = this.countersOf(keyId);
      let requestsInWindow = 0;
      let tokensInWindow = 0;
      for (const entry of counters.window.values()) {
        if (entry.reservedAt > query.now - query.windowMs) {
          requestsInWindow += 1;
          tokensInWindow += entry.tokens;
        }
      }
      return {
        keyId,
        requestsInWindow,
        tokensInWindow,
        requestsToday: counters.requestsByDay.get(query.day) ?? 0,
        tokensToday: counters.tokensByDay.get(query.day) ?? 0,
        costThisMonthUsd: counters.costByMonth.get(query.month) ?? 0,
        inFlight: counters.inFlight,
      };
    });
  }
}
