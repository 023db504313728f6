import type { KeyPool, KeySpec } from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import { describe, expect, it, vi } from 'vitest';
import { generateMasterKey } from './crypto.js';
import { KeypoolError, NoKeyAvailableError } from './errors.js';
import { definePlugin } from './plugins.js';
import { createKeyPool, type KeyPoolOptions } from './pool.js';
import { onFakeClock, record } from './test-support.js';

const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
const SECRETS = [
  'sk-test-aaaaaaaaaaaaaaaa1111',
  'sk-test-bbbbbbbbbbbbbbbb2222',
  'sk-test-cccccccccccccccc3333',
];

function keys(count: number, extra: Partial<KeySpec> = {}): KeySpec[] {
  return Array.from({ length: count }, (_, i) => ({
    provider: 'openai',
    secret: SECRETS[i] ?? `sk-test-${String(i).padStart(20, 'x')}`,
    alias: `k${i}`,
    ...extra,
  }));
}

const pools = onFakeClock(T0);
async function makePool(options: Partial<KeyPoolOptions> = {}): Promise<KeyPool> {
  const pool = await createKeyPool({ store: memoryStore(), keys: keys(2), maxWaitMs: 0, ...options });
  pools.push(pool);
  return pool;
}

async function use(pool: KeyPool, options: Parameters<KeyPool['acquire']>[0] = { provider: 'openai' }) {
  const lease = await pool.acquire(options);
  await lease.release({ ok: true, usage: { inputTokens: 1, outputTokens: 1 } });
  return lease.alias;
}

/**
 * A memory store whose `method` answers with what it held when called, but, while held, only once
 * let go: the read is "in flight" across what the test does meanwhile, as over a slow database.
 */
function heldReads(method: 'getKeyStates' | 'listKeys') {
  const inner = memoryStore();
  let isHolding = false;
  const waiting: Array<() => void> = [];
  const store = new Proxy(inner, {
    get(target, name, receiver) {
      if (name !== method) return Reflect.get(target, name, receiver);
      return async (...args: never[]) => {
        const answer = await (target[method] as (...a: never[]) => Promise<unknown>)(...args);
        if (isHolding) await new Promise<void>((resolve) => waiting.push(resolve));
        return answer;
      };
    },
  });
  return {
    store,
    /** Starts `call` and resolves once its read is held; `finish()` lets the read go and awaits the call. */
    async holdDuring(call: () => Promise<unknown>) {
      isHolding = true;
      const running = call();
      while (waiting.length === 0) await Promise.resolve();
      isHolding = false;
      const release = waiting.shift()!;
      return {
        finish: async () => {
          release();
          await running;
        },
      };
    },
  };
}

