import type { KeyPool, KeySpec } from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import { describe, expect, it } from 'vitest';
import { fromEnv } from './env.js';
import { ConfigError, NoKeyAvailableError } from './errors.js';
import { createKeyPool, type KeyPoolOptions } from './pool.js';
import { onFakeClock, record } from './test-support.js';

const T0 = Date.UTC(2026, 10, 26, 12, 0, 0);
// Built at run time so nothing committed looks like a real key.
const secret = (i: number) => ['sk', 'test', String(i).repeat(24)].join('-');

const key = (i: number, extra: Partial<KeySpec> = {}): KeySpec => ({
  provider: 'openai',
  secret: secret(i),
  alias: `k${i}`,
  ...extra,
});

const pools = onFakeClock(T0);
async function makePool(keys: KeySpec[], options: Partial<KeyPoolOptions> = {}): Promise<KeyPool> {
  const pool = await createKeyPool({ store: memoryStore(), keys, maxWaitMs: 0, ...options });
  pools.push(pool);
  return pool;
}

describe('organizations', () => {
  it('holds the keys of one organization to its shared rpm, whichever key declares it', async () => {
    const pool = await makePool([
      key(0, { organization: 'org-a', orgLimits: { rpm: 3 } }),
      key(1, { organization: 'org-a' }),
      key(2, { organization: 'org-b' }),
    ]);
    const aliases: string[] = [];
    for (let i = 0; i < 5; i++) aliases.push((await pool.acquire({ provider: 'openai' })).alias);
    // org-a gives 3 leases in all; org-b (no shared limits) takes the rest.
    expect(aliases.filter((a) => a !== 'k2')).toHaveLength(3);
    expect(aliases.filter((a) => a === 'k2')).toHaveLength(2);

    const health = pool.health();
    expect(health.orgs).toMatchObject([
      { id: 'org:openai:org-a', organization: 'org-a', limits: { rpm: 3 } },
      { id: 'org:openai:org-b', organization: 'org-b', limits: {} },
    ]);
    expect(health.orgs[0]?.keyIds).toHaveLength(2);
  });

  it('takes the strictest value of each field the keys declare', async () => {
    const pool = await makePool([
      key(0, { organization: 'org-a', orgLimits: { rpm: 5, tpm: 10_000 } }),
      key(1, { organization: 'org-a', orgLimits: { rpm: 2 } }),
    ]);
    expect(pool.health().orgs[0]?.limits).toStrictEqual({ rpm: 2, tpm: 10_000 });
    await pool.acquire({ provider: 'openai' });
    await pool.acquire({ provider: 'openai' });
    await expect(pool.acquire({ provider: 'openai' })).rejects.toBeInstanceOf(NoKeyAvailableError);
  });

  it('reports the shared usage and headroom after a refresh', async () => {
    const pool = await makePool([
      key(0, { organization: 'org-a', orgLimits: { rpm: 4 } }),
      key(1, { organization: 'org-a' }),
    ]);
    const lease = await pool.acquire({ provider: 'openai', estimatedTokens: 100 });
    await lease.release({ ok: true, usage: { inputTokens: 10, outputTokens: 20 } });
    await pool.acquire({ provider: 'openai' });
    await pool.refresh();
    const [org] = pool.health().orgs;
    expect(org?.usage).toMatchObject({ keyId: 'org:openai:org-a', requestsInWindow: 2, inFlight: 1 });
    expect(org?.headroom).toStrictEqual({ rpm: 0.5 });
  });

  it('a 429 on one key cools every key of its organization, and only those', async () => {
    const pool = await makePool([
      key(0, { organization: 'org-a' }),
      key(1, { organization: 'org-a' }),
      key(2, { organization: 'org-b' }),
    ]);
    const cooldowns = record(pool, 'key:cooldown');
    const lease = await pool.acquire({ provider: 'openai' });
    expect(lease.alias).toBe('k0');
    await lease.release({ ok: false, status: 429, headers: { 'retry-after': '30' } });
    expect(cooldowns.map((e) => [e.alias, e.until - T0, e.via])).toStrictEqual([
      ['k0', 30_000, undefined],
      ['k1', 30_000, 'k0'],
    ]);
    const statuses = Object.fromEntries(pool.health().keys.map((k) => [k.alias, k.status]));
    expect(statuses).toStrictEqual({ k0: 'cooling', k1: 'cooling', k2: 'active' });
    expect((await pool.acquire({ provider: 'openai' })).alias).toBe('k2');
  });

  it('a spent quota exhausts every key of its organization', async () => {
    const pool = await makePool([key(0, { organization: 'org-a' }), key(1, { organization: 'org-a' })]);
    const exhausted = record(pool, 'key:exhausted');
    const lease = await pool.acquire({ provider: 'openai' });
    await lease.release({ ok: false, status: 429, code: 'insufficient_quota' });
    expect(exhausted.map((e) => [e.alias, e.via])).toStrictEqual([
      ['k0', undefined],
      ['k1', 'k0'],
    ]);
    await expect(pool.acquire({ provider: 'openai' })).rejects.toBeInstanceOf(NoKeyAvailableError);
  });

  it('the last resort still holds the organization to its shared limits', async () => {
    const pool = await makePool(
      [key(0, { organization: 'org-a', orgLimits: { rpm: 3 } }), key(1, { organization: 'org-a' })],
      { lastResort: true },
    );
    const ok = await pool.acquire({ provider: 'openai' });
    await ok.release({ ok: true });
    const limited = await pool.acquire({ provider: 'openai' });
    await limited.release({ ok: false, status: 429, headers: { 'retry-after': '30' } });
    // Both keys cool now; the last resort serves one call, the third of the window...
    await (await pool.acquire({ provider: 'openai' })).release({ ok: true });
    // ...and no more: the organization's rpm holds even for a last resort.
    await expect(pool.acquire({ provider: 'openai' })).rejects.toBeInstanceOf(NoKeyAvailableError);
  });

  it('refuses orgLimits without an organization, naming the field', async () => {
    await expect(makePool([key(0, { orgLimits: { rpm: 3 } })])).rejects.toThrow(ConfigError);
    await expect(makePool([key(0, { orgLimits: { rpm: 3 } })])).rejects.toThrow(
      /orgLimits needs organization/,
    );
    await expect(makePool([key(0, { organization: 'org-a', orgLimits: { rpm: -1 } })])).rejects.toThrow(
      /orgLimits\.rpm must be a positive number/,
    );
  });

  it('updateKey can set orgLimits on a key that already has an organization', async () => {
    const pool = await makePool([key(0, { organization: 'org-a' })]);
    const [info] = pool.keys();
    await pool.updateKey(info!.id, { orgLimits: { tpm: 9000 } });
    expect(pool.health().orgs[0]?.limits).toStrictEqual({ tpm: 9000 });
  });

  it('fromEnv reads KEY_N_ORG_* limits, and refuses them without KEY_N_ORG', () => {
    const [spec] = fromEnv({
      KEY_1: secret(1),
      KEY_1_PROVIDER: 'openai',
      KEY_1_ORG: 'org-a',
      KEY_1_ORG_RPM: '500',
      KEY_1_ORG_BUDGET_USD: '25.5',
    });
    expect(spec).toMatchObject({ organization: 'org-a', orgLimits: { rpm: 500, monthlyBudgetUsd: 25.5 } });
    expect(() => fromEnv({ KEY_1: secret(1), KEY_1_PROVIDER: 'openai', KEY_1_ORG_RPM: '500' })).toThrow(
      /KEY_1_ORG_RPM: .*KEY_1_ORG is not set/,
    );
  });
});
