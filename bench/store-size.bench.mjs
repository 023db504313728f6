// What 1,000 keys cost in each store (issue 4: "report memory per 1,000 keys in each store"):
// every key gets its record (a sealed secret of a real key's length), one reservation settled
// (window, day and month counters) and a state change (a 429's cooldown and last error), the
// way a key in use looks. Usage and audit logs grow per request, not per key, and are left out.
// Measured as the difference to the same empty store, each store the way it can be measured:
//  - memory: JS heap after GC (run through bench/run.mjs, which passes --expose-gc);
//  - Redis: MEMORY USAGE of every key under the store's prefix (exact, unlike INFO on a shared server);
//  - PostgreSQL: pg_total_relation_size of the store's tables (table + indexes + TOAST);
//  - MariaDB: data_length + index_length after ANALYZE TABLE (InnoDB pages of 16 KiB, so coarse);
//  - SQLite: the database file after a WAL checkpoint.
// Run after building: npm run bench -- store-size
import { rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { memoryStore } from '@keypool/store-memory';
import { redisStore } from '@keypool/store-redis';
import { sqlStore } from '@keypool/store-sql';
import { Redis } from 'ioredis';
import { sql } from 'kysely';
import { benchKeyRecord } from './key-record.mjs';
import { reserveRequest } from './reserve-request.mjs';

const KEYS = 1_000;
const runId = `kpsize_${process.pid}_${Date.now().toString(36)}`;
const limits = { rpm: 500, tpm: 200_000, requestsPerDay: 10_000, monthlyBudgetUsd: 100 };
const gc = globalThis.gc;

/** Fills a store with KEYS keys in use. */
async function fill(store) {
  const now = Date.now();
  for (let i = 0; i < KEYS; i++) {
    const id = `key_${String(i).padStart(6, '0')}`;
    await store.putKey(benchKeyRecord({ id, alias: `openai-${i}`, limits, now }));
    const reserved = await store.reserve(
      reserveRequest({ leaseId: `lease_${runId}_${i}`, candidates: [{ keyId: id, limits }], now }),
    );
    await store.settle(reserved.lease.id, { tokens: 700, costUsd: 0.00035, now: now + 1 });
    await store.updateKeyState(id, {
      set: { coolingUntil: now + 60_000, lastError: { at: now, failure: 'rate-limit', status: 429 } },
      incrementFailures: true,
      now,
    });
  }
}

const measures = {
  async memory() {
    if (typeof gc !== 'function') return { skipped: 'needs --expose-gc (run through npm run bench)' };
    const heap = () => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    const store = memoryStore();
    const before = heap();
    await fill(store);
    const bytes = heap() - before;
    await store.close();
    return { bytes, how: 'JS heap after GC' };
  },

  async redis() {
    const client = new Redis(process.env.KEYPOOL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
    });
    try {
      await client.connect();
    } catch (error) {
      client.disconnect();
      return { skipped: `Redis unreachable: ${error.message}` };
    }
    const store = redisStore({ client, prefix: runId });
    await store.init?.();
    const keysOf = async () => {
      const found = [];
      let cursor = '0';
      do {
        const [next, batch] = await client.scan(cursor, 'MATCH', `{${runId}}*`, 'COUNT', 1000);
        found.push(...batch);
        cursor = next;
      } while (cursor !== '0');
      return found;
    };
    const usage = async () => {
      let total = 0;
      for (const key of await keysOf())
        total += Number((await client.memory('USAGE', key, 'SAMPLES', 0)) ?? 0);
      return total;
    };
    const before = await usage();
    await fill(store);
    const bytes = (await usage()) - before;
    const all = await keysOf();
    for (let i = 0; i < all.length; i += 1000) await client.del(...all.slice(i, i + 1000));
    await store.close();
    client.disconnect();
    return { bytes, how: 'MEMORY USAGE of every key under the prefix' };
  },

  async postgres() {
    const url = process.env.KEYPOOL_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
    const store = sqlStore({ url, schema: runId, migrate: true });
    try {
      await store.init();
    } catch (error) {
      await store.close().catch(() => {});
      return { skipped: `PostgreSQL unreachable: ${error.message}` };
    }
    const size = async () => {
      const { rows } = await sql`select coalesce(sum(pg_total_relation_size(c.oid)), 0) as bytes
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = ${runId} and c.relkind = 'r'`.execute(store.db);
      return Number(rows[0].bytes);
    };
    const before = await size();
    await fill(store);
    const bytes = (await size()) - before;
    await sql`drop schema ${sql.id(runId)} cascade`.execute(store.db);
    await store.close();
    return { bytes, how: 'pg_total_relation_size of the store tables' };
  },

  async mysql() {
    const url = process.env.KEYPOOL_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
    const store = sqlStore({ url, tablePrefix: `${runId}_`, migrate: true });
    try {
      await store.init();
    } catch (error) {
      await store.close().catch(() => {});
      return { skipped: `MariaDB unreachable: ${error.message}` };
    }
    const tables = async () => {
      const { rows } = await sql`select table_name as t from information_schema.tables
        where table_schema = database() and table_name like ${`${runId}_%`}`.execute(store.db);
      return rows.map((r) => r.t);
    };
    const size = async () => {
      for (const table of await tables()) await sql`analyze table ${sql.table(table)}`.execute(store.db);
      const { rows } = await sql`select coalesce(sum(data_length + index_length), 0) as bytes
        from information_schema.tables
        where table_schema = database() and table_name like ${`${runId}_%`}`.execute(store.db);
      return Number(rows[0].bytes);
    };
    const before = await size();
    await fill(store);
    const bytes = (await size()) - before;
    for (const table of await tables()) await sql`drop table ${sql.table(table)}`.execute(store.db);
    await store.close();
    return { bytes, how: 'InnoDB data_length + index_length after ANALYZE TABLE (16 KiB pages)' };
  },

  async sqlite() {
    const file = join(tmpdir(), `${runId}.db`);
    const store = sqlStore({ url: `sqlite:${file}`, migrate: true });
    await store.init();
    const size = () => {
      const db = new DatabaseSync(file);
      db.exec('pragma wal_checkpoint(TRUNCATE)');
      db.close();
      return statSync(file).size;
    };
    const before = size();
    await fill(store);
    const bytes = size() - before;
    await store.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
    return { bytes, how: 'database file after a WAL checkpoint' };
  },
};

