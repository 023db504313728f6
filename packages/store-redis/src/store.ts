import { randomUUID } from 'node:crypto';
import type {
  AuditEntry,
  AuditQuery,
  Disposable,
  IneligibleReason,
  KeyLimits,
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
  StoreCapabilities,
  StoreEvent,
  TokenRecord,
  UsageQuery,
  UsageRecord,
  UsageRow,
  UsageSnapshotQuery,
} from '@keypool/spec';
import { grantedLease, type MemoryStore, memoryStore } from '@keypool/store-memory';
import { type Cluster, Redis } from 'ioredis';
import { candidateArg, sharedArg } from './candidates.js';
import { isConnectionError, RedisStoreError } from './errors.js';
import { HotBatch } from './hot-batch.js';
import { decodeLease, leaseMiddle } from './lease.js';
import { auditSeqWidth, defineScripts, type ScriptedClient } from './scripts.js';
import { decodeKeyState, encodeStateUpdate } from './state.js';
import { aggregateUsage } from './usage.js';

export interface RedisStoreOptions {
  /** Your ioredis client or Cluster. The store never closes it. */
  client?: Redis | Cluster;
  /** Used when no client is given (default redis://127.0.0.1:6379); the store owns and closes that client. */
  url?: string;
  /** Every key lives under the hash tag `{prefix}`. Default 'keypool'. */
  prefix?: string;
  /** No call waits longer than this for Redis before the fallback answers. Default 1000. */
  commandTimeoutMs?: number;
  /** Per-process fallback while Redis is unreachable. Default enabled. */
  fallback?: { enabled?: boolean };
  /**
   * Start even when Redis may evict any key (`maxmemory-policy allkeys-*`), which `init()`
   * refuses by default: an evicted window or lease lets the fleet past its limits, an evicted
   * record loses a key. Default false.
   */
  allowEviction?: boolean;
}

const heartbeatEveryMs = 3_000;
/** A process that missed this many ms of heartbeats no longer counts as live. */
const heartbeatTtlMs = 15_000;
const recoverEveryMs = 250;
/** How long a swept lease waits for its late report. */
const sweptLeaseKeepMs = 3_600_000;
const usageChunk = 1_000;
/** A probe claim's Redis key outlives its held-until time by this (clocks differ; it only cleans up). */
const probeClaimKeepMs = 60_000;
const auditPage = 500;

interface PendingSettle {
  leaseId: string;
  settlement: Settlement;
}

type Args = Array<string | number>;
/** ioredis flattens array arguments: one flat list, no spread copies. */
type ArgsCommand = (args: Args) => Promise<unknown>;

const settleStatus = ['already-settled', 'settled', 'expired'] as const;

/** Seeds the fallback with a state read from Redis, replacing whatever it held for the key. */
function seedState(local: MemoryStore, state: KeyState): void {
  const { keyId, consecutiveFailures, updatedAt, ...fields } = state;
  // The memory store works synchronously inside its async methods: these apply at once, in order.
  void local.resetKeyState(keyId, { now: updatedAt });
  void local.updateKeyState(keyId, { set: fields, now: updatedAt });
  for (let i = 0; i < consecutiveFailures; i++) {
    void local.updateKeyState(keyId, { incrementFailures: true, now: updatedAt });
  }
}

