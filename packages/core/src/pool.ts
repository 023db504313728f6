import { randomBytes } from 'node:crypto';
import type {
  AcquireOptions,
  BuiltInStrategyName,
  Classification,
  Disposable,
  ExecuteOptions,
  HealthStatus,
  IneligibleReason,
  KeyHealth,
  KeyInfo,
  KeyLimits,
  KeyPool,
  KeyRecord,
  KeySpec,
  KeyState,
  KeyStateUpdate,
  KeyTestResult,
  KeyUsageSnapshot,
  KeyView,
  LastError,
  LastResortReason,
  Lease,
  LeaseRecord,
  OrgHealth,
  Plugin,
  PoolEventName,
  PoolEvents,
  PoolHealth,
  PoolStats,
  PriceTable,
  ProbeReason,
  ProbeResult,
  Provider,
  ReleaseOutcome,
  ReserveCandidate,
  ReserveRequest,
  RetryOptions,
  Store,
  Strategy,
  StrategyContext,
  StrategyFn,
  UpstreamOutcome,
  UsageRecord,
} from '@keypool/spec';
import { KeyBreakers } from './breaker.js';
import { Calendar } from './calendar.js';
import { classifyOutcome, describeUpstreamError } from './classify.js';
import {
  checkCanary,
  createCanary,
  generateMasterKey,
  type MasterKey,
  openSecret,
  parseMasterKey,
} from './crypto.js';
import { ConfigError, KeypoolError, NoKeyAvailableError } from './errors.js';
import { PoolEmitter } from './events.js';
import {
  createKeyRecord,
  type DerivedStatus,
  deriveStatus,
  modelAllowed,
  patchKeyRecord,
  specDiffers,
  toKeyInfo,
  validateKeySpec,
} from './keys.js';
import { createPluginHost, type PluginHost } from './plugins.js';
import { PriceBook } from './prices.js';
import {
  BackgroundProber,
  type ProbeOptions,
  type ProbeTarget,
  probeReasons,
  resolveProbeOptions,
  runProbe,
} from './probes.js';
import { builtInStrategyNames, createStrategy } from './strategies.js';

export interface BreakerOptions {
  /** Consecutive breaker failures (5xx, 529, timeouts, connection errors) that open it. Default 3. */
  failureThreshold?: number;
  /** How long an open breaker blocks the key before one half-open probe. Default 300000 (5 min). */
  cooldownMs?: number;
}

export interface KeyPoolOptions {
  /** Default: a fresh in-memory store is required to be passed explicitly; see `memoryStore()`. */
  store: Store;
  plugins?: Plugin[];
  /** Keys declared in code or from `fromEnv`; merged into the store by fingerprint at start. */
  keys?: KeySpec[];
  strategy?: BuiltInStrategyName | StrategyFn | Strategy | (string & {});
  breaker?: BreakerOptions;
  retry?: Partial<RetryOptions>;
  /** How long `acquire` waits for a key to become eligible. Default 30000; 0 = fail at once. */
  maxWaitMs?: number;
  /**
   * When no key is eligible and waiting up to `maxWaitMs` would not help, lease anyway the key
   * whose cooldown ends soonest among those refused only for a 429 cooldown or an open breaker
   * (the latter as its single half-open probe), and emit `key:last-resort`. Never an invalid,
   * disabled, exhausted or model-blocked key, nor one past its own rpm/tpm/day/budget limits;
   * the lease goes through the store's atomic reservation like any other. Default false.
   */
  lastResort?: boolean;
  /** Background probes of invalid, exhausted and breaker-open keys. Default off. */
  probes?: ProbeOptions;
  /** IANA zone for daily and monthly windows. Default 'UTC'. */
  timeZone?: string;
  /**
   * KEYPOOL_MASTER_KEY (32 bytes, base64 or hex). Required by durable stores; a
   * memory store gets a throw-away key. An array puts the current key first and
   * older keys after it, for records not yet re-sealed.
   */
  masterKey?: string | MasterKey | ReadonlyArray<string | MasterKey>;
  /** Sliding window of rpm/tpm. Default 60000. */
  windowMs?: number;
  /** An unreleased lease expires (reservation kept at its estimate) after this. Default 600000. */
  leaseTtlMs?: number;
  /** Prices per model (USD per million tokens), over the providers' tables. */
  prices?: PriceTable;
  /** How often records, states and usage are re-read from the store, and leases swept. Default 1000. */
  refreshMs?: number;
  /** Tokens reserved when a caller gives no estimate. Default 0. */
  defaultEstimatedTokens?: number;
  /** Clock, for tests. Default Date.now. */
  now?: () => number;
  /** Uniform [0,1) source for random strategies and jitter. Default Math.random. */
  random?: () => number;
}

const DEFAULT_RETRY: RetryOptions = { maxAttempts: 3, baseDelayMs: 250, maxDelayMs: 8000 };
const AFFINITY_LIMIT = 10_000;
const EWMA_ALPHA = 0.2;
const CANARY_META = 'keypool:master-key-canary';

/** Process-local knowledge of one key. It doubles as the KeyView strategies read. */
class KeyEntry implements KeyView {
  record: KeyRecord;
  secret: string;
  candidate: ReserveCandidate;
  inFlight = 0;
  requests = 0;
  errors = 0;
  latencyEwmaMs: number | undefined = undefined;
  successRate = 1;
  inputTokens = 0;
  outputTokens = 0;
  costUsd = 0;
  state: KeyState;
  /**
   * Counts the states adopted: a store read that began before a state this process wrote must
   * not put the older one back (see `adoptRead`).
   */
  stateWrites = 0;
  usage: KeyUsageSnapshot | undefined;
  /** Set by `linkOrgs` when the key declares an organization. */
  org: OrgGroup | undefined;

  constructor(record: KeyRecord, secret: string) {
    this.record = record;
    this.secret = secret;
    // linkOrgs gives it its organization's shared limits, if any, before the first selection.
    this.candidate = { keyId: record.id, limits: record.limits };
    this.state = { keyId: record.id, breaker: 'closed', consecutiveFailures: 0, updatedAt: 0 };
  }

  get id(): string {
    return this.record.id;
  }
  get alias(): string {
    return this.record.alias;
  }
  get provider(): string {
    return this.record.provider;
  }
  get priority(): number {
    return this.record.priority;
  }
  get weight(): number {
    return this.record.weight;
  }
  get limits(): KeyLimits {
    return this.record.limits;
  }

  /** The pool calls `keysChanged` after this, so `linkOrgs` rebuilds the candidate before its next use. */
  update(record: KeyRecord, secret: string): void {
    this.record = record;
    this.secret = secret;
  }
}

/** Keys of one upstream organization: they share its limits and its rate-limit and quota waits. */
interface OrgGroup {
  id: string;
  provider: string;
  organization: string;
  members: KeyEntry[];
  limits: KeyLimits;
  usage: KeyUsageSnapshot | undefined;
}

/** The hot-state id of an organization's shared limits. */
export function orgStateId(provider: string, organization: string): string {
  return `org:${provider}:${organization}`;
}

interface Selection {
  tiers: Array<{ entries: KeyEntry[]; cursor: number }>;
  size: number;
}

interface LeaseHandle {
  record: LeaseRecord;
  entry: KeyEntry;
  provider: string;
  pool: string | undefined;
  caller: string | undefined;
  acquiredAt: number;
  settled: Promise<Classification | undefined> | undefined;
  expired: boolean;
}

interface Waiter {
  resolve(): void;
  timer: ReturnType<typeof setTimeout>;
}

export async function createKeyPool(options: KeyPoolOptions): Promise<KeyPool> {
  const pool = new Pool(options);
  try {
    await pool.start(options);
  } catch (error) {
    await pool.close();
    throw error;
  }
  return pool;
}

class Pool implements KeyPool {
  readonly store: Store;
  private readonly emitter = new PoolEmitter();
  private readonly prices = new PriceBook();
  private readonly plugins: PluginHost;
  private readonly calendar: Calendar;
  private readonly breakers: KeyBreakers;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly windowMs: number;
  private readonly leaseTtlMs: number;
  private readonly maxWaitMs: number;
  private readonly lastResort: boolean;
  private readonly probeOptions: Required<ProbeOptions> | undefined;
  private prober: BackgroundProber | undefined;
  private readonly refreshMs: number;
  private readonly defaultEstimatedTokens: number;
  private readonly retry: RetryOptions;
  private readonly failureThreshold: number;
  private readonly breakerCooldownMs: number;
  private readonly idPrefix = randomBytes(6).toString('base64url');
  private idCounter = 0;
  private masters: MasterKey[] = [];
  private strategy!: Strategy;
  private readonly entries = new Map<string, KeyEntry>();
  private readonly tierCache = new Map<string, Selection>();
  /** The default strategy rotates cached candidate arrays directly: no views, no lookups. */
  private rotates = false;
  private readonly affinity = new Map<string, string>();
  private readonly leases = new Map<string, LeaseHandle>();
  private readonly waiters = new Set<Waiter>();
  private readonly disposables: Disposable[] = [];
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshing: Promise<void> | undefined;
  private keysVersion = -1;
  private storeDegraded: string | undefined;
  private closed = false;
  private readonly counters = {
    acquired: 0,
    released: 0,
    expired: 0,
    retries: 0,
    noKeyAvailable: 0,
    waits: 0,
  };

