import type { KeyPool, KeySpec, ReleaseOutcome } from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import { describe, expect, it, vi } from 'vitest';
import { NoKeyAvailableError } from './errors.js';
import { createKeyPool, type KeyPoolOptions } from './pool.js';
import { onFakeClock, record } from './test-support.js';

const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
// Built at run time so nothing committed looks like a real key.
const secret = (i: number) => ['sk', 'test', String(i).repeat(24)].join('-');

function keys(count: number, extra: Partial<KeySpec> = {}): KeySpec[] {
  return Array.from({ length: count }, (_, i) => ({
    provider: 'openai',
    secret: secret(i),
    alias: `k${i}`,
    ...extra,
  }));
}

const pools = onFakeClock(T0);
async function makePool(options: Partial<KeyPoolOptions> = {}): Promise<KeyPool> {
  const pool = await createKeyPool({
    store: memoryStore(),
    keys: keys(3),
    maxWaitMs: 0,
    lastResort: true,
    ...options,
  });
  pools.push(pool);
  return pool;
}

/** Leases the next key (round-robin) and reports `outcome` for it. */
async function fail(pool: KeyPool, outcome: ReleaseOutcome): Promise<string> {
  const lease = await pool.acquire({ provider: 'openai' });
  await lease.release(outcome);
  return lease.alias;
}

const rateLimited = (seconds: number): ReleaseOutcome => ({
  ok: false,
  status: 429,
  headers: { 'retry-after': String(seconds) },
});

describe('lastResort', () => {
  it('when every key cools, leases the one whose cooldown ends soonest and warns', async () => {
    const pool = await makePool();
    const warnings = record(pool, 'key:last-resort');
    expect(await fail(pool, rateLimited(30))).toBe('k0');
    expect(await fail(pool, rateLimited(10))).toBe('k1');
    expect(await fail(pool, rateLimited(20))).toBe('k2');

    const lease = await pool.acquire({ provider: 'openai', model: 'gpt-4o-mini' });
    expect(lease.alias).toBe('k1');
    expect(warnings).toEqual([
      {
        keyId: lease.keyId,
        alias: 'k1',
        provider: 'openai',
        leaseId: lease.id,
        reason: 'cooling',
        until: T0 + 10_000,
        model: 'gpt-4o-mini',
      },
    ]);
    // The cooldown stands: the key is still cooling for everyone else.
    expect(pool.health().keys.find((k) => k.alias === 'k1')).toMatchObject({
      status: 'cooling',
      until: T0 + 10_000,
    });
    await lease.release({ ok: true });
  });

  it('waits instead when a key comes back within maxWaitMs', async () => {
    const pool = await makePool({ keys: keys(2), maxWaitMs: 15_000 });
    const warnings = record(pool, 'key:last-resort');
    await fail(pool, rateLimited(10));
    await fail(pool, rateLimited(30));
    const acquiring = pool.acquire({ provider: 'openai' });
    await vi.advanceTimersByTimeAsync(10_000);
    expect((await acquiring).alias).toBe('k0');
    expect(warnings).toEqual([]);
  });

  it('is off by default', async () => {
    const pool = await makePool({ keys: keys(1), lastResort: undefined });
    const warnings = record(pool, 'key:last-resort');
    await fail(pool, rateLimited(10));
    await expect(pool.acquire({ provider: 'openai' })).rejects.toMatchObject({
      code: 'KEYPOOL_NO_KEY_AVAILABLE',
      reasons: { k0: 'cooling' },
    });
    expect(warnings).toEqual([]);
  });

  it('takes an open breaker’s key as its single half-open probe; success closes the breaker', async () => {
    const pool = await makePool({ keys: keys(1), breaker: { failureThreshold: 1, cooldownMs: 60_000 } });
    const warnings = record(pool, 'key:last-resort');
    const closed = record(pool, 'breaker:close');
    await fail(pool, { ok: false, status: 503 });
    const acquired = record(pool, 'lease:acquired');

    const probe = await pool.acquire({ provider: 'openai' });
    expect(acquired).toEqual([expect.objectContaining({ alias: 'k0', isProbe: true })]);
    expect(warnings).toEqual([
      expect.objectContaining({ alias: 'k0', reason: 'breaker-open', until: T0 + 60_000 }),
    ]);
    // One probe at a time, last resort or not.
    await expect(pool.acquire({ provider: 'openai' })).rejects.toMatchObject({
      reasons: { k0: 'probe-in-flight' },
    });
    await probe.release({ ok: true });
    expect(closed).toHaveLength(1);
    expect(pool.health().keys[0]).toMatchObject({ status: 'active', breaker: 'closed' });
  });

  it('never takes an invalid, exhausted or model-blocked key, nor one at its own limit', async () => {
    const pool = await makePool({
      keys: [...keys(3), { provider: 'openai', secret: secret(3), alias: 'k3', limits: { rpm: 1 } }],
    });
    const warnings = record(pool, 'key:last-resort');
    expect(await fail(pool, { ok: false, status: 401 })).toBe('k0');
    expect(await fail(pool, { ok: false, status: 402 })).toBe('k1');
    const blocked = await pool.acquire({ provider: 'openai', model: 'gpt-4o' });
    expect(blocked.alias).toBe('k2');
    await blocked.release({ ok: false, status: 403 });
    // k3 answered once (its rpm of 1 is used) and now cools too: still at its limit.
    const limited = await pool.acquire({ provider: 'openai', model: 'gpt-4o' });
    expect(limited.alias).toBe('k3');
    await limited.release(rateLimited(5));

    const refused = await pool.acquire({ provider: 'openai', model: 'gpt-4o' }).catch((error) => error);
    expect(refused).toBeInstanceOf(NoKeyAvailableError);
    expect(refused.reasons).toEqual({ k0: 'invalid', k1: 'exhausted', k2: 'model-blocked', k3: 'cooling' });
    expect(warnings).toEqual([]);
  });

  it('keys out for good do not stop a last resort on a cooling one', async () => {
    const pool = await makePool({ keys: keys(2) });
    await fail(pool, { ok: false, status: 401 });
    await fail(pool, rateLimited(10));
    expect((await pool.acquire({ provider: 'openai' })).alias).toBe('k1');
  });

  it('execute retries a last resort that fails on the next-soonest key', async () => {
    const pool = await makePool({ keys: keys(2), retry: { baseDelayMs: 0 } });
    const warnings = record(pool, 'key:last-resort');
    await fail(pool, rateLimited(10));
    await fail(pool, rateLimited(20));
    const calls: string[] = [];
    const answer = await pool.execute('openai', async (lease) => {
      calls.push(lease.alias);
      if (calls.length === 1) throw Object.assign(new Error('still limited'), { status: 429 });
      return 'ok';
    });
    expect(answer).toBe('ok');
    expect(calls).toEqual(['k0', 'k1']);
    expect(warnings.map((w) => w.alias)).toEqual(['k0', 'k1']);
  });

  it('rejects a lastResort that is not a boolean', async () => {
    await expect(makePool({ lastResort: 'yes' as unknown as boolean })).rejects.toMatchObject({
      code: 'KEYPOOL_INVALID_CONFIG',
    });
  });
});