describe('selection', () => {
  it('rotates round-robin across the keys of a provider', async () => {
    const pool = await makePool({ keys: keys(3) });
    const served = [];
    for (let i = 0; i < 6; i++) served.push(await use(pool));
    expect(served).toEqual(['k0', 'k1', 'k2', 'k0', 'k1', 'k2']);
  });

  it('only hands out keys of the asked provider and allowed model', async () => {
    const pool = await makePool({
      keys: [
        { provider: 'openai', secret: SECRETS[0] as string, alias: 'mini-only', models: ['gpt-4o-mini*'] },
        { provider: 'anthropic', secret: SECRETS[1] as string, alias: 'claude' },
        { provider: 'openai', secret: SECRETS[2] as string, alias: 'any' },
      ],
    });
    expect(await use(pool, { provider: 'anthropic' })).toBe('claude');
    expect(await use(pool, { provider: 'openai', model: 'gpt-4o' })).toBe('any');
    const served = new Set<string>();
    for (let i = 0; i < 4; i++)
      served.add(await use(pool, { provider: 'openai', model: 'gpt-4o-mini-2024-07-18' }));
    expect(served).toEqual(new Set(['mini-only', 'any']));
    await expect(pool.acquire({ provider: 'gemini' })).rejects.toMatchObject({
      code: 'KEYPOOL_NO_KEY_AVAILABLE',
      retryAfterMs: null,
    });
  });

  it('serves the primary tier first, falls back while it cools, and returns when it recovers', async () => {
    const pool = await makePool({
      keys: [
        { provider: 'openai', secret: SECRETS[0] as string, alias: 'primary' },
        { provider: 'openai', secret: SECRETS[1] as string, alias: 'fallback', priority: 1 },
      ],
    });
    expect(await use(pool)).toBe('primary');
    expect(await use(pool)).toBe('primary');
    const lease = await pool.acquire({ provider: 'openai' });
    await lease.release({ ok: false, status: 429, headers: { 'retry-after': '20' } });
    expect(await use(pool)).toBe('fallback');
    await vi.advanceTimersByTimeAsync(20_001);
    expect(await use(pool)).toBe('primary');
  });

  it('sticks an affinity to one key while it stays eligible, then moves it', async () => {
    const pool = await makePool({ keys: keys(3) });
    const first = await use(pool, { provider: 'openai', affinity: 'case-42' });
    for (let i = 0; i < 5; i++)
      expect(await use(pool, { provider: 'openai', affinity: 'case-42' })).toBe(first);
    const lease = await pool.acquire({ provider: 'openai', affinity: 'case-42' });
    await lease.release({ ok: false, status: 429 });
    const moved = await use(pool, { provider: 'openai', affinity: 'case-42' });
    expect(moved).not.toBe(first);
    expect(await use(pool, { provider: 'openai', affinity: 'case-42' })).toBe(moved);
  });

  it.each(['random', 'least-used', 'weighted', 'priority', 'latency'] as const)(
    'strategy %s serves every eligible key',
    async (strategy) => {
      const pool = await makePool({ keys: keys(3), strategy });
      const served = new Set<string>();
      for (let i = 0; i < 60; i++) {
        const lease = await pool.acquire({ provider: 'openai' });
        served.add(lease.alias);
        // Hold some leases so least-used and latency have something to balance.
        if (i % 2 === 0) await lease.release({ ok: true, latencyMs: 10 + i });
        else void lease.release({ ok: true, latencyMs: 5 });
      }
      if (strategy === 'priority') expect(served).toEqual(new Set(['k0']));
      else expect(served.size).toBeGreaterThanOrEqual(2);
    },
  );

  it('weighted strategy shares traffic in proportion to weight', async () => {
    const pool = await makePool({
      strategy: 'weighted',
      keys: [
        { provider: 'openai', secret: SECRETS[0] as string, alias: 'heavy', weight: 3 },
        { provider: 'openai', secret: SECRETS[1] as string, alias: 'light', weight: 1 },
      ],
    });
    const counts: Record<string, number> = { heavy: 0, light: 0 };
    for (let i = 0; i < 2000; i++) {
      const alias = await use(pool);
      counts[alias] = (counts[alias] ?? 0) + 1;
    }
    const share = (counts.heavy ?? 0) / ((counts.heavy ?? 0) + (counts.light ?? 0));
    expect(share).toBeGreaterThan(0.68);
    expect(share).toBeLessThan(0.82);
  });

  it('accepts a custom strategy function and plugin-registered strategies', async () => {
    const reverse = await makePool({ keys: keys(3), strategy: (ks) => [...ks].reverse() });
    expect(await use(reverse)).toBe('k2');
    const plugin = definePlugin({
      id: 'last-first',
      activate(ctx) {
        ctx.subscriptions.push(ctx.strategies.register('last-first', (ks) => [...ks].reverse()));
      },
    });
    const viaPlugin = await makePool({ keys: keys(3), plugins: [plugin], strategy: 'last-first' });
    expect(await use(viaPlugin)).toBe('k2');
    await expect(makePool({ strategy: 'nope' })).rejects.toThrow(/strategy "nope" is unknown/);
  });
});