  constructor(options: KeyPoolOptions) {
    if (options === undefined || options.store === undefined) {
      throw new ConfigError(
        'createKeyPool needs a store: pass `store: memoryStore()` from @keypool/store-memory (or a Redis/SQL store).',
      );
    }
    this.store = options.store;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.windowMs = positive(options.windowMs, 60_000, 'windowMs');
    this.leaseTtlMs = positive(options.leaseTtlMs, 600_000, 'leaseTtlMs');
    this.maxWaitMs = nonNegative(options.maxWaitMs, 30_000, 'maxWaitMs');
    if (options.lastResort !== undefined && typeof options.lastResort !== 'boolean') {
      throw new ConfigError(`lastResort must be true or false (got ${String(options.lastResort)})`);
    }
    this.lastResort = options.lastResort === true;
    this.probeOptions = resolveProbeOptions(options.probes, this.store);
    this.refreshMs = positive(options.refreshMs, 1000, 'refreshMs');
    this.defaultEstimatedTokens = nonNegative(options.defaultEstimatedTokens, 0, 'defaultEstimatedTokens');
    this.retry = {
      maxAttempts: positive(options.retry?.maxAttempts, DEFAULT_RETRY.maxAttempts, 'retry.maxAttempts'),
      baseDelayMs: nonNegative(options.retry?.baseDelayMs, DEFAULT_RETRY.baseDelayMs, 'retry.baseDelayMs'),
      maxDelayMs: nonNegative(options.retry?.maxDelayMs, DEFAULT_RETRY.maxDelayMs, 'retry.maxDelayMs'),
    };
    this.failureThreshold = positive(options.breaker?.failureThreshold, 3, 'breaker.failureThreshold');
    this.breakerCooldownMs = positive(options.breaker?.cooldownMs, 300_000, 'breaker.cooldownMs');
    try {
      this.calendar = new Calendar(options.timeZone);
    } catch (error) {
      throw new ConfigError(`timeZone: ${(error as Error).message}`);
    }
    this.plugins = createPluginHost(this.emitter, this.prices);
    this.breakers = new KeyBreakers(this.breakerCooldownMs, (keyId) => {
      const entry = this.entries.get(keyId);
      if (entry !== undefined) this.emitter.emit('breaker:half-open', this.keyEvent(entry));
    });
  }

  async start(options: KeyPoolOptions): Promise<void> {
    this.masters = resolveMasters(options.masterKey, this.store);
    await this.store.init?.();
    await this.plugins.activate(options.plugins ?? []);
    if (options.prices !== undefined) this.prices.add(options.prices);
    const strategy = options.strategy ?? 'round-robin';
    this.strategy = this.resolveStrategy(strategy);
    this.rotates = strategy === 'round-robin' && !this.plugins.strategies.has('round-robin');
    await this.checkMasterKey();
    if (this.store.subscribe !== undefined) {
      this.disposables.push(
        this.store.subscribe((event) => {
          if (event.type === 'degraded') {
            this.storeDegraded = event.error;
            this.emitter.emit('store:degraded', { store: this.store.name, error: event.error });
          } else if (event.type === 'recovered') {
            this.storeDegraded = undefined;
            this.emitter.emit('store:recovered', {
              store: this.store.name,
              flushedUsage: event.flushedUsage,
            });
          } else {
            void this.refresh().catch((error) => this.reportError(error, 'refresh'));
          }
        }),
      );
    }
    await this.declareKeys(options.keys ?? []);
    await this.refresh();
    this.scheduleRefresh();
    if (this.probeOptions !== undefined) {
      this.prober = new BackgroundProber(this.probeOptions, {
        store: this.store,
        now: this.now,
        due: (now) => this.probeTargets(now),
        confirm: (target) => this.confirmProbe(target),
        passed: (target, result) => this.recoverByProbe(target, result.latencyMs),
        failed: (target, result) => this.noteFailedProbe(target, result),
        reportError: (error, during) => this.reportError(error, during),
      });
      this.prober.start();
    }
  }

  // -------------------------------------------------------------------------
  // Acquire and release
  // -------------------------------------------------------------------------

  async acquire(options: AcquireOptions): Promise<Lease> {
    this.assertOpen();
    if (typeof options?.provider !== 'string') {
      throw new ConfigError('acquire: provider is required, e.g. { provider: "openai" }');
    }
    const startedAt = this.now();
    const maxWaitMs = options.maxWaitMs ?? this.maxWaitMs;
    const estimatedTokens = options.estimatedTokens ?? this.defaultEstimatedTokens;
    if (!(Number.isFinite(estimatedTokens) && estimatedTokens >= 0)) {
      throw new ConfigError('acquire: estimatedTokens must be a finite number >= 0');
    }
    const estimatedCostUsd = this.prices.estimate(options.model, estimatedTokens);
    let waited = false;
    for (;;) {
      throwIfAborted(options.signal);
      const candidates = this.candidates(options);
      const now = this.now();
      if (candidates.length === 0) {
        this.counters.noKeyAvailable++;
        this.emitter.emit('pool:no-key', {
          provider: options.provider,
          ...(options.model !== undefined && { model: options.model }),
          retryAfterMs: null,
          waited,
        });
        throw new NoKeyAvailableError({
          provider: options.provider,
          model: options.model,
          retryAfterMs: null,
          reasons: {},
        });
      }
      const result = await this.store.reserve(
        this.reserveRequest(candidates, options, estimatedTokens, estimatedCostUsd, now),
      );
      if (result.ok) return this.openLease(result.lease, options, startedAt);

      const elapsed = this.now() - startedAt;
      const remaining = maxWaitMs - elapsed;
      if (result.retryAfterMs === null || result.retryAfterMs > remaining) {
        // Waiting would not help: the last resort, when enabled, replaces the failure (never a wait).
        if (this.lastResort) {
          const lease = await this.leaseLastResort(result.reasons, options, estimatedTokens, startedAt);
          if (lease !== undefined) return lease;
        }
        this.counters.noKeyAvailable++;
        this.emitter.emit('pool:no-key', {
          provider: options.provider,
          ...(options.model !== undefined && { model: options.model }),
          retryAfterMs: result.retryAfterMs,
          waited,
        });
        const reasons: Record<string, string> = {};
        for (const [keyId, reason] of Object.entries(result.reasons)) {
          reasons[this.entries.get(keyId)?.alias ?? keyId] = reason;
        }
        throw new NoKeyAvailableError({
          provider: options.provider,
          model: options.model,
          retryAfterMs: result.retryAfterMs,
          reasons,
          waitedMs: elapsed,
        });
      }
      waited = true;
      this.counters.waits++;
      await this.sleep(Math.max(1, result.retryAfterMs), options.signal, true);
    }
  }

  private reserveRequest(
    candidates: readonly ReserveCandidate[],
    options: AcquireOptions,
    estimatedTokens: number,
    estimatedCostUsd: number,
    now: number,
  ): ReserveRequest {
    const window = this.calendar.at(now);
    return {
      leaseId: this.nextId('l'),
      candidates,
      ...(options.model !== undefined && { model: options.model }),
      estimatedTokens,
      estimatedCostUsd,
      now,
      windowMs: this.windowMs,
      day: window.day,
      month: window.month,
      dayEndsAt: window.dayEndsAt,
      monthEndsAt: window.monthEndsAt,
      leaseTtlMs: this.leaseTtlMs,
      ...(options.pool !== undefined && { meta: { pool: options.pool } }),
    };
  }

