import type {
  KeyPool,
  KeySpec,
  PoolEventName,
  PoolEvents,
  ProbeResult,
  Provider,
  Store,
} from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import { type MockUpstream, startMockUpstream } from '@keypool/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeUpstreamError } from './classify.js';
import { generateMasterKey } from './crypto.js';
import { definePlugin } from './plugins.js';
import { createKeyPool, type KeyPoolOptions } from './pool.js';

// Real timers and a real HTTP upstream: probes run on their own schedule, so the tests wait for
// the events they expect (each bounded by the test's timeout), never for a fixed time.

let mock: MockUpstream;
beforeAll(async () => {
  mock = await startMockUpstream();
});
afterAll(() => mock.close());

// Built at run time so nothing committed looks like a real key.
const secret = (i: number) => ['sk', 'probe', String(i).repeat(24)].join('-');

/** Probes running right now, per key, over every pool of a test (they share this process). */
const running = new Map<string, number>();
let mostAtOnce = 0;
const signals: AbortSignal[] = [];

/** The cheapest call, as the OpenAI adapter makes it: GET {baseURL}/models with the key. */
async function probe(key: string, options: { baseURL?: string; signal?: AbortSignal }): Promise<ProbeResult> {
  if (options.signal) signals.push(options.signal);
  running.set(key, (running.get(key) ?? 0) + 1);
  mostAtOnce = Math.max(mostAtOnce, running.get(key) ?? 0);
  const startedAt = performance.now();
  try {
    const response = await fetch(`${options.baseURL}/models`, {
      headers: { authorization: `Bearer ${key}` },
      ...(options.signal && { signal: options.signal }),
    });
    await response.arrayBuffer();
    const latencyMs = performance.now() - startedAt;
    return response.ok
      ? { ok: true, latencyMs }
      : { ok: false, latencyMs, outcome: { kind: 'http', status: response.status } };
  } finally {
    running.set(key, (running.get(key) ?? 1) - 1);
  }
}

const provider: Provider = {
  specificationVersion: 'v1',
  id: 'openai',
  describeError: describeUpstreamError,
  readRateLimits: (_headers, now) => ({ observedAt: now }),
  estimateTokens: () => 0,
  probe,
};

function keySpec(i: number): KeySpec {
  return { provider: 'openai', secret: secret(i), alias: `k${i}`, baseURL: `${mock.url}/v1` };
}

const pools: KeyPool[] = [];
async function makePool(options: Partial<KeyPoolOptions> = {}): Promise<KeyPool> {
  const pool = await createKeyPool({
    store: memoryStore(),
    plugins: [
      definePlugin({ id: 'probe-test-openai', activate: (ctx) => void ctx.providers.register(provider) }),
    ],
    keys: [keySpec(0)],
    maxWaitMs: 0,
    probes: { intervalMs: 50 },
    ...options,
  });
  pools.push(pool);
  return pool;
}

/** No background probes: only the caller's probe can bring a key back. */
function quietPool(options: Partial<KeyPoolOptions> = {}): Promise<KeyPool> {
  return makePool({ probes: undefined, ...options });
}

afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.close();
  mock.reset();
  running.clear();
  mostAtOnce = 0;
  signals.length = 0;
});

/** Resolves with the first `count` payloads of `event` (from any of `from`) that match. */
function next<E extends PoolEventName>(
  from: KeyPool | KeyPool[],
  event: E,
  count = 1,
  matches: (payload: PoolEvents[E]) => boolean = () => true,
): Promise<PoolEvents[E][]> {
  const seen: PoolEvents[E][] = [];
  return new Promise((resolve) => {
    for (const pool of Array.isArray(from) ? from : [from]) {
      pool.on(event, (payload) => {
        if (!matches(payload) || seen.length >= count) return;
        seen.push(payload);
        if (seen.length === count) resolve(seen);
      });
    }
  });
}

async function fail(pool: KeyPool, status: number): Promise<void> {
  const lease = await pool.acquire({ provider: 'openai' });
  await lease.release({ ok: false, status });
}