function byCreatedAt<T extends { createdAt: number; id: string }>(a: T, b: T): number {
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function parseAll<T>(values: string[]): T[] {
  return values.map((value) => JSON.parse(value) as T);
}

/** A token record with the latest of its own lastUsedAt and the one touches wrote beside it. */
function withLastUse(record: TokenRecord, used: string | undefined): TokenRecord {
  const touched = used === undefined ? undefined : Number(used);
  if (touched === undefined || !(touched > (record.lastUsedAt ?? Number.NEGATIVE_INFINITY))) return record;
  return { ...record, lastUsedAt: touched };
}

/** Fleet-wide keypool Store on Redis: Lua for the hot path, hashes and sorted sets for records. */
export class RedisStore implements Store {
  readonly name = 'redis';
  readonly capabilities: StoreCapabilities = { fleet: true, durable: true };

  private readonly client: ScriptedClient;
  private readonly ownsClient: boolean;
  private readonly base: string;
  private readonly channel: string;
  private readonly timeoutMs: number;
  /** A user's client may have no commandTimeout: then we race our own timer. */
  private readonly needsGuard: boolean;
  private readonly fallbackEnabled: boolean;
  private readonly allowEviction: boolean;
  private readonly instanceId = randomUUID();
  private readonly listeners = new Set<(event: StoreEvent) => void>();
  private subscriber: Redis | Cluster | undefined;

  /** Serves the hot path while Redis is unreachable, with limits scaled to this process's share. */
  private readonly local: MemoryStore = memoryStore({ maxUsageRecords: 1, maxAuditEntries: 1 });
  /** Leases the fallback granted (id -> expiresAt): their settle stays local, decided synchronously. */
  private readonly localLeases = new Map<string, number>();
  /**
   * Redis leases this process took: a settle needs no lease back from the script, and
   * during an outage it is answered from here and replayed later.
   */
  private readonly ownLeases = new Map<string, LeaseRecord>();
  /** reserve/settle calls of one tick, sent as one script call. */
  private readonly hot: HotBatch;
  private readonly lastStates = new Map<string, KeyState>();
  private lastKeys: KeyRecord[] | undefined;
  private liveProcesses = 1;
  private degraded = false;
  private recovering = false;
  private closed = false;
  private usageBuffer: UsageRecord[] = [];
  private auditBuffer: AuditEntry[] = [];
  private settleBuffer: PendingSettle[] = [];
  private readonly heartbeatTimer: NodeJS.Timeout;
  private recoverTimer: NodeJS.Timeout | undefined;

  constructor(options: RedisStoreOptions = {}) {
    this.timeoutMs = options.commandTimeoutMs ?? 1_000;
    this.fallbackEnabled = options.fallback?.enabled ?? true;
    this.allowEviction = options.allowEviction === true;
    const prefix = options.prefix ?? 'keypool';
    if (!prefix || /[{}]/.test(prefix)) {
      throw new RedisStoreError(
        'KEYPOOL_INVALID_CONFIG',
        `redisStore prefix must be a non-empty string without braces (got ${JSON.stringify(prefix)}); the store adds the {hash tag} itself.`,
      );
    }
    this.base = `{${prefix}}`;
    this.channel = `${this.base}:keys`;
    if (options.client) {
      this.client = defineScripts(options.client);
      this.ownsClient = false;
      const own = options.client.options as {
        commandTimeout?: number;
        redisOptions?: { commandTimeout?: number };
      };
      const timeout = own.commandTimeout ?? own.redisOptions?.commandTimeout;
      this.needsGuard = !(typeof timeout === 'number' && timeout <= this.timeoutMs);
    } else {
      const client = new Redis(options.url ?? 'redis://127.0.0.1:6379', {
        commandTimeout: this.timeoutMs,
        connectTimeout: Math.max(this.timeoutMs, 1_000),
        // Queue while (re)connecting, but give up after one reconnect; commandTimeout bounds the wait anyway.
        maxRetriesPerRequest: 1,
        enableOfflineQueue: true,
        retryStrategy: (times) => Math.min(times * 100, 1_000),
      });
      // Failures surface through commands (and the degraded event); without a listener ioredis prints them.
      client.on('error', () => {});
      this.client = defineScripts(client);
      this.ownsClient = true;
      this.needsGuard = false;
    }
    this.hot = new HotBatch(this.base, (args) =>
      this.guard((this.client.keypoolHot as unknown as ArgsCommand)(args)),
    );
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), heartbeatEveryMs);
    this.heartbeatTimer.unref();
    void this.heartbeat();
  }

  /** True while the per-process fallback serves because Redis is unreachable. */
  get isDegraded(): boolean {
    return this.degraded;
  }

  async init(): Promise<void> {
    try {
      await this.guard(this.client.ping());
    } catch (error) {
      throw this.unreachable(error);
    }
    if (!this.allowEviction) await this.refuseEviction();
    await this.heartbeat();
  }

  /** Throws when a node serving this store may evict keys that have no expiry. */
  private async refuseEviction(): Promise<void> {
    const client = this.client as Redis | Cluster;
    const nodes = 'nodes' in client && typeof client.nodes === 'function' ? client.nodes('master') : [client];
    for (const node of nodes) {
      let policy: unknown;
      try {
        policy = ((await this.guard((node as Redis).config('GET', 'maxmemory-policy'))) as string[])[1];
      } catch {
        // Managed Redis often disables CONFIG: nothing to check there.
        continue;
      }
      if (typeof policy === 'string' && policy.startsWith('allkeys-')) {
        throw new RedisStoreError(
          'KEYPOOL_INVALID_CONFIG',
          `redisStore: Redis runs with maxmemory-policy ${policy}, so it may evict keypool's windows, leases and records under memory pressure (and then let the fleet past its limits). Set maxmemory-policy to noeviction (or a volatile-* policy), or pass allowEviction: true (KEYPOOL_REDIS_ALLOW_EVICTION=1 for the keypool CLI and server) to accept the risk.`,
        );
      }
    }
  }

  // -------------------------------------------------------------------------
  // plumbing
  // -------------------------------------------------------------------------

  private guard<T>(promise: Promise<T>): Promise<T> {
    if (!this.needsGuard) return promise;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`Redis command timed out after ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      promise.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  private unreachable(cause: unknown): RedisStoreError {
    const why = cause instanceof Error ? cause.message : String(cause);
    return new RedisStoreError(
      'KEYPOOL_STORE',
      `Redis is unreachable (${why}). Check that Redis runs and that the store's url/client points at it; ` +
        'hot-path calls are served by the per-process fallback meanwhile.',
      { cause },
    );
  }

  /** Rethrows anything but a connection failure; otherwise switches to the fallback (or throws when it is off). */
  private fail(error: unknown): void {
    if (!isConnectionError(error)) throw error;
    if (!this.fallbackEnabled) throw this.unreachable(error);
    this.enterDegraded(error);
  }

  private emit(event: StoreEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's bug must not break the store.
      }
    }
  }

  private enterDegraded(error: unknown): void {
    if (this.degraded || this.closed) return;
    this.degraded = true;
    // Start from what we last knew of every key, so a cooling or invalid key stays out.
    for (const state of this.lastStates.values()) seedState(this.local, state);
    this.emit({ type: 'degraded', error: error instanceof Error ? error.message : String(error) });
    this.recoverTimer = setInterval(() => void this.tryRecover(), recoverEveryMs);
    this.recoverTimer.unref();
  }

  private async tryRecover(): Promise<void> {
    if (this.recovering || !this.degraded || this.closed) return;
    this.recovering = true;
    try {
      await this.guard(this.client.ping());
      let flushedUsage = 0;
      // Writes are replay-safe (usage members are whole records), so a chunk that failed half-way is simply resent.
      while (this.usageBuffer.length > 0 || this.auditBuffer.length > 0 || this.settleBuffer.length > 0) {
        const usage = this.usageBuffer.slice(0, usageChunk);
        if (usage.length > 0) {
          await this.writeUsage(usage);
          this.usageBuffer.splice(0, usage.length);
          flushedUsage += usage.length;
        }
        const entry = this.auditBuffer[0];
        if (entry) {
          await this.writeAudit(entry);
          this.auditBuffer.shift();
        }
        const pending = this.settleBuffer[0];
        if (pending) {
          await this.settleInRedis(pending.leaseId, pending.settlement);
          this.settleBuffer.shift();
        }
      }
      this.degraded = false;
      clearInterval(this.recoverTimer);
      this.recoverTimer = undefined;
      this.emit({ type: 'recovered', flushedUsage });
      // Key records may have changed while we could not hear about it.
      this.emit({ type: 'keys-changed' });
      this.subscriber?.subscribe(this.channel).catch(() => {});
      void this.heartbeat();
    } catch (error) {
      // Still unreachable: the next tick tries again. A connection that timed out may be
      // half-open (packets silently dropped) and never error on its own: start a fresh one.
      if (this.ownsClient && error instanceof Error && /timed out/i.test(error.message)) {
        (this.client as Redis).disconnect(true);
      }
    } finally {
      this.recovering = false;
    }
  }

  private async heartbeat(): Promise<void> {
    if (this.degraded || this.closed) return;
    const key = `${this.base}:hb`;
    const now = Date.now();
    try {
      const results = await this.guard(
        this.client
          .pipeline()
          .zadd(key, now, this.instanceId)
          .zremrangebyscore(key, '-inf', now - heartbeatTtlMs)
          .zcard(key)
          .exec(),
      );
      const count = results?.[2]?.[1];
      if (typeof count === 'number' && count > 0) this.liveProcesses = count;
      else {
        const error = results?.find(([e]) => e)?.[0];
        if (error) throw error;
      }
    } catch (error) {
      if (isConnectionError(error) && this.fallbackEnabled) this.enterDegraded(error);
    }
  }

  /** This process's share of each limit (a key's and its group's) while it serves alone from the fallback. */
  private scaled(request: ReserveRequest): ReserveRequest {
    const n = this.liveProcesses;
    if (n <= 1) return request;
    const share = (value: number | undefined, whole: boolean) =>
      value === undefined ? undefined : whole ? Math.max(1, Math.floor(value / n)) : value / n;
    const scaleLimits = (limits: KeyLimits): KeyLimits => {
      const scaledLimits: KeyLimits = {};
      const entries: Array<[keyof KeyLimits, number | undefined]> = [
        ['rpm', share(limits.rpm, true)],
        ['tpm', share(limits.tpm, false)],
        ['requestsPerDay', share(limits.requestsPerDay, true)],
        ['tokensPerDay', share(limits.tokensPerDay, false)],
        ['monthlyBudgetUsd', share(limits.monthlyBudgetUsd, false)],
      ];
      for (const [field, value] of entries) if (value !== undefined) scaledLimits[field] = value;
      return scaledLimits;
    };
    return {
      ...request,
      candidates: request.candidates.map((candidate): ReserveCandidate => {
        const scaledCandidate: ReserveCandidate = {
          keyId: candidate.keyId,
          limits: scaleLimits(candidate.limits),
        };
        const { shared } = candidate;
        if (shared !== undefined)
          scaledCandidate.shared = { id: shared.id, limits: scaleLimits(shared.limits) };
        return scaledCandidate;
      }),
    };
  }

  /** Durable calls have no fallback: they fail with a clear error while Redis is away. */
  private async durable<T>(run: () => Promise<T>): Promise<T> {
    if (this.degraded) throw this.unreachable(new Error('the store is degraded'));
    try {
      return await this.guard(run());
    } catch (error) {
      if (!isConnectionError(error)) throw error;
      if (this.fallbackEnabled) this.enterDegraded(error);
      throw this.unreachable(error);
    }
  }

  private k(name: string): string {
    return `${this.base}:${name}`;
  }

  // -------------------------------------------------------------------------
  // durable: keys
  // -------------------------------------------------------------------------

  async listKeys(): Promise<KeyRecord[]> {
    // While degraded, the last list read keeps the pool running.
    if (this.degraded && this.lastKeys) return this.lastKeys;
    const keys = parseAll<KeyRecord>(await this.durable(() => this.client.hvals(this.k('keys')))).sort(
      byCreatedAt,
    );
    this.lastKeys = keys;
    return keys;
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    const json = await this.durable(() => this.client.hget(this.k('keys'), id));
    return json === null ? undefined : (JSON.parse(json) as KeyRecord);
  }

  async getKeyByFingerprint(fingerprint: string): Promise<KeyRecord | undefined> {
    const id = await this.durable(() => this.client.hget(this.k('fp'), fingerprint));
    return id === null ? undefined : this.getKey(id);
  }

  async putKey(record: KeyRecord): Promise<void> {
    try {
      await this.durable(() =>
        this.client.keypoolPutKey(
          this.base,
          record.id,
          record.fingerprint,
          JSON.stringify(record),
          this.channel,
        ),
      );
    } catch (error) {
      if (error instanceof Error && error.message.includes('KEYPOOL_DUPLICATE_KEY')) {
        throw new RedisStoreError(
          'KEYPOOL_DUPLICATE_KEY',
          `Another key in this store already has the same secret (fingerprint) as key "${record.alias}" (id ${record.id}). ` +
            'Update the existing key instead, or remove it first.',
        );
      }
      throw error;
    }
  }

  async deleteKey(id: string): Promise<boolean> {
    return (await this.durable(() => this.client.keypoolDeleteKey(this.base, id, this.channel))) === 1;
  }

  async keysVersion(): Promise<number> {
    return Number((await this.durable(() => this.client.get(this.k('ver')))) ?? 0);
  }

  // -------------------------------------------------------------------------
  // durable: pools and tokens
  // -------------------------------------------------------------------------

  async listPools(): Promise<PoolRecord[]> {
    return parseAll<PoolRecord>(await this.durable(() => this.client.hvals(this.k('pools')))).sort(
      byCreatedAt,
    );
  }

  async getPool(id: string): Promise<PoolRecord | undefined> {
    const json = await this.durable(() => this.client.hget(this.k('pools'), id));
    return json === null ? undefined : (JSON.parse(json) as PoolRecord);
  }

  async putPool(record: PoolRecord): Promise<void> {
    await this.durable(() => this.client.hset(this.k('pools'), record.id, JSON.stringify(record)));
  }

  async deletePool(id: string): Promise<boolean> {
    return (await this.durable(() => this.client.hdel(this.k('pools'), id))) === 1;
  }

  async listTokens(): Promise<TokenRecord[]> {
    const [values, used] = await this.durable(() =>
      Promise.all([this.client.hvals(this.k('tokens')), this.client.hgetall(this.k('tokenused'))]),
    );
    return parseAll<TokenRecord>(values)
      .map((record) => withLastUse(record, used[record.id]))
      .sort(byCreatedAt);
  }

  async getTokenByHash(tokenHash: string): Promise<TokenRecord | undefined> {
    const id = await this.durable(() => this.client.hget(this.k('tokenidx'), tokenHash));
    if (id === null) return undefined;
    const [json, used] = await this.durable(() =>
      Promise.all([this.client.hget(this.k('tokens'), id), this.client.hget(this.k('tokenused'), id)]),
    );
    return json === null ? undefined : withLastUse(JSON.parse(json) as TokenRecord, used ?? undefined);
  }

  async putToken(record: TokenRecord): Promise<void> {
    await this.durable(() =>
      this.client.keypoolPutToken(this.base, record.id, record.tokenHash, JSON.stringify(record)),
    );
  }

  async deleteToken(id: string): Promise<boolean> {
    return (await this.durable(() => this.client.keypoolPutToken(this.base, id, '', ''))) === 1;
  }

  async touchToken(id: string, lastUsedAt: number): Promise<void> {
    await this.durable(() => this.client.keypoolTouchToken(this.base, id, lastUsedAt));
  }

  // -------------------------------------------------------------------------
  // durable: logs and meta
  // -------------------------------------------------------------------------

  private async writeUsage(records: readonly UsageRecord[]): Promise<void> {
    for (let i = 0; i < records.length; i += usageChunk) {
      const args: Array<string | number> = [];
      for (const record of records.slice(i, i + usageChunk)) args.push(record.time, JSON.stringify(record));
      await this.guard(this.client.zadd(this.k('usage'), ...args));
    }
  }

  async appendUsage(records: readonly UsageRecord[]): Promise<void> {
    if (records.length === 0) return;
    if (!this.degraded) {
      try {
        await this.writeUsage(records);
        return;
      } catch (error) {
        this.fail(error);
      }
    }
    // Kept until Redis answers again; written back before the 'recovered' event.
    this.usageBuffer.push(...records);
  }

  async queryUsage(query: UsageQuery): Promise<UsageRow[]> {
    // Reads the whole time range and aggregates here: fine for dashboards over days,
    // heavy for months of high traffic (then narrow `from`/`to`).
    const values = await this.durable(() =>
      this.client.zrangebyscore(
        this.k('usage'),
        query.from ?? '-inf',
        query.to === undefined ? '+inf' : `(${query.to}`,
      ),
    );
    return aggregateUsage(parseAll<UsageRecord>(values), query);
  }

  private async writeAudit(entry: AuditEntry): Promise<void> {
    await this.guard(this.client.keypoolAppendAudit(this.base, entry.time, JSON.stringify(entry)));
  }

  async appendAudit(entry: AuditEntry): Promise<void> {
    if (!this.degraded) {
      try {
        await this.writeAudit(entry);
        return;
      } catch (error) {
        this.fail(error);
      }
    }
    this.auditBuffer.push(entry);
  }

  async listAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const limit = query.limit ?? 100;
    const max = query.to === undefined ? '+inf' : `(${query.to}`;
    const min = query.from ?? '-inf';
    const filtered = query.target !== undefined || query.action !== undefined;
    const out: AuditEntry[] = [];
    for (let offset = 0; out.length < limit; offset += auditPage) {
      const count = filtered ? auditPage : limit;
      const page = await this.durable(() =>
        this.client.zrevrangebyscore(this.k('audit'), max, min, 'LIMIT', offset, count),
      );
      for (const member of page) {
        const entry = JSON.parse(member.slice(auditSeqWidth)) as AuditEntry;
        if (query.target !== undefined && entry.target !== query.target) continue;
        if (query.action !== undefined && entry.action !== query.action) continue;
        out.push(entry);
        if (out.length === limit) break;
      }
      if (page.length < count) break;
    }
    return out;
  }

  async getMeta(name: string): Promise<string | undefined> {
    return (await this.durable(() => this.client.hget(this.k('meta'), name))) ?? undefined;
  }

  async setMeta(name: string, value: string): Promise<void> {
    await this.durable(() => this.client.hset(this.k('meta'), name, value));
  }

  // -------------------------------------------------------------------------
  // hot state
  // -------------------------------------------------------------------------

  async reserve(request: ReserveRequest): Promise<ReserveResult> {
    if (!this.degraded) {
      try {
        return await this.reserveInRedis(request);
      } catch (error) {
        this.fail(error);
      }
    }
    const result = await this.local.reserve(this.scaled(request));
    if (result.ok) this.localLeases.set(result.lease.id, result.lease.expiresAt);
    return result;
  }

  private async reserveInRedis(request: ReserveRequest): Promise<ReserveResult> {
    const { now, candidates } = request;
    const expiresAt = now + request.leaseTtlMs;
    const args: Args = [
      now,
      request.windowMs,
      request.estimatedTokens,
      request.estimatedCostUsd,
      request.day,
      request.month,
      request.dayEndsAt,
      request.monthEndsAt,
      expiresAt,
      request.model ?? '',
      request.leaseId,
      leaseMiddle(request, expiresAt),
      request.ignoreCooldown === true ? '1' : '',
    ];
    for (const candidate of candidates) {
      if (candidate.shared !== undefined) args.push(sharedArg(candidate.shared));
      args.push(candidateArg(candidate));
    }
    const reply = await this.hot.run('r', args);
    if (typeof reply === 'number') {
      // The script answers with the candidate's position and the probe flag; the lease is built here.
      const candidate = candidates[(reply >> 1) - 1];
      if (candidate === undefined)
        throw new Error(`keypool reserve script returned an unknown candidate (${reply})`);
      const lease = grantedLease(request, candidate.keyId, (reply & 1) === 1, candidate.shared?.id);
      this.ownLeases.set(lease.id, lease);
      return { ok: true, lease };
    }
    const parts = reply as Array<string | number>;
    const reasons: Record<string, IneligibleReason> = {};
    for (let i = 3; i + 1 < parts.length; i += 2)
      reasons[parts[i] as string] = parts[i + 1] as IneligibleReason;
    return { ok: false, retryAfterMs: parts[1] === 1 ? Number(parts[2]) : null, reasons };
  }

  private async settleInRedis(leaseId: string, settlement: Settlement): Promise<SettleResult> {
    const known = this.ownLeases.get(leaseId);
    const { usage } = settlement;
    const reply = await this.hot.run('s', [
      leaseId,
      settlement.tokens,
      settlement.costUsd,
      settlement.now,
      known === undefined ? 0 : 1,
      usage === undefined ? 0 : usage.time,
      // The same JSON as appendUsage writes, so a replayed record lands on the same member.
      usage === undefined ? '' : JSON.stringify(usage),
      settlement.respondedAt ?? '',
    ]);
    this.ownLeases.delete(leaseId);
    const [code, stored] = typeof reply === 'number' ? [reply, undefined] : (reply as [number, string]);
    const status = settleStatus[code] ?? 'already-settled';
    if (status === 'already-settled') return { status };
    const lease = stored === undefined ? known : decodeLease(leaseId, stored);
    if (lease === undefined) throw new Error(`keypool settle script returned no lease for ${leaseId}`);
    return { status, lease };
  }

  async settle(leaseId: string, settlement: Settlement): Promise<SettleResult> {
    if (this.localLeases.has(leaseId)) return this.settleLocally(leaseId, settlement);
    if (!this.degraded) {
      try {
        return await this.settleInRedis(leaseId, settlement);
      } catch (error) {
        this.fail(error);
      }
    }
    // Redis is away: answer from what this process knows and replay the settle on recovery.
    const lease = this.ownLeases.get(leaseId);
    if (!lease) {
      // Unknown here: Redis decides on replay, and logs the usage then if the lease was still open.
      this.settleBuffer.push({ leaseId, settlement });
      return { status: 'already-settled' };
    }
    this.ownLeases.delete(leaseId);
    const { usage, ...withoutUsage } = settlement;
    // The usage is buffered now (the answer says it was logged); the replay only moves counters.
    if (usage !== undefined) this.usageBuffer.push(usage);
    this.settleBuffer.push({ leaseId, settlement: withoutUsage });
    return lease.expiresAt <= settlement.now ? { status: 'expired', lease } : { status: 'settled', lease };
  }

  /** A lease the fallback granted: settled there; its usage waits for Redis like appendUsage's. */
  private async settleLocally(leaseId: string, settlement: Settlement): Promise<SettleResult> {
    this.localLeases.delete(leaseId);
    const { usage, ...withoutUsage } = settlement;
    const result = await this.local.settle(leaseId, withoutUsage);
    if (usage !== undefined && result.status !== 'already-settled') await this.appendUsage([usage]);
    return result;
  }

  async getLease(leaseId: string): Promise<LeaseRecord | undefined> {
    if (this.localLeases.has(leaseId)) return this.local.getLease(leaseId);
    if (!this.degraded) {
      try {
        const stored = await this.guard(this.client.get(this.k(`l:${leaseId}`)));
        return stored === null || stored[0] !== 'a' ? undefined : decodeLease(leaseId, stored);
      } catch (error) {
        this.fail(error);
      }
    }
    return this.ownLeases.get(leaseId);
  }

  async expireLeases(now: number): Promise<LeaseRecord[]> {
    const expired = await this.local.expireLeases(now);
    // Forget fallback leases nobody reported within the time a late report is still answered.
    for (const [id, expiresAt] of this.localLeases) {
      if (expiresAt + sweptLeaseKeepMs <= now) this.localLeases.delete(id);
    }
    if (this.degraded) return expired;
    try {
      const reply = (await this.guard(
        this.client.keypoolExpire(this.base, now, sweptLeaseKeepMs),
      )) as string[];
      for (let i = 0; i + 1 < reply.length; i += 2) {
        const id = reply[i]!;
        this.ownLeases.delete(id);
        expired.push(decodeLease(id, reply[i + 1]!));
      }
      // Own leases another process swept (and nobody settled) would otherwise stay here forever.
      for (const [id, lease] of this.ownLeases) {
        if (lease.expiresAt + sweptLeaseKeepMs <= now) this.ownLeases.delete(id);
      }
    } catch (error) {
      this.fail(error);
    }
    return expired;
  }

  async getKeyStates(keyIds: readonly string[]): Promise<KeyState[]> {
    if (keyIds.length === 0) return [];
    if (!this.degraded) {
      try {
        const pipeline = this.client.pipeline();
        for (const id of keyIds) pipeline.hgetall(this.k(`k:${id}`));
        const results = (await this.guard(pipeline.exec())) ?? [];
        return keyIds.map((id, i) => {
          const [error, hash] = results[i] ?? [new Error('missing pipeline reply'), null];
          if (error) throw error;
          const state = decodeKeyState(id, hash as Record<string, string>);
          if (this.fallbackEnabled) this.lastStates.set(id, state);
          return state;
        });
      } catch (error) {
        this.fail(error);
      }
    }
    return this.local.getKeyStates(keyIds);
  }

  async updateKeyState(keyId: string, update: KeyStateUpdate): Promise<KeyState> {
    if (!this.degraded) {
      try {
        const reply = (await this.guard(
          (this.client.keypoolUpdateState as unknown as ArgsCommand)([
            this.base,
            keyId,
            String(update.now),
            update.resetFailures ? '1' : '0',
            update.incrementFailures ? '1' : '0',
            ...encodeStateUpdate(update),
          ]),
        )) as string[];
        const state = decodeKeyState(keyId, reply);
        if (this.fallbackEnabled) this.lastStates.set(keyId, state);
        return state;
      } catch (error) {
        this.fail(error);
      }
    }
    return this.local.updateKeyState(keyId, update);
  }

  async resetKeyState(keyId: string, options: { counters?: boolean; now: number }): Promise<void> {
    this.lastStates.delete(keyId);
    if (!this.degraded) {
      try {
        await this.guard(
          this.client.keypoolResetState(this.base, keyId, options.counters ? '1' : '0', options.now),
        );
        return;
      } catch (error) {
        this.fail(error);
      }
    }
    await this.local.resetKeyState(keyId, options);
  }

  async usageSnapshot(keyIds: readonly string[], query: UsageSnapshotQuery): Promise<KeyUsageSnapshot[]> {
    if (keyIds.length === 0) return [];
    if (!this.degraded) {
      try {
        const reply = (await this.guard(
          (this.client.keypoolSnapshot as unknown as ArgsCommand)([
            this.base,
            query.now - query.windowMs,
            query.day,
            query.month,
            ...keyIds,
          ]),
        )) as string[];
        return keyIds.map((keyId, i) => ({
          keyId,
          requestsInWindow: Number(reply[i * 6]),
          tokensInWindow: Number(reply[i * 6 + 1]),
          requestsToday: Number(reply[i * 6 + 2]),
          tokensToday: Number(reply[i * 6 + 3]),
          costThisMonthUsd: Number(reply[i * 6 + 4]),
          inFlight: Number(reply[i * 6 + 5]),
        }));
      } catch (error) {
        this.fail(error);
      }
    }
    return this.local.usageSnapshot(keyIds, query);
  }

  /**
   * False while degraded: the per-process fallback cannot see other processes' claims, and
   * "one probe per key fleet-wide" matters more than probing during an outage.
   */
  async claimProbe(keyId: string, options: { now: number; ttlMs: number }): Promise<boolean> {
    if (this.degraded) return false;
    try {
      const claimed = await this.guard(
        this.client.keypoolClaimProbe(
          this.base,
          keyId,
          options.now,
          options.now + options.ttlMs,
          options.ttlMs + probeClaimKeepMs,
        ),
      );
      return claimed === 1;
    } catch (error) {
      this.fail(error);
      return false;
    }
  }

  // -------------------------------------------------------------------------
  // events and lifecycle
  // -------------------------------------------------------------------------

  subscribe(listener: (event: StoreEvent) => void): Disposable {
    this.listeners.add(listener);
    if (!this.subscriber && !this.closed) {
      // A connection in subscriber mode can run nothing else, hence a second one, opened only now.
      // Cluster.duplicate() takes other arguments, but none are needed here.
      const subscriber: Redis | Cluster = (this.client as Redis).duplicate();
      subscriber.on('error', () => {});
      subscriber.on('message', (channel: string) => {
        if (channel === this.channel) this.emit({ type: 'keys-changed' });
      });
      subscriber.subscribe(this.channel).catch(() => {
        // ioredis subscribes again on reconnect; a failed first try is retried then.
      });
      this.subscriber = subscriber;
    }
    return { dispose: () => this.listeners.delete(listener) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.recoverTimer);
    this.listeners.clear();
    this.subscriber?.disconnect();
    if (!this.degraded) {
      try {
        await this.guard(this.client.zrem(this.k('hb'), this.instanceId));
      } catch {
        // Our heartbeat ages out on its own.
      }
    }
    if (this.ownsClient) {
      try {
        await this.guard(this.client.quit());
      } catch {
        this.client.disconnect();
      }
    }
  }
}