  /**
   * `lastResort`: of the keys refused only for a 429 cooldown or an open breaker, lease the one
   * whose cooldown ends soonest, through the store like any lease (`ignoreCooldown` passes those
   * two refusals and nothing else, so limits hold fleet-wide; an open breaker's key goes as its
   * one half-open probe). Undefined when no key qualifies or the store still refuses.
   */
  private async leaseLastResort(
    refusals: Record<string, IneligibleReason>,
    options: AcquireOptions,
    estimatedTokens: number,
    startedAt: number,
  ): Promise<Lease | undefined> {
    const ids = Object.keys(refusals).filter((id) => isLastResortReason(refusals[id]));
    if (ids.length === 0) return undefined;
    // Fresh states: the local view may be a refresh behind the refusal.
    const writes = this.writesOf(ids);
    const states = await this.store.getKeyStates(ids);
    const now = this.now();
    const ranked: Array<{ entry: KeyEntry; until: number; reason: LastResortReason }> = [];
    for (const read of states) {
      const entry = this.entries.get(read.keyId);
      if (entry === undefined) continue;
      const state = this.adoptRead(entry, read, now, writes.get(read.keyId) ?? 0);
      ranked.push({
        entry,
        until: cooldownEnd(state, now),
        reason: refusals[state.keyId] as LastResortReason,
      });
    }
    // Stable: keys whose cooldowns end together keep the strategy's order.
    ranked.sort((a, b) => a.until - b.until);
    // Keys may have changed while the states were read: candidates carry current shared limits.
    this.linkOrgs();
    const request = this.reserveRequest(
      ranked.map((r) => r.entry.candidate),
      options,
      estimatedTokens,
      this.prices.estimate(options.model, estimatedTokens),
      now,
    );
    const result = await this.store.reserve({ ...request, ignoreCooldown: true });
    if (!result.ok) return undefined;
    const chosen = ranked.find((r) => r.entry.id === result.lease.keyId);
    const lease = this.openLease(result.lease, options, startedAt);
    if (chosen !== undefined) {
      this.emitter.emit('key:last-resort', {
        ...this.keyEvent(chosen.entry),
        leaseId: lease.id,
        reason: chosen.reason,
        until: chosen.until,
        ...(options.model !== undefined && { model: options.model }),
      });
    }
    return lease;
  }

  private openLease(record: LeaseRecord, options: AcquireOptions, startedAt: number): Lease {
    const entry = this.entries.get(record.keyId);
    if (entry === undefined) {
      // The key vanished between reserve and now (deleted elsewhere): give the reservation back.
      void this.store.settle(record.id, { tokens: 0, costUsd: 0, now: this.now() });
      throw new KeypoolError(
        'KEYPOOL_UNKNOWN_KEY',
        `Key ${record.keyId} was removed while being leased; retry.`,
      );
    }
    entry.inFlight++;
    this.counters.acquired++;
    if (options.affinity !== undefined) this.remember(options.affinity, entry.id);
    if (record.isProbe) entry.state = { ...entry.state, breaker: 'half-open', probeLeaseId: record.id };
    const handle: LeaseHandle = {
      record,
      entry,
      provider: options.provider,
      pool: options.pool,
      caller: options.caller,
      acquiredAt: this.now(),
      settled: undefined,
      expired: false,
    };
    this.leases.set(record.id, handle);
    if (this.emitter.has('lease:acquired')) {
      this.emitter.emit('lease:acquired', {
        ...this.keyEvent(entry),
        leaseId: record.id,
        ...(record.model !== undefined && { model: record.model }),
        waitedMs: handle.acquiredAt - startedAt,
        isProbe: record.isProbe,
      });
    }
    const { organization, project, baseURL } = entry.record;
    return {
      id: record.id,
      keyId: entry.id,
      alias: entry.alias,
      provider: entry.provider,
      secret: entry.secret,
      expiresAt: record.expiresAt,
      ...(record.model !== undefined && { model: record.model }),
      ...(organization !== undefined && { organization }),
      ...(project !== undefined && { project }),
      ...(baseURL !== undefined && { baseURL }),
      release: (outcome: ReleaseOutcome) => {
        handle.settled ??= this.release(handle, outcome);
        return handle.settled;
      },
    };
  }

  private async release(handle: LeaseHandle, outcome: ReleaseOutcome): Promise<Classification | undefined> {
    if (outcome === null || typeof outcome !== 'object' || typeof outcome.ok !== 'boolean') {
      throw new ConfigError(
        'release: outcome must be { ok: true, usage? } or { ok: false, status?, error? }',
      );
    }
    const { entry, record } = handle;
    const now = this.now();
    this.leases.delete(record.id);
    if (!handle.expired) entry.inFlight--;
    const model = outcome.model ?? record.model;
    const usage = outcome.usage;
    const classification = outcome.ok ? undefined : this.classify(handle.provider, outcome, model, now);
    const tokens = usage !== undefined ? usage.inputTokens + usage.outputTokens : 0;
    const costUsd = usage !== undefined ? this.prices.cost(model, usage) : 0;
    entry.requests++;
    entry.inputTokens += usage?.inputTokens ?? 0;
    entry.outputTokens += usage?.outputTokens ?? 0;
    entry.costUsd += costUsd;
    entry.successRate =
      entry.successRate * (1 - EWMA_ALPHA) + (classification === undefined ? EWMA_ALPHA : 0);
    if (outcome.latencyMs !== undefined && Number.isFinite(outcome.latencyMs)) {
      entry.latencyEwmaMs =
        entry.latencyEwmaMs === undefined
          ? outcome.latencyMs
          : entry.latencyEwmaMs * (1 - EWMA_ALPHA) + outcome.latencyMs * EWMA_ALPHA;
    }
    if (
      classification !== undefined &&
      classification.failure !== 'caller' &&
      classification.failure !== 'abort'
    ) {
      entry.errors++;
    }
    this.counters.released++;

    try {
      // One round trip: the store appends the usage record with the settlement, unless already settled.
      await this.store.settle(record.id, {
        tokens,
        costUsd,
        now,
        ...(outcome.respondedAt !== undefined && { respondedAt: outcome.respondedAt }),
        usage: this.usageRecord(handle, outcome, model, costUsd, classification, now),
      });

      if (classification === undefined) await this.onSuccess(entry, record, outcome, now);
      else await this.onFailure(entry, record, classification, model, now);
    } catch (error) {
      // The caller can do nothing about a store hiccup at release; the pool reports it and the
      // lease expires on its own. Never rejecting makes fire-and-forget release safe.
      this.reportError(error, `release of a lease on ${entry.alias}`);
    }
    if (this.emitter.has('lease:released')) {
      this.emitter.emit('lease:released', {
        ...this.keyEvent(entry),
        leaseId: record.id,
        ok: outcome.ok,
        ...(classification !== undefined && { failure: classification.failure }),
        ...(outcome.latencyMs !== undefined && { latencyMs: outcome.latencyMs }),
      });
    }
    this.wakeWaiters();
    return classification;
  }

  private classify(
    providerId: string,
    outcome: ReleaseOutcome & { ok: false },
    model: string | undefined,
    now: number,
  ) {
    let upstream: UpstreamOutcome;
    if (outcome.status === undefined && outcome.kind === undefined && outcome.error !== undefined) {
      const provider = this.plugins.providers.get(providerId);
      upstream =
        provider !== undefined ? provider.describeError(outcome.error) : describeUpstreamError(outcome.error);
    } else {
      const described = outcome.error !== undefined ? describeUpstreamError(outcome.error) : undefined;
      upstream = {
        kind: outcome.kind ?? (outcome.status !== undefined ? 'http' : (described?.kind ?? 'connection')),
        ...(outcome.status !== undefined && { status: outcome.status }),
        ...((outcome.code ?? described?.code) !== undefined && { code: outcome.code ?? described?.code }),
        ...((outcome.headers ?? described?.headers) !== undefined && {
          headers: outcome.headers ?? described?.headers,
        }),
        ...(described?.message !== undefined && { message: described.message }),
      };
    }
    if (model !== undefined) upstream.model = model;
    const classification = classifyOutcome(upstream, now);
    return Object.assign(classification, { upstream });
  }

  private async onSuccess(
    entry: KeyEntry,
    record: LeaseRecord,
    outcome: ReleaseOutcome,
    now: number,
  ): Promise<void> {
    const state = entry.state;
    if (record.isProbe || state.consecutiveFailures > 0 || state.breaker !== 'closed') {
      const wasOpen = state.breaker !== 'closed';
      await this.writeState(entry, {
        resetFailures: true,
        set: { breaker: 'closed' },
        clear: ['breakerOpenUntil', 'probeLeaseId'],
        now,
      });
      if (wasOpen) {
        this.breakers.close(entry.id);
        this.emitter.emit('breaker:close', this.keyEvent(entry));
      }
    }
    // Upstream headers that say a bucket is empty cool the key until it refills.
    if (outcome.headers !== undefined) {
      const provider = this.plugins.providers.get(entry.provider);
      if (provider !== undefined) {
        const limits = provider.readRateLimits(outcome.headers, now);
        let until = 0;
        for (const bucket of [limits.requests, limits.tokens, limits.inputTokens, limits.outputTokens]) {
          if (bucket?.remaining === 0 && bucket.resetAt !== undefined && bucket.resetAt > until)
            until = bucket.resetAt;
        }
        if (until > now && (state.coolingUntil ?? 0) < until) {
          await this.writeState(entry, { set: { coolingUntil: until }, now });
          this.emitter.emit('key:cooldown', { ...this.keyEvent(entry), until, cooldownMs: until - now });
          await this.spreadToOrg(entry, 'coolingUntil', until, now);
        }
      }
    }
  }

