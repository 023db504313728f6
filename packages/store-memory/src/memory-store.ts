import type {
  AuditEntry,
  AuditQuery,
  IneligibleReason,
  KeyRecord,
  KeyState,
  KeyStateUpdate,
  KeyUsageSnapshot,
  LeaseRecord,
  PoolRecord,
  ReserveCandidate,
  ReserveRequest,
  ReserveResult,
  Settlement,
  SettleResult,
  Store,
  TokenRecord,
  UsageQuery,
  UsageRecord,
  UsageRow,
  UsageSnapshotQuery,
} from '@keypool/spec';
import { DuplicateKeyError } from './errors.js';
import { grantedLease } from './lease.js';
import { SlidingWindow } from './sliding-window.js';
import { UsageLog } from './usage-log.js';

export interface MemoryStoreOptions {
  /**
   * Usage records kept for `queryUsage`; the oldest are dropped beyond this so a
   * long-running process stays bounded. Default 100 000.
   */
  maxUsageRecords?: number;
  /** Audit entries kept; the oldest are dropped beyond this. Default 10 000. */
  maxAuditEntries?: number;
  /**
   * How long a lease that expired unreported is remembered, so a late `settle`
   * answers 'expired' (after that: 'already-settled'). Default 1 hour.
   */
  expiredLeaseRetentionMs?: number;
  /** Upper bound on remembered expired leases, oldest forgotten first. Default 100 000. */
  maxExpiredLeases?: number;
}

/** Sizes of the store's internal collections, for tests and leak hunting. */
export interface MemoryStoreSizes {
  keys: number;
  /** Keys with hot state (state, window, counters). */
  hotKeys: number;
  activeLeases: number;
  expiredLeases: number;
  /** Window entries held over all keys. */
  windowEntries: number;
  /** Window slots allocated over all keys. */
  windowCapacity: number;
  dayCounters: number;
  monthCounters: number;
  usageRecords: number;
  auditEntries: number;
}

export interface MemoryStore extends Store {
  readonly name: 'memory';
  debugSizes(): MemoryStoreSizes;
}

interface DayCounter {
  requests: number;
  tokens: number;
}

/** Hot state of one key. */
interface KeyHot {
  /** Undefined until first written: reads as the default state. */
  state: KeyState | undefined;
  window: SlidingWindow;
  days: Map<string, DayCounter>;
  months: Map<string, number>;
  inFlight: number;
}

interface ActiveLease {
  record: LeaseRecord;
  hot: KeyHot;
  /** The hot state of the candidate's shared limits, charged with the key's. */
  shared: KeyHot | undefined;
}

/** Old calendar windows are never asked for again; keep a few for reports and late settles. */
const KEPT_DAYS = 4;
const KEPT_MONTHS = 3;

function defaultState(keyId: string, updatedAt: number): KeyState {
  return { keyId, breaker: 'closed', consecutiveFailures: 0, updatedAt };
}

function copyLease(lease: LeaseRecord): LeaseRecord {
  const copy: LeaseRecord = {
    id: lease.id,
    keyId: lease.keyId,
    estimatedTokens: lease.estimatedTokens,
    estimatedCostUsd: lease.estimatedCostUsd,
    reservedAt: lease.reservedAt,
    expiresAt: lease.expiresAt,
    day: lease.day,
    month: lease.month,
    isProbe: lease.isProbe,
  };
  if (lease.model !== undefined) copy.model = lease.model;
  if (lease.meta !== undefined) copy.meta = { ...lease.meta };
  if (lease.sharedId !== undefined) copy.sharedId = lease.sharedId;
  return copy;
}

/** A deep copy without `undefined` properties, as a serialising store would return it. */
function copyRecord<T>(record: T): T {
  return JSON.parse(JSON.stringify(record)) as T;
}