describe('failure table', () => {
  async function failOnce(
    pool: KeyPool,
    outcome: Parameters<Awaited<ReturnType<KeyPool['acquire']>>['release']>[0],
    model?: string,
  ) {
    const lease = await pool.acquire({ provider: 'openai', ...(model !== undefined && { model }) });
    const classification = await lease.release(outcome);
    return { alias: lease.alias, classification };
  }

  it('429 cools the key until retry-after, then it serves again', async () => {
    const pool = await makePool({ keys: keys(1) });
    const cooldowns = record(pool, 'key:cooldown');
    const { classification } = await failOnce(pool, {
      ok: false,
      status: 429,
      headers: { 'retry-after': '7' },
    });
    expect(classification).toMatchObject({ failure: 'rate-limit', retryable: true, cooldownMs: 7000 });
    expect(cooldowns).toEqual([expect.objectContaining({ alias: 'k0', cooldownMs: 7000 })]);
    expect(pool.health().keys[0]).toMatchObject({ status: 'cooling', until: T0 + 7000 });
    await expect(pool.acquire({ provider: 'openai' })).rejects.toMatchObject({ retryAfterMs: 7000 });
    await vi.advanceTimersByTimeAsync(7000);
    expect(await use(pool)).toBe('k0');
  });

  it('429 without headers cools for 60 s; x-ratelimit-reset Go durations are honoured', async () => {
    const pool = await makePool({ keys: keys(2) });
    await failOnce(pool, { ok: false, status: 429 });
    await failOnce(pool, { ok: false, status: 429, headers: { 'x-ratelimit-reset-requests': '1m30s' } });
    const [a, b] = pool.health().keys;
    expect(a?.until).toBe(T0 + 60_000);
    expect(b?.until).toBe(T0 + 90_000);
  });

  it('insufficient_quota and 402 exhaust the key until the day ends', async () => {
    const pool = await makePool({ keys: keys(2) });
    const exhausted = record(pool, 'key:exhausted');
    await failOnce(pool, { ok: false, status: 429, code: 'insufficient_quota' });
    await failOnce(pool, { ok: false, status: 402 });
    const endOfDay = Date.UTC(2026, 10, 26);
    expect(exhausted.map((e) => e.until)).toEqual([endOfDay, endOfDay]);
    expect(pool.health()).toMatchObject({ status: 'down' });
    await expect(pool.acquire({ provider: 'openai' })).rejects.toBeInstanceOf(NoKeyAvailableError);
  });

  it('401 marks the key invalid: no more traffic until an operator re-enables it', async () => {
    const pool = await makePool({ keys: keys(2) });
    const invalid = record(pool, 'key:invalid');
    const { alias } = await failOnce(pool, { ok: false, status: 401 });
    expect(invalid).toHaveLength(1);
    for (let i = 0; i < 5; i++) expect(await use(pool)).not.toBe(alias);
    await vi.advanceTimersByTimeAsync(24 * 3600_000);
    expect(pool.health().keys.find((k) => k.alias === alias)?.status).toBe('invalid');
    const id = pool.keys().find((k) => k.alias === alias)?.id as string;
    await pool.enableKey(id);
    const served = new Set<string>();
    for (let i = 0; i < 4; i++) served.add(await use(pool));
    expect(served.has(alias)).toBe(true);
  });

  it('a refresh that read the key state before a 401 marked it invalid does not bring it back', async () => {
    const states = heldReads('getKeyStates');
    const pool = await makePool({ store: states.store, keys: keys(1) });
    const refresh = await states.holdDuring(() => pool.refresh());
    const { alias } = await failOnce(pool, { ok: false, status: 401 });
    expect(pool.health().keys[0]).toMatchObject({ alias, status: 'invalid' });
    await refresh.finish();
    expect(pool.health().keys[0]?.status).toBe('invalid');
    await expect(pool.acquire({ provider: 'openai' })).rejects.toBeInstanceOf(NoKeyAvailableError);
  });

  it('a refresh that listed the keys before this pool disabled one does not enable it again', async () => {
    const list = heldReads('listKeys');
    const pool = await makePool({ store: list.store, keys: keys(2) });
    const [k0, k1] = pool.keys();
    // Another process changes a record, so the next refresh lists the keys again.
    await list.store.putKey({ ...(await list.store.getKey(k1!.id))!, priority: 1, updatedAt: T0 + 1 });
    const refresh = await list.holdDuring(() => pool.refresh());
    vi.setSystemTime(T0 + 5_000); // the disabled record is newer than the listed one
    await pool.disableKey(k0!.id, 'leaked');
    await refresh.finish();
    expect(pool.health().keys.find((k) => k.id === k0!.id)?.status).toBe('disabled');
    for (let i = 0; i < 3; i++) expect(await use(pool)).toBe('k1');
    // The list it dropped is read again on the next refresh: the other process's change arrives.
    await pool.refresh();
    expect(pool.keys().find((k) => k.id === k1!.id)?.priority).toBe(1);
    expect(pool.health().keys.find((k) => k.id === k0!.id)?.status).toBe('disabled');
  });

  it('403 excludes the key for that model only', async () => {
    const pool = await makePool({ keys: keys(2) });
    const { alias } = await failOnce(pool, { ok: false, status: 403 }, 'gpt-4o');
    for (let i = 0; i < 4; i++)
      expect(await use(pool, { provider: 'openai', model: 'gpt-4o' })).not.toBe(alias);
    const served = new Set<string>();
    for (let i = 0; i < 4; i++) served.add(await use(pool, { provider: 'openai', model: 'gpt-4o-mini' }));
    expect(served.has(alias)).toBe(true);
  });

  it.each([500, 503, 529])(
    '%i counts toward the breaker: open after 3, one half-open probe, closed on success',
    async (status) => {
      const pool = await makePool({ keys: keys(1), breaker: { failureThreshold: 3, cooldownMs: 10_000 } });
      const opened = record(pool, 'breaker:open');
      const closed = record(pool, 'breaker:close');
      for (let i = 0; i < 2; i++) await failOnce(pool, { ok: false, status });
      expect(opened).toHaveLength(0);
      await failOnce(pool, { ok: false, status });
      expect(opened).toEqual([expect.objectContaining({ alias: 'k0', failures: 3, until: T0 + 10_000 })]);
      await expect(pool.acquire({ provider: 'openai' })).rejects.toMatchObject({
        reasons: { k0: 'breaker-open' },
      });
      await vi.advanceTimersByTimeAsync(10_000);
      const probe = await pool.acquire({ provider: 'openai' });
      // Only one probe at a time.
      await expect(pool.acquire({ provider: 'openai' })).rejects.toMatchObject({
        reasons: { k0: 'probe-in-flight' },
      });
      await probe.release({ ok: true });
      expect(closed).toHaveLength(1);
      expect(pool.health().keys[0]?.breaker).toBe('closed');
      expect(await use(pool)).toBe('k0');
    },
  );

  it('a failed probe reopens the breaker at once', async () => {
    const pool = await makePool({ keys: keys(1), breaker: { failureThreshold: 2, cooldownMs: 5000 } });
    const opened = record(pool, 'breaker:open');
    await failOnce(pool, { ok: false, kind: 'timeout' });
    await failOnce(pool, { ok: false, kind: 'connection' });
    await vi.advanceTimersByTimeAsync(5000);
    await failOnce(pool, { ok: false, status: 502 });
    expect(opened).toHaveLength(2);
    await expect(pool.acquire({ provider: 'openai' })).rejects.toMatchObject({
      reasons: { k0: 'breaker-open' },
    });
  });

  it.each([400, 404, 409, 422])('%i is the caller’s fault: not retryable, no key effect', async (status) => {
    const pool = await makePool({ keys: keys(1), breaker: { failureThreshold: 1 } });
    const { classification } = await failOnce(pool, { ok: false, status });
    expect(classification).toMatchObject({ failure: 'caller', retryable: false });
    expect(pool.health().keys[0]).toMatchObject({ status: 'active', breaker: 'closed' });
  });

  it('a success resets the consecutive failure count', async () => {
    const pool = await makePool({ keys: keys(1), breaker: { failureThreshold: 2 } });
    const opened = record(pool, 'breaker:open');
    await failOnce(pool, { ok: false, status: 500 });
    await use(pool);
    await failOnce(pool, { ok: false, status: 500 });
    expect(opened).toHaveLength(0);
  });
});