describe('background probes', () => {
  it.each([
    [401, 'invalid'],
    [402, 'exhausted'],
  ] as const)(
    'a passing probe brings a key back after a %i, with an event and an audit entry',
    async (status, reason) => {
      const pool = await makePool();
      const passed = next(pool, 'probe:passed');
      const active = next(pool, 'key:status', 1, (e) => e.to === 'active');
      await fail(pool, status);
      expect(pool.health().keys[0]?.status).toBe(reason);

      const [event] = await passed;
      const key = pool.keys()[0]!;
      expect(event).toMatchObject({ keyId: key.id, alias: 'k0', provider: 'openai', reasons: [reason] });
      expect(await active).toEqual([expect.objectContaining({ alias: 'k0', from: reason, to: 'active' })]);
      expect(pool.health().keys[0]?.status).toBe('active');
      expect(mock.counts.log.filter((e) => e.path === '/v1/models')).toEqual([
        expect.objectContaining({ status: 200 }),
      ]);
      const audit = await pool.store.listAudit({ target: key.id });
      expect(audit).toEqual([
        expect.objectContaining({
          actor: 'probe',
          action: 'key.probe',
          details: expect.objectContaining({ reasons: [reason] }),
        }),
      ]);
      expect(JSON.stringify([event, audit])).not.toContain(secret(0));
      // Back in service.
      const lease = await pool.acquire({ provider: 'openai' });
      expect(lease.alias).toBe('k0');
      await lease.release({ ok: true });
    },
  );

  it('a failing probe leaves the key as it was and counts toward no breaker; a passing one closes it', async () => {
    const pool = await makePool({ breaker: { failureThreshold: 1, cooldownMs: 600_000 } });
    const opened: PoolEvents['breaker:open'][] = [];
    pool.on('breaker:open', (e) => opened.push(e));
    mock.setScript(secret(0), { steps: [503], repeat: true });
    const failed = next(pool, 'probe:failed', 3);
    await fail(pool, 503);

    expect(await failed).toEqual(
      Array(3).fill(
        expect.objectContaining({ alias: 'k0', reasons: ['breaker-open'], status: 503, failure: 'server' }),
      ),
    );
    const [state] = await pool.store.getKeyStates([pool.keys()[0]!.id]);
    expect(state).toMatchObject({ breaker: 'open', consecutiveFailures: 1 });
    expect(opened).toHaveLength(1);
    expect(pool.health().keys[0]).toMatchObject({ status: 'cooling', breaker: 'open' });

    const closed = next(pool, 'breaker:close');
    const passed = next(pool, 'probe:passed');
    mock.setScript(secret(0), []);
    expect(await passed).toEqual([expect.objectContaining({ reasons: ['breaker-open'] })]);
    await closed;
    expect(pool.health().keys[0]).toMatchObject({ status: 'active', breaker: 'closed' });
    expect((await pool.store.getKeyStates([pool.keys()[0]!.id]))[0]).toMatchObject({
      breaker: 'closed',
      consecutiveFailures: 0,
    });
  });

  it('skips a key another prober holds, until that claim runs out', async () => {
    // The pool's clock, so the held claim can run out without waiting for it.
    let skippedMs = 0;
    const pool = await makePool({ keys: [keySpec(0), keySpec(1)], now: () => Date.now() + skippedMs });
    const [held, free] = pool.keys();
    // Another process (or one that crashed mid-probe) holds k0's slot for a minute.
    expect(await pool.store.claimProbe?.(held!.id, { now: Date.now(), ttlMs: 60_000 })).toBe(true);
    mock.setScript(secret(1), { steps: [401], repeat: true });
    const freeProbed = next(pool, 'probe:failed', 3, (e) => e.keyId === free!.id);
    const heldBack = next(pool, 'probe:passed', 1, (e) => e.keyId === held!.id);
    await fail(pool, 401);
    await fail(pool, 401);

    await freeProbed;
    // Three rounds went by: k1 was probed in each, k0 in none (its slot was taken).
    expect(mock.counts.requests(secret(0))).toBe(0);
    skippedMs = 60_000;
    await heldBack;
    expect(pool.health().keys.find((k) => k.alias === 'k0')?.status).toBe('active');
  });

  it('pools sharing a store never probe one key at once', async () => {
    const store = sharedStore(memoryStore());
    const masterKey = generateMasterKey();
    const fleet: KeyPool[] = [];
    for (let i = 0; i < 3; i++) {
      fleet.push(await makePool({ store, masterKey, refreshMs: 50, probes: { intervalMs: 400 } }));
    }
    // Each probe takes a while, so rounds of different pools overlap.
    mock.setScript(secret(0), { steps: [{ status: 401, slow: 150 }], repeat: true });
    const failed = next(fleet, 'probe:failed', 6);
    await fail(fleet[0]!, 401);
    await failed;
    expect(mostAtOnce).toBe(1);
  });

  it('close() aborts a probe in flight and stops the timer', async () => {
    const pool = await makePool({ probes: { intervalMs: 200, timeoutMs: 200 } });
    mock.setScript(secret(0), [{ slow: 60_000 }]);
    await fail(pool, 401);
    while (signals.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    await pool.close();
    // Aborted by close, not by its own timeout.
    expect(signals[0]).toMatchObject({
      aborted: true,
      reason: expect.objectContaining({ name: 'AbortError' }),
    });
  });

  it('refuses settings it cannot honour', async () => {
    await expect(makePool({ probes: { intervalMs: 0 } })).rejects.toMatchObject({
      code: 'KEYPOOL_INVALID_CONFIG',
    });
    // Longer than a Node timer can wait: it would fire after 1 ms, again and again.
    await expect(makePool({ probes: { intervalMs: 2 ** 31 } })).rejects.toThrow(/up to 2147483647/);
    await expect(makePool({ probes: { intervalMs: 1000, timeoutMs: 2000 } })).rejects.toThrow(
      /timeoutMs .* no larger than probes.intervalMs/,
    );
    const withoutClaims = Object.assign(Object.create(memoryStore()) as Store, { claimProbe: undefined });
    await expect(makePool({ store: withoutClaims })).rejects.toThrow(/Store\.claimProbe/);
  });
});

describe('recoverKey: a probe the caller ran passed', () => {
  /** What an operator's manual test does: the provider's probe with the key, then recoverKey. */
  async function testByHand(pool: KeyPool, actor: string) {
    const key = pool.keys()[0]!;
    const result = await provider.probe!(secret(0), { baseURL: `${mock.url}/v1` });
    expect(result.ok).toBe(true);
    return pool.recoverKey(key.id, { actor, latencyMs: result.latencyMs });
  }

  it.each([
    [401, 'invalid'],
    [402, 'exhausted'],
  ] as const)(
    'brings a key back after a %i as a background probe does, audited by the caller',
    async (status, reason) => {
      const pool = await quietPool();
      const events: Array<[string, unknown]> = [];
      for (const name of ['probe:passed', 'key:status'] as const)
        pool.on(name, (e) => events.push([name, e]));
      await fail(pool, status);
      expect(pool.health().keys[0]?.status).toBe(reason);

      expect(await testByHand(pool, 'alice (tok_1)')).toEqual([reason]);
      const key = pool.keys()[0]!;
      expect(pool.health().keys[0]?.status).toBe('active');
      expect(events).toEqual([
        ['key:status', expect.objectContaining({ from: 'active', to: reason })],
        ['key:status', expect.objectContaining({ from: reason, to: 'active' })],
        ['probe:passed', expect.objectContaining({ keyId: key.id, alias: 'k0', reasons: [reason] })],
      ]);
      const audit = await pool.store.listAudit({ target: key.id });
      expect(audit).toEqual([
        expect.objectContaining({
          actor: 'alice (tok_1)',
          action: 'key.probe',
          details: expect.objectContaining({ alias: 'k0', ok: true, reasons: [reason] }),
        }),
      ]);
      expect(JSON.stringify([events, audit])).not.toContain(secret(0));
      const lease = await pool.acquire({ provider: 'openai' });
      expect(lease.alias).toBe('k0');
      await lease.release({ ok: true });
    },
  );

  it('closes an open breaker, as a success would', async () => {
    const pool = await quietPool({ breaker: { failureThreshold: 1, cooldownMs: 600_000 } });
    const closed = next(pool, 'breaker:close');
    await fail(pool, 503);
    expect(pool.health().keys[0]).toMatchObject({ status: 'cooling', breaker: 'open' });

    expect(await testByHand(pool, 'alice')).toEqual(['breaker-open']);
    await closed;
    expect(pool.health().keys[0]).toMatchObject({ status: 'active', breaker: 'closed' });
    expect((await pool.store.getKeyStates([pool.keys()[0]!.id]))[0]).toMatchObject({
      breaker: 'closed',
      consecutiveFailures: 0,
    });
  });

  it('reads the store: a key another process brought back, a healthy or a disabled key, is left alone', async () => {
    const store = sharedStore(memoryStore());
    const masterKey = generateMasterKey();
    const here = await quietPool({ store, masterKey, refreshMs: 60_000 });
    const there = await quietPool({ store, masterKey, keys: [] });
    const key = here.keys()[0]!;
    const passed: unknown[] = [];
    here.on('probe:passed', (e) => passed.push(e));

    expect(await testByHand(here, 'alice')).toEqual([]);
    await fail(here, 401);
    // Another process enables it again (which clears "invalid") before this one hears of it.
    await there.refresh();
    await there.enableKey(key.id);
    expect(await testByHand(here, 'alice')).toEqual([]);
    expect(here.health().keys[0]?.status).toBe('active');

    await fail(here, 401);
    await here.disableKey(key.id, 'rotating');
    // Disabled is the operator's call: a passing probe neither enables it nor touches its state.
    expect(await testByHand(here, 'alice')).toEqual([]);
    expect((await store.getKeyStates([key.id]))[0]?.invalidSince).toBeDefined();
    expect(passed).toEqual([]);
    expect(await store.listAudit({ target: key.id, action: 'key.probe' })).toEqual([]);
  });

  it('refuses an unknown key and a call without an actor', async () => {
    const pool = await quietPool();
    await expect(pool.recoverKey('key_nope', { actor: 'alice', latencyMs: 1 })).rejects.toMatchObject({
      code: 'KEYPOOL_UNKNOWN_KEY',
    });
    const id = pool.keys()[0]!.id;
    await expect(pool.recoverKey(id, { actor: ' ', latencyMs: 1 })).rejects.toThrow(/needs an actor/);
    await expect(pool.recoverKey(id, { actor: 'alice', latencyMs: Number.NaN })).rejects.toThrow(/latencyMs/);
  });
});

describe('testKey: an operator tests a key now', () => {
  it('a pass brings the key back, audited key.test and key.probe by the actor', async () => {
    const pool = await quietPool();
    const key = pool.keys()[0]!;
    const lease = await pool.acquire({ provider: 'openai' });
    await lease.release({ ok: false, status: 401 });
    expect(pool.health().keys[0]?.status).toBe('invalid');

    const result = await pool.testKey(key.id, { actor: 'alice' });
    expect(result).toEqual({ ok: true, latencyMs: expect.any(Number), recovered: ['invalid'] });
    expect(pool.health().keys[0]?.status).toBe('active');
    const audit = await pool.store.listAudit({ target: key.id });
    expect(audit.map((e) => [e.actor, e.action, e.details?.ok])).toEqual([
      ['alice', 'key.probe', true],
      ['alice', 'key.test', true],
    ]);
    // A key that was not out: the pass clears nothing.
    expect((await pool.testKey(key.id, { actor: 'alice' })).recovered).toEqual([]);
  });

  it('a failure changes nothing and says what the upstream answered, never the secret', async () => {
    const pool = await quietPool();
    const key = pool.keys()[0]!;
    mock.setScript(secret(0), [401]);
    const result = await pool.testKey(key.id, { actor: 'bob' });
    expect(result).toMatchObject({ ok: false, status: 401, recovered: [] });
    expect(JSON.stringify(result)).not.toContain(secret(0));
    expect(pool.health().keys[0]?.status).toBe('active');
    expect((await pool.store.listAudit({ target: key.id })).map((e) => e.action)).toEqual(['key.test']);
  });

  it('refuses a provider without a probe, an unknown key and a call without an actor', async () => {
    const { probe: _probe, ...withoutProbe } = provider;
    const pool = await quietPool({
      plugins: [
        definePlugin({ id: 'no-probe', activate: (ctx) => void ctx.providers.register(withoutProbe) }),
      ],
    });
    const id = pool.keys()[0]!.id;
    await expect(pool.testKey(id, { actor: 'alice' })).rejects.toMatchObject({ code: 'KEYPOOL_NO_PROBE' });
    await expect(pool.testKey('key_nope', { actor: 'alice' })).rejects.toMatchObject({
      code: 'KEYPOOL_UNKNOWN_KEY',
    });
    await expect(pool.testKey(id, { actor: '' })).rejects.toThrow(/needs an actor/);
    await expect(pool.testKey(id, { actor: 'alice', timeoutMs: 0 })).rejects.toThrow(/timeoutMs/);
  });
});

/**
 * One store behind several pools (a fleet in one process): every call goes to the store itself,
 * and a pool closing does not close it under the others (a memory store holds nothing to free).
 */
function sharedStore(store: Store): Store {
  return new Proxy(store, {
    get(target, name) {
      if (name === 'close') return async () => {};
      const value = Reflect.get(target, name, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