  private async onFailure(
    entry: KeyEntry,
    record: LeaseRecord,
    classification: Classification & { upstream: UpstreamOutcome },
    model: string | undefined,
    now: number,
  ): Promise<void> {
    const { upstream } = classification;
    const lastError: LastError = {
      at: now,
      failure: classification.failure,
      ...(upstream.status !== undefined && { status: upstream.status }),
      ...(upstream.code !== undefined && { code: upstream.code }),
      ...(upstream.message !== undefined && { message: upstream.message.slice(0, 500) }),
    };
    const event = this.keyEvent(entry);
    switch (classification.failure) {
      case 'rate-limit': {
        const cooldownMs = classification.cooldownMs ?? 60_000;
        const until = now + cooldownMs;
        await this.writeState(entry, { set: { coolingUntil: until, lastError }, now });
        this.emitter.emit('key:cooldown', { ...event, until, cooldownMs });
        await this.spreadToOrg(entry, 'coolingUntil', until, now);
        return;
      }
      case 'quota': {
        const window = this.calendar.at(now);
        const until = Math.max(window.dayEndsAt, now + (classification.cooldownMs ?? 0));
        await this.writeState(entry, { set: { exhaustedUntil: until, lastError }, now });
        this.emitter.emit('key:exhausted', { ...event, until });
        await this.spreadToOrg(entry, 'exhaustedUntil', until, now);
        return;
      }
      case 'auth':
        await this.writeState(entry, { set: { invalidSince: now, lastError }, now });
        this.emitter.emit('key:invalid', {
          ...event,
          ...(upstream.status !== undefined && { status: upstream.status }),
        });
        return;
      case 'forbidden': {
        const until = this.calendar.at(now).dayEndsAt;
        if (model !== undefined) {
          await this.writeState(entry, { set: { blockedModels: { [model]: until }, lastError }, now });
          this.emitter.emit('key:model-blocked', { ...event, model, until });
        } else {
          // Without a model there is nothing narrower to exclude: rest the key like a 429.
          await this.writeState(entry, { set: { coolingUntil: now + 60_000, lastError }, now });
          this.emitter.emit('key:cooldown', { ...event, until: now + 60_000, cooldownMs: 60_000 });
        }
        return;
      }
      case 'server':
      case 'timeout':
      case 'connection': {
        const state = await this.writeState(entry, { incrementFailures: true, set: { lastError }, now });
        if (record.isProbe || state.consecutiveFailures >= this.failureThreshold) {
          const until = now + this.breakerCooldownMs;
          await this.writeState(entry, {
            set: { breaker: 'open', breakerOpenUntil: until },
            clear: ['probeLeaseId'],
            now,
          });
          this.breakers.close(entry.id);
          this.breakers.open(entry.id);
          this.emitter.emit('breaker:open', { ...event, until, failures: state.consecutiveFailures });
        }
        return;
      }
      default:
        // Caller errors and aborts say nothing about the key.
        return;
    }
  }

  /**
   * Upstream rate limits and quotas belong to the organization, not the key: a 429 or a spent
   * quota on one key puts the organization's other keys out until the same time.
   */
  private async spreadToOrg(
    from: KeyEntry,
    field: 'coolingUntil' | 'exhaustedUntil',
    until: number,
    now: number,
  ): Promise<void> {
    this.linkOrgs();
    const mates = from.org?.members.filter((mate) => mate !== from && (mate.state[field] ?? 0) < until);
    if (mates === undefined || mates.length === 0) return;
    await Promise.all(
      mates.map(async (mate) => {
        await this.writeState(mate, { set: { [field]: until }, now });
        const event = { ...this.keyEvent(mate), until, via: from.alias };
        if (field === 'coolingUntil')
          this.emitter.emit('key:cooldown', { ...event, cooldownMs: until - now });
        else this.emitter.emit('key:exhausted', event);
      }),
    );
  }

  private async writeState(
    entry: KeyEntry,
    update: Parameters<Store['updateKeyState']>[1],
  ): Promise<KeyState> {
    const state = await this.store.updateKeyState(entry.id, update);
    this.adoptState(entry, state, update.now);
    return state;
  }

  /** Takes a state read from or written to the store, announcing a status change it makes. */
  private adoptState(entry: KeyEntry, state: KeyState, now: number): void {
    const before = this.statusOf(entry, now);
    entry.state = state;
    entry.stateWrites++;
    this.noteStatusChange(entry, before, now);
  }

  /**
   * Adopts a state read from the store unless the key adopted another while the read was out
   * (`writesBefore` is its `stateWrites` when the read began): e.g. a refresh that read "active"
   * just before this process marked the key invalid. The next read brings any later change.
   * Returns the state the key holds now.
   */
  private adoptRead(entry: KeyEntry, state: KeyState, now: number, writesBefore: number): KeyState {
    if (entry.stateWrites === writesBefore) this.adoptState(entry, state, now);
    return entry.state;
  }

  /** `stateWrites` of each known key, taken before a read of their states. */
  private writesOf(ids: readonly string[]): Map<string, number> {
    return new Map(ids.map((id) => [id, this.entries.get(id)?.stateWrites ?? 0]));
  }

  private statusOf(entry: KeyEntry, now: number): DerivedStatus {
    return deriveStatus(entry.record, entry.state, now);
  }

  private noteStatusChange(entry: KeyEntry, before: DerivedStatus, now: number): void {
    const after = this.statusOf(entry, now);
    if (after.status !== before.status) {
      this.emitter.emit('key:status', {
        ...this.keyEvent(entry),
        from: before.status,
        to: after.status,
        ...(after.reason !== undefined && { reason: after.reason }),
      });
    }
  }

  private usageRecord(
    handle: LeaseHandle,
    outcome: ReleaseOutcome,
    model: string | undefined,
    costUsd: number,
    classification: (Classification & { upstream: UpstreamOutcome }) | undefined,
    now: number,
  ): UsageRecord {
    const window = this.calendar.at(handle.record.reservedAt);
    const record: UsageRecord = {
      id: this.nextId('u'),
      time: now,
      day: window.day,
      month: window.month,
      keyId: handle.entry.id,
      keyAlias: handle.entry.alias,
      provider: handle.entry.provider,
      inputTokens: outcome.usage?.inputTokens ?? 0,
      outputTokens: outcome.usage?.outputTokens ?? 0,
      costUsd,
      status: outcome.ok ? 'ok' : 'error',
      latencyMs: outcome.latencyMs ?? now - handle.acquiredAt,
      leaseId: handle.record.id,
    };
    if (model !== undefined) record.model = model;
    if (handle.pool !== undefined) record.pool = handle.pool;
    if (handle.caller !== undefined) record.caller = handle.caller;
    if (classification !== undefined) {
      record.failure = classification.failure;
      if (classification.upstream.status !== undefined) record.httpStatus = classification.upstream.status;
      if (classification.upstream.code !== undefined) record.errorCode = classification.upstream.code;
    }
    return record;
  }

  // -------------------------------------------------------------------------
  // Execute: retries across keys per the failure table
  // -------------------------------------------------------------------------

