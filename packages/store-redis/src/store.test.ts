import type { KeyRecord, ReserveRequest, StoreEvent, UsageRecord } from '@keypool/spec';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisStore } from './index.js';
import type { RedisStore } from './store.js';
import { dropPrefix, isRedisAvailable, redisUrl, testPrefix } from './test-fixture.js';

const available = await isRedisAvailable();
const prefix = testPrefix();
const stores: RedisStore[] = [];

function open(): RedisStore {
  const store = redisStore({ url: redisUrl, prefix });
  stores.push(store);
  return store;
}

function key(id: string, createdAt: number, extra: Partial<KeyRecord> = {}): KeyRecord {
  return {
    id,
    alias: `alias-${id}`,
    provider: 'openai',
    sealedSecret: `sealed-${id}`,
    masterKeyId: 'mk_000000000000',
    fingerprint: `fp-${id}`,
    maskedSecret: 'sk-…abcd',
    priority: 0,
    weight: 1,
    limits: {},
    enabled: true,
    createdAt,
    updatedAt: createdAt,
    ...extra,
  };
}

let leaseSeq = 0;
function request(keyIds: string[], overrides: Partial<ReserveRequest> = {}): ReserveRequest {
  return {
    leaseId: `lease-${++leaseSeq}`,
    candidates: keyIds.map((keyId) => ({ keyId, limits: {} })),
    estimatedTokens: 100,
    estimatedCostUsd: 0.25,
    now: 1_000_000,
    windowMs: 60_000,
    day: '2026-11-25',
    month: '2026-11',
    dayEndsAt: 1_000_000 + 3_600_000,
    monthEndsAt: 1_000_000 + 86_400_000,
    leaseTtlMs: 30_000,
    ...overrides,
  };
}

