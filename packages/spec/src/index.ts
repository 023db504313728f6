/**
 * @keypool/spec — the contracts every keypool package implements.
 *
 * Types only (plus one version constant): no runtime dependencies. Bump
 * `specificationVersion` on any breaking change so adapters can refuse a pool
 * speaking a newer contract instead of misbehaving.
 */

export const specificationVersion = 'v1' as const;
export type SpecificationVersion = typeof specificationVersion;

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

export type ProviderId = string;

/** What the pool says about a key at a glance. */
export type KeyStatus = 'active' | 'disabled' | 'exhausted' | 'cooling' | 'invalid';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Per-key limits. Every field is optional; an absent field means "no limit". */
export interface KeyLimits {
  /** Requests in any sliding window (60 s unless the pool's `windowMs` says otherwise). */
  rpm?: number;
  /** Reserved tokens (estimate, reconciled to actual at release) in any sliding window. */
  tpm?: number;
  /** Requests per calendar day in the pool's time zone. */
  requestsPerDay?: number;
  /** Tokens per calendar day in the pool's time zone. */
  tokensPerDay?: number;
  /** Spend per calendar month in USD, priced from the pool's price table. */
  monthlyBudgetUsd?: number;
}

/** A key as a user writes it in config or `fromEnv` returns it. */
export interface KeySpec {
  provider: ProviderId;
  secret: string;
  /** Human name, unique per pool; generated from provider + fingerprint when absent. */
  alias?: string;
  /** Tier: 0 = primary, higher = fallback. Default 0. */
  priority?: number;
  /** Relative share for the `weighted` strategy. Default 1. */
  weight?: number;
  limits?: KeyLimits;
  /** Models this key may serve; absent = all. */
  models?: string[];
  /**
   * The upstream organization the key belongs to (OpenAI `org-…`, an Anthropic organization).
   * The provider's limits are the organization's, shared by all of its keys: keys with the same
   * provider and organization share `orgLimits`, and a 429 or a spent quota on one of them
   * cools or exhausts all of them.
   */
  organization?: string;
  /**
   * Limits the key's organization shares with every key of that organization (same provider
   * and `organization`), enforced fleet-wide together with the key's own `limits`. One key of
   * the organization may declare them; when several do, the strictest value of each field applies.
   * Ignored without `organization`.
   */
  orgLimits?: KeyLimits;
  project?: string;
  /** Keys of one account share account-level limits upstream; informational for now. */
  account?: string;
  /** Per-key upstream base URL (e.g. Azure or a proxy). */
  baseURL?: string;
  metadata?: Record<string, string>;
}

/** A key as stored: the secret only sealed (AES-256-GCM) and fingerprinted (HMAC-SHA256). */
export interface KeyRecord {
  id: string;
  alias: string;
  provider: ProviderId;
  /** Opaque sealed secret (see core `sealSecret`). Never the plaintext. */
  sealedSecret: string;
  /** Id of the master key that sealed `sealedSecret`, for rotation. */
  masterKeyId: string;
  /** HMAC-SHA256 of the secret, hex; unique per store. */
  fingerprint: string;
  /** Masked form for display, e.g. `sk-…abcd`. */
  maskedSecret: string;
  priority: number;
  weight: number;
  limits: KeyLimits;
  models?: string[];
  organization?: string;
  /** See `KeySpec.orgLimits`. */
  orgLimits?: KeyLimits;
  project?: string;
  account?: string;
  baseURL?: string;
  metadata?: Record<string, string>;
  enabled: boolean;
  disabledReason?: string;
  /** Epoch ms. */
  createdAt: number;
  updatedAt: number;
}

/** A key as shown to people and APIs: no secret, sealed or not. */
export type KeyInfo = Omit<KeyRecord, 'sealedSecret' | 'masterKeyId'>;

export interface LastError {
  at: number;
  /** Failure class from the failure table. */
  failure: FailureClass;
  status?: number;
  code?: string;
  /** Already scrubbed of secrets. */
  message?: string;
}

/**
 * Fleet-wide runtime state of one key, kept in the store's hot half.
 * Absent fields mean "not set". Times are epoch ms.
 */
