import type { ReserveRequest, UsageRecord } from '@keypool/spec';
import { describe, expect, it } from 'vitest';
import { sqlStore } from './index.js';

const now = Date.UTC(2026, 0, 15, 12);

function request(leaseId: string): ReserveRequest {
  return {
    leaseId,
    candidates: [{ keyId: 'k', limits: { rpm: 5 } }],
    estimatedTokens: 10,
    estimatedCostUsd: 0,
    now,
    windowMs: 60_000,
    day: '2026-01-15',
    month: '2026-01',
    dayEndsAt: now + 3_600_000,
    monthEndsAt: now + 86_400_000,
    leaseTtlMs: 60_000,
  };
}

function usage(id: string, leaseId: string): UsageRecord {
  const u = { id, time: now, day: '2026-01-15', month: '2026-01', keyId: 'k', keyAlias: 'k' };
  return { ...u, provider: 'openai', inputTokens: 1, outputTokens: 1, costUsd: 0, status: 'ok', leaseId };
}

// Calls made at the same moment share one SQLite transaction (group commit); each must still
// behave as if it ran alone, in the order it was made.
describe('sql:sqlite hot path, calls made together', () => {
  it('admit exactly the rpm, in call order', async () => {
    const store = sqlStore({ url: 'sqlite::memory:', migrate: true });
    try {
      await store.init!();
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => store.reserve(request(`l${i}`))),
      );
      expect(results.map((r) => r.ok)).toEqual([...Array(5).fill(true), ...Array(7).fill(false)]);
      expect(results[5]).toMatchObject({ ok: false, reasons: { k: 'rpm' } });
    } finally {
      await store.close();
    }
  });

  it('a failing call rejects alone and leaves nothing behind; the others commit', async () => {
    const store = sqlStore({ url: 'sqlite::memory:', migrate: true });
    try {
      await store.init!();
      await store.reserve(request('a'));
      await store.reserve(request('b'));
      // The same usage record id twice: the second insert fails, so its settlement rolls back.
      const settlement = (leaseId: string) => ({ tokens: 5, costUsd: 0, now, usage: usage('u1', leaseId) });
      const [first, second] = await Promise.allSettled([
        store.settle('a', settlement('a')),
        store.settle('b', settlement('b')),
      ]);
      expect(first).toMatchObject({ status: 'fulfilled', value: { status: 'settled' } });
      expect(second.status).toBe('rejected');
      expect(await store.getLease('a')).toBeUndefined();
      expect(await store.getLease('b')).toMatchObject({ id: 'b' });
      // Settled again with its own record, it lands.
      expect(await store.settle('b', { tokens: 5, costUsd: 0, now, usage: usage('u2', 'b') })).toMatchObject({
        status: 'settled',
      });
      const snapshot = await store.usageSnapshot(['k'], {
        now,
        windowMs: 60_000,
        day: '2026-01-15',
        month: '2026-01',
      });
      expect(snapshot[0]).toMatchObject({ requestsInWindow: 2, tokensInWindow: 10, inFlight: 0 });
    } finally {
      await store.close();
    }
  });
});