  async execute<T>(
    provider: string,
    fn: (lease: Lease) => Promise<T>,
    options: ExecuteOptions = {},
  ): Promise<T> {
    this.assertOpen();
    const maxAttempts = options.maxAttempts ?? this.retry.maxAttempts;
    if (!(Number.isInteger(maxAttempts) && maxAttempts >= 1)) {
      throw new ConfigError('execute: maxAttempts must be a whole number >= 1');
    }
    const startedAt = this.now();
    const deadline =
      options.deadlineMs !== undefined ? startedAt + options.deadlineMs : Number.POSITIVE_INFINITY;
    const tried: string[] = [];
    let lastError: unknown;
    let hasLastError = false;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      throwIfAborted(options.signal);
      const left = deadline - this.now();
      if (left <= 0) break;
      let lease: Lease;
      try {
        lease = await this.acquire({
          ...options,
          provider,
          excludeKeyIds: tried,
          maxWaitMs: Math.min(options.maxWaitMs ?? this.maxWaitMs, left),
        });
      } catch (error) {
        // Having tried keys already, the upstream's own error says more than "no key left".
        if (hasLastError && error instanceof NoKeyAvailableError) throw lastError;
        throw error;
      }
      const handle = this.leases.get(lease.id);
      const attemptStarted = this.now();
      try {
        const result = await fn(lease);
        await lease.release({ ok: true, latencyMs: this.now() - attemptStarted });
        return result;
      } catch (error) {
        // An adapter may already have released with the upstream's status and headers.
        const classification =
          handle?.settled !== undefined
            ? await handle.settled
            : await lease.release({ ok: false, error, latencyMs: this.now() - attemptStarted });
        if (classification === undefined || !classification.retryable) throw error;
        lastError = error;
        hasLastError = true;
        tried.push(lease.keyId);
        if (attempt === maxAttempts) break;
        const backoff =
          classification.countsForBreaker || classification.failure === 'forbidden'
            ? this.backoff(tried.length)
            : 0;
        if (this.now() + backoff >= deadline) break;
        this.counters.retries++;
        const entry = this.entries.get(lease.keyId);
        if (entry !== undefined) {
          this.emitter.emit('request:retry', {
            ...this.keyEvent(entry),
            attempt,
            delayMs: backoff,
            failure: classification.failure,
          });
        }
        if (backoff > 0) await this.sleep(backoff, options.signal, false);
      }
    }
    if (hasLastError) throw lastError;
    throw new KeypoolError(
      'KEYPOOL_DEADLINE',
      `execute: deadline of ${options.deadlineMs} ms passed before any attempt.`,
    );
  }

  /** Exponential backoff with full jitter. */
  private backoff(attempt: number): number {
    const cap = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    return Math.floor(this.random() * cap);
  }

  // -------------------------------------------------------------------------
  // Selection
  // -------------------------------------------------------------------------

  private candidates(options: AcquireOptions): ReserveCandidate[] {
    this.linkOrgs();
    const selection = this.tiersFor(options.provider, options.model, options.pool);
    const exclude = options.excludeKeyIds;
    const excluding = exclude !== undefined && exclude.length > 0;
    const sticky = options.affinity !== undefined ? this.affinity.get(options.affinity) : undefined;
    const out = new Array<ReserveCandidate>(selection.size);
    let n = 0;
    let context: StrategyContext | undefined;
    for (const tier of selection.tiers) {
      const entries = excluding ? tier.entries.filter((k) => !exclude.includes(k.id)) : tier.entries;
      const count = entries.length;
      if (count === 0) continue;
      let stickyEntry: KeyEntry | undefined;
      if (sticky !== undefined) {
        stickyEntry = entries.find((k) => k.id === sticky);
        if (stickyEntry !== undefined) out[n++] = stickyEntry.candidate;
      }
      if (this.rotates) {
        const start = tier.cursor++ % count;
        for (let i = 0; i < count; i++) {
          const entry = entries[(start + i) % count] as KeyEntry;
          if (entry !== stickyEntry) out[n++] = entry.candidate;
        }
        continue;
      }
      context ??= {
        provider: options.provider,
        estimatedTokens: options.estimatedTokens ?? this.defaultEstimatedTokens,
        random: this.random,
        ...(options.model !== undefined && { model: options.model }),
      };
      for (const view of this.strategy.order(entries, context)) {
        if (view === stickyEntry) continue;
        // Strategies return the views they were given; a lookup only for custom ones that don't.
        const entry = view instanceof KeyEntry ? view : this.entries.get(view.id);
        if (entry !== undefined) out[n++] = entry.candidate;
      }
    }
    out.length = n;
    return out;
  }

  private tiersFor(provider: string, model: string | undefined, poolId: string | undefined): Selection {
    const cacheKey = `${provider}\u0000${model ?? ''}\u0000${poolId ?? ''}`;
    const cached = this.tierCache.get(cacheKey);
    if (cached !== undefined) return cached;
    const byTier = new Map<number, KeyEntry[]>();
    let size = 0;
    for (const entry of this.entries.values()) {
      const record = entry.record;
      if (record.provider !== provider || !record.enabled || !modelAllowed(record, model)) continue;
      if (poolId !== undefined && !(this.poolMembers.get(poolId)?.has(record.id) ?? false)) continue;
      let tier = byTier.get(record.priority);
      if (tier === undefined) {
        tier = [];
        byTier.set(record.priority, tier);
      }
      tier.push(entry);
      size++;
    }
    const tiers = [...byTier.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([, entries]) => ({ entries, cursor: 0 }));
    const selection: Selection = { tiers, size };
    this.tierCache.set(cacheKey, selection);
    return selection;
  }

  private poolMembers = new Map<string, Set<string>>();

  private remember(affinity: string, keyId: string): void {
    if (this.affinity.get(affinity) === keyId) return;
    this.affinity.delete(affinity);
    this.affinity.set(affinity, keyId);
    if (this.affinity.size > AFFINITY_LIMIT) {
      const oldest = this.affinity.keys().next().value;
      if (oldest !== undefined) this.affinity.delete(oldest);
    }
  }

  private resolveStrategy(choice: NonNullable<KeyPoolOptions['strategy']>): Strategy {
    if (typeof choice === 'function') return { name: choice.name || 'custom', order: choice };
    if (typeof choice === 'object') return choice;
    const registered = this.plugins.strategies.get(choice);
    if (registered !== undefined) return registered;
    if ((builtInStrategyNames as readonly string[]).includes(choice)) {
      return createStrategy(choice as BuiltInStrategyName);
    }
    throw new ConfigError(
      `strategy "${choice}" is unknown: use one of ${builtInStrategyNames.join(', ')}, a function, or one a plugin registers.`,
    );
  }

  // -------------------------------------------------------------------------
  // Keys
  // -------------------------------------------------------------------------

  private async checkMasterKey(): Promise<void> {
    const canary = await this.store.getMeta(CANARY_META);
    if (canary === undefined) {
      await this.store.setMeta(CANARY_META, createCanary(this.currentMaster()));
      return;
    }
    checkCanary(canary, this.masters);
  }

  private currentMaster(): MasterKey {
    return this.masters[0] as MasterKey;
  }

  private async declareKeys(specs: readonly KeySpec[]): Promise<void> {
    const seen = new Set<string>();
    const now = this.now();
    for (const [index, spec] of specs.entries()) {
      validateKeySpec(spec, `keys[${index}]${spec?.alias ? ` (${spec.alias})` : ''}`);
      const candidate = createKeyRecord(spec, this.currentMaster(), this.nextKeyId(), now);
      if (seen.has(candidate.fingerprint)) continue;
      seen.add(candidate.fingerprint);
      const existing = await this.store.getKeyByFingerprint(candidate.fingerprint);
      if (existing === undefined) {
        await this.store.putKey(candidate);
      } else if (specDiffers(existing, spec)) {
        const { secret: _secret, provider: _provider, ...declared } = spec;
        await this.store.putKey(patchKeyRecord(existing, declared, this.currentMaster(), now));
      }
    }
  }

  /** Time-ordered ids, so listing by (createdAt, id) keeps the order keys were declared in. */
  private nextKeyId(): string {
    this.idCounter++;
    const time = this.now().toString(36).padStart(9, '0');
    const sequence = (this.idCounter % 36 ** 4).toString(36).padStart(4, '0');
    return `key_${time}${sequence}${randomBytes(4).toString('hex')}`;
  }

  keys(): KeyInfo[] {
    return [...this.entries.values()].map((entry) => toKeyInfo(entry.record));
  }

  async addKey(spec: KeySpec): Promise<KeyInfo> {
    this.assertOpen();
    validateKeySpec(spec, `key${spec?.alias ? ` ${spec.alias}` : ''}`);
    const record = createKeyRecord(spec, this.currentMaster(), this.nextKeyId(), this.now());
    const existing = await this.store.getKeyByFingerprint(record.fingerprint);
    if (existing !== undefined) {
      throw new KeypoolError(
        'KEYPOOL_DUPLICATE_KEY',
        `This secret is already in the pool as "${existing.alias}" (${existing.maskedSecret}).`,
      );
    }
    this.assertAliasFree(record.alias, record.id);
    await this.store.putKey(record);
    this.adoptOwnRecord(record, spec.secret);
    return toKeyInfo(record);
  }

  async updateKey(id: string, patch: Partial<Omit<KeySpec, 'provider'>>): Promise<KeyInfo> {
    this.assertOpen();
    const record = await this.requireKey(id);
    validateKeySpec(
      {
        provider: record.provider,
        secret: patch.secret ?? 'placeholder',
        ...(record.organization !== undefined && { organization: record.organization }),
        ...patch,
      } as KeySpec,
      `key ${record.alias}`,
    );
    const next = patchKeyRecord(record, patch, this.currentMaster(), this.now());
    if (patch.alias !== undefined) this.assertAliasFree(next.alias, id);
    if (patch.secret !== undefined) {
      const clash = await this.store.getKeyByFingerprint(next.fingerprint);
      if (clash !== undefined && clash.id !== id) {
        throw new KeypoolError(
          'KEYPOOL_DUPLICATE_KEY',
          `This secret is already in the pool as "${clash.alias}".`,
        );
      }
    }
    await this.store.putKey(next);
    this.adoptOwnRecord(next, patch.secret ?? this.secretOf(next));
    return toKeyInfo(next);
  }

  async removeKey(id: string): Promise<boolean> {
    this.assertOpen();
    const removed = await this.store.deleteKey(id);
    this.ownRecordWrites++;
    const entry = this.entries.get(id);
    if (entry !== undefined) {
      this.entries.delete(id);
      this.breakers.forget(id);
      this.keysChanged();
      this.emitter.emit('key:removed', this.keyEvent(entry));
    }
    return removed;
  }

  async enableKey(id: string): Promise<KeyInfo> {
    this.assertOpen();
    const record = await this.requireKey(id);
    const { disabledReason: _reason, ...rest } = record;
    const next: KeyRecord = { ...rest, enabled: true, updatedAt: this.now() };
    await this.store.putKey(next);
    // Re-enabling is how an operator vouches for a key that upstream rejected.
    await this.store.updateKeyState(id, { clear: ['invalidSince'], now: this.now() });
    this.adoptOwnRecord(next, this.secretOf(next));
    await this.refreshStates();
    return toKeyInfo(next);
  }

  async disableKey(id: string, reason?: string): Promise<KeyInfo> {
    this.assertOpen();
    const record = await this.requireKey(id);
    const next: KeyRecord = {
      ...record,
      enabled: false,
      updatedAt: this.now(),
      ...(reason !== undefined && { disabledReason: reason.slice(0, 500) }),
    };
    await this.store.putKey(next);
    this.adoptOwnRecord(next, this.secretOf(next));
    return toKeyInfo(next);
  }

  async resetKey(id: string, options: { counters?: boolean } = {}): Promise<void> {
    this.assertOpen();
    await this.requireKey(id);
    await this.store.resetKeyState(id, { ...options, now: this.now() });
    this.breakers.close(id);
    await this.refreshStates();
  }

  private async requireKey(id: string): Promise<KeyRecord> {
    const record = await this.store.getKey(id);
    if (record === undefined) {
      throw new KeypoolError('KEYPOOL_UNKNOWN_KEY', `No key with id "${id}"; list keys to find the id.`);
    }
    return record;
  }

  private assertAliasFree(alias: string, id: string): void {
    for (const entry of this.entries.values()) {
      if (entry.alias === alias && entry.id !== id) {
        throw new ConfigError(`alias "${alias}" is already used by another key; pick another alias.`);
      }
    }
  }

  private secretOf(record: KeyRecord): string {
    const entry = this.entries.get(record.id);
    if (entry !== undefined && entry.record.sealedSecret === record.sealedSecret) return entry.secret;
    return openSecret(record.sealedSecret, this.masters);
  }

  /**
   * Key record writes this process made (add, update, enable, disable, remove): a `listKeys` that
   * began before one may hold the record as it was, so `reloadKeys` drops such a list.
   */
  private ownRecordWrites = 0;

  /** A record this process just wrote to the store, applied here at once. */
  private adoptOwnRecord(record: KeyRecord, secret: string): void {
    this.ownRecordWrites++;
    this.upsertEntry(record, secret);
  }

  private upsertEntry(record: KeyRecord, secret: string): void {
    const entry = this.entries.get(record.id);
    if (entry === undefined) {
      const created = new KeyEntry(record, secret);
      this.entries.set(record.id, created);
      this.emitter.emit('key:added', this.keyEvent(created));
    } else {
      const before = this.statusOf(entry, this.now());
      entry.update(record, secret);
      this.emitter.emit('key:updated', this.keyEvent(entry));
      this.noteStatusChange(entry, before, this.now());
    }
    this.keysChanged();
    this.wakeWaiters();
  }

  // -------------------------------------------------------------------------
  // Refresh: records, states, usage, lease expiry
  // -------------------------------------------------------------------------

  refresh(): Promise<void> {
    // A refresh already running may have read the store before the caller's write:
    // queue exactly one more after it, shared by everyone who asks meanwhile.
    if (this.queuedRefresh !== undefined) return this.queuedRefresh;
    if (this.refreshing !== undefined) {
      this.queuedRefresh = this.refreshing
        .catch(() => undefined)
        .then(() => {
          this.queuedRefresh = undefined;
          return this.refresh();
        });
      return this.queuedRefresh;
    }
    this.refreshing = this.doRefresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private queuedRefresh: Promise<void> | undefined;

  private async doRefresh(): Promise<void> {
    const version = await this.store.keysVersion();
    // A list older than one of our own writes is dropped, and the version left behind so the
    // next refresh reads the records again.
    if (version !== this.keysVersion && (await this.reloadKeys())) this.keysVersion = version;
    await this.reloadPools();
    await this.sweepLeases();
    await this.refreshStates();
  }

  /** Applies the store's key records; false (nothing applied) when one of ours landed meanwhile. */
  private async reloadKeys(): Promise<boolean> {
    const writesBefore = this.ownRecordWrites;
    const records = await this.store.listKeys();
    if (this.ownRecordWrites !== writesBefore) return false;
    const seen = new Set<string>();
    for (const record of records) {
      seen.add(record.id);
      const entry = this.entries.get(record.id);
      if (
        entry !== undefined &&
        entry.record.updatedAt === record.updatedAt &&
        entry.record.sealedSecret === record.sealedSecret
      ) {
        continue;
      }
      let secret: string;
      try {
        secret = this.secretOf(record);
      } catch (error) {
        // One unreadable record must not take the others down; say so loudly.
        this.reportError(error, `opening key ${record.alias}`);
        continue;
      }
      this.upsertEntry(record, secret);
    }
    for (const [id, entry] of this.entries) {
      if (!seen.has(id)) {
        this.entries.delete(id);
        this.breakers.forget(id);
        this.keysChanged();
        this.emitter.emit('key:removed', this.keyEvent(entry));
      }
    }
    this.keysChanged();
    return true;
  }

  /** Key records changed: selection tiers and organizations are rebuilt on next use. */
  private keysChanged(): void {
    this.tierCache.clear();
    this.orgsStale = true;
  }

  private orgsStale = true;
  private orgs = new Map<string, OrgGroup>();

  /**
   * Groups keys by organization, with the strictest `orgLimits` any of them declares, and gives
   * each key its reservation candidate (with the organization's shared limits when it has any).
   */
  private linkOrgs(): void {
    if (!this.orgsStale) return;
    this.orgsStale = false;
    const previous = this.orgs;
    this.orgs = new Map();
    for (const entry of this.entries.values()) {
      const { provider, organization, orgLimits } = entry.record;
      if (organization === undefined) {
        entry.org = undefined;
        continue;
      }
      const id = orgStateId(provider, organization);
      let org = this.orgs.get(id);
      if (org === undefined) {
        org = { id, provider, organization, members: [], limits: {}, usage: previous.get(id)?.usage };
        this.orgs.set(id, org);
      }
      org.members.push(entry);
      org.limits = strictest(org.limits, orgLimits);
      entry.org = org;
    }
    for (const entry of this.entries.values()) {
      const { org, record } = entry;
      entry.candidate =
        org !== undefined && Object.keys(org.limits).length > 0
          ? { keyId: record.id, limits: record.limits, shared: { id: org.id, limits: org.limits } }
          : { keyId: record.id, limits: record.limits };
    }
  }

  /** Pool membership changes without touching keys (and keysVersion), so it is read on every refresh. */
  private async reloadPools(): Promise<void> {
    const pools = await this.store.listPools();
    const signature = JSON.stringify(pools.map((p) => [p.id, p.keyIds]));
    if (signature === this.poolSignature) return;
    this.poolSignature = signature;
    this.poolMembers = new Map(pools.map((p) => [p.id, new Set(p.keyIds)]));
    this.tierCache.clear();
  }

  private poolSignature = '';

  private async refreshStates(): Promise<void> {
    const ids = [...this.entries.keys()];
    if (ids.length === 0) return;
    this.linkOrgs();
    const now = this.now();
    const window = this.calendar.at(now);
    const writes = this.writesOf(ids);
    const [states, usage] = await Promise.all([
      this.store.getKeyStates(ids),
      this.store.usageSnapshot([...ids, ...this.orgs.keys()], {
        now,
        windowMs: this.windowMs,
        day: window.day,
        month: window.month,
      }),
    ]);
    for (const state of states) {
      const entry = this.entries.get(state.keyId);
      if (entry !== undefined) this.adoptRead(entry, state, now, writes.get(state.keyId) ?? 0);
    }
    for (const snapshot of usage) {
      const holder = this.entries.get(snapshot.keyId) ?? this.orgs.get(snapshot.keyId);
      if (holder !== undefined) holder.usage = snapshot;
    }
  }

  private async sweepLeases(): Promise<void> {
    const now = this.now();
    const expired = await this.store.expireLeases(now);
    for (const lease of expired) this.markExpired(lease.id);
    // Leases swept by another process of the fleet still count here until noticed.
    for (const [id, handle] of this.leases) {
      if (handle.record.expiresAt <= now) this.markExpired(id);
    }
  }

  private markExpired(leaseId: string): void {
    const handle = this.leases.get(leaseId);
    if (handle === undefined || handle.expired) return;
    handle.expired = true;
    handle.entry.inFlight--;
    this.leases.delete(leaseId);
    this.counters.expired++;
    this.emitter.emit('lease:expired', { ...this.keyEvent(handle.entry), leaseId });
    this.wakeWaiters();
  }

  private scheduleRefresh(): void {
    if (this.closed) return;
    this.refreshTimer = setTimeout(() => {
      this.refresh()
        .catch((error) => this.reportError(error, 'refresh'))
        .finally(() => this.scheduleRefresh());
    }, this.refreshMs);
    this.refreshTimer.unref?.();
  }

  // -------------------------------------------------------------------------
  // Background probes (probes.ts runs them; the pool says what is due and applies results)
  // -------------------------------------------------------------------------

  private probeTargets(now: number): ProbeTarget[] {
    const targets: ProbeTarget[] = [];
    for (const entry of this.entries.values()) {
      // A disabled key is the operator's call, not the upstream's: no probe brings it back.
      if (!entry.record.enabled) continue;
      const reasons = probeReasons(entry.state, now);
      if (reasons.length === 0) continue;
      const provider = this.plugins.providers.get(entry.provider);
      if (provider?.probe === undefined) continue;
      targets.push({
        keyId: entry.id,
        secret: entry.secret,
        baseURL: entry.record.baseURL,
        provider,
        reasons,
      });
    }
    return targets;
  }

  private async confirmProbe(target: ProbeTarget): Promise<ProbeReason[]> {
    const entry = this.entries.get(target.keyId);
    return entry === undefined ? [] : this.currentProbeReasons(entry);
  }

  /** What the key is out for in the store's current state: another process may have brought it back. */
  private async currentProbeReasons(entry: KeyEntry): Promise<ProbeReason[]> {
    const writesBefore = entry.stateWrites;
    const [read] = await this.store.getKeyStates([entry.id]);
    if (read === undefined) return [];
    const now = this.now();
    const state = this.adoptRead(entry, read, now, writesBefore);
    return entry.record.enabled ? probeReasons(state, now) : [];
  }

  private async recoverByProbe(target: ProbeTarget, latency: number): Promise<void> {
    const entry = this.entries.get(target.keyId);
    if (entry === undefined || this.closed) return;
    await this.recover(entry, target.reasons, { actor: 'probe', latencyMs: latency });
  }

  async recoverKey(id: string, options: { actor: string; latencyMs: number }): Promise<ProbeReason[]> {
    this.assertOpen();
    if (!(typeof options?.actor === 'string' && options.actor.trim() !== '')) {
      throw new ConfigError(
        'recoverKey needs an actor for the audit log (who ran the probe), e.g. { actor: "alice" }',
      );
    }
    if (
      !(typeof options.latencyMs === 'number' && Number.isFinite(options.latencyMs) && options.latencyMs >= 0)
    ) {
      throw new ConfigError(
        `recoverKey needs the passing probe's latencyMs, a number of ms >= 0 (got ${String(options.latencyMs)})`,
      );
    }
    const entry = await this.loadedEntry(id);
    const reasons = await this.currentProbeReasons(entry);
    if (reasons.length > 0) await this.recover(entry, reasons, options);
    return reasons;
  }

  async testKey(id: string, options: { actor: string; timeoutMs?: number }): Promise<KeyTestResult> {
    this.assertOpen();
    const actor = options?.actor;
    if (!(typeof actor === 'string' && actor.trim() !== '')) {
      throw new ConfigError(
        'testKey needs an actor for the audit log (who tests the key), e.g. { actor: "alice" }',
      );
    }
    const timeoutMs = options.timeoutMs ?? 15_000;
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      throw new ConfigError(
        `testKey's timeoutMs must be a number of ms > 0 (got ${String(options.timeoutMs)})`,
      );
    }
    const entry = await this.loadedEntry(id);
    const provider = this.plugins.providers.get(entry.provider);
    if (provider?.probe === undefined) {
      throw new KeypoolError(
        'KEYPOOL_NO_PROBE',
        `Provider "${entry.provider}" offers no probe; test key ${entry.alias} by using it.`,
      );
    }
    const result = await runProbe(
      provider,
      entry.secret,
      entry.record.baseURL,
      AbortSignal.timeout(timeoutMs),
    );
    const latencyMs = Math.round(result.latencyMs);
    await this.store.appendAudit({
      id: this.nextId('aud'),
      time: this.now(),
      actor,
      action: 'key.test',
      target: entry.id,
      details: { alias: entry.alias, ok: result.ok, latencyMs },
    });
    let recovered: ProbeReason[] = [];
    if (result.ok) {
      recovered = await this.currentProbeReasons(entry);
      if (recovered.length > 0) await this.recover(entry, recovered, { actor, latencyMs: result.latencyMs });
    }
    const { outcome } = result;
    return {
      ok: result.ok,
      latencyMs,
      ...(outcome?.status !== undefined && { status: outcome.status }),
      ...(outcome?.code !== undefined && { code: outcome.code }),
      // Upstream messages sometimes quote the key back.
      ...(outcome?.message !== undefined && {
        message: outcome.message.split(entry.secret).join('[redacted]'),
      }),
      recovered,
    };
  }

  /** The key's entry, loading it when another process added it since the last refresh. */
  private async loadedEntry(id: string): Promise<KeyEntry> {
    const record = await this.requireKey(id);
    if (!this.entries.has(id)) await this.refresh();
    const entry = this.entries.get(id);
    if (entry === undefined) {
      throw new KeypoolError(
        'KEYPOOL_UNKNOWN_KEY',
        `Key ${record.alias} is not in this pool: its secret could not be opened with this pool's master key.`,
      );
    }
    return entry;
  }

  /**
   * A passing probe (background, or run by `actor` and reported through `recoverKey`) clears what
   * the key was out for, with the writes a successful request makes.
   */
  private async recover(
    entry: KeyEntry,
    reasons: ProbeReason[],
    { actor, latencyMs: latency }: { actor: string; latencyMs: number },
  ): Promise<void> {
    const now = this.now();
    const isBreaker = reasons.includes('breaker-open');
    const clear: NonNullable<KeyStateUpdate['clear']> = [];
    if (reasons.includes('invalid')) clear.push('invalidSince');
    if (reasons.includes('exhausted')) clear.push('exhaustedUntil');
    if (isBreaker) clear.push('breakerOpenUntil', 'probeLeaseId');
    await this.writeState(entry, {
      clear,
      ...(isBreaker && { set: { breaker: 'closed' as const }, resetFailures: true }),
      now,
    });
    if (isBreaker) {
      this.breakers.close(entry.id);
      this.emitter.emit('breaker:close', this.keyEvent(entry));
    }
    const latencyMs = Math.round(latency);
    this.emitter.emit('probe:passed', { ...this.keyEvent(entry), reasons, latencyMs });
    this.wakeWaiters();
    await this.store.appendAudit({
      id: this.nextId('aud'),
      time: now,
      actor,
      action: 'key.probe',
      target: entry.id,
      details: { alias: entry.alias, ok: true, reasons, latencyMs },
    });
  }

  /** A failing probe changes nothing about the key (and counts toward no breaker): it is only reported. */
  private noteFailedProbe(target: ProbeTarget, result: ProbeResult): void {
    const entry = this.entries.get(target.keyId);
    if (entry === undefined || this.closed) return;
    const { outcome } = result;
    const failure = outcome !== undefined ? classifyOutcome(outcome, this.now()).failure : undefined;
    this.emitter.emit('probe:failed', {
      ...this.keyEvent(entry),
      reasons: target.reasons,
      latencyMs: Math.round(result.latencyMs),
      ...(outcome?.status !== undefined && { status: outcome.status }),
      ...(failure !== undefined && { failure }),
    });
  }

  // -------------------------------------------------------------------------
  // Health, stats, events
  // -------------------------------------------------------------------------

  health(): PoolHealth {
    const now = this.now();
    const keys: KeyHealth[] = [];
    let active = 0;
    const reasons: string[] = [];
    for (const entry of this.entries.values()) {
      const derived = this.statusOf(entry, now);
      if (derived.status === 'active') active++;
      const state = entry.state;
      const key: KeyHealth = {
        id: entry.id,
        alias: entry.alias,
        provider: entry.provider,
        priority: entry.priority,
        maskedSecret: entry.record.maskedSecret,
        status: derived.status,
        breaker: breakerNow(state, now),
        successRate: entry.successRate,
        requests: entry.requests,
        errors: entry.errors,
        inFlight: entry.inFlight,
        headroom: headroom(entry.limits, entry.usage),
      };
      if (derived.reason !== undefined) key.reason = derived.reason;
      if (derived.until !== undefined) key.until = derived.until;
      if (entry.latencyEwmaMs !== undefined) key.latencyEwmaMs = entry.latencyEwmaMs;
      if (entry.usage !== undefined) key.usage = entry.usage;
      if (state.lastError !== undefined) key.lastError = state.lastError;
      keys.push(key);
    }
    let status: HealthStatus = 'healthy';
    if (keys.length === 0) {
      status = 'down';
      reasons.push('the pool has no keys');
    } else if (active === 0) {
      status = 'down';
      reasons.push('no key is active');
    } else if (active < keys.length) {
      status = 'degraded';
      reasons.push(`${keys.length - active} of ${keys.length} keys are not active`);
    }
    if (this.storeDegraded !== undefined) {
      if (status === 'healthy') status = 'degraded';
      reasons.push(`store ${this.store.name} degraded: ${this.storeDegraded}`);
    }
    this.linkOrgs();
    const orgs: OrgHealth[] = [...this.orgs.values()].map((org) => ({
      id: org.id,
      provider: org.provider,
      organization: org.organization,
      keyIds: org.members.map((member) => member.id),
      limits: org.limits,
      headroom: headroom(org.limits, org.usage),
      ...(org.usage !== undefined && { usage: org.usage }),
    }));
    return {
      status,
      reasons,
      store: { name: this.store.name, degraded: this.storeDegraded !== undefined },
      keys,
      orgs,
      checkedAt: now,
    };
  }

  stats(): PoolStats {
    const byKey: PoolStats['byKey'] = {};
    let inFlight = 0;
    for (const entry of this.entries.values()) {
      inFlight += entry.inFlight;
      byKey[entry.alias] = {
        requests: entry.requests,
        errors: entry.errors,
        inputTokens: entry.inputTokens,
        outputTokens: entry.outputTokens,
        costUsd: entry.costUsd,
      };
    }
    return { ...this.counters, inFlight, byKey };
  }

  on<E extends PoolEventName>(event: E, listener: (payload: PoolEvents[E]) => void): Disposable {
    return this.emitter.on(event, listener);
  }

  provider(id: string): Provider | undefined {
    return this.plugins.providers.get(id);
  }

  private keyEvent(entry: KeyEntry) {
    return { keyId: entry.id, alias: entry.alias, provider: entry.provider };
  }

  private reportError(error: unknown, during: string): void {
    if (this.closed) return;
    this.emitter.emit('error', { error: error instanceof Error ? error : new Error(String(error)), during });
  }

  // -------------------------------------------------------------------------
  // Waiting and lifecycle
  // -------------------------------------------------------------------------

  /** Sleeps up to `ms`; with `wakeable`, a release or key change ends it early (no busy loop either way). */
  private sleep(ms: number, signal: AbortSignal | undefined, wakeable: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: () => {
          clearTimeout(waiter.timer);
          this.waiters.delete(waiter);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        timer: setTimeout(() => waiter.resolve(), ms),
      };
      const onAbort = () => {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        reject(abortReason(signal));
      };
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      if (wakeable) this.waiters.add(waiter);
      else this.sleepers.add(waiter);
    });
  }

  private readonly sleepers = new Set<Waiter>();

  private wakeWaiters(): void {
    if (this.waiters.size === 0) return;
    for (const waiter of [...this.waiters]) waiter.resolve();
  }

  private assertOpen(): void {
    if (this.closed) throw new KeypoolError('KEYPOOL_CLOSED', 'The pool is closed; create a new one.');
  }

  private nextId(kind: string): string {
    this.idCounter++;
    return `${kind}_${this.idPrefix}${this.idCounter.toString(36)}`;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.refreshTimer !== undefined) clearTimeout(this.refreshTimer);
    await this.prober?.close();
    for (const waiter of [...this.waiters, ...this.sleepers]) {
      clearTimeout(waiter.timer);
      waiter.resolve();
    }
    this.waiters.clear();
    this.sleepers.clear();
    await this.refreshing?.catch(() => undefined);
    while (this.disposables.length > 0) this.disposables.pop()?.dispose();
    this.breakers.dispose();
    await this.plugins.dispose();
    this.emitter.clear();
    await this.store.close();
  }
}

