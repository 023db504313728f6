import type { ReserveRequest } from '@keypool/spec';
import { testStore } from '@keypool/testing';
import { describe, expect, it } from 'vitest';
import { DuplicateKeyError, memoryStore } from './index.js';

testStore('memory', { create: async () => memoryStore() });

const T0 = Date.UTC(2026, 0, 15, 12);

function request(
  leaseId: string,
  keyId: string,
  now: number,
  overrides: Partial<ReserveRequest> = {},
): ReserveRequest {
  return {
    leaseId,
    candidates: [{ keyId, limits: { rpm: 10_000 } }],
    estimatedTokens: 100,
    estimatedCostUsd: 0.001,
    now,
    windowMs: 60_000,
    day: '2026-01-15',
    month: '2026-01',
    dayEndsAt: Date.UTC(2026, 0, 16),
    monthEndsAt: Date.UTC(2026, 1, 1),
    leaseTtlMs: 30_000,
    ...overrides,
  };
}

describe('memoryStore specifics', () => {
  it('names itself and says it is neither fleet-wide nor durable', () => {
    const store = memoryStore();
    expect(store.name).toBe('memory');
    expect(store.capabilities).toStrictEqual({ fleet: false, durable: false });
  });

  it('throws a DuplicateKeyError that names the existing key, not the secret', async () => {
    const store = memoryStore();
    const base = {
      alias: 'a',
      provider: 'openai',
      sealedSecret: 'sealed',
      masterKeyId: 'mk',
      fingerprint: 'fp',
      maskedSecret: 'sk-…abcd',
      priority: 0,
      weight: 1,
      limits: {},
      enabled: true,
      createdAt: T0,
      updatedAt: T0,
    };
    await store.putKey({ id: 'first', ...base });
    const error = await store.putKey({ id: 'second', ...base }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DuplicateKeyError);
    expect(error).toMatchObject({ code: 'KEYPOOL_DUPLICATE_KEY', existingKeyId: 'first' });
    expect((error as Error).message).toContain('first');
    expect((error as Error).message).not.toContain('sealed');
    await store.close();
  });

  it('stays bounded over 200k reserve/settle cycles across days, with some leases expiring', async () => {
    const store = memoryStore({ expiredLeaseRetentionMs: 10_000 });
    const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
    let now = T0;
    for (let i = 0; i < 200_000; i++) {
      now += 1;
      // A new calendar day every 20k cycles: old day counters must go.
      const day = `2026-01-${String(15 + Math.floor(i / 20_000)).padStart(2, '0')}`;
      const result = await store.reserve(request(`l${i}`, keys[i % keys.length]!, now, { day }));
      if (!result.ok) throw new Error(`cycle ${i} refused: ${JSON.stringify(result)}`);
      // Every 10th lease is never reported and expires instead.
      if (i % 10 !== 0) await store.settle(result.lease.id, { tokens: 80, costUsd: 0.0008, now });
      if (i % 1000 === 0) await store.expireLeases(now);
    }
    await store.expireLeases(now + 30_000);
    const sizes = store.debugSizes();
    expect(sizes.activeLeases).toBe(0);
    expect(sizes.hotKeys).toBe(100);
    // Only entries stamped in the last 60 s stay: settled ones (stamped at settle, 1 ms apart) and
    // the unreported ones, stamped at their expiry, which comes later — so a little over 60k.
    expect(sizes.windowEntries).toBeLessThanOrEqual(66_000);
    expect(sizes.windowCapacity).toBeLessThanOrEqual(100 * 1024);
    expect(sizes.dayCounters).toBeLessThanOrEqual(100 * 4);
    expect(sizes.monthCounters).toBe(100);
    // Expired leases are remembered for 10 s (10k cycles), one in ten of them unreported.
    expect(sizes.expiredLeases).toBeLessThanOrEqual(4_000);
  });

  it('keeps at most maxUsageRecords usage records and maxAuditEntries audit entries', async () => {
    const store = memoryStore({ maxUsageRecords: 10, maxAuditEntries: 5 });
    for (let i = 0; i < 25; i++) {
      await store.appendUsage([
        {
          id: `u${i}`,
          time: T0 + i,
          day: '2026-01-15',
          month: '2026-01',
          keyId: 'k',
          keyAlias: 'a',
          provider: 'openai',
          inputTokens: 1,
          outputTokens: 0,
          costUsd: 0,
          status: 'ok',
        },
      ]);
      await store.appendAudit({ id: `a${i}`, time: T0 + i, actor: 'cli', action: 'x' });
    }
    expect(store.debugSizes()).toMatchObject({ usageRecords: 10, auditEntries: 5 });
    // The newest survive.
    expect(await store.queryUsage({ from: T0 + 15 })).toMatchObject([{ requests: 10 }]);
    expect((await store.listAudit()).map((e) => e.id)).toStrictEqual(['a24', 'a23', 'a22', 'a21', 'a20']);
  });

  it('aggregates every usage record of a log that grew past its first allocation', async () => {
    const store = memoryStore({ maxUsageRecords: 5000 });
    const record = (i: number) => ({
      id: `u${i}`,
      time: T0 + i,
      day: '2026-01-15',
      month: '2026-01',
      keyId: `k${i % 3}`,
      keyAlias: 'a',
      provider: 'openai',
      inputTokens: i,
      outputTokens: 1,
      costUsd: 0,
      status: 'ok' as const,
    });
    for (let i = 0; i < 3000; i++) await store.appendUsage([record(i)]);
    expect(await store.queryUsage({})).toMatchObject([{ requests: 3000, inputTokens: (2999 * 3000) / 2 }]);
    for (let i = 3000; i < 6000; i++) await store.appendUsage([record(i)]);
    // The 1000 oldest are gone: 5000 records, inputs 1000..5999.
    expect(await store.queryUsage({})).toMatchObject([
      { requests: 5000, inputTokens: ((1000 + 5999) * 5000) / 2 },
    ]);
    expect(await store.queryUsage({ to: T0 + 1000 })).toMatchObject([{ requests: 0 }]);
    expect(await store.queryUsage({ keyId: 'k0', from: T0 + 5997 })).toMatchObject([{ requests: 1 }]);
  });

  it('forgets an expired lease after expiredLeaseRetentionMs: a late settle then reads already-settled', async () => {
    const store = memoryStore({ expiredLeaseRetentionMs: 1000 });
    const result = await store.reserve(request('l1', 'k', T0));
    expect(result.ok).toBe(true);
    expect(await store.expireLeases(T0 + 30_000)).toHaveLength(1);
    expect(await store.settle('l1', { tokens: 1, costUsd: 0, now: T0 + 31_001 })).toStrictEqual({
      status: 'already-settled',
    });
    expect(store.debugSizes().expiredLeases).toBe(0);
  });

  it('a key deleted with a lease in flight leaves its group holding the estimate until expiresAt', async () => {
    const store = memoryStore();
    const shared = { id: 'org:openai:o1', limits: { rpm: 5 } };
    const lease = await store.reserve(
      request('l1', 'k', T0, { candidates: [{ keyId: 'k', limits: {}, shared }] }),
    );
    expect(lease).toMatchObject({ ok: true, lease: { sharedId: shared.id } });
    await store.deleteKey('k');
    const query = { windowMs: 60_000, day: '2026-01-15', month: '2026-01' };
    expect((await store.usageSnapshot([shared.id], { now: T0 + 1, ...query }))[0]).toMatchObject({
      requestsInWindow: 1,
      tokensInWindow: 100,
      inFlight: 0,
    });
    expect(await store.settle('l1', { tokens: 1, costUsd: 0, now: T0 + 2 })).toStrictEqual({
      status: 'already-settled',
    });
    // Stamped at expiresAt (T0 + 30 s), it leaves a window after that.
    expect((await store.usageSnapshot([shared.id], { now: T0 + 90_000, ...query }))[0]).toMatchObject({
      requestsInWindow: 0,
    });
  });

  it('two memory stores never share state', async () => {
    const a = memoryStore();
    const b = memoryStore();
    await a.setMeta('x', '1');
    await a.reserve(request('l1', 'k', T0));
    expect(await b.getMeta('x')).toBeUndefined();
    expect(await b.getLease('l1')).toBeUndefined();
  });
});