describe('limits', () => {
  it('never exceeds rpm under 1,000 concurrent acquires', async () => {
    const pool = await makePool({ keys: keys(3, { limits: { rpm: 50 } }) });
    const results = await Promise.allSettled(
      Array.from({ length: 1000 }, () => pool.acquire({ provider: 'openai' })),
    );
    const leases = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(leases).toHaveLength(150);
    const perKey = new Map<string, number>();
    for (const lease of leases) perKey.set(lease.alias, (perKey.get(lease.alias) ?? 0) + 1);
    expect([...perKey.values()]).toEqual([50, 50, 50]);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(NoKeyAvailableError);
    expect(rejected.reason.retryAfterMs).toBe(60_000);
  });

  it('holds tpm in any sliding 60 s window, reconciling estimates with actual usage', async () => {
    const pool = await makePool({ keys: keys(1, { limits: { tpm: 1000 } }) });
    const a = await pool.acquire({ provider: 'openai', estimatedTokens: 600 });
    await expect(pool.acquire({ provider: 'openai', estimatedTokens: 600 })).rejects.toMatchObject({
      reasons: { k0: 'tpm' },
    });
    // Actual usage was lower: the difference comes back at once.
    await a.release({ ok: true, usage: { inputTokens: 100, outputTokens: 100 } });
    const b = await pool.acquire({ provider: 'openai', estimatedTokens: 600 });
    await b.release({ ok: true, usage: { inputTokens: 300, outputTokens: 300 } });
    await expect(pool.acquire({ provider: 'openai', estimatedTokens: 300 })).rejects.toMatchObject({
      retryAfterMs: 60_000,
    });
    await vi.advanceTimersByTimeAsync(60_001);
    await expect(pool.acquire({ provider: 'openai', estimatedTokens: 900 })).resolves.toBeDefined();
  });

  it('counts a request in the window from when upstream responded, and always while in flight', async () => {
    const pool = await makePool({ keys: keys(1, { limits: { rpm: 1 } }) });
    const lease = await pool.acquire({ provider: 'openai' });
    await vi.advanceTimersByTimeAsync(120_000);
    // Two minutes later the request is still out there: the slot stays taken.
    await expect(pool.acquire({ provider: 'openai' })).rejects.toMatchObject({ retryAfterMs: 60_000 });
    await lease.release({ ok: true, respondedAt: T0 + 100_000 });
    await expect(pool.acquire({ provider: 'openai' })).rejects.toMatchObject({ retryAfterMs: 40_000 });
    await vi.advanceTimersByTimeAsync(40_000);
    await expect(use(pool)).resolves.toBe('k0');
  });

  it('waits for the earliest key up to maxWaitMs instead of failing', async () => {
    const pool = await makePool({ keys: keys(1, { limits: { rpm: 1 } }), maxWaitMs: 120_000 });
    await use(pool);
    const waiting = pool.acquire({ provider: 'openai' });
    let done = false;
    void waiting.then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(59_000);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1_001);
    expect(done).toBe(true);
    expect(pool.stats().waits).toBeGreaterThanOrEqual(1);
  });

  it('fails at once when the wait would exceed maxWaitMs, with retryAfterMs', async () => {
    const pool = await makePool({ keys: keys(1, { limits: { rpm: 1 } }), maxWaitMs: 1000 });
    await use(pool);
    const error = await pool.acquire({ provider: 'openai' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoKeyAvailableError);
    expect(error).toMatchObject({ code: 'KEYPOOL_NO_KEY_AVAILABLE', retryAfterMs: 60_000 });
    expect((error as Error).message).toMatch(/k0: rpm/);
  });

  it('a waiting acquire honours its abort signal', async () => {
    const pool = await makePool({ keys: keys(1, { limits: { rpm: 1 } }), maxWaitMs: 120_000 });
    await use(pool);
    const controller = new AbortController();
    const waiting = pool.acquire({ provider: 'openai', signal: controller.signal });
    controller.abort(new Error('user gave up'));
    await expect(waiting).rejects.toThrow('user gave up');
  });

  it('daily limits roll over at midnight in the pool time zone', async () => {
    // 23:30 in Berlin (UTC+1 in November).
    vi.setSystemTime(Date.UTC(2026, 10, 25, 22, 30));
    const pool = await makePool({
      keys: keys(1, { limits: { requestsPerDay: 2 } }),
      timeZone: 'Europe/Berlin',
    });
    await use(pool);
    await use(pool);
    const error = (await pool
      .acquire({ provider: 'openai' })
      .catch((e: unknown) => e)) as NoKeyAvailableError;
    expect(error.reasons).toEqual({ k0: 'requests-per-day' });
    expect(error.retryAfterMs).toBe(30 * 60_000);
    await vi.advanceTimersByTimeAsync(30 * 60_000);
    await expect(use(pool)).resolves.toBe('k0');
  });

  it('monthly budgets hold across the month and roll over with it', async () => {
    vi.setSystemTime(Date.UTC(2026, 10, 30, 23, 0));
    const pool = await makePool({
      keys: keys(1, { limits: { monthlyBudgetUsd: 1 } }),
      prices: { 'test-model': { inputPerMTok: 1_000_000, outputPerMTok: 1_000_000 } },
    });
    const lease = await pool.acquire({ provider: 'openai', model: 'test-model', estimatedTokens: 0 });
    // One token costs $1 at this price: the budget is spent.
    await lease.release({ ok: true, usage: { inputTokens: 1, outputTokens: 0 } });
    const error = (await pool
      .acquire({ provider: 'openai', model: 'test-model', estimatedTokens: 1 })
      .catch((e: unknown) => e)) as NoKeyAvailableError;
    expect(error.reasons).toEqual({ k0: 'monthly-budget' });
    expect(error.retryAfterMs).toBe(3600_000);
    await vi.advanceTimersByTimeAsync(3600_000);
    await expect(
      pool.acquire({ provider: 'openai', model: 'test-model', estimatedTokens: 1 }),
    ).resolves.toBeDefined();
  });
});