function resolveMasters(value: KeyPoolOptions['masterKey'], store: Store): MasterKey[] {
  const list = value === undefined ? [] : Array.isArray(value) ? value : [value];
  if (list.length === 0) {
    if (store.capabilities.durable) {
      throw new KeypoolError(
        'KEYPOOL_MASTER_KEY',
        `The ${store.name} store keeps secrets at rest, so it needs a master key: set KEYPOOL_MASTER_KEY ` +
          '(32 random bytes, base64 — e.g. `openssl rand -base64 32`) and pass masterKey: process.env.KEYPOOL_MASTER_KEY.',
      );
    }
    // Nothing outlives the process, so a throw-away key is as good as any.
    return [parseMasterKey(generateMasterKey())];
  }
  return list.map((item, index) =>
    typeof item === 'string'
      ? parseMasterKey(item, index === 0 ? 'masterKey' : `masterKey[${index}]`)
      : (item as MasterKey),
  );
}

function isLastResortReason(reason: IneligibleReason | undefined): reason is LastResortReason {
  return reason === 'cooling' || reason === 'breaker-open';
}

/** When a key's cooldowns (429 and open breaker) have all ended by themselves, epoch ms. */
function cooldownEnd(state: KeyState, now: number): number {
  return Math.max(
    now,
    state.coolingUntil ?? now,
    state.breaker === 'open' ? (state.breakerOpenUntil ?? now) : now,
  );
}