describe.skipIf(!available)('redisStore', () => {
  let store: RedisStore;
  beforeAll(async () => {
    store = open();
    await store.init();
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await dropPrefix(prefix);
  });

  it('round-trips key records, refuses a duplicate fingerprint and bumps keysVersion', async () => {
    const before = await store.keysVersion();
    await store.putKey(key('k2', 20, { models: ['gpt-4o'], metadata: { team: 'a' }, limits: { rpm: 5 } }));
    await store.putKey(key('k1', 10));
    expect((await store.listKeys()).map((k) => k.id)).toEqual(['k1', 'k2']);
    const k2 = await store.getKey('k2');
    expect(k2).toEqual(key('k2', 20, { models: ['gpt-4o'], metadata: { team: 'a' }, limits: { rpm: 5 } }));
    expect(k2 && 'organization' in k2).toBe(false);
    expect((await store.getKeyByFingerprint('fp-k1'))?.id).toBe('k1');
    await expect(store.putKey(key('k3', 30, { fingerprint: 'fp-k1' }))).rejects.toMatchObject({
      code: 'KEYPOOL_DUPLICATE_KEY',
    });
    expect(await store.keysVersion()).toBe(before + 2);
    expect(await store.deleteKey('k2')).toBe(true);
    expect(await store.deleteKey('k2')).toBe(false);
    expect(await store.getKeyByFingerprint('fp-k2')).toBeUndefined();
  });

  it('tells every subscriber on another connection that keys changed', async () => {
    const other = open();
    const events: StoreEvent[] = [];
    const seen = new Promise<void>((resolve) => {
      other.subscribe((event) => {
        events.push(event);
        resolve();
      });
    });
    await new Promise((r) => setTimeout(r, 100)); // let the subscriber connection subscribe
    await store.putKey(key('k9', 90));
    await seen;
    expect(events).toContainEqual({ type: 'keys-changed' });
  });

  it('reserves on the first eligible candidate and settles once', async () => {
    await store.updateKeyState('a1', { set: { coolingUntil: 2_000_000 }, now: 1_000_000 });
    const result = await store.reserve(request(['a1', 'a2'], { model: 'gpt-4o', meta: { pool: 'p' } }));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.lease).toMatchObject({ keyId: 'a2', isProbe: false, model: 'gpt-4o', meta: { pool: 'p' } });
    expect(await store.getLease(result.lease.id)).toEqual(result.lease);
    const query = { now: 1_000_000, windowMs: 60_000, day: '2026-11-25', month: '2026-11' };
    expect(await store.usageSnapshot(['a2'], query)).toEqual([
      {
        keyId: 'a2',
        requestsInWindow: 1,
        tokensInWindow: 100,
        requestsToday: 1,
        tokensToday: 100,
        costThisMonthUsd: 0.25,
        inFlight: 1,
      },
    ]);
    const settled = await store.settle(result.lease.id, { tokens: 40, costUsd: 0.1, now: 1_000_500 });
    expect(settled).toEqual({ status: 'settled', lease: result.lease });
    expect(await store.settle(result.lease.id, { tokens: 40, costUsd: 0.1, now: 1_000_500 })).toEqual({
      status: 'already-settled',
    });
    const [after] = await store.usageSnapshot(['a2'], query);
    expect(after).toMatchObject({ tokensInWindow: 40, tokensToday: 40, inFlight: 0 });
    expect(after?.costThisMonthUsd).toBeCloseTo(0.1, 10);
  });

  it('reports why nothing was eligible and when to retry', async () => {
    await store.updateKeyState('b1', { set: { invalidSince: 1 }, now: 1_000_000 });
    await store.updateKeyState('b2', { set: { exhaustedUntil: 1_050_000 }, now: 1_000_000 });
    await store.updateKeyState('b3', { set: { blockedModels: { m: 1_020_000 } }, now: 1_000_000 });
    await store.updateKeyState('b4', {
      set: { breaker: 'open', breakerOpenUntil: 1_010_000 },
      now: 1_000_000,
    });
    const result = await store.reserve(request(['b1', 'b2', 'b3', 'b4'], { model: 'm' }));
    expect(result).toEqual({
      ok: false,
      retryAfterMs: 10_000,
      reasons: { b1: 'invalid', b2: 'exhausted', b3: 'model-blocked', b4: 'breaker-open' },
    });
    const none = await store.reserve(request(['b1']));
    expect(none).toEqual({ ok: false, retryAfterMs: null, reasons: { b1: 'invalid' } });
  });

  it('lets exactly one half-open probe through and frees the slot when it expires', async () => {
    await store.updateKeyState('p1', { set: { breaker: 'open', breakerOpenUntil: 999_000 }, now: 1_000_000 });
    const probe = await store.reserve(request(['p1']));
    expect(probe.ok && probe.lease.isProbe).toBe(true);
    const [state] = await store.getKeyStates(['p1']);
    expect(state).toMatchObject({ breaker: 'half-open', probeLeaseId: probe.ok ? probe.lease.id : '' });
    expect(await store.reserve(request(['p1']))).toEqual({
      ok: false,
      retryAfterMs: 30_000,
      reasons: { p1: 'probe-in-flight' },
    });
    const expired = await store.expireLeases(1_030_000);
    expect(expired.map((l) => l.id)).toContain(probe.ok ? probe.lease.id : '');
    expect(await store.expireLeases(1_030_000)).toEqual([]);
    const [freed] = await store.getKeyStates(['p1']);
    expect(freed?.probeLeaseId).toBeUndefined();
    const late = await store.settle(probe.ok ? probe.lease.id : '', {
      tokens: 1,
      costUsd: 0,
      now: 1_031_000,
    });
    expect(late.status).toBe('expired');
    expect(
      (await store.settle(probe.ok ? probe.lease.id : '', { tokens: 1, costUsd: 0, now: 1 })).status,
    ).toBe('already-settled');
  });

  it('runs a settle and a reserve issued in one tick in call order, in one batch', async () => {
    await store.updateKeyState('h1', { set: { breaker: 'open', breakerOpenUntil: 999_000 }, now: 1_000_000 });
    const probe = await store.reserve(request(['h1']));
    expect(probe.ok && probe.lease.isProbe).toBe(true);
    // Fire-and-forget release, then the next acquire: the settle frees the probe slot first.
    const settled = store.settle(probe.ok ? probe.lease.id : '', { tokens: 1, costUsd: 0, now: 1_000_001 });
    const next = store.reserve(request(['h1'], { now: 1_000_002 }));
    const others = Array.from({ length: 40 }, () => store.reserve(request(['h2'], { now: 1_000_002 })));
    expect((await settled).status).toBe('settled');
    const result = await next;
    expect(result.ok && result.lease.isProbe).toBe(true);
    expect((await Promise.all(others)).every((r) => r.ok)).toBe(true);
    const query = { now: 1_000_002, windowMs: 60_000, day: '2026-11-25', month: '2026-11' };
    expect((await store.usageSnapshot(['h2'], query))[0]).toMatchObject({
      requestsInWindow: 40,
      inFlight: 40,
    });
  });

  it('keeps a shared lease apart from its ids, whatever they hold, for another process and the sweep', async () => {
    const peer = open();
    await peer.init();
    // Separators, the group marker and multibyte characters (the lease counts the group id in bytes).
    const keyId = '\x1e7\x1fké|✓';
    const shared = { id: 'org:\x1fö|😀\x1e', limits: { rpm: 5 } };
    const sharedRequest = (now: number) => ({
      ...request([], { now }),
      candidates: [
        { keyId: 'plain', limits: { rpm: 0 } },
        { keyId, limits: {}, shared },
      ],
    });
    const taken = await store.reserve(sharedRequest(1_000_000));
    if (!taken.ok) throw new Error('expected a lease');
    expect(taken.lease).toMatchObject({ keyId, sharedId: shared.id });
    expect(await peer.getLease(taken.lease.id)).toStrictEqual(taken.lease);
    // The peer never saw the lease: the script hands it back, decoded from the stored string.
    expect(await peer.settle(taken.lease.id, { tokens: 40, costUsd: 0.1, now: 1_000_500 })).toStrictEqual({
      status: 'settled',
      lease: taken.lease,
    });
    const swept = await store.reserve(sharedRequest(1_001_000));
    if (!swept.ok) throw new Error('expected a lease');
    expect(await peer.expireLeases(1_031_000)).toContainEqual(swept.lease);
    const query = { now: 1_031_000, windowMs: 60_000, day: '2026-11-25', month: '2026-11' };
    const [group, own] = await store.usageSnapshot([shared.id, keyId], query);
    expect(group).toMatchObject({ requestsInWindow: 2, tokensInWindow: 140, tokensToday: 140, inFlight: 0 });
    expect(own).toMatchObject({ requestsInWindow: 2, tokensInWindow: 140, tokensToday: 140, inFlight: 0 });
  });

  it('enforces rpm, tpm and daily limits with retry hints', async () => {
    const limits = { rpm: 2, tpm: 1_000 };
    const at = (now: number, est = 100, keyId = 'r1') =>
      store.reserve(request([keyId], { now, estimatedTokens: est, candidates: [{ keyId, limits }] }));
    const first = await at(1_000_000);
    expect((await at(1_010_000)).ok).toBe(true);
    // Both in flight: neither can leave sooner than a window from now.
    expect(await at(1_020_000)).toMatchObject({ ok: false, retryAfterMs: 60_000, reasons: { r1: 'rpm' } });
    const id = first.ok ? first.lease.id : '';
    await store.settle(id, { tokens: 100, costUsd: 0, now: 1_020_000, respondedAt: 1_000_500 });
    expect(await at(1_030_000)).toMatchObject({ retryAfterMs: 30_500, reasons: { r1: 'rpm' } });
    expect((await at(1_060_501)).ok).toBe(true); // the first entry (answered at 1_000_500) left
    expect(await at(1_070_001, 2_000, 'r3')).toMatchObject({
      ok: false,
      retryAfterMs: null,
      reasons: { r3: 'tpm' },
    });
    const daily = { requestsPerDay: 1 };
    const d = (now: number) =>
      store.reserve(request(['r2'], { now, candidates: [{ keyId: 'r2', limits: daily }] }));
    expect((await d(1_000_000)).ok).toBe(true);
    expect(await d(1_000_001)).toMatchObject({
      retryAfterMs: 3_600_000 - 1,
      reasons: { r2: 'requests-per-day' },
    });
    await store.resetKeyState('r2', { counters: true, now: 1_000_002 });
    expect((await d(1_000_003)).ok).toBe(true);
  });

  it('keeps the sliding window exact while trimming it only now and then', async () => {
    const limits = { rpm: 3, tpm: 1_000 };
    const at = (now: number, est = 100) =>
      store.reserve(request(['w1'], { now, estimatedTokens: est, candidates: [{ keyId: 'w1', limits }] }));
    // Three requests, each answered as soon as it was sent.
    for (const [now, tokens] of [
      [1_000_000, 50],
      [1_000_010, 100],
      [1_000_020, 100],
    ] as const) {
      const lease = await at(now);
      if (lease.ok)
        await store.settle(lease.lease.id, { tokens, costUsd: 0, now: now + 5, respondedAt: now });
    }
    expect(await at(1_030_000)).toMatchObject({ reasons: { w1: 'rpm' }, retryAfterMs: 30_000 });
    expect((await at(1_060_000)).ok).toBe(true); // the first entry left; this one stays in flight
    expect(await at(1_060_005)).toMatchObject({ reasons: { w1: 'rpm' }, retryAfterMs: 5 });
    // The second left too: 100 (stamped 1_000_020) + 100 (in flight), so rpm passes and tpm refuses 900.
    expect(await at(1_060_015, 900)).toMatchObject({ reasons: { w1: 'tpm' }, retryAfterMs: 5 });
    const query = { now: 1_060_015, windowMs: 60_000, day: '2026-11-25', month: '2026-11' };
    expect((await store.usageSnapshot(['w1'], query))[0]).toMatchObject({
      requestsInWindow: 2,
      tokensInWindow: 200,
      tokensToday: 350,
      inFlight: 1,
    });

    // No limits: nothing forces a trim, yet entries past the window do not pile up.
    const client = new Redis(redisUrl);
    try {
      for (let i = 0; i < 300; i++) {
        const now = 2_000_000 + i * 1_000;
        const lease = await store.reserve(request(['w2'], { now }));
        if (lease.ok) await store.settle(lease.lease.id, { tokens: 100, costUsd: 0, now });
      }
      const held = await client.zcard(`{${prefix}}:w:w2`);
      expect(held).toBeLessThanOrEqual(60 + 15 + 1);
      const last = { now: 2_000_000 + 299 * 1_000, windowMs: 60_000, day: '2026-11-25', month: '2026-11' };
      expect((await store.usageSnapshot(['w2'], last))[0]).toMatchObject({
        requestsInWindow: 60,
        tokensInWindow: 6_000,
        requestsToday: 300,
      });
    } finally {
      client.disconnect();
    }
  });

  it('applies key state updates in order and resets them', async () => {
    const s1 = await store.updateKeyState('s1', {
      incrementFailures: true,
      set: { blockedModels: { a: 5 }, lastError: { at: 1, failure: 'server', status: 500 } },
      now: 7,
    });
    expect(s1).toEqual({
      keyId: 's1',
      breaker: 'closed',
      consecutiveFailures: 1,
      blockedModels: { a: 5 },
      lastError: { at: 1, failure: 'server', status: 500 },
      updatedAt: 7,
    });
    const s2 = await store.updateKeyState('s1', {
      resetFailures: true,
      incrementFailures: true,
      set: { blockedModels: { b: 6 } },
      clear: ['lastError'],
      now: 8,
    });
    expect(s2).toEqual({
      keyId: 's1',
      breaker: 'closed',
      consecutiveFailures: 1,
      blockedModels: { a: 5, b: 6 },
      updatedAt: 8,
    });
    await store.resetKeyState('s1', { now: 9 });
    expect(await store.getKeyStates(['s1', 'never'])).toEqual([
      { keyId: 's1', breaker: 'closed', consecutiveFailures: 0, updatedAt: 9 },
      { keyId: 'never', breaker: 'closed', consecutiveFailures: 0, updatedAt: 0 },
    ]);
  });

  it('aggregates usage by group and lists audit newest first', async () => {
    const base: UsageRecord = {
      id: 'u',
      time: 100,
      day: '2026-11-25',
      month: '2026-11',
      keyId: 'k1',
      keyAlias: 'a',
      provider: 'openai',
      inputTokens: 1,
      outputTokens: 2,
      costUsd: 0.5,
      status: 'ok',
    };
    await store.appendUsage([
      { ...base, id: 'u1', model: 'm1' },
      { ...base, id: 'u2', time: 200, status: 'error' },
      { ...base, id: 'u3', time: 300, keyId: 'k2', model: 'm1' },
    ]);
    expect(await store.queryUsage({ from: 100, to: 300 })).toEqual([
      { requests: 2, errors: 1, inputTokens: 2, outputTokens: 4, costUsd: 1 },
    ]);
    expect(await store.queryUsage({ groupBy: ['model', 'key'] })).toEqual([
      { model: null, keyId: 'k1', requests: 1, errors: 1, inputTokens: 1, outputTokens: 2, costUsd: 0.5 },
      { model: 'm1', keyId: 'k1', requests: 1, errors: 0, inputTokens: 1, outputTokens: 2, costUsd: 0.5 },
      { model: 'm1', keyId: 'k2', requests: 1, errors: 0, inputTokens: 1, outputTokens: 2, costUsd: 0.5 },
    ]);
    expect(await store.queryUsage({ keyId: 'none' })).toEqual([
      { requests: 0, errors: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 },
    ]);
    for (const id of ['e1', 'e2', 'e3']) {
      await store.appendAudit({
        id,
        time: 5,
        actor: 'cli',
        action: id === 'e2' ? 'key.disable' : 'key.create',
      });
    }
    expect((await store.listAudit()).map((e) => e.id)).toEqual(['e3', 'e2', 'e1']);
    expect((await store.listAudit({ action: 'key.create', limit: 1 })).map((e) => e.id)).toEqual(['e3']);
  });

  it('keeps pools, tokens and meta', async () => {
    await store.putPool({ id: 'p', name: 'main', keyIds: ['k1'], createdAt: 1, updatedAt: 1 });
    expect(await store.listPools()).toEqual([
      { id: 'p', name: 'main', keyIds: ['k1'], createdAt: 1, updatedAt: 1 },
    ]);
    await store.putToken({ id: 't', name: 'svc', role: 'service', tokenHash: 'h1', createdAt: 1 });
    await store.putToken({ id: 't', name: 'svc', role: 'service', tokenHash: 'h2', createdAt: 1 });
    expect(await store.getTokenByHash('h1')).toBeUndefined();
    expect((await store.getTokenByHash('h2'))?.id).toBe('t');
    expect(await store.deleteToken('t')).toBe(true);
    expect(await store.deleteToken('t')).toBe(false);
    await store.setMeta('canary', 'x');
    expect(await store.getMeta('canary')).toBe('x');
    expect(await store.getMeta('nope')).toBeUndefined();
  });
});