describe('leases', () => {
  it('release is idempotent and records usage once', async () => {
    const pool = await makePool({ keys: keys(1) });
    const lease = await pool.acquire({ provider: 'openai', model: 'gpt-4o-mini' });
    await Promise.all([
      lease.release({ ok: true, usage: { inputTokens: 10, outputTokens: 5 } }),
      lease.release({ ok: true, usage: { inputTokens: 10, outputTokens: 5 } }),
    ]);
    await lease.release({ ok: false, status: 500 });
    const [totals] = await pool.store.queryUsage({});
    expect(totals).toMatchObject({ requests: 1, errors: 0, inputTokens: 10, outputTokens: 5 });
    expect(pool.health().keys[0]?.breaker).toBe('closed');
  });

  it('release never rejects on a store failure: it reports an error event instead', async () => {
    const store = memoryStore();
    const pool = await makePool({ store, keys: keys(1) });
    const errors = record(pool, 'error');
    store.settle = async () => {
      throw new Error('store unreachable');
    };
    const lease = await pool.acquire({ provider: 'openai' });
    await expect(lease.release({ ok: false, status: 429 })).resolves.toMatchObject({ failure: 'rate-limit' });
    expect(errors).toEqual([expect.objectContaining({ during: 'release of a lease on k0' })]);
    expect(pool.stats().inFlight).toBe(0);
  });

  it('an unreleased lease expires and frees its in-flight slot; a late release is still logged', async () => {
    const pool = await makePool({ keys: keys(1), leaseTtlMs: 5000, refreshMs: 1000 });
    const expired = record(pool, 'lease:expired');
    const lease = await pool.acquire({ provider: 'openai' });
    expect(pool.stats().inFlight).toBe(1);
    await vi.advanceTimersByTimeAsync(6000);
    expect(expired).toEqual([expect.objectContaining({ leaseId: lease.id })]);
    expect(pool.stats().inFlight).toBe(0);
    await lease.release({ ok: true, usage: { inputTokens: 3, outputTokens: 4 } });
    const [totals] = await pool.store.queryUsage({});
    expect(totals).toMatchObject({ requests: 1, inputTokens: 3, outputTokens: 4 });
  });

  it('the lease carries the secret; health, stats, events and errors never do', async () => {
    const pool = await makePool({ keys: keys(2) });
    const events: unknown[] = [];
    for (const name of ['lease:acquired', 'lease:released', 'key:cooldown', 'key:status'] as const) {
      pool.on(name, (e) => events.push(e));
    }
    const lease = await pool.acquire({ provider: 'openai' });
    expect(SECRETS).toContain(lease.secret);
    await lease.release({ ok: false, status: 429, error: new Error(`bad key ${lease.secret}`) });
    const error = await pool.acquire({ provider: 'nope' }).catch((e: unknown) => e);
    const everything = JSON.stringify([pool.health(), pool.stats(), pool.keys(), events, String(error)]);
    for (const secret of SECRETS) expect(everything).not.toContain(secret);
    expect(everything).toContain('…');
  });
});