function breakerNow(state: KeyState, now: number) {
  if (state.breaker === 'open' && state.breakerOpenUntil !== undefined && state.breakerOpenUntil <= now)
    return 'half-open';
  return state.breaker;
}

/** Each limit at the lower of the two values; a limit only one of them sets is kept. */
function strictest(a: KeyLimits, b: KeyLimits | undefined): KeyLimits {
  if (b === undefined) return a;
  const out: KeyLimits = { ...a };
  for (const [name, value] of Object.entries(b) as Array<[keyof KeyLimits, number | undefined]>) {
    if (value !== undefined && (out[name] === undefined || value < out[name])) out[name] = value;
  }
  return out;
}

function headroom(limits: KeyLimits, usage: KeyUsageSnapshot | undefined): KeyHealth['headroom'] {
  const out: KeyHealth['headroom'] = {};
  const share = (limit: number | undefined, used: number) =>
    limit === undefined ? undefined : Math.max(0, Math.min(1, 1 - used / limit));
  const set = (name: keyof KeyLimits, value: number | undefined) => {
    if (value !== undefined) out[name] = value;
  };
  set('rpm', share(limits.rpm, usage?.requestsInWindow ?? 0));
  set('tpm', share(limits.tpm, usage?.tokensInWindow ?? 0));
  set('requestsPerDay', share(limits.requestsPerDay, usage?.requestsToday ?? 0));
  set('tokensPerDay', share(limits.tokensPerDay, usage?.tokensToday ?? 0));
  set('monthlyBudgetUsd', share(limits.monthlyBudgetUsd, usage?.costThisMonthUsd ?? 0));
  return out;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!(typeof value === 'number' && Number.isFinite(value) && value > 0)) {
    throw new ConfigError(`${name} must be a positive number (got ${String(value)})`);
  }
  return value;
}

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!(typeof value === 'number' && Number.isFinite(value) && value >= 0)) {
    throw new ConfigError(`${name} must be a number >= 0 (got ${String(value)})`);
  }
  return value;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

function abortReason(signal: AbortSignal | undefined): unknown {
  const reason = signal?.reason;
  return reason instanceof Error ? reason : new KeypoolError('KEYPOOL_ABORTED', 'The operation was aborted.');
}