function byCreatedThenId(a: { createdAt: number; id: string }, b: { createdAt: number; id: string }): number {
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Keeps a Map to its newest `max` entries (Map iteration is insertion order). */
function trimOldest<K, V>(map: Map<K, V>, max: number): void {
  while (map.size > max) {
    const oldest = map.keys().next().value as K;
    map.delete(oldest);
  }
}

/** A fixed-capacity log that forgets its oldest entries. */
class BoundedLog<T> {
  private items: T[] = [];
  private start = 0;
  constructor(private readonly max: number) {}

  push(item: T): void {
    if (this.items.length < this.max) {
      this.items.push(item);
      return;
    }
    this.items[this.start] = item;
    this.start = (this.start + 1) % this.max;
  }

  get size(): number {
    return this.items.length;
  }

  /** Oldest first. */
  *[Symbol.iterator](): Iterator<T> {
    const n = this.items.length;
    for (let i = 0; i < n; i++) yield this.items[(this.start + i) % n]!;
  }
}

class MemoryStoreImpl implements MemoryStore {
  readonly name = 'memory' as const;
  readonly capabilities = { fleet: false, durable: false };

  private readonly keys = new Map<string, KeyRecord>();
  private readonly fingerprints = new Map<string, string>();
  private version = 0;
  private readonly pools = new Map<string, PoolRecord>();
  private readonly tokens = new Map<string, TokenRecord>();
  private readonly usage: UsageLog;
  private readonly audit: BoundedLog<AuditEntry>;
  private readonly meta = new Map<string, string>();

  private readonly hot = new Map<string, KeyHot>();
  private readonly leases = new Map<string, ActiveLease>();
  /** Leases that expired unreported, in expiry order, with the time they ended. */
  private readonly expired = new Map<string, { lease: LeaseRecord; endedAt: number }>();
  private readonly expiredRetentionMs: number;
  private readonly maxExpired: number;
  /** Background-probe claims: key id -> epoch ms until which the slot is held. */
  private readonly probeClaims = new Map<string, number>();
  /** Scratch result of `check`, to keep reserve free of per-candidate allocations. */
  private retryAt: number | null = null;

  constructor(options: MemoryStoreOptions) {
    this.usage = new UsageLog(options.maxUsageRecords ?? 100_000);
    this.audit = new BoundedLog(options.maxAuditEntries ?? 10_000);
    this.expiredRetentionMs = options.expiredLeaseRetentionMs ?? 3_600_000;
    this.maxExpired = options.maxExpiredLeases ?? 100_000;
  }

  async init(): Promise<void> {}

  // -- durable: keys ---------------------------------------------------------

  async listKeys(): Promise<KeyRecord[]> {
    return [...this.keys.values()].sort(byCreatedThenId).map(copyRecord);
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    const record = this.keys.get(id);
    return record && copyRecord(record);
  }

  async getKeyByFingerprint(fingerprint: string): Promise<KeyRecord | undefined> {
    const id = this.fingerprints.get(fingerprint);
    return id === undefined ? undefined : this.getKey(id);
  }

  async putKey(record: KeyRecord): Promise<void> {
    const owner = this.fingerprints.get(record.fingerprint);
    if (owner !== undefined && owner !== record.id) throw new DuplicateKeyError(owner);
    const previous = this.keys.get(record.id);
    if (previous && previous.fingerprint !== record.fingerprint)
      this.fingerprints.delete(previous.fingerprint);
    this.keys.set(record.id, copyRecord(record));
    this.fingerprints.set(record.fingerprint, record.id);
    this.version += 1;
  }

  async deleteKey(id: string): Promise<boolean> {
    this.dropHotState(id);
    this.probeClaims.delete(id);
    const record = this.keys.get(id);
    if (!record) return false;
    this.keys.delete(id);
    this.fingerprints.delete(record.fingerprint);
    this.version += 1;
    return true;
  }

  async keysVersion(): Promise<number> {
    return this.version;
  }

  // -- durable: pools and tokens ---------------------------------------------

  async listPools(): Promise<PoolRecord[]> {
    return [...this.pools.values()].sort(byCreatedThenId).map(copyRecord);
  }

  async getPool(id: string): Promise<PoolRecord | undefined> {
    const record = this.pools.get(id);
    return record && copyRecord(record);
  }

  async putPool(record: PoolRecord): Promise<void> {
    this.pools.set(record.id, copyRecord(record));
  }

  async deletePool(id: string): Promise<boolean> {
    return this.pools.delete(id);
  }

  async listTokens(): Promise<TokenRecord[]> {
    return [...this.tokens.values()].sort(byCreatedThenId).map(copyRecord);
  }

  async getTokenByHash(tokenHash: string): Promise<TokenRecord | undefined> {
    for (const record of this.tokens.values()) {
      if (record.tokenHash === tokenHash) return copyRecord(record);
    }
    return undefined;
  }

  async putToken(record: TokenRecord): Promise<void> {
    this.tokens.set(record.id, copyRecord(record));
  }

  async deleteToken(id: string): Promise<boolean> {
    return this.tokens.delete(id);
  }

  async touchToken(id: string, lastUsedAt: number): Promise<void> {
    const record = this.tokens.get(id);
    if (record !== undefined && !(lastUsedAt <= (record.lastUsedAt ?? Number.NEGATIVE_INFINITY))) {
      record.lastUsedAt = lastUsedAt;
    }
  }

  // -- durable: logs ---------------------------------------------------------

  async appendUsage(records: readonly UsageRecord[]): Promise<void> {
    for (const record of records) this.usage.append(record);
  }

  async queryUsage(query: UsageQuery): Promise<UsageRow[]> {
    return this.usage.query(query);
  }

  async appendAudit(entry: AuditEntry): Promise<void> {
    this.audit.push(copyRecord(entry));
  }

  async listAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const limit = query.limit ?? 100;
    const matching: AuditEntry[] = [];
    for (const entry of this.audit) {
      if (query.from !== undefined && entry.time < query.from) continue;
      if (query.to !== undefined && entry.time >= query.to) continue;
      if (query.target !== undefined && entry.target !== query.target) continue;
      if (query.action !== undefined && entry.action !== query.action) continue;
      matching.push(entry);
    }
    // Stable sort on insertion order reversed: newest first, later insert first on ties.
    matching.reverse();
    matching.sort((a, b) => b.time - a.time);
    return matching.slice(0, limit).map(copyRecord);
  }

  async getMeta(name: string): Promise<string | undefined> {
    return this.meta.get(name);
  }

  async setMeta(name: string, value: string): Promise<void> {
    this.meta.set(name, value);
  }

  // -- hot state -------------------------------------------------------------

  async reserve(request: ReserveRequest): Promise<ReserveResult> {
    let reasons: Record<string, IneligibleReason> | undefined;
    let retryAt: number | null = null;
    for (const candidate of request.candidates) {
      const reason = this.check(candidate, request);
      if (reason === undefined) return { ok: true, lease: this.take(candidate, request) };
      reasons ??= {};
      reasons[candidate.keyId] = reason;
      if (this.retryAt !== null && (retryAt === null || this.retryAt < retryAt)) retryAt = this.retryAt;
    }
    return {
      ok: false,
      retryAfterMs: retryAt === null ? null : Math.max(0, retryAt - request.now),
      reasons: reasons ?? {},
    };
  }

  async settle(leaseId: string, settlement: Settlement): Promise<SettleResult> {
    this.forgetOldExpired(settlement.now);
    const active = this.leases.get(leaseId);
    if (active) {
      const { record, hot } = active;
      if (settlement.usage !== undefined) this.usage.append(settlement.usage);
      if (record.expiresAt <= settlement.now) {
        this.end(active, record.expiresAt, record.estimatedTokens);
        return { status: 'expired', lease: copyLease(record) };
      }
      // The upstream had the request by the time it responded: the entry counts from there.
      const stamp = Math.min(
        settlement.now,
        Math.max(record.reservedAt, settlement.respondedAt ?? settlement.now),
      );
      this.end(active, stamp, settlement.tokens);
      reconcile(hot, record, settlement);
      if (active.shared) reconcile(active.shared, record, settlement);
      return { status: 'settled', lease: copyLease(record) };
    }
    const expired = this.expired.get(leaseId);
    if (expired) {
      this.expired.delete(leaseId);
      if (settlement.usage !== undefined) this.usage.append(settlement.usage);
      return { status: 'expired', lease: copyLease(expired.lease) };
    }
    return { status: 'already-settled' };
  }

  async getLease(leaseId: string): Promise<LeaseRecord | undefined> {
    const active = this.leases.get(leaseId);
    return active && copyLease(active.record);
  }

  async expireLeases(now: number): Promise<LeaseRecord[]> {
    this.forgetOldExpired(now);
    const ended: LeaseRecord[] = [];
    for (const active of this.leases.values()) {
      if (active.record.expiresAt > now) continue;
      this.end(active, active.record.expiresAt, active.record.estimatedTokens);
      this.expired.set(active.record.id, { lease: active.record, endedAt: now });
      ended.push(copyLease(active.record));
    }
    trimOldest(this.expired, this.maxExpired);
    return ended;
  }

  async getKeyStates(keyIds: readonly string[]): Promise<KeyState[]> {
    return keyIds.map((id) => {
      const state = this.hot.get(id)?.state;
      return state ? structuredClone(state) : defaultState(id, 0);
    });
  }

  async updateKeyState(keyId: string, update: KeyStateUpdate): Promise<KeyState> {
    const hot = this.hotOf(keyId);
    const next: KeyState = structuredClone(hot.state ?? defaultState(keyId, 0));
    if (update.resetFailures) next.consecutiveFailures = 0;
    if (update.incrementFailures) next.consecutiveFailures += 1;
    if (update.set) {
      const target = next as unknown as Record<string, unknown>;
      for (const [field, value] of Object.entries(update.set)) {
        // `undefined` means "not given" (use `clear` to remove); identity fields are not settable.
        if (
          value === undefined ||
          field === 'keyId' ||
          field === 'consecutiveFailures' ||
          field === 'updatedAt'
        ) {
          continue;
        }
        if (field === 'blockedModels') {
          next.blockedModels = { ...next.blockedModels, ...(value as Record<string, number>) };
        } else {
          target[field] = structuredClone(value);
        }
      }
    }
    for (const field of update.clear ?? []) delete next[field];
    next.updatedAt = update.now;
    hot.state = next;
    return structuredClone(next);
  }

  async resetKeyState(keyId: string, options: { counters?: boolean; now: number }): Promise<void> {
    const hot = this.hotOf(keyId);
    hot.state = defaultState(keyId, options.now);
    if (options.counters) {
      hot.window.clearStamped();
      hot.days.clear();
      hot.months.clear();
    }
  }

  async usageSnapshot(keyIds: readonly string[], query: UsageSnapshotQuery): Promise<KeyUsageSnapshot[]> {
    return keyIds.map((keyId) => {
      const hot = this.hot.get(keyId);
      if (!hot) {
        return {
          keyId,
          requestsInWindow: 0,
          tokensInWindow: 0,
          requestsToday: 0,
          tokensToday: 0,
          costThisMonthUsd: 0,
          inFlight: 0,
        };
      }
      const window = hot.window.count(query.now, query.windowMs);
      const day = hot.days.get(query.day);
      return {
        keyId,
        requestsInWindow: window.requests,
        tokensInWindow: window.tokens,
        requestsToday: day?.requests ?? 0,
        tokensToday: day?.tokens ?? 0,
        costThisMonthUsd: hot.months.get(query.month) ?? 0,
        inFlight: hot.inFlight,
      };
    });
  }

  async claimProbe(keyId: string, options: { now: number; ttlMs: number }): Promise<boolean> {
    const heldUntil = this.probeClaims.get(keyId);
    if (heldUntil !== undefined && heldUntil > options.now) return false;
    this.probeClaims.set(keyId, options.now + options.ttlMs);
    return true;
  }

  async close(): Promise<void> {
    this.probeClaims.clear();
    this.leases.clear();
    this.expired.clear();
    this.hot.clear();
  }

  debugSizes(): MemoryStoreSizes {
    let windowEntries = 0;
    let windowCapacity = 0;
    let dayCounters = 0;
    let monthCounters = 0;
    for (const hot of this.hot.values()) {
      windowEntries += hot.window.size;
      windowCapacity += hot.window.capacity;
      dayCounters += hot.days.size;
      monthCounters += hot.months.size;
    }
    return {
      keys: this.keys.size,
      hotKeys: this.hot.size,
      activeLeases: this.leases.size,
      expiredLeases: this.expired.size,
      windowEntries,
      windowCapacity,
      dayCounters,
      monthCounters,
      usageRecords: this.usage.size,
      auditEntries: this.audit.size,
    };
  }

  // -- internals -------------------------------------------------------------

  private hotOf(keyId: string): KeyHot {
    let hot = this.hot.get(keyId);
    if (!hot) {
      hot = {
        state: undefined,
        window: new SlidingWindow(),
        days: new Map(),
        months: new Map(),
        inFlight: 0,
      };
      this.hot.set(keyId, hot);
    }
    return hot;
  }

  private dropHotState(keyId: string): void {
    const hot = this.hot.get(keyId);
    if (!hot) return;
    this.hot.delete(keyId);
    // Leases on the key go with it: a late settle answers 'already-settled' and resurrects nothing.
    if (hot.inFlight > 0) {
      for (const [id, active] of this.leases) {
        if (active.hot !== hot) continue;
        this.leases.delete(id);
        // The group outlives the key: it keeps the estimate until expiresAt, as if unreported.
        const { shared, record } = active;
        if (shared) {
          shared.window.stamp(record.expiresAt, record.estimatedTokens, record.estimatedTokens);
          shared.inFlight -= 1;
        }
      }
    }
  }

  /**
   * The first failing check of `candidate` in the documented order, or undefined
   * when it is eligible. Leaves the retry time (epoch ms, or null) in `retryAt`.
   */
  private check(candidate: ReserveCandidate, request: ReserveRequest): IneligibleReason | undefined {
    const { now } = request;
    const hot = this.hot.get(candidate.keyId);
    const state = hot?.state;
    this.retryAt = null;
    if (state) {
      if (state.invalidSince !== undefined) return 'invalid';
      if (state.exhaustedUntil !== undefined && state.exhaustedUntil > now) {
        this.retryAt = state.exhaustedUntil;
        return 'exhausted';
      }
      // A last resort (ignoreCooldown) passes cooldowns, nothing else.
      const isCooldownHard = request.ignoreCooldown !== true;
      if (isCooldownHard && state.coolingUntil !== undefined && state.coolingUntil > now) {
        this.retryAt = state.coolingUntil;
        return 'cooling';
      }
      if (request.model !== undefined && state.blockedModels) {
        const until = state.blockedModels[request.model];
        if (until !== undefined && until > now) {
          this.retryAt = until;
          return 'model-blocked';
        }
      }
      if (
        isCooldownHard &&
        state.breaker === 'open' &&
        state.breakerOpenUntil !== undefined &&
        state.breakerOpenUntil > now
      ) {
        this.retryAt = state.breakerOpenUntil;
        return 'breaker-open';
      }
      if (state.breaker !== 'closed' && state.probeLeaseId !== undefined) {
        const probe = this.leases.get(state.probeLeaseId);
        this.retryAt = probe ? probe.record.expiresAt : null;
        return 'probe-in-flight';
      }
    }

    const reason = this.checkLimits(hot, candidate.limits, request);
    if (reason !== undefined || candidate.shared === undefined) return reason;
    return this.checkLimits(this.hot.get(candidate.shared.id), candidate.shared.limits, request);
  }

  /** The first limit of `limits` that `hot`'s window and counters fail, as `check`. */
  private checkLimits(
    hot: KeyHot | undefined,
    limits: ReserveCandidate['limits'],
    request: ReserveRequest,
  ): IneligibleReason | undefined {
    const { now } = request;
    if (!hot) {
      // A key never touched has empty windows and counters: only an impossible estimate fails.
      if (limits.rpm !== undefined && 1 > limits.rpm) return 'rpm';
      if (limits.tpm !== undefined && request.estimatedTokens > limits.tpm) return 'tpm';
      if (limits.requestsPerDay !== undefined && 1 > limits.requestsPerDay) {
        this.retryAt = request.dayEndsAt;
        return 'requests-per-day';
      }
      if (limits.tokensPerDay !== undefined && request.estimatedTokens > limits.tokensPerDay) {
        this.retryAt = request.dayEndsAt;
        return 'tokens-per-day';
      }
      if (limits.monthlyBudgetUsd !== undefined && request.estimatedCostUsd > limits.monthlyBudgetUsd) {
        this.retryAt = request.monthEndsAt;
        return 'monthly-budget';
      }
      return undefined;
    }

    const { window } = hot;
    if (limits.rpm !== undefined || limits.tpm !== undefined) window.trim(now, request.windowMs);
    // The oldest stamped entry leaves first; entries in flight leave no sooner than a window from now.
    const freesAt = (window.oldestStamp() ?? now) + request.windowMs;
    if (limits.rpm !== undefined && window.size + 1 > limits.rpm) {
      this.retryAt = freesAt;
      return 'rpm';
    }
    if (limits.tpm !== undefined && window.tokenSum + request.estimatedTokens > limits.tpm) {
      this.retryAt = request.estimatedTokens > limits.tpm ? null : freesAt;
      return 'tpm';
    }
    if (limits.requestsPerDay !== undefined || limits.tokensPerDay !== undefined) {
      const day = hot.days.get(request.day);
      if (limits.requestsPerDay !== undefined && (day?.requests ?? 0) + 1 > limits.requestsPerDay) {
        this.retryAt = request.dayEndsAt;
        return 'requests-per-day';
      }
      if (
        limits.tokensPerDay !== undefined &&
        (day?.tokens ?? 0) + request.estimatedTokens > limits.tokensPerDay
      ) {
        this.retryAt = request.dayEndsAt;
        return 'tokens-per-day';
      }
    }
    if (
      limits.monthlyBudgetUsd !== undefined &&
      (hot.months.get(request.month) ?? 0) + request.estimatedCostUsd > limits.monthlyBudgetUsd
    ) {
      this.retryAt = request.monthEndsAt;
      return 'monthly-budget';
    }
    return undefined;
  }

  /** Reserves on a candidate that passed `check` (its key and shared limits) and creates the lease. */
  private take(candidate: ReserveCandidate, request: ReserveRequest): LeaseRecord {
    const { keyId } = candidate;
    const hot = this.hotOf(keyId);
    const { now } = request;
    const state = hot.state;
    const isProbe = state !== undefined && state.breaker !== 'closed';
    if (isProbe) {
      state.breaker = 'half-open';
      state.probeLeaseId = request.leaseId;
      state.updatedAt = now;
    }
    const record = grantedLease(request, keyId, isProbe, candidate.shared?.id);
    const shared = candidate.shared && this.hotOf(candidate.shared.id);
    charge(hot, request);
    if (shared) charge(shared, request);
    this.leases.set(record.id, { record, hot, shared });
    return copyLease(record);
  }

  /** Ends a lease: its window entries get their stamp and final tokens. */
  private end(active: ActiveLease, stamp: number, tokens: number): void {
    this.leases.delete(active.record.id);
    active.hot.window.stamp(stamp, active.record.estimatedTokens, tokens);
    active.hot.inFlight -= 1;
    if (active.shared) {
      active.shared.window.stamp(stamp, active.record.estimatedTokens, tokens);
      active.shared.inFlight -= 1;
    }
    const state = active.hot.state;
    if (state?.probeLeaseId === active.record.id) delete state.probeLeaseId;
  }

  private forgetOldExpired(now: number): void {
    const edge = now - this.expiredRetentionMs;
    for (const [id, entry] of this.expired) {
      if (entry.endedAt > edge) break;
      this.expired.delete(id);
    }
  }
}