export interface KeyState {
  keyId: string;
  /** 429: no traffic until then. */
  coolingUntil?: number;
  /** Quota or billing exhausted: no traffic until then (window reset or manual reset). */
  exhaustedUntil?: number;
  /** 401: no traffic until an operator re-enables the key or a probe passes. */
  invalidSince?: number;
  /** 403 per model: model -> epoch ms until which the key is excluded for it. */
  blockedModels?: Record<string, number>;
  breaker: BreakerState;
  /** When `breaker` is 'open': the time the single half-open probe may start. */
  breakerOpenUntil?: number;
  /** Lease id of the half-open probe in flight, if any (only one fleet-wide). */
  probeLeaseId?: string;
  consecutiveFailures: number;
  lastError?: LastError;
  /** Soft headroom learned from upstream rate-limit headers. */
  upstream?: RateLimitSnapshot;
  updatedAt: number;
}

export interface KeyStateUpdate {
  /** Fields to set (merged shallowly; `blockedModels` merges per model). */
  set?: Partial<Omit<KeyState, 'keyId' | 'consecutiveFailures' | 'updatedAt'>>;
  /** Fields to remove. */
  clear?: Array<
    | 'coolingUntil'
    | 'exhaustedUntil'
    | 'invalidSince'
    | 'blockedModels'
    | 'breakerOpenUntil'
    | 'probeLeaseId'
    | 'lastError'
    | 'upstream'
  >;
  /** Atomically add one to `consecutiveFailures` (after `resetFailures`, if both). */
  incrementFailures?: boolean;
  resetFailures?: boolean;
  now: number;
}

// ---------------------------------------------------------------------------
// Reservations and leases (the hot path)
// ---------------------------------------------------------------------------

/**
 * Limits a candidate shares with others (the keys of one upstream organization). The group has
 * hot state of its own under `id` (window, day and month counters, in flight), kept beside the
 * keys' and read through the same `usageSnapshot` and `resetKeyState(id, { counters: true })`.
 * The pool names it `org:<provider>:<organization>`.
 */
export interface SharedLimits {
  id: string;
  limits: KeyLimits;
}

export interface ReserveCandidate {
  keyId: string;
  limits: KeyLimits;
  /**
   * The candidate is eligible only when both its key and this group pass every limit check;
   * the store reserves on both in the same atomic step (one request, the estimated tokens and
   * cost, one in flight) and settles and expires both with the lease. A refusal names the key
   * with the key's own reason when it has one, else the group's limit reason ('rpm', 'tpm',
   * 'requests-per-day', 'tokens-per-day', 'monthly-budget'), and its wait counts toward
   * `retryAfterMs` as a key's would. Only limits are checked on a group (no state).
   */
  shared?: SharedLimits;
}

export interface ReserveRequest {
  /** Generated by the pool; becomes the lease id. */
  leaseId: string;
  /** In preference order; the store reserves on the first eligible one. */
  candidates: readonly ReserveCandidate[];
  model?: string;
  estimatedTokens: number;
  estimatedCostUsd: number;
  now: number;
  /** Sliding window length for rpm/tpm, normally 60_000. */
  windowMs: number;
  /** Calendar window ids in the pool's time zone, e.g. '2026-11-25' and '2026-11'. */
  day: string;
  month: string;
  /** Epoch ms when the current day / month end, to compute `retryAfterMs`. */
  dayEndsAt: number;
  monthEndsAt: number;
  /** The lease expires (and its reservation is finalised at the estimate) at now + leaseTtlMs. */
  leaseTtlMs: number;
  /** Extra fields stored with the lease and returned by `getLease` (pool id, caller). */
  meta?: Record<string, string>;
  /**
   * The pool's opt-in last resort (`lastResort: true`): reserve despite a 429 cooldown
   * (`coolingUntil`) or the remaining wait of an open breaker (`breakerOpenUntil`). Every other
   * check stays: invalid, exhausted, model blocks, the single half-open probe (a key whose
   * breaker is not closed is reserved as that probe, or refused `probe-in-flight`) and every
   * limit. A store that ignores the flag only refuses as usual.
   */
  ignoreCooldown?: boolean;
}

/** Why a candidate was not reserved. */
export type IneligibleReason =
  | 'cooling'
  | 'exhausted'
  | 'invalid'
  | 'model-blocked'
  | 'breaker-open'
  | 'probe-in-flight'
  | 'rpm'
  | 'tpm'
  | 'requests-per-day'
  | 'tokens-per-day'
  | 'monthly-budget';

