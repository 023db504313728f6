/**
 * `testStore`: the conformance suite every `Store` adapter passes. It encodes
 * "Store semantics" of @keypool/spec's README; where that README is silent the
 * choice is written down in this package's README ("testStore").
 *
 * Every time is a fixed epoch number passed in as `now`, so the suite never
 * depends on the clock or on timing.
 */
import type {
  AuditEntry,
  KeyLimits,
  KeyRecord,
  KeyState,
  LeaseRecord,
  PoolRecord,
  ReserveCandidate,
  ReserveRequest,
  ReserveResult,
  SharedLimits,
  Store,
  TokenRecord,
  UsageRecord,
  UsageRow,
} from '@keypool/spec';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

export interface StoreFactory {
  /** A fresh, empty store in its own namespace (prefix/schema). */
  create(): Promise<Store>;
  /** Another handle (another connection) on the same namespace as `store`, for fleet tests; omit for single-process stores. */
  peer?(store: Store): Promise<Store>;
}

const DAY_MS = 86_400_000;
/** 2026-01-15T12:00:00Z. */
const T0 = Date.UTC(2026, 0, 15, 12);
const DAY = '2026-01-15';
const NEXT_DAY = '2026-01-16';
const MONTH = '2026-01';
const NEXT_MONTH = '2026-02';
const DAY_ENDS = Date.UTC(2026, 0, 16);
const MONTH_ENDS = Date.UTC(2026, 1, 1);
const WINDOW_MS = 60_000;
const TTL_MS = 30_000;

let leaseCounter = 0;
function nextLeaseId(): string {
  leaseCounter += 1;
  return `lease-${leaseCounter.toString().padStart(6, '0')}`;
}

function keyRecord(id: string, overrides: Partial<KeyRecord> = {}): KeyRecord {
  return {
    id,
    alias: `alias-${id}`,
    provider: 'openai',
    sealedSecret: `v1.sealed.${id}`,
    masterKeyId: 'mk1',
    fingerprint: `fp-${id}`,
    maskedSecret: 'sk-…abcd',
    priority: 0,
    weight: 1,
    limits: {},
    enabled: true,
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  };
}

function candidate(keyId: string, limits: KeyLimits = {}): ReserveCandidate {
  return { keyId, limits };
}

function request(candidates: ReserveCandidate[], overrides: Partial<ReserveRequest> = {}): ReserveRequest {
  return {
    leaseId: nextLeaseId(),
    candidates,
    estimatedTokens: 100,
    estimatedCostUsd: 0.5,
    now: T0,
    windowMs: WINDOW_MS,
    day: DAY,
    month: MONTH,
    dayEndsAt: DAY_ENDS,
    monthEndsAt: MONTH_ENDS,
    leaseTtlMs: TTL_MS,
    ...overrides,
  };
}

function expectLease(result: ReserveResult): LeaseRecord {
  if (!result.ok) {
    throw new Error(`expected a lease, got ${JSON.stringify(result)}`);
  }
  return result.lease;
}

function expectRefusal(result: ReserveResult): Extract<ReserveResult, { ok: false }> {
  if (result.ok) {
    throw new Error(`expected a refusal, got lease ${JSON.stringify(result.lease)}`);
  }
  return result;
}

function defaultState(keyId: string, updatedAt = 0): KeyState {
  return { keyId, breaker: 'closed', consecutiveFailures: 0, updatedAt };
}

function usage(
  id: string,
  fields: Pick<UsageRecord, 'time' | 'day' | 'month' | 'keyId' | 'provider'> & Partial<UsageRecord>,
): UsageRecord {
  return {
    id,
    keyAlias: `alias-${fields.keyId}`,
    inputTokens: 0,
    outputTokens: 0,
    costUsd: 0,
    status: 'ok',
    ...fields,
  };
}

/**
 * Compares usage rows exactly, except `costUsd`, which is a float sum and is
 * compared to 9 decimals.
 */
function expectRows(actual: UsageRow[], expected: UsageRow[]): void {
  const strip = (rows: UsageRow[]) => rows.map(({ costUsd: _cost, ...rest }) => rest);
  expect(strip(actual)).toStrictEqual(strip(expected));
  actual.forEach((row, index) => {
    expect(typeof row.costUsd).toBe('number');
    expect(row.costUsd).toBeCloseTo(expected[index]!.costUsd, 9);
  });
}

