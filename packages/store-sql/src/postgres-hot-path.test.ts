import type { ReserveRequest, SettleResult } from '@keypool/spec';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { sqlStore } from './index.js';
import { target } from './test-fixture.js';

const run = target('postgres');
const isUp = await run.setUp();

/** Small deterministic PRNG, so a failing sequence can be replayed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// The PL/pgSQL functions keep the sliding window as running totals; the TypeScript path (here on
// SQLite) counts the entries. Fed the same sequence, both must decide alike, every time.
describe.skipIf(!isUp)('sql:postgres functions vs the TypeScript path', () => {
  afterAll(() => run.tearDown());

  it('decide every reservation and settlement alike, with time moving forward, backward and past the window', async () => {
    await run.empty();
    const pg = run.open();
    const reference = sqlStore({ url: 'sqlite::memory:', migrate: true });
    await reference.init!();
    try {
      const random = prng(42);
      const limits = { rpm: 4, tpm: 3000, requestsPerDay: 40, tokensPerDay: 30_000 };
      let now = Date.UTC(2026, 0, 15, 12);
      const active: string[] = [];
      const seen = new Set<string>();
      for (let step = 0; step < 400; step++) {
        const roll = random();
        // Mostly forward, sometimes backward (another process's clock), sometimes past the window.
        now += roll < 0.1 ? -300 : roll < 0.15 ? 1500 : Math.floor(random() * 200);
        if (random() < 0.55 || active.length === 0) {
          const order = ['a', 'b', 'c'].sort(() => random() - 0.5);
          const request: ReserveRequest = {
            leaseId: `l${step}`,
            candidates: order.map((keyId) => ({ keyId, limits })),
            estimatedTokens: 100 + Math.floor(random() * 1400),
            estimatedCostUsd: 0,
            now,
            windowMs: 1000,
            day: '2026-01-15',
            month: '2026-01',
            dayEndsAt: now + 3_600_000,
            monthEndsAt: now + 86_400_000,
            leaseTtlMs: 700,
          };
          const [got, want] = [await pg.reserve(request), await reference.reserve(request)];
          expect(got, `step ${step}`).toStrictEqual(want);
          if (got.ok) active.push(got.lease.id);
          for (const reason of got.ok ? ['ok'] : Object.values(got.reasons)) seen.add(reason);
        } else {
          const leaseId = active.splice(Math.floor(random() * active.length), 1)[0]!;
          const settlement = { tokens: Math.floor(random() * 1600), costUsd: 0, now };
          const results: SettleResult[] = [
            await pg.settle(leaseId, settlement),
            await reference.settle(leaseId, settlement),
          ];
          expect(results[0], `step ${step}`).toStrictEqual(results[1]);
          seen.add(results[0]!.status);
        }
      }
      // The sequence did reach every outcome the window totals affect.
      expect([...seen].sort()).toEqual(['expired', 'ok', 'rpm', 'settled', 'tokens-per-day', 'tpm']);
      const query = { now, windowMs: 1000, day: '2026-01-15', month: '2026-01' };
      expect(await pg.usageSnapshot(['a', 'b', 'c'], query)).toStrictEqual(
        await reference.usageSnapshot(['a', 'b', 'c'], query),
      );
      // The running totals equal the entries above each key's floor.
      const { rows } = await sql<{ key_id: string; drift: string }>`
        select t.key_id, (t.requests - count(e.lease_id)) + (t.tokens - coalesce(sum(e.tokens), 0)) as drift
        from ${sql.table(`${run.options.schema}.window_totals`)} t
        left join ${sql.table(`${run.options.schema}.window_entries`)} e on e.key_id = t.key_id and e.reserved_at > t.floor_at
        group by t.key_id, t.requests, t.tokens`.execute(pg.db);
      expect(rows.map((r) => [r.key_id, Number(r.drift)])).toStrictEqual([
        ['a', 0],
        ['b', 0],
        ['c', 0],
      ]);
    } finally {
      await reference.close();
    }
  });

  it('functions are named with the table prefix, so two prefixes in one schema stay apart', async () => {
    const first = sqlStore({
      url: run.options.url,
      schema: run.options.schema,
      tablePrefix: 'one_',
      migrate: true,
    });
    const second = sqlStore({
      url: run.options.url,
      schema: run.options.schema,
      tablePrefix: 'two_',
      migrate: true,
    });
    try {
      await first.init!();
      await second.init!();
      const request: ReserveRequest = {
        leaseId: 'shared-id',
        candidates: [{ keyId: 'k', limits: { rpm: 1 } }],
        estimatedTokens: 1,
        estimatedCostUsd: 0,
        now: 1_000_000,
        windowMs: 60_000,
        day: 'd',
        month: 'm',
        dayEndsAt: 2_000_000,
        monthEndsAt: 3_000_000,
        leaseTtlMs: 60_000,
      };
      expect(await first.reserve(request)).toMatchObject({ ok: true });
      expect(await second.reserve(request)).toMatchObject({ ok: true });
      expect(await first.reserve({ ...request, leaseId: 'again' })).toMatchObject({
        ok: false,
        reasons: { k: 'rpm' },
      });
    } finally {
      await first.close();
      await second.close();
    }
  });
});