export interface LeaseRecord {
  id: string;
  keyId: string;
  model?: string;
  estimatedTokens: number;
  estimatedCostUsd: number;
  /** Time the request entered the sliding window. */
  reservedAt: number;
  expiresAt: number;
  day: string;
  month: string;
  /** True when this lease is the key's half-open breaker probe. */
  isProbe: boolean;
  /** The `shared.id` the reservation was also charged to, when the candidate had one. */
  sharedId?: string;
  meta?: Record<string, string>;
}

export type ReserveResult =
  | { ok: true; lease: LeaseRecord }
  | {
      ok: false;
      /** Earliest ms from `now` at which some candidate may become eligible; null if none will on its own. */
      retryAfterMs: number | null;
      reasons: Record<string, IneligibleReason>;
    };

export interface Settlement {
  /** Actual tokens used (input + output). */
  tokens: number;
  costUsd: number;
  now: number;
  /**
   * Epoch ms by which the upstream had certainly received the request (when its
   * response began); the lease's window entry is stamped there. Default `now`.
   * Clamped to [lease.reservedAt, now].
   */
  respondedAt?: number;
  /**
   * The usage record of this lease, appended in the same atomic step when the
   * result is 'settled' or 'expired' (never for 'already-settled'), so a release
   * costs one store round trip and usage is neither lost nor logged twice.
   */
  usage?: UsageRecord;
}

export type SettleResult =
  | { status: 'settled'; lease: LeaseRecord }
  /** Released before: nothing changed. */
  | { status: 'already-settled' }
  /** The lease expired first; its reservation stayed at the estimate. The caller may still log usage. */
  | { status: 'expired'; lease: LeaseRecord };

/** What a store knows of a key's recent consumption, for health and strategies. */
export interface KeyUsageSnapshot {
  keyId: string;
  requestsInWindow: number;
  tokensInWindow: number;
  requestsToday: number;
  tokensToday: number;
  costThisMonthUsd: number;
  inFlight: number;
}

export interface UsageSnapshotQuery {
  now: number;
  windowMs: number;
  day: string;
  month: string;
}

// ---------------------------------------------------------------------------
// Durable records
// ---------------------------------------------------------------------------

export interface PoolRecord {
  id: string;
  name: string;
  description?: string;
  strategy?: string;
  /** Key ids that belong to this pool. */
  keyIds: string[];
  createdAt: number;
  updatedAt: number;
}

export type Role = 'admin' | 'operator' | 'viewer' | 'service';

export interface TokenRecord {
  id: string;
  name: string;
  role: Role;
  /** Pool ids a service token may use; absent = all. */
  pools?: string[];
  /** SHA-256 of the token, hex. The token itself is never stored. */
  tokenHash: string;
  createdAt: number;
  lastUsedAt?: number;
  revokedAt?: number;
}

export type UsageStatus = 'ok' | 'error';

export interface UsageRecord {
  id: string;
  /** Epoch ms. */
  time: number;
  /** Calendar ids in the pool's time zone, computed at write time. */
  day: string;
  month: string;
  keyId: string;
  keyAlias: string;
  provider: ProviderId;
  model?: string;
  pool?: string;
  /** Service token id or other caller identity. */
  caller?: string;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  status: UsageStatus;
  httpStatus?: number;
  failure?: FailureClass;
  errorCode?: string;
  latencyMs?: number;
  leaseId?: string;
}

export type UsageGroupBy = 'key' | 'model' | 'pool' | 'provider' | 'day' | 'month';

export interface UsageQuery {
  /** Epoch ms, inclusive. */
  from?: number;
  /** Epoch ms, exclusive. */
  to?: number;
  keyId?: string;
  model?: string;
  pool?: string;
  provider?: ProviderId;
  /** Empty or absent: one row with the totals. */
  groupBy?: UsageGroupBy[];
}