const results = {
  bench: 'store-size',
  date: new Date().toISOString(),
  node: process.version,
  keys: KEYS,
  stores: {},
};
for (const [name, measure] of Object.entries(measures)) {
  process.stderr.write(`${name}: filling ${KEYS} keys…\n`);
  const result = await measure();
  results.stores[name] =
    'bytes' in result ? { ...result, bytesPerKey: Math.round(result.bytes / KEYS) } : result;
  process.stderr.write(`${name}: ${JSON.stringify(results.stores[name])}\n`);
}
console.log(JSON.stringify(results, null, 2));

const kib = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`;
const rows = Object.entries(results.stores).map(([name, r]) =>
  r.skipped
    ? `| ${name} | skipped: ${r.skipped} | | |`
    : `| ${name} | ${kib(r.bytes)} | ${r.bytesPerKey} | ${r.how} |`,
);
writeFileSync(new URL('./results/store-size.json', import.meta.url), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(
  new URL('./results/store-size.md', import.meta.url),
  `# Size of 1,000 keys in each store

${results.date} · Node ${results.node}

Each key: its record (a sealed secret of a real key's length), one reservation settled (window,
day and month counters) and a 429's cooldown with its last error. Usage and audit logs grow per
request, not per key, and are not counted. Each figure is the difference to the same empty store.

| store | 1,000 keys | bytes per key | measured as |
|---|---|---|---|
${rows.join('\n')}
`,
);