describe('execute', () => {
  it('retries on another key after a retryable failure and returns the result', async () => {
    const pool = await makePool({ keys: keys(3) });
    const retries = record(pool, 'request:retry');
    const seen: string[] = [];
    const result = await pool.execute('openai', async (lease) => {
      seen.push(lease.alias);
      if (seen.length < 3) throw Object.assign(new Error('rate limited'), { status: 429 });
      return 'ok';
    });
    expect(result).toBe('ok');
    expect(new Set(seen).size).toBe(3);
    expect(retries).toHaveLength(2);
  });

  it('rethrows caller errors at once without touching other keys', async () => {
    const pool = await makePool({ keys: keys(3) });
    const error = Object.assign(new Error('bad request'), { status: 400 });
    let calls = 0;
    await expect(
      pool.execute('openai', async () => {
        calls++;
        throw error;
      }),
    ).rejects.toBe(error);
    expect(calls).toBe(1);
    expect(pool.health().status).toBe('healthy');
  });

  it('never makes more than maxAttempts and backs off with jitter between breaker failures', async () => {
    const pool = await makePool({
      keys: keys(3),
      retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1000 },
      random: () => 0.999,
    });
    const retries = record(pool, 'request:retry');
    let calls = 0;
    const running = pool.execute('openai', async () => {
      calls++;
      throw Object.assign(new Error('upstream 503'), { status: 503 });
    });
    const settled = running.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1000);
    expect(await settled).toMatchObject({ status: 503 });
    expect(calls).toBe(3);
    expect(retries.map((r) => r.delayMs)).toEqual([99, 199]);
  });

  it('honours the abort signal between attempts', async () => {
    const pool = await makePool({
      keys: keys(3),
      retry: { baseDelayMs: 10_000, maxDelayMs: 10_000 },
      random: () => 0.5,
    });
    const controller = new AbortController();
    const running = pool.execute(
      'openai',
      async () => {
        throw Object.assign(new Error('boom'), { status: 500 });
      },
      { signal: controller.signal },
    );
    const settled = running.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(10);
    controller.abort(new Error('stop'));
    expect(await settled).toMatchObject({ message: 'stop' });
  });

  it('throws the last upstream error when every key has failed', async () => {
    const pool = await makePool({ keys: keys(2), retry: { maxAttempts: 5 } });
    let calls = 0;
    const error = await pool
      .execute('openai', async () => {
        calls++;
        throw Object.assign(new Error(`quota ${calls}`), { status: 429, code: 'insufficient_quota' });
      })
      .catch((e: unknown) => e);
    expect(calls).toBe(2);
    expect(error).toMatchObject({ message: 'quota 2' });
  });
});

