import { isServiceAvailable } from '@keypool/testing';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { sqlStore } from './index.js';
import { runMigrations } from './schema.js';
import { DIALECTS, migrationRequest as request, T0, target, WINDOW_MS } from './test-fixture.js';

// A database written before migration 0003 (entries without stamps) upgrades in place: entries
// of settled leases keep counting from reserved_at, those of leases swept unreported count from
// expires_at, and those of leases still in flight stay unstamped until they end.
for (const dialect of DIALECTS) {
  const run = target(dialect);
  const isUp =
    dialect === 'sqlite' ||
    (await isServiceAvailable(dialect, async () => {
      const probe = sqlStore({ url: run.options.url });
      try {
        await sql`select 1`.execute(probe.db);
      } finally {
        await probe.close();
      }
    }));

  describe.skipIf(!isUp)(`sql:${dialect} migration 0003 (window stamps)`, () => {
    afterAll(async () => {
      await run.setUp();
      await run.tearDown();
    });

    it('stamps the entries already there by what became of their lease', async () => {
      const old = run.open();
      const layout = {
        dialect,
        schema: run.options.schema,
        prefix: run.options.tablePrefix ?? '',
        isHotStateDurable: false,
      };
      await runMigrations(old.db, layout, '0002_postgres_hot_path');
      const db = run.options.schema ? old.db.withSchema(run.options.schema) : old.db;
      const table = (name: string) => `${layout.prefix}${name}`;
      const lease = (id: string, reservedAt: number, expiresAt: number, status: string) => ({
        id,
        key_id: 'k',
        model: null,
        estimated_tokens: 10,
        estimated_cost_usd: 0,
        reserved_at: reservedAt,
        expires_at: expiresAt,
        day: '2026-01-15',
        month: '2026-01',
        is_probe: 0,
        meta: null,
        status,
      });
      await db
        .insertInto(table('leases'))
        .values([
          lease('settled', T0 - 10_000, T0 + 50_000, 'settled'),
          lease('swept', T0 - 8_000, T0 - 5_000, 'expired'),
          lease('active', T0 - 1_000, T0 + 59_000, 'active'),
        ])
        .execute();
      // 'purged': its lease row is gone already (purged after settling).
      await db
        .insertInto(table('window_entries'))
        .values(
          [
            ['settled', T0 - 10_000],
            ['purged', T0 - 9_000],
            ['swept', T0 - 8_000],
            ['active', T0 - 1_000],
          ].map(([id, at]) => ({ lease_id: id, key_id: 'k', reserved_at: at, tokens: 10 })),
        )
        .execute();
      await db
        .insertInto(table('key_state'))
        .values({ key_id: 'k', breaker: 'closed', consecutive_failures: 0, updated_at: T0 - 10_000 })
        .execute();

      // 0004 then builds SQLite's running totals from the converted entries; 0005 replaces PostgreSQL's
      // functions (each a no-op elsewhere); 0009 carries the entries over to a wider primary key.
      expect(await runMigrations(old.db, layout)).toEqual([
        '0003_window_stamps',
        '0004_sqlite_window_totals',
        '0005_postgres_fewer_statements',
        '0006_usage_fewer_indexes',
        '0007_probe_claims',
        '0008_leases_fewer_indexes',
        '0009_shared_limits',
        '0010_mysql_window_totals',
      ]);
      const store = run.open();
      await store.init!();
      const inWindow = async (now: number) =>
        (
          await store.usageSnapshot(['k'], { now, windowMs: WINDOW_MS, day: '2026-01-15', month: '2026-01' })
        )[0]!.requestsInWindow;
      expect(await inWindow(T0)).toBe(4);
      // Full (rpm 4) until the oldest stamp, reserved_at of 'settled', leaves.
      expect(await store.reserve(request('r1', T0))).toStrictEqual({
        ok: false,
        retryAfterMs: WINDOW_MS - 10_000,
        reasons: { k: 'rpm' },
      });
      expect(await inWindow(T0 - 10_000 + WINDOW_MS)).toBe(3);
      expect(await inWindow(T0 - 9_000 + WINDOW_MS)).toBe(2);
      // 'swept' counts until its expires_at leaves; 'active' is in flight and keeps counting.
      expect(await inWindow(T0 - 5_000 + WINDOW_MS - 1)).toBe(2);
      expect(await inWindow(T0 - 5_000 + WINDOW_MS)).toBe(1);
      expect(await inWindow(T0 + 10 * WINDOW_MS)).toBe(1);
      // Settled now, answered at T0 - 500: it counts until T0 - 500 + WINDOW_MS.
      expect(
        await store.settle('active', { tokens: 10, costUsd: 0, now: T0 + 1000, respondedAt: T0 - 500 }),
      ).toMatchObject({ status: 'settled' });
      expect(await inWindow(T0 - 500 + WINDOW_MS - 1)).toBe(1);
      expect(await inWindow(T0 - 500 + WINDOW_MS)).toBe(0);
      expect(await store.settle('swept', { tokens: 10, costUsd: 0, now: T0 + 1000 })).toMatchObject({
        status: 'expired',
      });
      // The window (and on PostgreSQL its running totals) admits exactly the rpm again.
      const later = T0 - 500 + WINDOW_MS;
      for (let i = 0; i < 4; i++)
        expect(await store.reserve(request(`n${i}`, later))).toMatchObject({ ok: true });
      expect(await store.reserve(request('n4', later))).toMatchObject({ ok: false, reasons: { k: 'rpm' } });
    });
  });
}