/** One aggregated row; the grouped-by fields are present, others absent. Sorted by the group fields. */
export interface UsageRow {
  keyId?: string;
  model?: string | null;
  pool?: string | null;
  provider?: string;
  day?: string;
  month?: string;
  requests: number;
  errors: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

export interface AuditEntry {
  id: string;
  time: number;
  /** Token id / name, 'cli', 'system'. */
  actor: string;
  /** e.g. 'key.create', 'key.disable', 'token.create'. */
  action: string;
  /** e.g. a key id. */
  target?: string;
  /** Never a secret. */
  details?: Record<string, unknown>;
}

export interface AuditQuery {
  from?: number;
  to?: number;
  target?: string;
  action?: string;
  /** Newest first; default 100. */
  limit?: number;
}

// ---------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------

export interface StoreCapabilities {
  /** State is shared by every process that opens the same store. */
  fleet: boolean;
  /** Records survive a restart. */
  durable: boolean;
}

/**
 * One store per pool. Two halves: durable records (keys, pools, tokens, usage,
 * audit, meta) and hot state (reservations, windows, key states, leases).
 * Every adapter passes `testStore` from `@keypool/testing`.
 */
export interface Store {
  readonly name: string;
  readonly capabilities: StoreCapabilities;

  /** Create tables / load scripts. Idempotent. Stores that need nothing resolve at once. */
  init?(): Promise<void>;

  // durable: keys
  listKeys(): Promise<KeyRecord[]>;
  getKey(id: string): Promise<KeyRecord | undefined>;
  getKeyByFingerprint(fingerprint: string): Promise<KeyRecord | undefined>;
  /** Insert or replace by id. A different id with an existing fingerprint throws an Error with `code: 'KEYPOOL_DUPLICATE_KEY'`. */
  putKey(record: KeyRecord): Promise<void>;
  /** Returns false when absent. Also drops the key's hot state. */
  deleteKey(id: string): Promise<boolean>;
  /** Increases on every putKey/deleteKey anywhere in the fleet: a cheap change check. */
  keysVersion(): Promise<number>;

  // durable: pools and tokens
  listPools(): Promise<PoolRecord[]>;
  getPool(id: string): Promise<PoolRecord | undefined>;
  putPool(record: PoolRecord): Promise<void>;
  deletePool(id: string): Promise<boolean>;

  listTokens(): Promise<TokenRecord[]>;
  getTokenByHash(tokenHash: string): Promise<TokenRecord | undefined>;
  putToken(record: TokenRecord): Promise<void>;
  deleteToken(id: string): Promise<boolean>;
  /**
   * Records that a token authenticated at `lastUsedAt` (epoch ms): only ever moves it
   * forward, and never creates a record, so a token deleted meanwhile stays deleted.
   */
  touchToken(id: string, lastUsedAt: number): Promise<void>;

  // durable: logs
  appendUsage(records: readonly UsageRecord[]): Promise<void>;
  queryUsage(query: UsageQuery): Promise<UsageRow[]>;
  appendAudit(entry: AuditEntry): Promise<void>;
  listAudit(query?: AuditQuery): Promise<AuditEntry[]>;

  // durable: small settings (master-key canary, schema info)
  getMeta(name: string): Promise<string | undefined>;
  setMeta(name: string, value: string): Promise<void>;

  // hot state
  /** Atomically: pick the first eligible candidate, reserve 1 request + estimated tokens/cost, create the lease. */
  reserve(request: ReserveRequest): Promise<ReserveResult>;
  /** Reconcile a lease with actual usage and end it. Idempotent. */
  settle(leaseId: string, settlement: Settlement): Promise<SettleResult>;
  getLease(leaseId: string): Promise<LeaseRecord | undefined>;
  /** End every lease whose expiresAt <= now, keeping its reservation at the estimate; frees a probe slot. */
  expireLeases(now: number): Promise<LeaseRecord[]>;
  /** One state per id, in order; a key never touched gets the default (breaker 'closed', 0 failures). */
  getKeyStates(keyIds: readonly string[]): Promise<KeyState[]>;
  updateKeyState(keyId: string, update: KeyStateUpdate): Promise<KeyState>;
  /** Clear cooldown, exhaustion, invalidity, model blocks and breaker; with `counters`, also window/day/month usage. */
  resetKeyState(keyId: string, options: { counters?: boolean; now: number }): Promise<void>;
  usageSnapshot(keyIds: readonly string[], query: UsageSnapshotQuery): Promise<KeyUsageSnapshot[]>;