describe('lifecycle and plugins', () => {
  it('close() disposes plugin subscriptions in reverse order and leaves no timers', async () => {
    const order: string[] = [];
    const plugin = (id: string) =>
      definePlugin({
        id,
        activate(ctx) {
          ctx.subscriptions.push({ dispose: () => order.push(`${id}:a`) });
          ctx.subscriptions.push({ dispose: () => order.push(`${id}:b`) });
        },
      });
    const pool = await createKeyPool({
      store: memoryStore(),
      keys: keys(2),
      plugins: [plugin('one'), plugin('two')],
      maxWaitMs: 60_000,
    });
    const lease = await pool.acquire({ provider: 'openai' });
    await lease.release({ ok: false, status: 500 });
    expect(vi.getTimerCount()).toBeGreaterThan(0);
    await pool.close();
    expect(order).toEqual(['two:b', 'two:a', 'one:b', 'one:a']);
    expect(vi.getTimerCount()).toBe(0);
    await expect(pool.acquire({ provider: 'openai' })).rejects.toMatchObject({ code: 'KEYPOOL_CLOSED' });
  });

  it('refuses duplicate plugin ids and duplicate provider registrations', async () => {
    const p = definePlugin({ id: 'same', activate() {} });
    await expect(makePool({ plugins: [p, p] })).rejects.toMatchObject({ code: 'KEYPOOL_DUPLICATE_PLUGIN' });
  });

  it('on() returns a Disposable that stops the listener', async () => {
    const pool = await makePool({ keys: keys(1) });
    let count = 0;
    const sub = pool.on('lease:acquired', () => count++);
    await use(pool);
    sub.dispose();
    await use(pool);
    expect(count).toBe(1);
  });

  it('durable stores need a master key; the error says how to make one', async () => {
    const store = memoryStore();
    Object.defineProperty(store, 'capabilities', { value: { fleet: true, durable: true } });
    const error = await createKeyPool({ store, keys: keys(1) }).catch((e: unknown) => e);
    expect(KeypoolError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: 'KEYPOOL_MASTER_KEY' });
    expect(String(error)).toMatch(/KEYPOOL_MASTER_KEY/);
  });

  it('rejects bad key specs naming the field, never the secret', async () => {
    const bad = {
      provider: 'openai',
      secret: 'sk-test-secret-value-1234',
      alias: 'bad',
      limits: { rpm: -1 },
    };
    const error = await makePool({ keys: [bad] }).catch((e: unknown) => e);
    expect(String(error)).toMatch(/limits\.rpm must be a positive number/);
    expect(String(error)).not.toContain('sk-test-secret-value-1234');
  });

  it('restricts acquire to a stored pool and follows membership changes without a key change', async () => {
    const pool = await makePool({ keys: keys(2) });
    const [a, b] = pool.keys();
    const now = Date.now();
    await pool.store.putPool({ id: 'team', name: 'team', keyIds: [a!.id], createdAt: now, updatedAt: now });
    await pool.refresh();
    for (let i = 0; i < 3; i++) expect(await use(pool, { provider: 'openai', pool: 'team' })).toBe('k0');
    await pool.store.putPool({
      id: 'team',
      name: 'team',
      keyIds: [b!.id],
      createdAt: now,
      updatedAt: now + 1,
    });
    await pool.refresh();
    expect(await use(pool, { provider: 'openai', pool: 'team' })).toBe('k1');
  });

  it('collapses duplicate secrets and keeps operator changes across restarts of a shared store', async () => {
    const store = memoryStore();
    const closeStore = store.close.bind(store);
    store.close = async () => {};
    const masterKey = generateMasterKey();
    const first = await createKeyPool({ store, masterKey, keys: [...keys(2), ...keys(2)], maxWaitMs: 0 });
    expect(first.keys()).toHaveLength(2);
    const k0 = first.keys().find((k) => k.alias === 'k0')?.id as string;
    await first.disableKey(k0, 'rotating');
    await first.close();
    const second = await createKeyPool({ store, masterKey, keys: keys(2), maxWaitMs: 0 });
    pools.push(second);
    expect(second.keys().find((k) => k.id === k0)).toMatchObject({
      enabled: false,
      disabledReason: 'rotating',
    });
    expect(second.health().keys.find((k) => k.id === k0)?.status).toBe('disabled');
    store.close = closeStore;
  });
});
