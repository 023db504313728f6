import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { runMigrations, sqliteMinFloor } from './schema.js';
import { migrationRequest as request, T0, target, WINDOW_MS } from './test-fixture.js';

// A MySQL database written before migration 0010 (window entries only) gets running totals built
// from its entries: those in flight as inflight_*, every stamped one above the lowest floor.
const run = target('mysql');
const isUp = await run.setUp();

describe.skipIf(!isUp)('sql:mysql migration 0010 (window totals)', () => {
  afterAll(async () => {
    await run.tearDown();
  });

  it('fills the totals from the entries already there', async () => {
    const old = run.open();
    const layout = {
      dialect: 'mysql' as const,
      schema: undefined,
      prefix: `${run.options.tablePrefix}old_`,
      isHotStateDurable: false,
    };
    await runMigrations(old.db, layout, '0009_shared_limits');
    const table = (name: string) => `${layout.prefix}${name}`;
    const lease = (id: string, keyId: string, reservedAt: number, status: string) => ({
      id,
      key_id: keyId,
      model: null,
      estimated_tokens: 10,
      estimated_cost_usd: 0,
      reserved_at: reservedAt,
      expires_at: reservedAt + 60_000,
      day: '2026-01-15',
      month: '2026-01',
      is_probe: 0,
      meta: null,
      status,
      shared_id: null,
    });
    await old.db
      .insertInto(table('leases'))
      .values([lease('active', 'k', T0 - 1_000, 'active'), lease('other', 'j', T0 - 2_000, 'active')])
      .execute();
    const entry = (leaseId: string, keyId: string, tokens: number, stamp: number | null) => ({
      lease_id: leaseId,
      key_id: keyId,
      reserved_at: stamp ?? T0 - 1_000,
      tokens,
      stamp,
    });
    await old.db
      .insertInto(table('window_entries'))
      .values([
        entry('old', 'k', 5, T0 - 2 * WINDOW_MS),
        entry('s1', 'k', 20, T0 - 10_000),
        entry('s2', 'k', 30, T0 - 9_000),
        entry('active', 'k', 10, null),
        entry('other', 'j', 10, null),
      ])
      .execute();

    expect(await runMigrations(old.db, layout)).toEqual(['0010_mysql_window_totals']);
    const totals = await old.db
      .selectFrom(table('window_totals'))
      .selectAll()
      .orderBy('key_id')
      .execute()
      .then((rows) =>
        rows.map((r) =>
          Object.fromEntries(Object.entries(r).map(([k, v]) => [k, k === 'key_id' ? v : Number(v)])),
        ),
      );
    expect(totals).toStrictEqual([
      {
        key_id: 'j',
        floor_at: sqliteMinFloor,
        requests: 0,
        tokens: 0,
        inflight_requests: 1,
        inflight_tokens: 10,
      },
      {
        key_id: 'k',
        floor_at: sqliteMinFloor,
        requests: 3,
        tokens: 55,
        inflight_requests: 1,
        inflight_tokens: 10,
      },
    ]);

    const store = run.open({ tablePrefix: layout.prefix });
    await store.init!();
    const window = async (now: number) =>
      (
        await store.usageSnapshot(['k'], { now, windowMs: WINDOW_MS, day: '2026-01-15', month: '2026-01' })
      )[0]!;
    expect(await window(T0)).toMatchObject({ requestsInWindow: 3, tokensInWindow: 60 });
    // Two more fit (rpm 4 with s1, s2 and 'active'), the first moving the floor past 'old'.
    expect(await store.reserve(request('r1', T0))).toMatchObject({ ok: true });
    expect(await store.reserve(request('r2', T0))).toStrictEqual({
      ok: false,
      retryAfterMs: WINDOW_MS - 10_000,
      reasons: { k: 'rpm' },
    });
    expect(await window(T0 - 10_000 + WINDOW_MS)).toMatchObject({ requestsInWindow: 3 });
    expect(await store.settle('active', { tokens: 7, costUsd: 0, now: T0 + 1_000 })).toMatchObject({
      status: 'settled',
    });
    expect(await window(T0 + 1_000)).toMatchObject({ requestsInWindow: 4, tokensInWindow: 67 });
    // Back in time the window starts below the floor: counted exactly, 'old' included.
    expect(await window(T0 - WINDOW_MS - 1)).toMatchObject({ requestsInWindow: 5, tokensInWindow: 72 });

    // The totals still describe the entries: in flight, and stamped above the floor.
    const { rows } = await sql<{ key_id: string; drift: number }>`
      select t.key_id, abs(t.inflight_requests - sum(case when e.stamp is null then 1 else 0 end))
        + abs(t.inflight_tokens - coalesce(sum(case when e.stamp is null then e.tokens end), 0))
        + abs(t.requests - sum(case when e.stamp > t.floor_at then 1 else 0 end))
        + abs(t.tokens - coalesce(sum(case when e.stamp > t.floor_at then e.tokens end), 0)) as drift
      from ${sql.table(table('window_totals'))} t left join ${sql.table(table('window_entries'))} e on e.key_id = t.key_id
      group by t.key_id order by t.key_id`.execute(old.db);
    expect(rows.map((r) => [r.key_id, Number(r.drift)])).toStrictEqual([
      ['j', 0],
      ['k', 0],
    ]);
  });
});
