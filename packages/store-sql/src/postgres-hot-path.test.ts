import type { ReserveRequest, Settlement, Store } from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import { Kysely, MysqlDialect, SqliteDialect, sql } from 'kysely';
import { createPool } from 'mysql2';
import { afterAll, describe, expect, it } from 'vitest';
import type { AnyKysely } from './connection.js';
import { sqlStore } from './index.js';
import { openSqlite } from './sqlite.js';
import { target } from './test-fixture.js';

const run = target('postgres');
const isUp = await run.setUp();
// MariaDB, when up: the batched path (a store opened from a URL) and the statement-per-round-trip
// one (your own Kysely instance), each in its own namespace.
const mysqlBatched = target('mysql');
const mysqlOwn = target('mysql');
const isMysqlUp = isUp && (await mysqlBatched.setUp()) && (await mysqlOwn.setUp());

/** Small deterministic PRNG, so a failing sequence can be replayed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// The PL/pgSQL functions and SQLite's synchronous hot path keep the sliding window as running
// totals (in flight, stamped above a floor); the TypeScript path (SQLite on your own Kysely
// instance; MariaDB, batched or a statement at a time) counts the entries; the memory store is the
// reference implementation. Fed the same sequence, they must decide alike, every time.
describe.skipIf(!isUp)('sql:postgres functions vs SQLite hot path vs the TypeScript paths', () => {
  afterAll(async () => {
    await run.tearDown();
    if (isMysqlUp) await Promise.all([mysqlBatched.tearDown(), mysqlOwn.tearDown()]);
  });

  it('decide every reservation, settlement and expiry as the memory store does (time moving forward)', async () => {
    const memory = memoryStore();
    try {
      await differential({ seed: 42, isClockSteppingBack: false, extra: [memory] });
    } finally {
      await memory.close?.();
    }
    // 600 steps on five stores take ~5 s alone on this machine, more beside other test files.
  }, 60_000);

  // Another process's clock may be behind. The SQL paths count exactly then; the memory store
  // (one process, one clock) drops what left its window for good, so it is not compared here.
  it('decide alike with time also moving backward', async () => {
    await differential({ seed: 7, isClockSteppingBack: true, extra: [] });
  }, 60_000);

  async function differential(options: { seed: number; isClockSteppingBack: boolean; extra: Store[] }) {
    await run.empty();
    const pg = run.open();
    const reference = sqlStore({ url: 'sqlite::memory:', migrate: true });
    await reference.init!();
    const ownKysely = new Kysely({
      dialect: new SqliteDialect({ database: async () => openSqlite(':memory:') }),
    });
    const typescriptPath = sqlStore({ db: ownKysely, dialect: 'sqlite', migrate: true });
    await typescriptPath.init!();
    const mysqlStores: Array<{ store: Store & { db: AnyKysely }; prefix: string }> = [];
    let mysqlKysely: AnyKysely | undefined;
    if (isMysqlUp) {
      await mysqlBatched.empty();
      await mysqlOwn.empty();
      mysqlKysely = new Kysely({
        dialect: new MysqlDialect({ pool: createPool({ uri: mysqlOwn.options.url }) }),
      });
      const own = sqlStore({ db: mysqlKysely, dialect: 'mysql', tablePrefix: mysqlOwn.options.tablePrefix });
      mysqlStores.push(
        { store: mysqlBatched.open(), prefix: mysqlBatched.options.tablePrefix! },
        { store: own, prefix: mysqlOwn.options.tablePrefix! },
      );
    }
    const stores: Store[] = [
      pg,
      reference,
      typescriptPath,
      ...mysqlStores.map((m) => m.store),
      ...options.extra,
    ];
    /** Every store's answer, checked equal; the first one's is returned. */
    const same = async <T>(step: number, call: (store: Store) => Promise<T>): Promise<T> => {
      const [first, ...rest] = await Promise.all(stores.map(call));
      for (const [i, answer] of rest.entries()) {
        expect(answer, `step ${step}: ${stores[i + 1]!.name} vs ${pg.name}`).toStrictEqual(first);
      }
      return first!;
    };
    try {
      const random = prng(options.seed);
      const limits = { rpm: 4, tpm: 3000, requestsPerDay: 60, tokensPerDay: 45_000 };
      // a and b are keys of one organization, whose limits bind before theirs do now and then.
      const org = { id: 'org:o', limits: { rpm: 6, tpm: 4500, requestsPerDay: 80, tokensPerDay: 60_000 } };
      let now = Date.UTC(2026, 0, 15, 12);
      const reservedAt = new Map<string, number>();
      const seen = new Set<string>();
      for (let step = 0; step < 600; step++) {
        const roll = random();
        // Mostly forward, sometimes backward (another process's clock), sometimes past the window.
        const back = options.isClockSteppingBack ? -300 : 0;
        now += roll < 0.1 ? back : roll < 0.15 ? 1500 : Math.floor(random() * 200);
        const action = random();
        if (action < 0.5 || reservedAt.size === 0) {
          const order = ['a', 'b', 'c'].sort(() => random() - 0.5);
          const request: ReserveRequest = {
            leaseId: `l${step}`,
            candidates: order.map((keyId) =>
              keyId !== 'c' && random() < 0.7 ? { keyId, limits, shared: org } : { keyId, limits },
            ),
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
          const got = await same(step, (store) => store.reserve(request));
          if (got.ok) reservedAt.set(got.lease.id, now);
          for (const reason of got.ok ? ['ok'] : Object.values(got.reasons)) seen.add(reason);
        } else if (action < 0.9) {
          // A lease in flight, sometimes one settled already (a repeat).
          const ids = [...reservedAt.keys()];
          const leaseId = ids[Math.floor(random() * ids.length)]!;
          const reserved = reservedAt.get(leaseId)!;
          const when = random();
          // No respondedAt, or one before the reservation, inside [reservedAt, now], or after now.
          const respondedAt =
            when < 0.25
              ? undefined
              : when < 0.35
                ? reserved - 50
                : when < 0.9
                  ? reserved + Math.floor(random() * Math.max(1, now - reserved))
                  : now + 80;
          const settlement: Settlement = {
            tokens: Math.floor(random() * 1600),
            costUsd: 0,
            now,
            ...(respondedAt !== undefined && { respondedAt }),
          };
          const result = await same(step, (store) => store.settle(leaseId, settlement));
          if (random() < 0.85) reservedAt.delete(leaseId);
          seen.add(result.status);
        } else {
          const expired = await same(step, async (store) =>
            (await store.expireLeases(now)).sort((x, y) => x.id.localeCompare(y.id)),
          );
          if (expired.length > 0) seen.add('swept');
        }
      }
      // The sequence did reach every outcome the window affects, and a day limit.
      expect([...seen]).toEqual(
        expect.arrayContaining(['already-settled', 'expired', 'ok', 'rpm', 'settled', 'swept', 'tpm']),
      );
      expect([...seen].some((reason) => reason.endsWith('-per-day'))).toBe(true);
      const query = { now, windowMs: 1000, day: '2026-01-15', month: '2026-01' };
      await same(-1, (store) => store.usageSnapshot(['a', 'b', 'c', org.id], query));
      // Both SQL paths stamped every entry alike.
      const entries = (db: AnyKysely, table: string) =>
        db
          .selectFrom(table)
          .select(['lease_id', 'key_id', 'stamp', 'tokens'])
          .orderBy('lease_id')
          .orderBy('key_id')
          .execute()
          .then((rows) =>
            rows.map((r) => ({
              ...r,
              stamp: r.stamp === null ? null : Number(r.stamp),
              tokens: Number(r.tokens),
            })),
          );
      const pgEntries = await entries(pg.db, `${run.options.schema}.window_entries`);
      expect(await entries(reference.db, 'window_entries')).toStrictEqual(pgEntries);
      expect(await entries(typescriptPath.db, 'window_entries')).toStrictEqual(pgEntries);
      for (const { store, prefix } of mysqlStores) {
        expect(await entries(store.db, `${prefix}window_entries`)).toStrictEqual(pgEntries);
      }
      // The running totals equal the entries they describe: unstamped ones in flight, stamped ones above the floor.
      const { rows } = await sql<{ key_id: string; drift: string }>`
        select t.key_id, abs(t.inflight_requests - count(e.lease_id) filter (where e.stamp is null))
          + abs(t.inflight_tokens - coalesce(sum(e.tokens) filter (where e.stamp is null), 0))
          + abs(t.requests - count(e.lease_id) filter (where e.stamp > t.floor_at))
          + abs(t.tokens - coalesce(sum(e.tokens) filter (where e.stamp > t.floor_at), 0)) as drift
        from ${sql.table(`${run.options.schema}.window_totals`)} t
        left join ${sql.table(`${run.options.schema}.window_entries`)} e on e.key_id = t.key_id
        group by t.key_id, t.inflight_requests, t.inflight_tokens, t.requests, t.tokens, t.floor_at
        order by t.key_id`.execute(pg.db);
      expect(rows.map((r) => [r.key_id, Number(r.drift)])).toStrictEqual([
        ['a', 0],
        ['b', 0],
        ['c', 0],
        [org.id, 0],
      ]);
      // Same on both SQLite paths (the TypeScript one rebuilds its totals, the hot path moves them)
      // and on MySQL's (migration 0010), batched or not.
      const totalsOwners = [
        { store: reference, prefix: '' },
        { store: typescriptPath, prefix: '' },
        ...mysqlStores,
      ];
      for (const { store, prefix } of totalsOwners) {
        const { rows: drift } = await sql<{ key_id: string; drift: number }>`
          select t.key_id, abs(t.inflight_requests - sum(case when e.stamp is null then 1 else 0 end))
            + abs(t.inflight_tokens - coalesce(sum(case when e.stamp is null then e.tokens end), 0))
            + abs(t.requests - sum(case when e.stamp > t.floor_at then 1 else 0 end))
            + abs(t.tokens - coalesce(sum(case when e.stamp > t.floor_at then e.tokens end), 0)) as drift
          from ${sql.table(`${prefix}window_totals`)} t
          left join ${sql.table(`${prefix}window_entries`)} e on e.key_id = t.key_id
          group by t.key_id order by t.key_id`.execute(store.db);
        expect(
          drift.map((r) => [r.key_id, Number(r.drift)]),
          store.name,
        ).toStrictEqual([
          ['a', 0],
          ['b', 0],
          ['c', 0],
          [org.id, 0],
        ]);
      }
    } finally {
      await reference.close();
      await typescriptPath.close();
      await ownKysely.destroy();
      for (const { store } of mysqlStores) await store.close();
      await mysqlKysely?.destroy();
    }
  }

  // Migration 0009 added a reserve with shared limits beside 0005's: a process not upgraded yet
  // keeps reserving through the old one, and its leases settle through the new settle.
  it("0005's reserve stays for processes not upgraded yet", async () => {
    await run.empty();
    const store = run.open();
    const now = Date.UTC(2026, 0, 15, 12);
    const reserve = sql.id(run.options.schema!, 'keypool_reserve');
    const { rows } = await sql<{ lease_key_id: string }>`select * from ${reserve}(${'old'}, ${['k']},
      ${[2]}, ${[null]}, ${[null]}, ${[null]}, ${[null]}, ${null}, ${10}, ${0}, ${now}, ${60_000},
      ${'2026-01-15'}, ${'2026-01'}, ${now + 3_600_000}, ${now + 86_400_000}, ${60_000}, ${null},
      ${false}, ${false})`.execute(store.db);
    expect(rows[0]?.lease_key_id).toBe('k');
    const lease = await store.getLease('old');
    expect(lease).toMatchObject({ id: 'old', keyId: 'k', estimatedTokens: 10 });
    expect(lease).not.toHaveProperty('sharedId');
    expect(await store.settle('old', { tokens: 4, costUsd: 0, now: now + 10 })).toMatchObject({
      status: 'settled',
    });
    const query = { now: now + 10, windowMs: 60_000, day: '2026-01-15', month: '2026-01' };
    expect((await store.usageSnapshot(['k'], query))[0]).toMatchObject({
      requestsInWindow: 1,
      tokensInWindow: 4,
      tokensToday: 4,
      inFlight: 0,
    });
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