function sortById<T extends { id: string }>(items: T[]): T[] {
  return [...items].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * Registers the conformance suite for one store adapter (vitest describe/it
 * blocks). Call it at the top level of a test file.
 */
export function testStore(name: string, factory: StoreFactory): void {
  describe(`testStore: ${name}`, () => {
    let store: Store;
    const opened: Store[] = [];

    async function open(): Promise<Store> {
      const created = await factory.create();
      opened.push(created);
      await created.init?.();
      return created;
    }

    async function peerOf(of: Store): Promise<Store> {
      if (!factory.peer) throw new Error('factory.peer is not defined');
      const peer = await factory.peer(of);
      opened.push(peer);
      await peer.init?.();
      return peer;
    }

    beforeEach(async () => {
      store = await open();
    });

    afterEach(async () => {
      // Close newest first so peers go before the handle that owns the namespace.
      for (const handle of opened.splice(0).reverse()) {
        await handle.close();
      }
    });

    describe('identity', () => {
      it('has a name and boolean capabilities', () => {
        expect(typeof store.name).toBe('string');
        expect(store.name.length).toBeGreaterThan(0);
        expect(typeof store.capabilities.fleet).toBe('boolean');
        expect(typeof store.capabilities.durable).toBe('boolean');
      });

      it('init is idempotent and a fresh store is empty', async () => {
        await store.init?.();
        expect(await store.listKeys()).toStrictEqual([]);
        expect(await store.listPools()).toStrictEqual([]);
        expect(await store.listTokens()).toStrictEqual([]);
        expect(await store.listAudit()).toStrictEqual([]);
        expect(await store.keysVersion()).toBe(0);
      });
    });

    describe('keys', () => {
      const full = keyRecord('key-full', {
        alias: 'primary',
        priority: 2,
        weight: 3.5,
        limits: {
          rpm: 500,
          tpm: 90_000,
          requestsPerDay: 10_000,
          tokensPerDay: 2_000_000,
          monthlyBudgetUsd: 99.5,
        },
        models: ['gpt-4o-mini', 'gpt-4o'],
        organization: 'org-1',
        orgLimits: { rpm: 5_000, monthlyBudgetUsd: 1_200 },
        project: 'proj-1',
        account: 'acct-1',
        baseURL: 'https://proxy.example.com/v1',
        metadata: { team: 'search', region: 'eu' },
        enabled: false,
        disabledReason: 'rotating',
        updatedAt: T0 + 5,
      });
      const minimal = keyRecord('key-min');

      it('round-trips records exactly; absent optional fields stay absent', async () => {
        await store.putKey(full);
        await store.putKey(minimal);
        expect(await store.getKey('key-full')).toStrictEqual(full);
        expect(await store.getKey('key-min')).toStrictEqual(minimal);
        expect(await store.getKey('nope')).toBeUndefined();
        expect(await store.getKeyByFingerprint('fp-key-full')).toStrictEqual(full);
        expect(await store.getKeyByFingerprint('fp-nope')).toBeUndefined();
      });

      it('lists by createdAt, then id', async () => {
        await store.putKey(keyRecord('c', { createdAt: T0 + 1 }));
        await store.putKey(keyRecord('b', { createdAt: T0 + 2 }));
        await store.putKey(keyRecord('z', { createdAt: T0 }));
        await store.putKey(keyRecord('a', { createdAt: T0 + 1 }));
        expect((await store.listKeys()).map((k) => k.id)).toStrictEqual(['z', 'a', 'c', 'b']);
      });

      it('replaces by id; a changed fingerprint frees the old one', async () => {
        await store.putKey(minimal);
        const replaced = keyRecord('key-min', {
          fingerprint: 'fp-new',
          limits: { rpm: 5 },
          updatedAt: T0 + 9,
        });
        await store.putKey(replaced);
        expect(await store.listKeys()).toStrictEqual([replaced]);
        expect(await store.getKeyByFingerprint('fp-key-min')).toBeUndefined();
        expect(await store.getKeyByFingerprint('fp-new')).toStrictEqual(replaced);
        // The freed fingerprint may be taken by another key.
        await store.putKey(keyRecord('other', { fingerprint: 'fp-key-min' }));
        expect((await store.getKeyByFingerprint('fp-key-min'))?.id).toBe('other');
      });

      it('refuses another id with an existing fingerprint (KEYPOOL_DUPLICATE_KEY) and keeps the original', async () => {
        await store.putKey(minimal);
        await expect(store.putKey(keyRecord('twin', { fingerprint: 'fp-key-min' }))).rejects.toMatchObject({
          code: 'KEYPOOL_DUPLICATE_KEY',
        });
        await expect(store.putKey(keyRecord('twin', { fingerprint: 'fp-key-min' }))).rejects.toBeInstanceOf(
          Error,
        );
        expect(await store.getKey('twin')).toBeUndefined();
        expect(await store.listKeys()).toStrictEqual([minimal]);
        // Re-putting the same id with the same fingerprint is a replace, not a duplicate.
        await store.putKey({ ...minimal, alias: 'renamed' });
        expect((await store.getKey('key-min'))?.alias).toBe('renamed');
      });

      it('returns copies: mutating inputs or results does not change stored records', async () => {
        const input = structuredClone(full);
        await store.putKey(input);
        input.limits.rpm = 1;
        input.models?.push('mutated');
        const read = (await store.getKey('key-full'))!;
        read.limits.rpm = 2;
        read.metadata!['team'] = 'mutated';
        const listed = (await store.listKeys())[0]!;
        listed.alias = 'mutated';
        expect(await store.getKey('key-full')).toStrictEqual(full);
      });

      it('deleteKey returns whether the key existed', async () => {
        await store.putKey(minimal);
        expect(await store.deleteKey('key-min')).toBe(true);
        expect(await store.deleteKey('key-min')).toBe(false);
        expect(await store.getKey('key-min')).toBeUndefined();
        expect(await store.getKeyByFingerprint('fp-key-min')).toBeUndefined();
        expect(await store.listKeys()).toStrictEqual([]);
        // The fingerprint is free again.
        await store.putKey(keyRecord('again', { fingerprint: 'fp-key-min' }));
      });

      it('keysVersion starts at 0 and increases on every putKey and deleteKey', async () => {
        const v0 = await store.keysVersion();
        expect(v0).toBe(0);
        await store.putKey(minimal);
        const v1 = await store.keysVersion();
        expect(v1).toBeGreaterThan(v0);
        await store.putKey({ ...minimal, alias: 'changed' });
        const v2 = await store.keysVersion();
        expect(v2).toBeGreaterThan(v1);
        await store.deleteKey('key-min');
        const v3 = await store.keysVersion();
        expect(v3).toBeGreaterThan(v2);
        expect(typeof v3).toBe('number');
      });

      it('deleteKey drops the key hot state (state, window entries, counters)', async () => {
        await store.putKey(keyRecord('k'));
        const lease = expectLease(await store.reserve(request([candidate('k', { rpm: 1 })])));
        await store.settle(lease.id, { tokens: 40, costUsd: 0.25, now: T0 + 10 });
        await store.updateKeyState('k', {
          set: { coolingUntil: T0 + 999_999 },
          incrementFailures: true,
          now: T0,
        });
        await store.deleteKey('k');
        expect(await store.getKeyStates(['k'])).toStrictEqual([defaultState('k')]);
        const [snapshot] = await store.usageSnapshot(['k'], {
          now: T0 + 20,
          windowMs: WINDOW_MS,
          day: DAY,
          month: MONTH,
        });
        expect(snapshot).toMatchObject({
          keyId: 'k',
          requestsInWindow: 0,
          tokensInWindow: 0,
          requestsToday: 0,
          tokensToday: 0,
          costThisMonthUsd: 0,
        });
        // A key re-added under the same id starts fresh: its rpm 1 has room again.
        await store.putKey(keyRecord('k'));
        expectLease(await store.reserve(request([candidate('k', { rpm: 1 })], { now: T0 + 30 })));
      });
    });

    describe('pools and tokens', () => {
      it('round-trips pools, lists them by createdAt then id, replaces and deletes', async () => {
        const full: PoolRecord = {
          id: 'p-full',
          name: 'Search',
          description: 'keys for search',
          strategy: 'least-used',
          keyIds: ['k2', 'k1'],
          createdAt: T0 + 1,
          updatedAt: T0 + 2,
        };
        const minimal: PoolRecord = {
          id: 'p-min',
          name: 'Min',
          keyIds: [],
          createdAt: T0 + 1,
          updatedAt: T0 + 1,
        };
        const first: PoolRecord = { id: 'p-z', name: 'First', keyIds: ['k1'], createdAt: T0, updatedAt: T0 };
        await store.putPool(minimal);
        await store.putPool(full);
        await store.putPool(first);
        expect(await store.getPool('p-full')).toStrictEqual(full);
        expect(await store.getPool('p-min')).toStrictEqual(minimal);
        expect(await store.getPool('nope')).toBeUndefined();
        expect(await store.listPools()).toStrictEqual([first, full, minimal]);

        const replaced: PoolRecord = { ...full, keyIds: ['k3'], updatedAt: T0 + 3 };
        delete replaced.description;
        await store.putPool(replaced);
        expect(await store.getPool('p-full')).toStrictEqual(replaced);
        expect(await store.listPools()).toHaveLength(3);

        const read = (await store.getPool('p-full'))!;
        read.keyIds.push('mutated');
        expect(await store.getPool('p-full')).toStrictEqual(replaced);

        expect(await store.deletePool('p-full')).toBe(true);
        expect(await store.deletePool('p-full')).toBe(false);
        expect(await store.listPools()).toStrictEqual([first, minimal]);
      });

      it('round-trips tokens, finds them by hash, replaces and deletes', async () => {
        const service: TokenRecord = {
          id: 't-svc',
          name: 'worker',
          role: 'service',
          pools: ['p1', 'p2'],
          tokenHash: 'hash-svc',
          createdAt: T0 + 1,
          lastUsedAt: T0 + 50,
        };
        const admin: TokenRecord = {
          id: 't-admin',
          name: 'root',
          role: 'admin',
          tokenHash: 'hash-admin',
          createdAt: T0 + 1,
        };
        const viewer: TokenRecord = {
          id: 't-viewer',
          name: 'ops',
          role: 'viewer',
          tokenHash: 'hash-viewer',
          createdAt: T0,
        };
        await store.putToken(service);
        await store.putToken(admin);
        await store.putToken(viewer);
        expect(await store.getTokenByHash('hash-svc')).toStrictEqual(service);
        expect(await store.getTokenByHash('hash-admin')).toStrictEqual(admin);
        expect(await store.getTokenByHash('hash-nope')).toBeUndefined();
        expect(await store.listTokens()).toStrictEqual([viewer, admin, service]);

        const revoked: TokenRecord = { ...admin, tokenHash: 'hash-admin-2', revokedAt: T0 + 100 };
        await store.putToken(revoked);
        expect(await store.getTokenByHash('hash-admin')).toBeUndefined();
        expect(await store.getTokenByHash('hash-admin-2')).toStrictEqual(revoked);
        expect(await store.listTokens()).toHaveLength(3);

        const read = (await store.getTokenByHash('hash-svc'))!;
        read.pools?.push('mutated');
        expect(await store.getTokenByHash('hash-svc')).toStrictEqual(service);

        expect(await store.deleteToken('t-svc')).toBe(true);
        expect(await store.deleteToken('t-svc')).toBe(false);
        expect(await store.getTokenByHash('hash-svc')).toBeUndefined();
        expect(await store.listTokens()).toStrictEqual([viewer, revoked]);
      });

      it('touchToken moves lastUsedAt forward only, keeps the rest, and never brings a deleted token back', async () => {
        const token: TokenRecord = {
          id: 't-touch',
          name: 'cron',
          role: 'service',
          pools: ['p1'],
          tokenHash: 'hash-touch',
          createdAt: T0,
        };
        await store.putToken(token);
        await store.touchToken('t-touch', T0 + 60_000);
        expect(await store.getTokenByHash('hash-touch')).toStrictEqual({ ...token, lastUsedAt: T0 + 60_000 });
        // A slower process touching with an older time does not move it back.
        await store.touchToken('t-touch', T0 + 1_000);
        expect((await store.listTokens()).find((t) => t.id === 't-touch')).toStrictEqual({
          ...token,
          lastUsedAt: T0 + 60_000,
        });

        expect(await store.deleteToken('t-touch')).toBe(true);
        await store.touchToken('t-touch', T0 + 120_000);
        expect(await store.getTokenByHash('hash-touch')).toBeUndefined();
        expect((await store.listTokens()).map((t) => t.id)).not.toContain('t-touch');
        // A token created again under the same id starts without the old one's last use.
        await store.putToken(token);
        expect(await store.getTokenByHash('hash-touch')).toStrictEqual(token);
      });
    });

    describe('usage log', () => {
      const t1 = Date.UTC(2026, 1, 3, 9);
      const records: UsageRecord[] = [
        usage('u1', {
          time: T0,
          day: DAY,
          month: MONTH,
          keyId: 'k1',
          provider: 'openai',
          model: 'gpt-a',
          pool: 'p1',
          caller: 'svc',
          inputTokens: 10,
          outputTokens: 5,
          costUsd: 0.1,
          latencyMs: 120,
          leaseId: 'l1',
        }),
        usage('u2', {
          time: T0 + 1000,
          day: DAY,
          month: MONTH,
          keyId: 'k1',
          provider: 'openai',
          model: 'gpt-b',
          inputTokens: 20,
          outputTokens: 10,
          costUsd: 0.2,
          status: 'error',
          httpStatus: 500,
          failure: 'server',
          errorCode: 'server_error',
        }),
        usage('u3', {
          time: T0 + 2000,
          day: DAY,
          month: MONTH,
          keyId: 'k2',
          provider: 'anthropic',
          model: 'claude',
          pool: 'p1',
          inputTokens: 30,
          outputTokens: 15,
          costUsd: 0.3,
        }),
        usage('u4', {
          time: T0 + 3000,
          day: DAY,
          month: MONTH,
          keyId: 'k2',
          provider: 'anthropic',
          pool: 'p2',
          inputTokens: 40,
          outputTokens: 20,
          costUsd: 0.4,
          status: 'error',
          httpStatus: 429,
          failure: 'rate-limit',
        }),
        usage('u5', {
          time: T0 + DAY_MS,
          day: NEXT_DAY,
          month: MONTH,
          keyId: 'k1',
          provider: 'openai',
          model: 'gpt-a',
          pool: 'p1',
          inputTokens: 50,
          outputTokens: 25,
          costUsd: 0.5,
        }),
        usage('u6', {
          time: t1,
          day: '2026-02-03',
          month: NEXT_MONTH,
          keyId: 'k1',
          provider: 'openai',
          model: 'gpt-a',
          inputTokens: 60,
          outputTokens: 30,
          costUsd: 0.6,
        }),
      ];
      const row = (
        requests: number,
        errors: number,
        inputTokens: number,
        outputTokens: number,
        costUsd: number,
      ) => ({
        requests,
        errors,
        inputTokens,
        outputTokens,
        costUsd,
      });

      beforeEach(async () => {
        await store.appendUsage(records.slice(0, 3));
        await store.appendUsage([]);
        await store.appendUsage(records.slice(3));
      });

      it('totals everything in one row without groupBy (or with an empty one)', async () => {
        expectRows(await store.queryUsage({}), [row(6, 2, 210, 105, 2.1)]);
        expectRows(await store.queryUsage({ groupBy: [] }), [row(6, 2, 210, 105, 2.1)]);
      });

      it('returns one row of zeros when nothing matches, and no rows when grouped', async () => {
        expectRows(await store.queryUsage({ keyId: 'nope' }), [row(0, 0, 0, 0, 0)]);
        expectRows(await store.queryUsage({ from: t1 + 1 }), [row(0, 0, 0, 0, 0)]);
        expect(await store.queryUsage({ keyId: 'nope', groupBy: ['key'] })).toStrictEqual([]);
      });

      it('filters on time with from inclusive and to exclusive', async () => {
        expectRows(await store.queryUsage({ from: T0 + 1000, to: T0 + 3000 }), [row(2, 1, 50, 25, 0.5)]);
        expectRows(await store.queryUsage({ from: T0 + 1000 }), [row(5, 2, 200, 100, 2.0)]);
        expectRows(await store.queryUsage({ to: T0 + 1000 }), [row(1, 0, 10, 5, 0.1)]);
        expectRows(await store.queryUsage({ from: t1, to: t1 + 1 }), [row(1, 0, 60, 30, 0.6)]);
      });

      it('filters on keyId, model, pool and provider, combined', async () => {
        expectRows(await store.queryUsage({ keyId: 'k2' }), [row(2, 1, 70, 35, 0.7)]);
        expectRows(await store.queryUsage({ model: 'gpt-a' }), [row(3, 0, 120, 60, 1.2)]);
        expectRows(await store.queryUsage({ pool: 'p1' }), [row(3, 0, 90, 45, 0.9)]);
        expectRows(await store.queryUsage({ provider: 'anthropic' }), [row(2, 1, 70, 35, 0.7)]);
        expectRows(await store.queryUsage({ keyId: 'k1', pool: 'p1', from: T0 + 1 }), [
          row(1, 0, 50, 25, 0.5),
        ]);
      });

      it('groups by key', async () => {
        expectRows(await store.queryUsage({ groupBy: ['key'] }), [
          { keyId: 'k1', ...row(4, 1, 140, 70, 1.4) },
          { keyId: 'k2', ...row(2, 1, 70, 35, 0.7) },
        ]);
      });

      it('groups by model, a missing model as null (first)', async () => {
        expectRows(await store.queryUsage({ groupBy: ['model'] }), [
          { model: null, ...row(1, 1, 40, 20, 0.4) },
          { model: 'claude', ...row(1, 0, 30, 15, 0.3) },
          { model: 'gpt-a', ...row(3, 0, 120, 60, 1.2) },
          { model: 'gpt-b', ...row(1, 1, 20, 10, 0.2) },
        ]);
      });

      it('groups by pool, a missing pool as null (first)', async () => {
        expectRows(await store.queryUsage({ groupBy: ['pool'] }), [
          { pool: null, ...row(2, 1, 80, 40, 0.8) },
          { pool: 'p1', ...row(3, 0, 90, 45, 0.9) },
          { pool: 'p2', ...row(1, 1, 40, 20, 0.4) },
        ]);
      });

      it('groups by provider, day and month', async () => {
        expectRows(await store.queryUsage({ groupBy: ['provider'] }), [
          { provider: 'anthropic', ...row(2, 1, 70, 35, 0.7) },
          { provider: 'openai', ...row(4, 1, 140, 70, 1.4) },
        ]);
        expectRows(await store.queryUsage({ groupBy: ['day'] }), [
          { day: DAY, ...row(4, 2, 100, 50, 1.0) },
          { day: NEXT_DAY, ...row(1, 0, 50, 25, 0.5) },
          { day: '2026-02-03', ...row(1, 0, 60, 30, 0.6) },
        ]);
        expectRows(await store.queryUsage({ groupBy: ['month'] }), [
          { month: MONTH, ...row(5, 2, 150, 75, 1.5) },
          { month: NEXT_MONTH, ...row(1, 0, 60, 30, 0.6) },
        ]);
      });

      it('groups by several fields, sorted by them in groupBy order', async () => {
        expectRows(await store.queryUsage({ groupBy: ['key', 'day'] }), [
          { keyId: 'k1', day: DAY, ...row(2, 1, 30, 15, 0.3) },
          { keyId: 'k1', day: NEXT_DAY, ...row(1, 0, 50, 25, 0.5) },
          { keyId: 'k1', day: '2026-02-03', ...row(1, 0, 60, 30, 0.6) },
          { keyId: 'k2', day: DAY, ...row(2, 1, 70, 35, 0.7) },
        ]);
        expectRows(await store.queryUsage({ groupBy: ['day', 'key'] }), [
          { day: DAY, keyId: 'k1', ...row(2, 1, 30, 15, 0.3) },
          { day: DAY, keyId: 'k2', ...row(2, 1, 70, 35, 0.7) },
          { day: NEXT_DAY, keyId: 'k1', ...row(1, 0, 50, 25, 0.5) },
          { day: '2026-02-03', keyId: 'k1', ...row(1, 0, 60, 30, 0.6) },
        ]);
        expectRows(await store.queryUsage({ groupBy: ['model', 'pool'] }), [
          { model: null, pool: 'p2', ...row(1, 1, 40, 20, 0.4) },
          { model: 'claude', pool: 'p1', ...row(1, 0, 30, 15, 0.3) },
          { model: 'gpt-a', pool: null, ...row(1, 0, 60, 30, 0.6) },
          { model: 'gpt-a', pool: 'p1', ...row(2, 0, 60, 30, 0.6) },
          { model: 'gpt-b', pool: null, ...row(1, 1, 20, 10, 0.2) },
        ]);
        expectRows(await store.queryUsage({ keyId: 'k1', groupBy: ['month', 'provider'] }), [
          { month: MONTH, provider: 'openai', ...row(3, 1, 80, 40, 0.8) },
          { month: NEXT_MONTH, provider: 'openai', ...row(1, 0, 60, 30, 0.6) },
        ]);
      });

      it('sums many float costs closely', async () => {
        const many = Array.from({ length: 50 }, (_, i) =>
          usage(`f${i}`, {
            time: T0 + 10 + i,
            day: DAY,
            month: MONTH,
            keyId: 'k9',
            provider: 'openai',
            costUsd: 0.000123 * (i + 1),
          }),
        );
        await store.appendUsage(many);
        const [total] = await store.queryUsage({ keyId: 'k9' });
        expect(total?.requests).toBe(50);
        expect(total?.costUsd).toBeCloseTo(0.000123 * ((50 * 51) / 2), 9);
      });
    });

    describe('audit log', () => {
      const entries: AuditEntry[] = [
        {
          id: 'a1',
          time: T0,
          actor: 'cli',
          action: 'key.create',
          target: 'k1',
          details: { alias: 'a', n: 1 },
        },
        { id: 'a2', time: T0 + 10, actor: 'system', action: 'key.disable', target: 'k1' },
        { id: 'a3', time: T0 + 10, actor: 't-admin', action: 'token.create', target: 't1' },
        {
          id: 'a4',
          time: T0 + 20,
          actor: 'cli',
          action: 'key.create',
          target: 'k2',
          details: { nested: { ok: true } },
        },
        { id: 'a5', time: T0 + 30, actor: 'system', action: 'store.migrate' },
      ];

      beforeEach(async () => {
        for (const entry of entries) await store.appendAudit(entry);
      });

      it('lists newest first (insertion order reversed on equal times), round-tripping entries', async () => {
        expect(await store.listAudit()).toStrictEqual([
          entries[4],
          entries[3],
          entries[2],
          entries[1],
          entries[0],
        ]);
        expect(await store.listAudit({})).toHaveLength(5);
      });

      it('filters on from (inclusive), to (exclusive), target and action, and limits', async () => {
        const ids = async (query: Parameters<Store['listAudit']>[0]) =>
          (await store.listAudit(query)).map((e) => e.id);
        expect(await ids({ from: T0 + 10, to: T0 + 30 })).toStrictEqual(['a4', 'a3', 'a2']);
        expect(await ids({ target: 'k1' })).toStrictEqual(['a2', 'a1']);
        expect(await ids({ action: 'key.create' })).toStrictEqual(['a4', 'a1']);
        expect(await ids({ action: 'key.create', from: T0 + 1 })).toStrictEqual(['a4']);
        expect(await ids({ limit: 2 })).toStrictEqual(['a5', 'a4']);
        expect(await ids({ target: 'nope' })).toStrictEqual([]);
      });

      it('returns at most 100 entries by default', async () => {
        for (let i = 0; i < 100; i++) {
          await store.appendAudit({ id: `b${i}`, time: T0 + 100 + i, actor: 'cli', action: 'bulk' });
        }
        const listed = await store.listAudit();
        expect(listed).toHaveLength(100);
        expect(listed[0]?.id).toBe('b99');
        expect(listed[99]?.id).toBe('b0');
      });
    });

    describe('meta', () => {
      it('gets, sets and overwrites small settings', async () => {
        expect(await store.getMeta('canary')).toBeUndefined();
        await store.setMeta('canary', 'v1.abc');
        await store.setMeta('schema', '3');
        expect(await store.getMeta('canary')).toBe('v1.abc');
        await store.setMeta('canary', 'v2.def');
        expect(await store.getMeta('canary')).toBe('v2.def');
        expect(await store.getMeta('schema')).toBe('3');
      });
    });

    describe('reserve', () => {
      it('reserves on the first eligible candidate and stores the lease', async () => {
        await store.updateKeyState('a', { set: { coolingUntil: T0 + 5000 }, now: T0 });
        const req = request([candidate('a'), candidate('b'), candidate('c')], {
          model: 'gpt-a',
          meta: { pool: 'p1', caller: 'svc' },
        });
        const lease = expectLease(await store.reserve(req));
        const expected: LeaseRecord = {
          id: req.leaseId,
          keyId: 'b',
          model: 'gpt-a',
          estimatedTokens: 100,
          estimatedCostUsd: 0.5,
          reservedAt: T0,
          expiresAt: T0 + TTL_MS,
          day: DAY,
          month: MONTH,
          isProbe: false,
          meta: { pool: 'p1', caller: 'svc' },
        };
        expect(lease).toStrictEqual(expected);
        expect(await store.getLease(req.leaseId)).toStrictEqual(expected);
        expect(await store.getLease('nope')).toBeUndefined();

        const other = expectLease(await store.reserve(request([candidate('c'), candidate('b')])));
        expect(other.keyId).toBe('c');
      });

      it('leaves model and meta absent on the lease when the request has none', async () => {
        const req = request([candidate('a')], { estimatedTokens: 0, estimatedCostUsd: 0 });
        const lease = expectLease(await store.reserve(req));
        expect(lease).toStrictEqual({
          id: req.leaseId,
          keyId: 'a',
          estimatedTokens: 0,
          estimatedCostUsd: 0,
          reservedAt: T0,
          expiresAt: T0 + TTL_MS,
          day: DAY,
          month: MONTH,
          isProbe: false,
        });
        expect(await store.getLease(req.leaseId)).toStrictEqual(lease);
      });

      it('returns copies of leases', async () => {
        const req = request([candidate('a')], { meta: { pool: 'p1' } });
        const lease = expectLease(await store.reserve(req));
        lease.meta!['pool'] = 'mutated';
        lease.expiresAt = 0;
        const read = (await store.getLease(req.leaseId))!;
        expect(read.meta).toStrictEqual({ pool: 'p1' });
        expect(read.expiresAt).toBe(T0 + TTL_MS);
      });

      it('refuses with every candidate reason and the smallest retry', async () => {
        await store.updateKeyState('a', { set: { coolingUntil: T0 + 5000 }, now: T0 });
        await store.updateKeyState('b', { set: { exhaustedUntil: T0 + 2000 }, now: T0 });
        await store.updateKeyState('c', { set: { invalidSince: T0 - 1 }, now: T0 });
        const refused = expectRefusal(
          await store.reserve(request([candidate('a'), candidate('b'), candidate('c')])),
        );
        expect(refused).toStrictEqual({
          ok: false,
          retryAfterMs: 2000,
          reasons: { a: 'cooling', b: 'exhausted', c: 'invalid' },
        });
      });

      it('refuses with retryAfterMs null when no candidate recovers on its own (or there is none)', async () => {
        await store.updateKeyState('a', { set: { invalidSince: T0 - 1 }, now: T0 });
        expect(
          await store.reserve(
            request([candidate('a'), candidate('b', { tpm: 50 })], { estimatedTokens: 51 }),
          ),
        ).toStrictEqual({ ok: false, retryAfterMs: null, reasons: { a: 'invalid', b: 'tpm' } });
        expect(await store.reserve(request([]))).toStrictEqual({
          ok: false,
          retryAfterMs: null,
          reasons: {},
        });
      });

      it('a refusal changes nothing: no lease, no window entry, no counters', async () => {
        await store.updateKeyState('a', { set: { coolingUntil: T0 + 5000 }, now: T0 });
        const req = request([candidate('a'), candidate('b', { rpm: 0 })]);
        expectRefusal(await store.reserve(req));
        expect(await store.getLease(req.leaseId)).toBeUndefined();
        const snapshots = await store.usageSnapshot(['a', 'b'], {
          now: T0,
          windowMs: WINDOW_MS,
          day: DAY,
          month: MONTH,
        });
        for (const snapshot of snapshots) {
          expect(snapshot).toStrictEqual({
            keyId: snapshot.keyId,
            requestsInWindow: 0,
            tokensInWindow: 0,
            requestsToday: 0,
            tokensToday: 0,
            costThisMonthUsd: 0,
            inFlight: 0,
          });
        }
      });

      it('checks reasons in the documented precedence, each with its retry', async () => {
        // One earlier reservation fills the counters: 1 request, 100 tokens, $1, at T0 - 1000.
        const first = expectLease(
          await store.reserve(
            request([candidate('k')], { now: T0 - 1000, estimatedTokens: 100, estimatedCostUsd: 1 }),
          ),
        );
        await store.updateKeyState('k', {
          set: {
            invalidSince: T0 - 500,
            exhaustedUntil: T0 + 1000,
            coolingUntil: T0 + 2000,
            blockedModels: { 'gpt-a': T0 + 3000 },
            breaker: 'open',
            breakerOpenUntil: T0 + 4000,
          },
          now: T0 - 500,
        });
        const limits: KeyLimits = {
          rpm: 1,
          tpm: 150,
          requestsPerDay: 1,
          tokensPerDay: 150,
          monthlyBudgetUsd: 1.5,
        };
        const attempt = async (current: KeyLimits) =>
          store.reserve(
            request([candidate('k', current)], { model: 'gpt-a', estimatedTokens: 100, estimatedCostUsd: 1 }),
          );
        const expectReason = async (current: KeyLimits, reason: string, retryAfterMs: number | null) => {
          expect(await attempt(current)).toStrictEqual({ ok: false, retryAfterMs, reasons: { k: reason } });
        };

        await expectReason(limits, 'invalid', null);
        await store.updateKeyState('k', { clear: ['invalidSince'], now: T0 });
        await expectReason(limits, 'exhausted', 1000);
        await store.updateKeyState('k', { clear: ['exhaustedUntil'], now: T0 });
        await expectReason(limits, 'cooling', 2000);
        await store.updateKeyState('k', { clear: ['coolingUntil'], now: T0 });
        await expectReason(limits, 'model-blocked', 3000);
        await store.updateKeyState('k', { clear: ['blockedModels'], now: T0 });
        await expectReason(limits, 'breaker-open', 4000);
        // The earlier lease is (pretend) the probe in flight: retry when it expires (T0 - 1000 + TTL).
        await store.updateKeyState('k', {
          set: { breaker: 'half-open', probeLeaseId: first.id },
          clear: ['breakerOpenUntil'],
          now: T0,
        });
        await expectReason(limits, 'probe-in-flight', TTL_MS - 1000);
        await store.updateKeyState('k', { set: { breaker: 'closed' }, clear: ['probeLeaseId'], now: T0 });
        // Window limits: the first request was answered at T0 - 1000, so it leaves at T0 - 1000 + WINDOW_MS.
        await store.settle(first.id, { tokens: 100, costUsd: 1, now: T0, respondedAt: T0 - 1000 });
        await expectReason(limits, 'rpm', WINDOW_MS - 1000);
        await expectReason({ ...limits, rpm: undefined }, 'tpm', WINDOW_MS - 1000);
        const calendar = { tpm: 1000, rpm: 10 };
        await expectReason({ ...limits, ...calendar }, 'requests-per-day', DAY_ENDS - T0);
        await expectReason({ ...limits, ...calendar, requestsPerDay: 2 }, 'tokens-per-day', DAY_ENDS - T0);
        await expectReason(
          { ...limits, ...calendar, requestsPerDay: 2, tokensPerDay: 200 },
          'monthly-budget',
          MONTH_ENDS - T0,
        );
        const lease = expectLease(
          await attempt({
            ...limits,
            ...calendar,
            requestsPerDay: 2,
            tokensPerDay: 200,
            monthlyBudgetUsd: 2,
          }),
        );
        expect(lease.isProbe).toBe(false);
      });

      it('treats limits exactly at the boundary as headroom', async () => {
        const limits: KeyLimits = {
          rpm: 2,
          tpm: 200,
          requestsPerDay: 2,
          tokensPerDay: 200,
          monthlyBudgetUsd: 1,
        };
        expectLease(await store.reserve(request([candidate('k', limits)])));
        expectLease(await store.reserve(request([candidate('k', limits)])));
        expect(await store.reserve(request([candidate('k', { ...limits, rpm: 3 })]))).toMatchObject({
          ok: false,
          reasons: { k: 'tpm' },
        });
      });

      it('ignores cooling/exhaustion/model blocks that ended at or before now', async () => {
        await store.updateKeyState('k', {
          set: { coolingUntil: T0, exhaustedUntil: T0 - 1, blockedModels: { 'gpt-a': T0 } },
          now: T0 - 10,
        });
        expectLease(await store.reserve(request([candidate('k')], { model: 'gpt-a' })));
      });

      it('blocks a model only for that model, and not a request without model', async () => {
        await store.updateKeyState('k', { set: { blockedModels: { 'gpt-a': T0 + 1000 } }, now: T0 });
        expect(await store.reserve(request([candidate('k')], { model: 'gpt-a' }))).toStrictEqual({
          ok: false,
          retryAfterMs: 1000,
          reasons: { k: 'model-blocked' },
        });
        expectLease(await store.reserve(request([candidate('k')], { model: 'gpt-b' })));
        expectLease(await store.reserve(request([candidate('k')])));
      });

      it('slides the rpm window: an entry in flight always counts, a settled one leaves windowMs after its stamp', async () => {
        const limits = { rpm: 2 };
        const first = expectLease(await store.reserve(request([candidate('k', limits)], { now: T0 })));
        expectLease(await store.reserve(request([candidate('k', limits)], { now: T0 + 10_000 })));
        // Both in flight: nothing can leave sooner than a window from now.
        expect(await store.reserve(request([candidate('k', limits)], { now: T0 + 20_000 }))).toStrictEqual({
          ok: false,
          retryAfterMs: WINDOW_MS,
          reasons: { k: 'rpm' },
        });
        // The upstream answered the first at T0 + 5_000; it was reported at T0 + 15_000.
        await store.settle(first.id, {
          tokens: 100,
          costUsd: 0.5,
          now: T0 + 15_000,
          respondedAt: T0 + 5_000,
        });
        expect(await store.reserve(request([candidate('k', limits)], { now: T0 + 20_000 }))).toStrictEqual({
          ok: false,
          retryAfterMs: 45_000,
          reasons: { k: 'rpm' },
        });
        expect(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 5_000 + WINDOW_MS - 1 })),
        ).toStrictEqual({ ok: false, retryAfterMs: 1, reasons: { k: 'rpm' } });
        expectLease(await store.reserve(request([candidate('k', limits)], { now: T0 + 5_000 + WINDOW_MS })));
        // Two in flight again.
        expect(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 5_000 + WINDOW_MS + 1 })),
        ).toStrictEqual({ ok: false, retryAfterMs: WINDOW_MS, reasons: { k: 'rpm' } });
      });

      it('stamps a settled entry at respondedAt, clamped to [reservedAt, now], else at now', async () => {
        const limits = { rpm: 1 };
        const stampOf = async (respondedAt: number | undefined) => {
          const key = `k${respondedAt ?? 'none'}`;
          const lease = expectLease(
            await store.reserve(request([candidate(key, limits)], { now: T0 + 100 })),
          );
          await store.settle(lease.id, {
            tokens: 1,
            costUsd: 0,
            now: T0 + 200,
            ...(respondedAt !== undefined && { respondedAt }),
          });
          const refused = expectRefusal(
            await store.reserve(request([candidate(key, limits)], { now: T0 + 300 })),
          );
          return T0 + 300 + (refused.retryAfterMs ?? Number.NaN) - WINDOW_MS;
        };
        expect(await stampOf(T0 + 150)).toBe(T0 + 150);
        expect(await stampOf(T0)).toBe(T0 + 100);
        expect(await stampOf(T0 + 999)).toBe(T0 + 200);
        expect(await stampOf(undefined)).toBe(T0 + 200);
      });

      it('uses the windowMs of each request', async () => {
        const lease = expectLease(
          await store.reserve(request([candidate('k', { rpm: 1 })], { now: T0, windowMs: 1000 })),
        );
        await store.settle(lease.id, { tokens: 0, costUsd: 0, now: T0 });
        expect(
          await store.reserve(request([candidate('k', { rpm: 1 })], { now: T0 + 999, windowMs: 1000 })),
        ).toMatchObject({ ok: false, retryAfterMs: 1, reasons: { k: 'rpm' } });
        expectLease(
          await store.reserve(request([candidate('k', { rpm: 1 })], { now: T0 + 1000, windowMs: 1000 })),
        );
      });

      it('counts estimated tokens against tpm until they leave the window', async () => {
        const limits = { tpm: 1000 };
        const first = expectLease(
          await store.reserve(request([candidate('k', limits)], { now: T0, estimatedTokens: 600 })),
        );
        expect(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 1000, estimatedTokens: 500 })),
        ).toStrictEqual({ ok: false, retryAfterMs: WINDOW_MS, reasons: { k: 'tpm' } });
        const second = expectLease(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 1000, estimatedTokens: 400 })),
        );
        expect(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 2000, estimatedTokens: 1 })),
        ).toMatchObject({ ok: false, reasons: { k: 'tpm' } });
        await store.settle(first.id, { tokens: 600, costUsd: 0.5, now: T0 + 2000, respondedAt: T0 });
        await store.settle(second.id, { tokens: 400, costUsd: 0.5, now: T0 + 2000, respondedAt: T0 + 1000 });
        expect(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 2000, estimatedTokens: 1 })),
        ).toStrictEqual({ ok: false, retryAfterMs: WINDOW_MS - 2000, reasons: { k: 'tpm' } });
        // The first (stamped T0) has left; the second (400, stamped T0 + 1000) still counts.
        expectLease(
          await store.reserve(
            request([candidate('k', limits)], { now: T0 + WINDOW_MS, estimatedTokens: 600 }),
          ),
        );
      });

      it('never recovers tpm for an estimate above tpm', async () => {
        expect(
          await store.reserve(request([candidate('k', { tpm: 999 })], { estimatedTokens: 1000 })),
        ).toStrictEqual({
          ok: false,
          retryAfterMs: null,
          reasons: { k: 'tpm' },
        });
        expectLease(await store.reserve(request([candidate('k', { tpm: 1000 })], { estimatedTokens: 1000 })));
      });

      it('keeps day counters per day id: a new day starts from zero', async () => {
        const limits = { requestsPerDay: 2 };
        expectLease(await store.reserve(request([candidate('k', limits)], { now: T0 })));
        expectLease(await store.reserve(request([candidate('k', limits)], { now: T0 + 5 * WINDOW_MS })));
        expect(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 10 * WINDOW_MS })),
        ).toStrictEqual({
          ok: false,
          retryAfterMs: DAY_ENDS - (T0 + 10 * WINDOW_MS),
          reasons: { k: 'requests-per-day' },
        });
        const tomorrow = { now: DAY_ENDS, day: NEXT_DAY, dayEndsAt: DAY_ENDS + DAY_MS };
        expectLease(await store.reserve(request([candidate('k', limits)], tomorrow)));
        const query = { now: DAY_ENDS, windowMs: WINDOW_MS, month: MONTH };
        expect((await store.usageSnapshot(['k'], { ...query, day: DAY }))[0]?.requestsToday).toBe(2);
        expect((await store.usageSnapshot(['k'], { ...query, day: NEXT_DAY }))[0]?.requestsToday).toBe(1);
      });

      it('keeps day token counters per day id', async () => {
        const limits = { tokensPerDay: 1000 };
        expectLease(await store.reserve(request([candidate('k', limits)], { estimatedTokens: 700 })));
        expect(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 1, estimatedTokens: 301 })),
        ).toStrictEqual({ ok: false, retryAfterMs: DAY_ENDS - T0 - 1, reasons: { k: 'tokens-per-day' } });
        expectLease(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 1, estimatedTokens: 300 })),
        );
        expectLease(
          await store.reserve(
            request([candidate('k', limits)], { now: DAY_ENDS, day: NEXT_DAY, estimatedTokens: 1000 }),
          ),
        );
      });

      it('keeps month cost per month id', async () => {
        const limits = { monthlyBudgetUsd: 1 };
        // Binary-exact amounts, so no adapter trips over float rounding at the boundary.
        expectLease(await store.reserve(request([candidate('k', limits)], { estimatedCostUsd: 0.75 })));
        expect(
          await store.reserve(request([candidate('k', limits)], { estimatedCostUsd: 0.75 })),
        ).toStrictEqual({
          ok: false,
          retryAfterMs: MONTH_ENDS - T0,
          reasons: { k: 'monthly-budget' },
        });
        expectLease(await store.reserve(request([candidate('k', limits)], { estimatedCostUsd: 0.25 })));
        const nextMonth = {
          now: MONTH_ENDS,
          day: '2026-02-01',
          month: NEXT_MONTH,
          dayEndsAt: MONTH_ENDS + DAY_MS,
          monthEndsAt: Date.UTC(2026, 2, 1),
        };
        expectLease(
          await store.reserve(request([candidate('k', limits)], { ...nextMonth, estimatedCostUsd: 1 })),
        );
        const query = { now: MONTH_ENDS, windowMs: WINDOW_MS, day: DAY };
        expect(
          (await store.usageSnapshot(['k'], { ...query, month: MONTH }))[0]?.costThisMonthUsd,
        ).toBeCloseTo(1, 9);
        expect(
          (await store.usageSnapshot(['k'], { ...query, month: NEXT_MONTH }))[0]?.costThisMonthUsd,
        ).toBeCloseTo(1, 9);
      });
    });

    describe('breaker probe', () => {
      it('an open breaker past breakerOpenUntil yields exactly one probe lease', async () => {
        await store.updateKeyState('k', { set: { breaker: 'open', breakerOpenUntil: T0 }, now: T0 - 100 });
        const probeReq = request([candidate('k')]);
        const probe = expectLease(await store.reserve(probeReq));
        expect(probe.isProbe).toBe(true);
        expect(await store.getLease(probe.id)).toMatchObject({ isProbe: true });
        const [state] = await store.getKeyStates(['k']);
        expect(state).toMatchObject({ breaker: 'half-open', probeLeaseId: probeReq.leaseId });

        expect(await store.reserve(request([candidate('k')], { now: T0 + 10 }))).toStrictEqual({
          ok: false,
          retryAfterMs: TTL_MS - 10,
          reasons: { k: 'probe-in-flight' },
        });
        // Other candidates still serve while the probe is out.
        const other = expectLease(
          await store.reserve(request([candidate('k'), candidate('other')], { now: T0 + 10 })),
        );
        expect(other).toMatchObject({ keyId: 'other', isProbe: false });
      });

      it('a half-open breaker without a probe makes the next reservation the probe', async () => {
        await store.updateKeyState('k', { set: { breaker: 'half-open' }, now: T0 });
        const probe = expectLease(await store.reserve(request([candidate('k')])));
        expect(probe.isProbe).toBe(true);
        expect((await store.getKeyStates(['k']))[0]).toMatchObject({
          breaker: 'half-open',
          probeLeaseId: probe.id,
        });
      });

      it('a key that fails its limits does not take the probe slot', async () => {
        expectLease(await store.reserve(request([candidate('k', { rpm: 1 })], { now: T0 - 10 })));
        await store.updateKeyState('k', { set: { breaker: 'open', breakerOpenUntil: T0 - 5 }, now: T0 - 5 });
        expect(await store.reserve(request([candidate('k', { rpm: 1 })]))).toMatchObject({
          ok: false,
          reasons: { k: 'rpm' },
        });
        const [state] = await store.getKeyStates(['k']);
        expect(state?.probeLeaseId).toBeUndefined();
        expect(state?.breaker).toBe('open');
      });

      it('settling the probe frees the slot (breaker stays half-open for the pool to decide)', async () => {
        await store.updateKeyState('k', {
          set: { breaker: 'open', breakerOpenUntil: T0 - 1 },
          now: T0 - 100,
        });
        const probe = expectLease(await store.reserve(request([candidate('k')])));
        expect(await store.settle(probe.id, { tokens: 0, costUsd: 0, now: T0 + 5 })).toMatchObject({
          status: 'settled',
        });
        const [state] = await store.getKeyStates(['k']);
        expect(state?.probeLeaseId).toBeUndefined();
        expect(state?.breaker).toBe('half-open');
        const next = expectLease(await store.reserve(request([candidate('k')], { now: T0 + 6 })));
        expect(next.isProbe).toBe(true);
      });

      it('settling another lease does not free the probe slot', async () => {
        const ordinary = expectLease(await store.reserve(request([candidate('k')], { now: T0 - 10 })));
        await store.updateKeyState('k', { set: { breaker: 'half-open' }, now: T0 - 5 });
        const probe = expectLease(await store.reserve(request([candidate('k')])));
        expect(probe.isProbe).toBe(true);
        await store.settle(ordinary.id, { tokens: 1, costUsd: 0, now: T0 + 1 });
        expect((await store.getKeyStates(['k']))[0]?.probeLeaseId).toBe(probe.id);
        expect(await store.reserve(request([candidate('k')], { now: T0 + 2 }))).toMatchObject({
          ok: false,
          reasons: { k: 'probe-in-flight' },
        });
      });

      it('concurrent reservations on a half-open key yield exactly one probe', async () => {
        await store.updateKeyState('k', { set: { breaker: 'half-open' }, now: T0 });
        const results = await Promise.all(
          Array.from({ length: 20 }, () => store.reserve(request([candidate('k')], { now: T0 + 1 }))),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        expect(results.filter((r) => !r.ok && r.reasons['k'] === 'probe-in-flight')).toHaveLength(19);
      });
    });

    describe('last resort (ignoreCooldown)', () => {
      const lastResort = (candidates: ReserveCandidate[], overrides: Partial<ReserveRequest> = {}) =>
        request(candidates, { ignoreCooldown: true, ...overrides });

      it('reserves on a cooling key and leaves its cooldown in place', async () => {
        await store.updateKeyState('k', { set: { coolingUntil: T0 + 5000 }, now: T0 - 10 });
        expect(await store.reserve(request([candidate('k')]))).toStrictEqual({
          ok: false,
          retryAfterMs: 5000,
          reasons: { k: 'cooling' },
        });
        const lease = expectLease(await store.reserve(lastResort([candidate('k')])));
        expect(lease).toMatchObject({ keyId: 'k', isProbe: false });
        expect((await store.getKeyStates(['k']))[0]).toMatchObject({ coolingUntil: T0 + 5000 });
        // Only the flagged call got through: the next ordinary one is still refused.
        expect(await store.reserve(request([candidate('k')], { now: T0 + 1 }))).toMatchObject({
          ok: false,
          reasons: { k: 'cooling' },
        });
      });

      it('reserves on an open breaker as its single half-open probe', async () => {
        await store.updateKeyState('k', {
          set: { breaker: 'open', breakerOpenUntil: T0 + 60_000 },
          now: T0 - 10,
        });
        const probeRequest = lastResort([candidate('k')]);
        const probe = expectLease(await store.reserve(probeRequest));
        expect(probe.isProbe).toBe(true);
        expect((await store.getKeyStates(['k']))[0]).toMatchObject({
          breaker: 'half-open',
          probeLeaseId: probeRequest.leaseId,
        });
        expect(await store.reserve(lastResort([candidate('k')], { now: T0 + 10 }))).toStrictEqual({
          ok: false,
          retryAfterMs: TTL_MS - 10,
          reasons: { k: 'probe-in-flight' },
        });
      });

      it('keeps every other check: invalid, exhausted, model blocks and every limit', async () => {
        const cooling = { coolingUntil: T0 + 5000, breaker: 'open' as const, breakerOpenUntil: T0 + 9000 };
        await store.updateKeyState('invalid', { set: { ...cooling, invalidSince: T0 - 1 }, now: T0 - 10 });
        await store.updateKeyState('exhausted', {
          set: { ...cooling, exhaustedUntil: T0 + 1000 },
          now: T0 - 10,
        });
        await store.updateKeyState('blocked', {
          set: { ...cooling, blockedModels: { 'gpt-a': T0 + 2000 } },
          now: T0 - 10,
        });
        for (const id of ['rpm', 'day', 'budget']) {
          expectLease(await store.reserve(request([candidate(id)], { now: T0 - 20, estimatedCostUsd: 1 })));
          await store.updateKeyState(id, { set: cooling, now: T0 - 10 });
        }
        const result = await store.reserve(
          lastResort(
            [
              candidate('invalid'),
              candidate('exhausted'),
              candidate('blocked'),
              candidate('rpm', { rpm: 1 }),
              candidate('day', { requestsPerDay: 1 }),
              candidate('budget', { monthlyBudgetUsd: 1.2 }),
            ],
            { model: 'gpt-a', estimatedCostUsd: 0.5 },
          ),
        );
        expect(result).toStrictEqual({
          ok: false,
          // The earliest retry among them: the exhausted key's at T0 + 1000.
          retryAfterMs: 1000,
          reasons: {
            invalid: 'invalid',
            exhausted: 'exhausted',
            blocked: 'model-blocked',
            rpm: 'rpm',
            day: 'requests-per-day',
            budget: 'monthly-budget',
          },
        });
      });

      it('reserves on the first candidate that passes, in the order given', async () => {
        expectLease(await store.reserve(request([candidate('a')], { now: T0 - 20 })));
        for (const id of ['a', 'b', 'c']) {
          await store.updateKeyState(id, { set: { coolingUntil: T0 + 1000 }, now: T0 - 10 });
        }
        const lease = expectLease(
          await store.reserve(lastResort([candidate('a', { rpm: 1 }), candidate('b'), candidate('c')])),
        );
        expect(lease.keyId).toBe('b');
      });

      it('never exceeds a limit under concurrent last-resort reservations', async () => {
        await store.updateKeyState('k', { set: { coolingUntil: T0 + 60_000 }, now: T0 - 10 });
        const handles = factory.peer ? [store, await peerOf(store)] : [store];
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            handles[i % handles.length]!.reserve(lastResort([candidate('k', { rpm: 5 })])),
          ),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(5);
        for (const refused of results.filter((r) => !r.ok)) {
          expect(refused).toMatchObject({ reasons: { k: 'rpm' } });
        }
      });
    });

    describe('shared limits (keys of one upstream organization)', () => {
      const ORG = 'org:openai:o1';
      const group = (limits: KeyLimits, id = ORG): SharedLimits => ({ id, limits });
      const member = (keyId: string, shared: SharedLimits, limits: KeyLimits = {}): ReserveCandidate => ({
        keyId,
        limits,
        shared,
      });
      const snapshots = (ids: string[], now = T0) =>
        store.usageSnapshot(ids, { now, windowMs: WINDOW_MS, day: DAY, month: MONTH });

      it('charges the group with the key, so the group rpm holds across its keys', async () => {
        const o = group({ rpm: 2 });
        const first = expectLease(await store.reserve(request([member('a', o)])));
        expect(first).toMatchObject({ keyId: 'a', sharedId: ORG });
        expect(await store.getLease(first.id)).toStrictEqual(first);
        expectLease(await store.reserve(request([member('b', o)], { now: T0 + 10 })));
        expect(
          await store.reserve(request([member('a', o), member('b', o)], { now: T0 + 20 })),
        ).toStrictEqual({
          ok: false,
          retryAfterMs: WINDOW_MS,
          reasons: { a: 'rpm', b: 'rpm' },
        });
        // A key outside the group is not held back by it.
        const other = expectLease(
          await store.reserve(request([member('a', o), candidate('c')], { now: T0 + 20 })),
        );
        expect(other.keyId).toBe('c');
        expect(other).not.toHaveProperty('sharedId');
        expect(
          (await snapshots([ORG, 'a', 'b'])).map((s) => [
            s.keyId,
            s.requestsInWindow,
            s.requestsToday,
            s.inFlight,
          ]),
        ).toStrictEqual([
          [ORG, 2, 2, 2],
          ['a', 1, 1, 1],
          ['b', 1, 1, 1],
        ]);
      });

      it("names the key's own reason first, and a refusal charges neither key nor group", async () => {
        const o = group({ rpm: 1 });
        expectLease(await store.reserve(request([member('b', o)])));
        expect(await store.reserve(request([member('a', o, { rpm: 5 })], { now: T0 + 1 }))).toStrictEqual({
          ok: false,
          retryAfterMs: WINDOW_MS,
          reasons: { a: 'rpm' },
        });
        await store.updateKeyState('a', { set: { coolingUntil: T0 + 5000 }, now: T0 });
        expect(await store.reserve(request([member('a', o)], { now: T0 + 1 }))).toStrictEqual({
          ok: false,
          retryAfterMs: 4999,
          reasons: { a: 'cooling' },
        });
        const [org, a] = await snapshots([ORG, 'a']);
        expect(org).toMatchObject({ requestsInWindow: 1, requestsToday: 1, tokensToday: 100, inFlight: 1 });
        expect(a).toMatchObject({ requestsInWindow: 0, requestsToday: 0, tokensToday: 0, inFlight: 0 });
      });

      it('reconciles the group tokens and cost at settle and stamps its entry like the key entry', async () => {
        const o = group({ tpm: 1000 });
        const first = expectLease(
          await store.reserve(request([member('a', o)], { estimatedTokens: 600, estimatedCostUsd: 0.6 })),
        );
        expect(
          await store.reserve(request([member('b', o)], { now: T0 + 100, estimatedTokens: 500 })),
        ).toStrictEqual({ ok: false, retryAfterMs: WINDOW_MS, reasons: { b: 'tpm' } });
        expect(
          await store.settle(first.id, { tokens: 100, costUsd: 0.1, now: T0 + 1000, respondedAt: T0 + 500 }),
        ).toMatchObject({ status: 'settled', lease: { sharedId: ORG } });
        expectLease(
          await store.reserve(
            request([member('b', o)], { now: T0 + 1000, estimatedTokens: 500, estimatedCostUsd: 0.5 }),
          ),
        );
        const [org] = await snapshots([ORG], T0 + 1000);
        expect(org).toMatchObject({
          requestsInWindow: 2,
          tokensInWindow: 600,
          tokensToday: 600,
          inFlight: 1,
        });
        expect(org?.costThisMonthUsd).toBeCloseTo(0.6, 9);
        // The first entry was stamped at respondedAt and leaves a window later; b is in flight.
        expect((await snapshots([ORG], T0 + 500 + WINDOW_MS))[0]).toMatchObject({
          requestsInWindow: 1,
          tokensInWindow: 500,
        });
      });

      it('enforces the group day and month limits, with waits to the day and month ends', async () => {
        const perDay = group({ requestsPerDay: 1 }, 'org:openai:day');
        expectLease(await store.reserve(request([member('a', perDay)])));
        expect(await store.reserve(request([member('b', perDay)]))).toStrictEqual({
          ok: false,
          retryAfterMs: DAY_ENDS - T0,
          reasons: { b: 'requests-per-day' },
        });
        expectLease(await store.reserve(request([member('b', perDay)], { day: NEXT_DAY, now: DAY_ENDS })));

        const tokens = group({ tokensPerDay: 150 }, 'org:openai:tokens');
        expectLease(await store.reserve(request([member('c', tokens)])));
        expect(await store.reserve(request([member('d', tokens)]))).toMatchObject({
          ok: false,
          reasons: { d: 'tokens-per-day' },
        });

        const budget = group({ monthlyBudgetUsd: 1 }, 'org:openai:budget');
        expectLease(await store.reserve(request([member('e', budget)], { estimatedCostUsd: 0.6 })));
        expect(await store.reserve(request([member('f', budget)], { estimatedCostUsd: 0.6 }))).toStrictEqual({
          ok: false,
          retryAfterMs: MONTH_ENDS - T0,
          reasons: { f: 'monthly-budget' },
        });
      });

      it('an expired lease keeps the group reservation at the estimate and frees its slot in flight', async () => {
        const o = group({ rpm: 5 });
        const lease = expectLease(await store.reserve(request([member('a', o)], { estimatedTokens: 70 })));
        expect(await store.expireLeases(T0 + TTL_MS)).toStrictEqual([lease]);
        expect((await snapshots([ORG], T0 + TTL_MS))[0]).toMatchObject({
          requestsInWindow: 1,
          tokensInWindow: 70,
          inFlight: 0,
        });
        expect((await snapshots([ORG], T0 + TTL_MS + WINDOW_MS))[0]).toMatchObject({
          requestsInWindow: 0,
          tokensInWindow: 0,
          requestsToday: 1,
        });
      });

      it("keeps the group's counters when a key is deleted; resetKeyState with counters clears them", async () => {
        const o = group({ rpm: 5 });
        await store.putKey(keyRecord('a'));
        const lease = expectLease(await store.reserve(request([member('a', o)])));
        await store.settle(lease.id, { tokens: 40, costUsd: 0.4, now: T0 + 10 });
        await store.deleteKey('a');
        expect((await snapshots([ORG], T0 + 10))[0]).toMatchObject({ requestsInWindow: 1, tokensToday: 40 });
        await store.resetKeyState(ORG, { counters: true, now: T0 + 20 });
        expect((await snapshots([ORG], T0 + 20))[0]).toMatchObject({
          requestsInWindow: 0,
          tokensInWindow: 0,
          requestsToday: 0,
          tokensToday: 0,
          inFlight: 0,
        });
      });

      it('300 concurrent reservations over three keys of a group with rpm 50 grant exactly 50', async () => {
        const o = group({ rpm: 50 });
        const handles = factory.peer ? [store, await peerOf(store)] : [store];
        const results = await Promise.all(
          Array.from({ length: 300 }, (_, i) =>
            handles[i % handles.length]!.reserve(
              request(
                [0, 1, 2].map((k) => member(`k${(i + k) % 3}`, o, { rpm: 40 })),
                { now: T0 + (i % 7) },
              ),
            ),
          ),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(50);
        const [org] = await snapshots([ORG], T0 + 10);
        expect(org).toMatchObject({ requestsInWindow: 50, inFlight: 50 });
      });
    });

    describe('claimProbe', () => {
      /** The method is optional in the type (older adapters compile) but part of conformance. */
      function claim(handle: Store, keyId: string, now: number, ttlMs = 1000): Promise<boolean> {
        if (typeof handle.claimProbe !== 'function') {
          throw new Error(`${handle.name} has no claimProbe: background probes need it`);
        }
        return handle.claimProbe(keyId, { now, ttlMs });
      }

      it('holds one claim per key until its ttl passes', async () => {
        expect(await claim(store, 'k', T0)).toBe(true);
        expect(await claim(store, 'k', T0 + 1)).toBe(false);
        expect(await claim(store, 'k', T0 + 999)).toBe(false);
        expect(await claim(store, 'other', T0 + 1)).toBe(true);
        // Held until T0 + 1000 exclusive: a crashed prober blocks no longer than that.
        expect(await claim(store, 'k', T0 + 1000, 5000)).toBe(true);
        expect(await claim(store, 'k', T0 + 5999)).toBe(false);
        expect(await claim(store, 'k', T0 + 6000)).toBe(true);
      });

      it('leaves the key state alone', async () => {
        await store.updateKeyState('k', { set: { invalidSince: T0 - 5 }, now: T0 - 5 });
        const [before] = await store.getKeyStates(['k', 'j']);
        expect(await claim(store, 'k', T0)).toBe(true);
        expect(await claim(store, 'j', T0)).toBe(true);
        expect(await store.getKeyStates(['k', 'j'])).toStrictEqual([before, defaultState('j')]);
      });

      it('concurrent claims on one key: exactly one wins', async () => {
        const handles = factory.peer ? [store, await peerOf(store)] : [store];
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => claim(handles[i % handles.length]!, 'k', T0 + (i % 3))),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
      });
    });

    describe('settle', () => {
      const snapshotQuery = { now: T0 + 100, windowMs: WINDOW_MS, day: DAY, month: MONTH };

      it('reconciles tokens and cost with the actual usage and ends the lease', async () => {
        const req = request([candidate('k')], { estimatedTokens: 100, estimatedCostUsd: 0.5 });
        const lease = expectLease(await store.reserve(req));
        expect((await store.usageSnapshot(['k'], snapshotQuery))[0]).toMatchObject({
          requestsInWindow: 1,
          tokensInWindow: 100,
          requestsToday: 1,
          tokensToday: 100,
          inFlight: 1,
        });
        expect(await store.settle(lease.id, { tokens: 250, costUsd: 0.8, now: T0 + 50 })).toStrictEqual({
          status: 'settled',
          lease,
        });
        const [after] = await store.usageSnapshot(['k'], snapshotQuery);
        expect(after).toMatchObject({
          keyId: 'k',
          requestsInWindow: 1,
          tokensInWindow: 250,
          requestsToday: 1,
          tokensToday: 250,
          inFlight: 0,
        });
        expect(after?.costThisMonthUsd).toBeCloseTo(0.8, 9);
        expect(await store.getLease(lease.id)).toBeUndefined();
      });

      it('reconciles the window tokens used by tpm (the entry takes its actual tokens)', async () => {
        const limits = { tpm: 1000 };
        const big = expectLease(
          await store.reserve(request([candidate('k', limits)], { estimatedTokens: 900 })),
        );
        expect(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 1, estimatedTokens: 200 })),
        ).toMatchObject({ ok: false, reasons: { k: 'tpm' } });
        await store.settle(big.id, { tokens: 300, costUsd: 0.1, now: T0 + 2, respondedAt: T0 });
        expectLease(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 3, estimatedTokens: 700 })),
        );
        // Window: 300 (stamped T0) + 700 (in flight) = 1000; the T0 entry leaves at T0 + WINDOW_MS.
        expect(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 4, estimatedTokens: 1 })),
        ).toStrictEqual({ ok: false, retryAfterMs: WINDOW_MS - 4, reasons: { k: 'tpm' } });
        expectLease(
          await store.reserve(
            request([candidate('k', limits)], { now: T0 + WINDOW_MS, estimatedTokens: 300 }),
          ),
        );
      });

      it('settles into the day and month of the lease, not of the settle time', async () => {
        const lease = expectLease(
          await store.reserve(request([candidate('k')], { estimatedTokens: 100, leaseTtlMs: 2 * DAY_MS })),
        );
        const nextDay = { now: DAY_ENDS + 10, day: NEXT_DAY, dayEndsAt: DAY_ENDS + DAY_MS };
        expectLease(await store.reserve(request([candidate('k')], { ...nextDay, estimatedTokens: 10 })));
        await store.settle(lease.id, { tokens: 40, costUsd: 0.1, now: DAY_ENDS + 20 });
        const query = { now: DAY_ENDS + 30, windowMs: WINDOW_MS, month: MONTH };
        expect((await store.usageSnapshot(['k'], { ...query, day: DAY }))[0]?.tokensToday).toBe(40);
        expect((await store.usageSnapshot(['k'], { ...query, day: NEXT_DAY }))[0]?.tokensToday).toBe(10);
      });

      it('is idempotent: a second settle or an unknown id answers already-settled and changes nothing', async () => {
        const lease = expectLease(await store.reserve(request([candidate('k')])));
        await store.settle(lease.id, { tokens: 250, costUsd: 0.8, now: T0 + 50 });
        expect(await store.settle(lease.id, { tokens: 999, costUsd: 9, now: T0 + 60 })).toStrictEqual({
          status: 'already-settled',
        });
        expect(await store.settle('never-reserved', { tokens: 1, costUsd: 1, now: T0 + 60 })).toStrictEqual({
          status: 'already-settled',
        });
        const [after] = await store.usageSnapshot(['k'], snapshotQuery);
        expect(after).toMatchObject({ tokensInWindow: 250, tokensToday: 250, inFlight: 0 });
        expect(after?.costThisMonthUsd).toBeCloseTo(0.8, 9);
      });

      it('appends settlement.usage in the same step for settled and expired, never twice', async () => {
        const settled = expectLease(await store.reserve(request([candidate('k')])));
        const late = expectLease(
          await store.reserve(request([candidate('k')], { leaseId: 'late', leaseTtlMs: 10 })),
        );
        const record = (id: string, leaseId: string, inputTokens: number) =>
          usage(id, {
            time: T0 + 50,
            day: DAY,
            month: MONTH,
            keyId: 'k',
            provider: 'openai',
            inputTokens,
            leaseId,
          });
        await store.settle(settled.id, {
          tokens: 7,
          costUsd: 0,
          now: T0 + 5,
          usage: record('u1', settled.id, 7),
        });
        await store.settle(settled.id, {
          tokens: 7,
          costUsd: 0,
          now: T0 + 6,
          usage: record('u2', settled.id, 7),
        });
        await store.settle(late.id, { tokens: 3, costUsd: 0, now: T0 + 50, usage: record('u3', late.id, 3) });
        await store.settle('never-reserved', {
          tokens: 1,
          costUsd: 0,
          now: T0 + 60,
          usage: record('u4', 'x', 1),
        });
        const [totals] = await store.queryUsage({});
        expect(totals).toMatchObject({ requests: 2, inputTokens: 10 });
      });

      it('concurrent settles of one lease: exactly one wins', async () => {
        const lease = expectLease(await store.reserve(request([candidate('k')])));
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            store.settle(lease.id, { tokens: 10 + i, costUsd: 0, now: T0 + 5 }),
          ),
        );
        expect(results.filter((r) => r.status === 'settled')).toHaveLength(1);
        expect(results.filter((r) => r.status === 'already-settled')).toHaveLength(9);
        expect((await store.usageSnapshot(['k'], snapshotQuery))[0]?.inFlight).toBe(0);
      });

      it('a lease past expiresAt settles as expired once, at the estimate, then already-settled', async () => {
        const lease = expectLease(await store.reserve(request([candidate('k')], { estimatedTokens: 100 })));
        expect(await store.settle(lease.id, { tokens: 250, costUsd: 0.8, now: T0 + TTL_MS })).toStrictEqual({
          status: 'expired',
          lease,
        });
        expect(await store.settle(lease.id, { tokens: 250, costUsd: 0.8, now: T0 + TTL_MS })).toStrictEqual({
          status: 'already-settled',
        });
        const [after] = await store.usageSnapshot(['k'], { ...snapshotQuery, now: T0 + TTL_MS });
        expect(after).toMatchObject({ tokensInWindow: 100, tokensToday: 100, requestsToday: 1, inFlight: 0 });
        expect(after?.costThisMonthUsd).toBeCloseTo(0.5, 9);
        expect(await store.expireLeases(T0 + TTL_MS + 1)).toStrictEqual([]);
      });
    });

    describe('expireLeases', () => {
      it('stamps an unreported lease at its expiresAt: it counts until expiresAt + windowMs', async () => {
        const limits = { rpm: 1 };
        const lease = expectLease(
          await store.reserve(request([candidate('k', limits)], { leaseTtlMs: 1000 })),
        );
        expect(await store.expireLeases(T0 + 5000)).toStrictEqual([lease]);
        expect(await store.reserve(request([candidate('k', limits)], { now: T0 + 5000 }))).toStrictEqual({
          ok: false,
          retryAfterMs: 1000 + WINDOW_MS - 5000,
          reasons: { k: 'rpm' },
        });
        expectLease(await store.reserve(request([candidate('k', limits)], { now: T0 + 1000 + WINDOW_MS })));
      });

      it('ends each lease with expiresAt <= now once, keeping its reservation at the estimate', async () => {
        const early = expectLease(await store.reserve(request([candidate('k')], { leaseTtlMs: 1000 })));
        const late = expectLease(await store.reserve(request([candidate('k')], { leaseTtlMs: 5000 })));
        const other = expectLease(await store.reserve(request([candidate('j')], { leaseTtlMs: 1000 })));
        expect(await store.expireLeases(T0 + 999)).toStrictEqual([]);
        expect(sortById(await store.expireLeases(T0 + 1000))).toStrictEqual(sortById([early, other]));
        expect(await store.expireLeases(T0 + 1000)).toStrictEqual([]);
        expect(await store.getLease(early.id)).toBeUndefined();
        expect(await store.getLease(late.id)).toStrictEqual(late);

        const query = { now: T0 + 2000, windowMs: WINDOW_MS, day: DAY, month: MONTH };
        expect(
          (await store.usageSnapshot(['k', 'j'], query)).map((s) => [s.inFlight, s.tokensToday]),
        ).toStrictEqual([
          [1, 200],
          [0, 100],
        ]);

        // The owner reports late: told 'expired' once (counters stay), then 'already-settled'.
        expect(await store.settle(early.id, { tokens: 500, costUsd: 2, now: T0 + 2000 })).toStrictEqual({
          status: 'expired',
          lease: early,
        });
        expect(await store.settle(early.id, { tokens: 500, costUsd: 2, now: T0 + 2001 })).toStrictEqual({
          status: 'already-settled',
        });
        expect((await store.usageSnapshot(['k'], query))[0]?.tokensToday).toBe(200);

        expect(await store.expireLeases(T0 + 10_000)).toStrictEqual([late]);
        expect((await store.usageSnapshot(['k'], query))[0]?.inFlight).toBe(0);
      });

      it('frees the probe slot of an expired probe', async () => {
        await store.updateKeyState('k', { set: { breaker: 'half-open' }, now: T0 });
        const probe = expectLease(await store.reserve(request([candidate('k')])));
        expect(probe.isProbe).toBe(true);
        expect(await store.expireLeases(T0 + TTL_MS)).toStrictEqual([probe]);
        const [state] = await store.getKeyStates(['k']);
        expect(state?.probeLeaseId).toBeUndefined();
        const next = expectLease(await store.reserve(request([candidate('k')], { now: T0 + TTL_MS + 1 })));
        expect(next.isProbe).toBe(true);
      });
    });

    describe('key state', () => {
      it('reads an untouched key as the default, one state per id in order', async () => {
        await store.updateKeyState('b', { set: { coolingUntil: T0 + 1 }, now: T0 });
        expect(await store.getKeyStates(['a', 'b', 'c'])).toStrictEqual([
          defaultState('a'),
          { ...defaultState('b', T0), coolingUntil: T0 + 1 },
          defaultState('c'),
        ]);
        expect(await store.getKeyStates([])).toStrictEqual([]);
      });

      it('applies resetFailures, incrementFailures, set, clear in that order and stamps updatedAt', async () => {
        await store.updateKeyState('k', { incrementFailures: true, now: T0 });
        expect(await store.updateKeyState('k', { incrementFailures: true, now: T0 + 1 })).toStrictEqual({
          ...defaultState('k', T0 + 1),
          consecutiveFailures: 2,
        });
        expect(
          await store.updateKeyState('k', { resetFailures: true, incrementFailures: true, now: T0 + 2 }),
        ).toMatchObject({ consecutiveFailures: 1, updatedAt: T0 + 2 });
        const state = await store.updateKeyState('k', {
          set: { coolingUntil: T0 + 100, exhaustedUntil: T0 + 200 },
          clear: ['coolingUntil'],
          now: T0 + 3,
        });
        expect(state).toStrictEqual({
          ...defaultState('k', T0 + 3),
          consecutiveFailures: 1,
          exhaustedUntil: T0 + 200,
        });
        expect(await store.getKeyStates(['k'])).toStrictEqual([state]);
        expect(await store.updateKeyState('k', { resetFailures: true, now: T0 + 4 })).toMatchObject({
          consecutiveFailures: 0,
        });
      });

      it('sets shallowly, round-tripping nested lastError and upstream; undefined values are ignored', async () => {
        const lastError = {
          at: T0,
          failure: 'server' as const,
          status: 503,
          code: 'overloaded',
          message: 'busy',
        };
        const upstream = {
          requests: { limit: 500, remaining: 499, resetAt: T0 + 1000 },
          tokens: { remaining: 1000 },
          retryAfterMs: 250,
          observedAt: T0,
        };
        await store.updateKeyState('k', {
          set: { breaker: 'open', breakerOpenUntil: T0 + 300_000, lastError, upstream, coolingUntil: T0 + 5 },
          incrementFailures: true,
          now: T0,
        });
        const state = await store.updateKeyState('k', {
          set: { lastError: { at: T0 + 1, failure: 'timeout' }, coolingUntil: undefined },
          now: T0 + 1,
        });
        expect(state).toStrictEqual({
          keyId: 'k',
          breaker: 'open',
          breakerOpenUntil: T0 + 300_000,
          coolingUntil: T0 + 5,
          lastError: { at: T0 + 1, failure: 'timeout' },
          upstream,
          consecutiveFailures: 1,
          updatedAt: T0 + 1,
        });
        state.upstream!.retryAfterMs = 1;
        expect((await store.getKeyStates(['k']))[0]?.upstream).toStrictEqual(upstream);
      });

      it('merges blockedModels per model, and clear removes them all', async () => {
        await store.updateKeyState('k', { set: { blockedModels: { a: T0 + 1, b: T0 + 2 } }, now: T0 });
        expect(
          await store.updateKeyState('k', {
            set: { blockedModels: { b: T0 + 20, c: T0 + 30 } },
            now: T0 + 1,
          }),
        ).toMatchObject({ blockedModels: { a: T0 + 1, b: T0 + 20, c: T0 + 30 } });
        const cleared = await store.updateKeyState('k', { clear: ['blockedModels'], now: T0 + 2 });
        expect(cleared).toStrictEqual(defaultState('k', T0 + 2));
        expect(
          await store.updateKeyState('k', {
            set: { blockedModels: { d: T0 + 4 } },
            clear: ['blockedModels'],
            now: T0 + 3,
          }),
        ).toStrictEqual(defaultState('k', T0 + 3));
      });

      it('clears every clearable field', async () => {
        await store.updateKeyState('k', {
          set: {
            coolingUntil: 1,
            exhaustedUntil: 2,
            invalidSince: 3,
            blockedModels: { m: 4 },
            breakerOpenUntil: 5,
            probeLeaseId: 'p',
            lastError: { at: 6, failure: 'auth' },
            upstream: { observedAt: 7 },
          },
          now: T0,
        });
        const state = await store.updateKeyState('k', {
          clear: [
            'coolingUntil',
            'exhaustedUntil',
            'invalidSince',
            'blockedModels',
            'breakerOpenUntil',
            'probeLeaseId',
            'lastError',
            'upstream',
          ],
          now: T0 + 1,
        });
        expect(state).toStrictEqual(defaultState('k', T0 + 1));
      });

      it('resetKeyState returns the state to the default (updatedAt = now) and keeps counters', async () => {
        const lease = expectLease(await store.reserve(request([candidate('k', { rpm: 1 })])));
        await store.updateKeyState('k', {
          set: { invalidSince: T0, coolingUntil: T0 + 1000, blockedModels: { m: T0 + 5 }, breaker: 'open' },
          incrementFailures: true,
          now: T0 + 1,
        });
        await store.resetKeyState('k', { now: T0 + 2 });
        expect(await store.getKeyStates(['k'])).toStrictEqual([defaultState('k', T0 + 2)]);
        expect(await store.reserve(request([candidate('k', { rpm: 1 })], { now: T0 + 3 }))).toMatchObject({
          ok: false,
          reasons: { k: 'rpm' },
        });
        const query = { now: T0 + 3, windowMs: WINDOW_MS, day: DAY, month: MONTH };
        expect((await store.usageSnapshot(['k'], query))[0]).toMatchObject({
          requestsInWindow: 1,
          requestsToday: 1,
          inFlight: 1,
        });
        expect(await store.getLease(lease.id)).toStrictEqual(lease);
      });

      it('resetKeyState with counters clears stamped window entries and day/month counters, not leases in flight', async () => {
        const limits = { rpm: 2, requestsPerDay: 2, monthlyBudgetUsd: 1 };
        const done = expectLease(
          await store.reserve(request([candidate('k', limits)], { estimatedCostUsd: 0.5 })),
        );
        await store.settle(done.id, { tokens: 100, costUsd: 0.5, now: T0 });
        const open = expectLease(
          await store.reserve(request([candidate('k', limits)], { estimatedCostUsd: 0.5 })),
        );
        await store.updateKeyState('k', { set: { coolingUntil: T0 + 1000 }, now: T0 });
        await store.resetKeyState('k', { counters: true, now: T0 + 1 });
        const query = { now: T0 + 1, windowMs: WINDOW_MS, day: DAY, month: MONTH };
        expect((await store.usageSnapshot(['k'], query))[0]).toStrictEqual({
          keyId: 'k',
          // The lease in flight is a live request, not a counter: it still counts in the window.
          requestsInWindow: 1,
          tokensInWindow: 100,
          requestsToday: 0,
          tokensToday: 0,
          costThisMonthUsd: 0,
          inFlight: 1,
        });
        expect(await store.getKeyStates(['k'])).toStrictEqual([defaultState('k', T0 + 1)]);
        expectLease(
          await store.reserve(request([candidate('k', limits)], { now: T0 + 2, estimatedCostUsd: 0.5 })),
        );
        expect(await store.getLease(open.id)).toStrictEqual(open);
      });
    });

    describe('usageSnapshot', () => {
      it('reports window, day, month and in-flight per key, in order, zeros for unknown keys', async () => {
        const a1 = expectLease(
          await store.reserve(
            request([candidate('a')], { now: T0, estimatedTokens: 10, estimatedCostUsd: 0.1 }),
          ),
        );
        expectLease(
          await store.reserve(
            request([candidate('a')], { now: T0 + 30_000, estimatedTokens: 20, estimatedCostUsd: 0.2 }),
          ),
        );
        expectLease(
          await store.reserve(
            request([candidate('b')], { now: T0 + 30_000, estimatedTokens: 5, estimatedCostUsd: 0.05 }),
          ),
        );
        await store.settle(a1.id, { tokens: 15, costUsd: 0.15, now: T0 + 1000, respondedAt: T0 });
        const snapshots = await store.usageSnapshot(['b', 'zz', 'a'], {
          now: T0 + WINDOW_MS,
          windowMs: WINDOW_MS,
          day: DAY,
          month: MONTH,
        });
        expect(snapshots.map(({ costThisMonthUsd: _c, ...rest }) => rest)).toStrictEqual([
          {
            keyId: 'b',
            requestsInWindow: 1,
            tokensInWindow: 5,
            requestsToday: 1,
            tokensToday: 5,
            inFlight: 1,
          },
          {
            keyId: 'zz',
            requestsInWindow: 0,
            tokensInWindow: 0,
            requestsToday: 0,
            tokensToday: 0,
            inFlight: 0,
          },
          // a1 (answered at T0) left the window at T0 + WINDOW_MS; the day keeps it.
          {
            keyId: 'a',
            requestsInWindow: 1,
            tokensInWindow: 20,
            requestsToday: 2,
            tokensToday: 35,
            inFlight: 1,
          },
        ]);
        expect(snapshots[0]?.costThisMonthUsd).toBeCloseTo(0.05, 9);
        expect(snapshots[1]?.costThisMonthUsd).toBe(0);
        expect(snapshots[2]?.costThisMonthUsd).toBeCloseTo(0.35, 9);
        expect(
          await store.usageSnapshot([], { now: T0, windowMs: WINDOW_MS, day: DAY, month: MONTH }),
        ).toStrictEqual([]);
      });
    });

    describe('concurrency', () => {
      it('300 concurrent reservations on a key with rpm 50 grant exactly 50', async () => {
        const handles = factory.peer ? [store, await peerOf(store)] : [store];
        const results = await Promise.all(
          Array.from({ length: 300 }, (_, i) =>
            handles[i % handles.length]!.reserve(
              request([candidate('k', { rpm: 50 })], { now: T0 + (i % 7) }),
            ),
          ),
        );
        const granted = results.filter((r) => r.ok);
        expect(granted).toHaveLength(50);
        expect(new Set(granted.map((r) => (r.ok ? r.lease.id : ''))).size).toBe(50);
        for (const refused of results.filter((r) => !r.ok)) {
          expect(refused).toMatchObject({ ok: false, reasons: { k: 'rpm' } });
        }
        const [snapshot] = await store.usageSnapshot(['k'], {
          now: T0 + 10,
          windowMs: WINDOW_MS,
          day: DAY,
          month: MONTH,
        });
        expect(snapshot).toMatchObject({
          requestsInWindow: 50,
          requestsToday: 50,
          tokensToday: 5000,
          inFlight: 50,
        });
      });

      it('concurrent reservations spill over to the next candidate without exceeding any limit', async () => {
        const candidates = [
          candidate('a', { rpm: 10 }),
          candidate('b', { tpm: 1000 }),
          candidate('c', { rpm: 5 }),
        ];
        const handles = factory.peer ? [store, await peerOf(store)] : [store];
        const results = await Promise.all(
          Array.from({ length: 60 }, (_, i) => handles[i % handles.length]!.reserve(request(candidates))),
        );
        const byKey: Record<string, number> = {};
        for (const r of results) if (r.ok) byKey[r.lease.keyId] = (byKey[r.lease.keyId] ?? 0) + 1;
        expect(byKey).toStrictEqual({ a: 10, b: 10, c: 5 });
      });
    });

    // A store that can't open a second handle must not claim to be shared by a fleet.
    if (!factory.peer) {
      it('without a peer handle, does not claim fleet capability', () => {
        expect(store.capabilities.fleet).toBe(false);
      });
    }
    if (factory.peer)
      describe('fleet (two handles on one namespace)', () => {
        it('durable records and keysVersion written on one handle are read on the other', async () => {
          const other = await peerOf(store);
          const before = await other.keysVersion();
          await store.putKey(keyRecord('k', { limits: { rpm: 3 } }));
          expect(await other.getKey('k')).toStrictEqual(keyRecord('k', { limits: { rpm: 3 } }));
          expect(await other.keysVersion()).toBeGreaterThan(before);
          await expect(other.putKey(keyRecord('twin', { fingerprint: 'fp-k' }))).rejects.toMatchObject({
            code: 'KEYPOOL_DUPLICATE_KEY',
          });
          await other.setMeta('canary', 'x');
          expect(await store.getMeta('canary')).toBe('x');
        });

        it('hot state written on one handle is read and enforced on the other', async () => {
          const other = await peerOf(store);
          await store.updateKeyState('k', {
            set: { coolingUntil: T0 + 100 },
            incrementFailures: true,
            now: T0,
          });
          expect((await other.getKeyStates(['k']))[0]).toMatchObject({
            coolingUntil: T0 + 100,
            consecutiveFailures: 1,
          });
          expect(await other.reserve(request([candidate('k')], { now: T0 + 1 }))).toMatchObject({
            ok: false,
            reasons: { k: 'cooling' },
          });

          const lease = expectLease(await store.reserve(request([candidate('j', { rpm: 1 })])));
          expect(await other.getLease(lease.id)).toStrictEqual(lease);
          expect(await other.reserve(request([candidate('j', { rpm: 1 })]))).toMatchObject({
            ok: false,
            reasons: { j: 'rpm' },
          });
          expect(await other.settle(lease.id, { tokens: 7, costUsd: 0, now: T0 + 5 })).toMatchObject({
            status: 'settled',
          });
          expect(await store.settle(lease.id, { tokens: 7, costUsd: 0, now: T0 + 6 })).toStrictEqual({
            status: 'already-settled',
          });
          expect(
            (
              await store.usageSnapshot(['j'], { now: T0 + 7, windowMs: WINDOW_MS, day: DAY, month: MONTH })
            )[0],
          ).toMatchObject({ tokensInWindow: 7, inFlight: 0 });
        });

        it('expireLeases on both handles returns each lease exactly once', async () => {
          const other = await peerOf(store);
          const leases: LeaseRecord[] = [];
          for (let i = 0; i < 10; i++) {
            leases.push(
              expectLease(await store.reserve(request([candidate(`k${i % 3}`)], { leaseTtlMs: 100 }))),
            );
          }
          const [mine, theirs] = await Promise.all([
            store.expireLeases(T0 + 100),
            other.expireLeases(T0 + 100),
          ]);
          expect(sortById([...mine, ...theirs])).toStrictEqual(sortById(leases));
        });

        it('a probe claim made on one handle holds on the other', async () => {
          const other = await peerOf(store);
          expect(await store.claimProbe?.('k', { now: T0, ttlMs: 1000 })).toBe(true);
          expect(await other.claimProbe?.('k', { now: T0 + 10, ttlMs: 1000 })).toBe(false);
          expect(await other.claimProbe?.('k', { now: T0 + 1000, ttlMs: 1000 })).toBe(true);
        });

        it('one probe fleet-wide', async () => {
          const other = await peerOf(store);
          await store.updateKeyState('k', {
            set: { breaker: 'open', breakerOpenUntil: T0 - 1 },
            now: T0 - 10,
          });
          const results = await Promise.all(
            Array.from({ length: 10 }, (_, i) => (i % 2 ? other : store).reserve(request([candidate('k')]))),
          );
          expect(results.filter((r) => r.ok && r.lease.isProbe)).toHaveLength(1);
          expect(results.filter((r) => r.ok)).toHaveLength(1);
        });
      });
  });
}