  /**
   * Claims the key's background-probe slot until `now + ttlMs`, fleet-wide: true when this
   * caller got it, false while an earlier claim's time has not passed (a crashed prober
   * therefore blocks no longer than its ttl). Claims are never released early: the ttl also
   * spaces probes of one key. Optional so older adapters still compile; the pool's `probes`
   * option needs it, and `testStore` checks it.
   */
  claimProbe?(keyId: string, options: { now: number; ttlMs: number }): Promise<boolean>;

  /**
   * Optional: tells the pool when the store degrades (e.g. Redis unreachable and a
   * per-process fallback serves), recovers, or sees key records change elsewhere.
   */
  subscribe?(listener: (event: StoreEvent) => void): Disposable;

  close(): Promise<void>;
}

export type StoreEvent =
  | { type: 'degraded'; error: string }
  | { type: 'recovered'; flushedUsage: number }
  | { type: 'keys-changed' };

// ---------------------------------------------------------------------------
// Providers and failure classification
// ---------------------------------------------------------------------------

export type HeaderBag = Headers | Record<string, string | string[] | undefined> | Iterable<[string, string]>;

/** A provider-neutral description of what came back from upstream. */
export interface UpstreamOutcome {
  /** 'http' when a response with a status arrived. */
  kind: 'http' | 'timeout' | 'connection' | 'abort';
  status?: number;
  /** Provider error code or type, e.g. 'insufficient_quota', 'overloaded_error'. */
  code?: string;
  headers?: HeaderBag;
  message?: string;
  model?: string;
}

/** Row of the failure table. */
export type FailureClass =
  | 'rate-limit'
  | 'quota'
  | 'auth'
  | 'forbidden'
  | 'server'
  | 'timeout'
  | 'connection'
  | 'caller'
  | 'abort';

export interface Classification {
  failure: FailureClass;
  /** Whether the request may be retried on another key. */
  retryable: boolean;
  /** Whether the failure counts against the key's breaker. */
  countsForBreaker: boolean;
  /** For 'rate-limit': how long the key cools. */
  cooldownMs?: number;
}

export interface RateLimitBucket {
  limit?: number;
  remaining?: number;
  /** Epoch ms. */
  resetAt?: number;
}

/** What upstream headers said about a key's headroom. */
export interface RateLimitSnapshot {
  requests?: RateLimitBucket;
  tokens?: RateLimitBucket;
  inputTokens?: RateLimitBucket;
  outputTokens?: RateLimitBucket;
  /** From retry-after / retry-after-ms. */
  retryAfterMs?: number;
  observedAt: number;
}

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  /** Cached input tokens, where the provider reports them. */
  cachedInputTokens?: number;
  /**
   * Input tokens written to a prompt cache (part of `inputTokens`), where the
   * provider bills them apart (Anthropic): priced at `cacheWriteInputPerMTok`.
   */
  cacheWriteInputTokens?: number;
  /** The part of `cacheWriteInputTokens` written to a 1-hour cache: priced at `cacheWrite1hInputPerMTok`. */
  cacheWrite1hInputTokens?: number;
}

/** USD per million tokens. */
export interface ModelPrice {
  inputPerMTok: number;
  outputPerMTok: number;
  cachedInputPerMTok?: number;
  /** Prompt-cache writes (Anthropic's 5-minute cache); default `inputPerMTok`. */
  cacheWriteInputPerMTok?: number;
  /** 1-hour prompt-cache writes; default `cacheWriteInputPerMTok`. */
  cacheWrite1hInputPerMTok?: number;
}

export type PriceTable = Record<string, ModelPrice>;

export interface ProbeResult {
  ok: boolean;
  outcome?: UpstreamOutcome;
  latencyMs: number;
}