/** Charges one reservation to a key's (or a group's) window, day and month counters. */
function charge(hot: KeyHot, request: ReserveRequest): void {
  const { now } = request;
  // The window may not have been trimmed by `check` (no rpm/tpm): keep it bounded anyway.
  hot.window.trim(now, request.windowMs);
  hot.window.open(request.estimatedTokens);
  let day = hot.days.get(request.day);
  if (!day) {
    day = { requests: 0, tokens: 0 };
    hot.days.set(request.day, day);
    trimOldest(hot.days, KEPT_DAYS);
  }
  day.requests += 1;
  day.tokens += request.estimatedTokens;
  const cost = hot.months.get(request.month);
  if (cost === undefined) {
    hot.months.set(request.month, request.estimatedCostUsd);
    trimOldest(hot.months, KEPT_MONTHS);
  } else {
    hot.months.set(request.month, cost + request.estimatedCostUsd);
  }
  hot.inFlight += 1;
}

/** Moves a settled lease's day tokens and month cost from the estimate to the actual. */
function reconcile(hot: KeyHot, record: LeaseRecord, settlement: Settlement): void {
  const day = hot.days.get(record.day);
  if (day) day.tokens += settlement.tokens - record.estimatedTokens;
  const cost = hot.months.get(record.month);
  if (cost !== undefined) hot.months.set(record.month, cost + settlement.costUsd - record.estimatedCostUsd);
}

/** The in-process reference `Store`: fast, single process, nothing survives a restart. */
export function memoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  return new MemoryStoreImpl(options);
}
