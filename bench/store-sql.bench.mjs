// @keypool/store-sql hot path: serial reserve+settle (one acquire+release of the
// pool) against a bare `SELECT 1` round trip on the same Kysely instance, in
// the same run. Target on PostgreSQL: pair <= 3x SELECT 1. MariaDB and SQLite
// are measured the same way for information. Also: PostgreSQL table+index size
// per 1,000 keys with hot state (pg_total_relation_size).
// Run after building: npm run build -w @keypool/store-sql && npm exec -- node bench/store-sql.bench.mjs
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqlStore } from '@keypool/store-sql';
import { sql } from 'kysely';

const PAIRS = Number(process.env.KEYPOOL_BENCH_PAIRS ?? 2000);
const WARMUP = 200;
const runId = `kpbench_${process.pid}_${Date.now().toString(36)}`;
const targets = {
  postgres: {
    url: process.env.KEYPOOL_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    schema: runId,
  },
  mysql: {
    url: process.env.KEYPOOL_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test',
    tablePrefix: `${runId}_`,
  },
  sqlite: { url: `sqlite:${join(tmpdir(), `${runId}.db`)}` },
};

// Limits that never bind but make every check run (window, day and month reads).
const limits = { rpm: 1e9, tpm: 1e12, requestsPerDay: 1e12, tokensPerDay: 1e15, monthlyBudgetUsd: 1e9 };
const candidates = ['a', 'b', 'c'].map((keyId) => ({ keyId, limits }));
const now0 = Date.UTC(2026, 10, 25, 12);
let seq = 0;

function request(now) {
  return {
    leaseId: `${runId}-${seq++}`,
    candidates,
    model: 'gpt-4o-mini',
    estimatedTokens: 800,
    estimatedCostUsd: 0.0004,
    now,
    windowMs: 60_000,
    day: '2026-11-25',
    month: '2026-11',
    dayEndsAt: Date.UTC(2026, 10, 26),
    monthEndsAt: Date.UTC(2026, 11, 1),
    leaseTtlMs: 60_000,
  };
}

async function timePairs(store, n) {
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const now = now0 + seq;
    const result = await store.reserve(request(now));
    if (!result.ok) throw new Error(`bench reservation refused: ${JSON.stringify(result)}`);
    await store.settle(result.lease.id, { tokens: 700, costUsd: 0.00035, now: now + 1 });
  }
  return Number(process.hrtime.bigint() - started) / 1e6 / n;
}

async function timeSelect1(db, n) {
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await sql`select 1`.execute(db);
  return Number(process.hrtime.bigint() - started) / 1e6 / n;
}

async function pgSizePer1000Keys(store) {
  const keys = 1000;
  for (let i = 0; i < keys; i++) {
    const id = `size-${i}`;
    await store.putKey({
      id,
      alias: `alias-${i}`,
      provider: 'openai',
      sealedSecret: `v1.mk1.${'x'.repeat(80)}`,
      masterKeyId: 'mk1',
      fingerprint: String(i).padStart(64, '0'),
      maskedSecret: 'sk-…abcd',
      priority: 0,
      weight: 1,
      limits,
      enabled: true,
      createdAt: now0,
      updatedAt: now0,
    });
    // One reservation per key creates its state row, counters and a lease.
    const r = await store.reserve({ ...request(now0 + 1), candidates: [{ keyId: id, limits }] });
    await store.settle(r.lease.id, { tokens: 700, costUsd: 0.00035, now: now0 + 2 });
  }
  const { rows } = await sql`select c.relname as table, pg_total_relation_size(c.oid) as bytes
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${targets.postgres.schema} and c.relkind = 'r' and c.relname in ('keys', 'key_state', 'counters')`.execute(
    store.db,
  );
  const byTable = Object.fromEntries(rows.map((r) => [r.table, Number(r.bytes)]));
  return { byTable, totalBytes: Object.values(byTable).reduce((a, b) => a + b, 0) };
}

async function dropNamespace(dialect, store) {
  const t = targets[dialect];
  if (dialect === 'postgres') await sql`drop schema if exists ${sql.id(t.schema)} cascade`.execute(store.db);
  if (dialect === 'mysql') {
    const { rows } = await sql`select table_name as t from information_schema.tables
      where table_schema = database() and table_name like ${`${t.tablePrefix}%`}`.execute(store.db);
    for (const { t: table } of rows) await sql`drop table ${sql.table(table)}`.execute(store.db);
  }
}

const results = { pairs: PAIRS, dialects: {} };
for (const [dialect, options] of Object.entries(targets)) {
  const store = sqlStore({ ...options, migrate: true });
  try {
    await store.init();
  } catch (error) {
    console.log(`${dialect}: unavailable (${error.message}), skipped`);
    results.dialects[dialect] = { skipped: error.message };
    await store.close();
    continue;
  }
  try {
    await timePairs(store, WARMUP);
    await timeSelect1(store.db, WARMUP);
    // Interleave the two measurements so drift affects both alike.
    const pair = [];
    const select1 = [];
    for (let round = 0; round < 4; round++) {
      select1.push(await timeSelect1(store.db, PAIRS / 4));
      pair.push(await timePairs(store, PAIRS / 4));
    }
    const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const entry = {
      select1Ms: +mean(select1).toFixed(4),
      reserveSettleMs: +mean(pair).toFixed(4),
      ratio: +(mean(pair) / mean(select1)).toFixed(2),
    };
    if (dialect === 'postgres') entry.sizePer1000Keys = await pgSizePer1000Keys(store);
    results.dialects[dialect] = entry;
    console.log(dialect, entry);
  } finally {
    await dropNamespace(dialect, store);
    await store.close();
    if (dialect === 'sqlite')
      for (const s of ['', '-wal', '-shm']) rmSync(options.url.slice(7) + s, { force: true });
  }
}

const pg = results.dialects.postgres;
results.target = 'PostgreSQL reserve+settle <= 3x SELECT 1';
results.met = pg?.ratio !== undefined ? pg.ratio <= 3 : null;
results.node = process.version;
results.at = new Date().toISOString();
writeFileSync(new URL('results/store-sql.json', import.meta.url), `${JSON.stringify(results, null, 2)}\n`);

const rows = Object.entries(results.dialects).map(([d, r]) =>
  r.skipped
    ? `| ${d} | skipped | | |`
    : `| ${d} | ${r.select1Ms.toFixed(3)} | ${r.reserveSettleMs.toFixed(3)} | ${r.ratio}x |`,
);
const size = pg?.sizePer1000Keys;
writeFileSync(
  new URL('results/store-sql.md', import.meta.url),
  `# store-sql bench\n\nSerial reserve+settle (one acquire+release) vs a bare \`SELECT 1\` on the same Kysely instance, ${PAIRS} pairs, 3 candidates with every limit set, Node ${process.version}, ${results.at}.\n\n` +
    `| dialect | SELECT 1 (ms) | reserve+settle (ms) | ratio |\n|---|---|---|---|\n${rows.join('\n')}\n\n` +
    `Target: PostgreSQL ratio <= 3x — ${results.met === null ? 'not measured' : results.met ? 'met' : 'NOT met'}.\n` +
    (size
      ? `\nPostgreSQL size per 1,000 keys (each with one reservation: state row, day+month counters), table + indexes: ${Object.entries(
          size.byTable,
        )
          .map(([t, b]) => `${t} ${(b / 1024).toFixed(0)} KiB`)
          .join(', ')}; total ${(size.totalBytes / 1024).toFixed(0)} KiB.\n`
      : ''),
);
console.log(`wrote bench/results/store-sql.json and .md`);