/** A provider adapter, contributed by a plugin. */
export interface Provider {
  readonly specificationVersion: SpecificationVersion;
  readonly id: ProviderId;
  /** Turn whatever a call threw (SDK error, fetch error, abort) into an outcome for the failure table. */
  describeError(error: unknown): UpstreamOutcome;
  /** Read rate-limit headers of any response. */
  readRateLimits(headers: HeaderBag, now: number): RateLimitSnapshot;
  /** Estimate the tokens a request will consume (input + expected output). */
  estimateTokens(request: unknown, model?: string): number;
  /** Pull usage out of a response body, when it reports any. */
  extractUsage?(response: unknown): Usage | undefined;
  /** Prices this provider knows, merged under the user's own. */
  readonly prices?: PriceTable;
  /** Cheapest call the provider offers, for background probes. */
  probe?(secret: string, options: { baseURL?: string; signal?: AbortSignal }): Promise<ProbeResult>;
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/** What a strategy sees of a key. Live numbers are this process's view. */
export interface KeyView {
  readonly id: string;
  readonly alias: string;
  readonly provider: ProviderId;
  readonly priority: number;
  readonly weight: number;
  readonly limits: KeyLimits;
  /** Leases this process holds on the key right now. */
  readonly inFlight: number;
  /** Requests this process sent through the key since the pool started. */
  readonly requests: number;
  /** Exponentially weighted mean latency in ms, undefined before the first sample. */
  readonly latencyEwmaMs: number | undefined;
  readonly successRate: number;
}

export interface StrategyContext {
  provider: ProviderId;
  model?: string;
  estimatedTokens: number;
  /** Uniform [0, 1). Seedable in tests. */
  random(): number;
}

/**
 * Orders the keys of one priority tier, most preferred first. The store then
 * reserves on the first one with headroom, so an order is a preference, not a
 * promise. Return a new array or the input; never mutate the input.
 */
export type StrategyFn = (keys: readonly KeyView[], context: StrategyContext) => readonly KeyView[];

export interface Strategy {
  readonly name: string;
  order: StrategyFn;
}

export type BuiltInStrategyName =
  | 'round-robin'
  | 'random'
  | 'least-used'
  | 'weighted'
  | 'priority'
  | 'latency';

// ---------------------------------------------------------------------------
// Leases, outcomes, pool API
// ---------------------------------------------------------------------------

export type ReleaseOutcome =
  | {
      ok: true;
      usage?: Usage;
      latencyMs?: number;
      /**
       * Epoch ms when the upstream's response began. The key's rate window counts the
       * request from there (the upstream had it by then); default: the release time.
       */
      respondedAt?: number;
      headers?: HeaderBag;
      /** The model actually used, when it differs from the acquire call. */
      model?: string;
    }
  | {
      ok: false;
      status?: number;
      kind?: UpstreamOutcome['kind'];
      code?: string;
      headers?: HeaderBag;
      error?: unknown;
      usage?: Usage;
      latencyMs?: number;
      /** As for success; absent for failures that never reached upstream. */
      respondedAt?: number;
      model?: string;
    };

export interface Lease {
  readonly id: string;
  readonly keyId: string;
  readonly alias: string;
  readonly provider: ProviderId;
  readonly secret: string;
  readonly model?: string;
  readonly organization?: string;
  readonly project?: string;
  readonly baseURL?: string;
  /** Epoch ms. */
  readonly expiresAt: number;
  /** Idempotent; the first call wins. Resolves with the classification applied (undefined on success). */
  release(outcome: ReleaseOutcome): Promise<Classification | undefined>;
}

export interface AcquireOptions {
  provider: ProviderId;
  model?: string;
  estimatedTokens?: number;
  /** Sticks a caller (case, user, conversation) to one key while it stays eligible. */
  affinity?: string;
  /** Overrides the pool's `maxWaitMs`; 0 = fail at once. */
  maxWaitMs?: number;
  signal?: AbortSignal;
  /** Keys to skip (execute passes the keys that already failed this request). */
  excludeKeyIds?: readonly string[];
  /** Restrict to the keys of a stored pool record. */
  pool?: string;
  /** Recorded in the usage log. */
  caller?: string;
}

export interface RetryOptions {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface ExecuteOptions extends Omit<AcquireOptions, 'provider' | 'excludeKeyIds'> {
  maxAttempts?: number;
  /** Absolute time budget for all attempts together, ms from the call. */
  deadlineMs?: number;
}

export type HealthStatus = 'healthy' | 'degraded' | 'down';

export interface KeyHealth {
  id: string;
  alias: string;
  provider: ProviderId;
  priority: number;
  maskedSecret: string;
  status: KeyStatus;
  /** Why the key is not active, in words. */
  reason?: string;
  /** When a cooling/exhausted key comes back, epoch ms. */
  until?: number;
  breaker: BreakerState;
  successRate: number;
  latencyEwmaMs?: number;
  requests: number;
  errors: number;
  inFlight: number;
  /** Remaining share of each limit (0..1), absent where the key has no such limit. */
  headroom: Partial<Record<keyof KeyLimits, number>>;
  usage?: KeyUsageSnapshot;
  lastError?: LastError;
}

/** An upstream organization the pool's keys belong to, and what it has left of its shared limits. */
export interface OrgHealth {
  /** The hot-state id of its shared limits: `org:<provider>:<organization>`. */
  id: string;
  provider: ProviderId;
  organization: string;
  keyIds: string[];
  /** The strictest `orgLimits` its keys declare (empty: none). */
  limits: KeyLimits;
  /** Remaining share of each limit (0..1). */
  headroom: Partial<Record<keyof KeyLimits, number>>;
  usage?: KeyUsageSnapshot;
}

export interface PoolHealth {
  status: HealthStatus;
  /** Why the pool is not healthy, in words. */
  reasons: string[];
  store: { name: string; degraded: boolean };
  keys: KeyHealth[];
  /** Organizations of keys that declare `organization`, in order of first key. */
  orgs: OrgHealth[];
  checkedAt: number;
}

export interface PoolStats {
  acquired: number;
  released: number;
  expired: number;
  retries: number;
  noKeyAvailable: number;
  waits: number;
  inFlight: number;
  byKey: Record<
    string,
    { requests: number; errors: number; inputTokens: number; outputTokens: number; costUsd: number }
  >;
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

export interface KeyEventBase {
  keyId: string;
  alias: string;
  provider: ProviderId;
}

export interface PoolEvents {
  'lease:acquired': KeyEventBase & { leaseId: string; model?: string; waitedMs: number; isProbe: boolean };
  'lease:released': KeyEventBase & {
    leaseId: string;
    ok: boolean;
    failure?: FailureClass;
    latencyMs?: number;
  };
  'lease:expired': KeyEventBase & { leaseId: string };
  /** `via`: the alias of the key whose answer cooled this one, when it was another key of its organization. */
  'key:cooldown': KeyEventBase & { until: number; cooldownMs: number; via?: string };
  'key:exhausted': KeyEventBase & { until: number; via?: string };
  'key:invalid': KeyEventBase & { status?: number };
  'key:model-blocked': KeyEventBase & { model: string; until: number };
  'key:status': KeyEventBase & { from: KeyStatus; to: KeyStatus; reason?: string };
  'key:added': KeyEventBase;
  'key:updated': KeyEventBase;
  'key:removed': KeyEventBase;
  /**
   * Warning: no key was eligible, every refusal left was a cooldown, and `lastResort` leased the
   * key whose cooldown ends soonest anyway (`until`: when it would have ended).
   */
  'key:last-resort': KeyEventBase & {
    leaseId: string;
    reason: LastResortReason;
    until: number;
    model?: string;
  };
  /**
   * A probe passed (a background one, or one reported through `recoverKey`): `reasons` (what the
   * key was out for) are cleared.
   */
  'probe:passed': KeyEventBase & { reasons: ProbeReason[]; latencyMs: number };
  /** A background probe failed: the key stays as it was. */
  'probe:failed': KeyEventBase & {
    reasons: ProbeReason[];
    latencyMs: number;
    status?: number;
    failure?: FailureClass;
  };
  'breaker:open': KeyEventBase & { until: number; failures: number };
  'breaker:half-open': KeyEventBase;
  'breaker:close': KeyEventBase;
  'request:retry': KeyEventBase & { attempt: number; delayMs: number; failure: FailureClass };
  'pool:no-key': { provider: ProviderId; model?: string; retryAfterMs: number | null; waited: boolean };
  'store:degraded': { store: string; error: string };
  'store:recovered': { store: string; flushedUsage: number };
  error: { error: Error; during: string };
}

export type PoolEventName = keyof PoolEvents;

/** The refusals `lastResort` may override: a 429 cooldown or an open breaker's wait. */
export type LastResortReason = Extract<IneligibleReason, 'cooling' | 'breaker-open'>;

/** Why a background probe runs on a key (it may be several at once). */
export type ProbeReason = 'invalid' | 'exhausted' | 'breaker-open';

export interface Disposable {
  dispose(): void;
}

// ---------------------------------------------------------------------------
// Plugins (VS Code style)
// ---------------------------------------------------------------------------

export interface Registry<T> {
  register(item: T): Disposable;
  get(id: string): T | undefined;
  list(): readonly T[];
}

export interface PluginContext {
  readonly providers: Registry<Provider>;
  readonly strategies: { register(name: string, strategy: StrategyFn | Strategy): Disposable };
  on<E extends PoolEventName>(event: E, listener: (payload: PoolEvents[E]) => void): Disposable;
  /** Every Disposable pushed here is disposed in reverse order when the pool closes. */
  readonly subscriptions: Disposable[];
  /** Price tables merged into the pool's (user prices win). */
  readonly prices: { register(table: PriceTable): Disposable };
}

export interface Plugin {
  readonly id: string;
  activate(context: PluginContext): void | Promise<void>;
  deactivate?(): void | Promise<void>;
}

// ---------------------------------------------------------------------------
// Pool (implemented by @keypool/core, typed here so adapters need not import core types)
// ---------------------------------------------------------------------------

export interface KeyPool {
  readonly store: Store;
  acquire(options: AcquireOptions): Promise<Lease>;
  execute<T>(provider: ProviderId, fn: (lease: Lease) => Promise<T>, options?: ExecuteOptions): Promise<T>;
  provider(id: ProviderId): Provider | undefined;
  health(): PoolHealth;
  stats(): PoolStats;
  on<E extends PoolEventName>(event: E, listener: (payload: PoolEvents[E]) => void): Disposable;
  /** Keys as the pool sees them now (no secrets). */
  keys(): KeyInfo[];
  addKey(spec: KeySpec): Promise<KeyInfo>;
  updateKey(id: string, patch: Partial<Omit<KeySpec, 'provider'>>): Promise<KeyInfo>;
  removeKey(id: string): Promise<boolean>;
  enableKey(id: string): Promise<KeyInfo>;
  disableKey(id: string, reason?: string): Promise<KeyInfo>;
  resetKey(id: string, options?: { counters?: boolean }): Promise<void>;
  /**
   * Report a probe the caller ran that passed (an operator testing a key by hand): the key is
   * brought back as a passing background probe brings it back — invalid, exhausted and an open
   * breaker cleared, `probe:passed` emitted, an audit entry `key.probe` by `actor`. Reads the
   * key's state from the store first; a key out for none of these (or disabled) is left as it
   * is. Returns what was cleared, [] for nothing.
   */
  recoverKey(id: string, options: { actor: string; latencyMs: number }): Promise<ProbeReason[]>;
  /**
   * Test a key now with its provider's probe (the cheapest real call, e.g. listing models), as an
   * operator does by hand: audited `key.test` by `actor`; a pass brings the key back as
   * `recoverKey` does. Throws `KEYPOOL_NO_PROBE` when the key's provider has none. The result
   * never contains the secret, even when the upstream's message quotes it.
   */
  testKey(id: string, options: { actor: string; timeoutMs?: number }): Promise<KeyTestResult>;
  /** Re-read key records from the store now (otherwise they refresh every `refreshMs`). */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Error codes (classes live in @keypool/core)
// ---------------------------------------------------------------------------

/** What `KeyPool.testKey` found. */
export interface KeyTestResult {
  ok: boolean;
  latencyMs: number;
  /** The upstream's HTTP status and error code when it refused the key. */
  status?: number;
  code?: string;
  message?: string;
  /** What the pass cleared (invalid, exhausted, breaker-open); [] when the key was not out. */
  recovered: ProbeReason[];
}

export type KeypoolErrorCode =
  | 'KEYPOOL_NO_KEY_AVAILABLE'
  | 'KEYPOOL_NO_PROBE'
  | 'KEYPOOL_INVALID_CONFIG'
  | 'KEYPOOL_INVALID_ENV'
  | 'KEYPOOL_DUPLICATE_KEY'
  | 'KEYPOOL_DUPLICATE_PLUGIN'
  | 'KEYPOOL_UNKNOWN_PROVIDER'
  | 'KEYPOOL_UNKNOWN_KEY'
  | 'KEYPOOL_MASTER_KEY'
  | 'KEYPOOL_DECRYPT'
  | 'KEYPOOL_CLOSED'
  | 'KEYPOOL_ABORTED'
  | 'KEYPOOL_DEADLINE'
  | 'KEYPOOL_STORE'
  | 'KEYPOOL_UPSTREAM';
