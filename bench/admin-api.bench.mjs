// @keypool/admin-api under load: POST /v1/leases + POST /v1/leases/:id/report
// (one lease cycle = two requests) against an empty Express route, in the same
// run, with autocannon (c=50) in a second process. Stores: memory (the API's own
// cost), SQLite (the embedded default) and Redis when reachable; the empty route is
// measured before and after and the ratio uses their mean, because this machine is
// shared and noisy. Also: each store's pool alone (acquire+release, c=50, no HTTP)
// for where the time goes, the lease route with request logging on, and
// GET /v1/keys with 500 keys. Target: lease+report requests/s >= 50% of the empty route's.
// Run after building: npm run build -w @keypool/admin-api && npm exec -- node bench/admin-api.bench.mjs
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, createToken, startServer } from '@keypool/admin-api';
import { createKeyPool, generateMasterKey } from '@keypool/core';
import { openaiProvider } from '@keypool/provider-openai';
import { memoryStore } from '@keypool/store-memory';
import { redisStore } from '@keypool/store-redis';
import { sqlStore } from '@keypool/store-sql';
import express from 'express';
import { pino } from 'pino';

const DURATION_S = Number(process.env.KEYPOOL_BENCH_SECONDS ?? 6);
const CONNECTIONS = 50;
const KEYS = 20;
const LIST_KEYS = 500;
const runId = `kpbench_admin_${process.pid}_${Date.now().toString(36)}`;
const repo = new URL('..', import.meta.url).pathname;

/** The commit a package was measured at, `+dirty` when its folder had uncommitted changes. */
function versionOf(folder) {
  const git = (args) => execFileSync('git', args, { cwd: repo, encoding: 'utf8' }).trim();
  const hash = git(['log', '-1', '--format=%h', '--', folder]);
  return git(['status', '--porcelain', '--', folder]) === '' ? hash : `${hash}+dirty`;
}

/** autocannon in its own Node process, so load generation does not steal the server's CPU. */
async function cannon(options) {
  const script = `
    import autocannon from 'autocannon';
    const o = JSON.parse(process.env.OPTS);
    if (o.lease) {
      o.requests = [
        { method: 'POST', path: '/v1/leases', headers: o.headers, body: o.leaseBody,
          onResponse: (status, body, context) => { context.leaseId = status === 201 ? JSON.parse(body).leaseId : 'none'; } },
        { method: 'POST', headers: o.headers, body: o.reportBody,
          setupRequest: (req, context) => ({ ...req, path: '/v1/leases/' + context.leaseId + '/report' }) },
      ];
    }
    const result = await autocannon(o);
    console.log(JSON.stringify({ rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99,
      total: result.requests.total, non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts, statusCodes: result.statusCodeStats }));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: {
      ...process.env,
      OPTS: JSON.stringify({ connections: CONNECTIONS, duration: DURATION_S, ...options }),
    },
    cwd: new URL('../apps/admin-api/', import.meta.url).pathname,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  await once(child, 'exit');
  return JSON.parse(out.trim().split('\n').pop());
}

async function emptyRoute() {
  const app = express();
  app.post('/empty', express.json(), (_req, res) => res.json({ ok: true }));
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${server.address().port}`;
  const options = {
    url: `${url}/empty`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  };
  await cannon({ ...options, duration: 1 });
  const result = await cannon(options);
  server.close();
  console.log(`empty Express route: ${result.rps.toFixed(0)} req/s, p99 ${result.p99} ms`);
  return result;
}

const benchKeys = (count, limits) =>
  Array.from({ length: count }, (_, i) => ({
    provider: 'openai',
    alias: `bench-${i}`,
    secret: `sk-bench-${String(i).padStart(4, '0')}-${'x'.repeat(24)}`,
    ...(limits !== undefined && { limits }),
  }));

const openPool = (store, count = KEYS) =>
  createKeyPool({
    store,
    plugins: [openaiProvider()],
    masterKey: generateMasterKey(),
    keys: benchKeys(count, { rpm: 1e9, tpm: 1e12 }),
    strategy: 'least-used',
  });

/** The pool alone, in this process: c=50 loops of acquire + awaited release. No HTTP. */
async function poolAlone(name, store) {
  const pool = await openPool(store);
  let cycles = 0;
  const started = Date.now();
  const end = started + Math.min(DURATION_S, 4) * 1000;
  const loop = async () => {
    while (Date.now() < end) {
      const lease = await pool.acquire({ provider: 'openai', model: 'gpt-4o-mini', estimatedTokens: 100 });
      await lease.release({ ok: true, usage: { inputTokens: 60, outputTokens: 30 }, latencyMs: 300 });
      cycles++;
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, loop));
  const perSecond = cycles / ((Date.now() - started) / 1000);
  await pool.close();
  console.log(`${name} pool alone: ${perSecond.toFixed(0)} cycles/s`);
  return { cyclesPerSecond: perSecond };
}

async function leases(name, store, logger = createLogger({ level: 'silent' })) {
  const pool = await openPool(store);
  const running = await startServer({ pool, port: 0, logger, bootstrapAdmin: false });
  const { token } = await createToken(store, { name: 'bench', role: 'service' });
  const options = {
    url: running.url,
    lease: true,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    leaseBody: JSON.stringify({ provider: 'openai', model: 'gpt-4o-mini', estimatedTokens: 100 }),
    reportBody: JSON.stringify({
      ok: true,
      status: 200,
      usage: { inputTokens: 60, outputTokens: 30 },
      latencyMs: 300,
    }),
  };
  await cannon({ ...options, duration: 1 });
  const result = await cannon(options);
  await running.close();
  console.log(`${name}: ${result.rps.toFixed(0)} req/s, p99 ${result.p99} ms, non-2xx ${result.non2xx}`);
  return result;
}

/** GET /v1/keys with 500 keys (memory store), c=10: the list must not recompute health per key. */
async function keyList() {
  const store = memoryStore();
  const pool = await openPool(store, LIST_KEYS);
  const running = await startServer({
    pool,
    port: 0,
    logger: createLogger({ level: 'silent' }),
    bootstrapAdmin: false,
  });
  const { token } = await createToken(store, { name: 'bench', role: 'viewer' });
  const options = {
    url: `${running.url}/v1/keys`,
    connections: 10,
    headers: { authorization: `Bearer ${token}` },
  };
  await cannon({ ...options, duration: 1 });
  const result = await cannon(options);
  await running.close();
  console.log(`GET /v1/keys, ${LIST_KEYS} keys: ${result.rps.toFixed(0)} req/s, p50 ${result.p50} ms`);
  return result;
}

const redisUrl = process.env.KEYPOOL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
async function openRedis(suffix) {
  const store = redisStore({ url: redisUrl, prefix: `${runId}_${suffix}` });
  try {
    await store.init?.();
    await store.keysVersion();
    return store;
  } catch (error) {
    console.warn(`!!! Redis unreachable (${error.message}): its rows are skipped.`);
    await store.close().catch(() => {});
    return undefined;
  }
}

const sqliteFiles = [];
function openSqlite(suffix) {
  const file = join(tmpdir(), `${runId}_${suffix}.db`);
  sqliteFiles.push(file);
  return sqlStore({ url: `sqlite:${file}`, migrate: true });
}

const results = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  loadAvg: loadavg()[0],
  durationS: DURATION_S,
  connections: CONNECTIONS,
  keys: KEYS,
  versions: {
    'admin-api': versionOf('apps/admin-api'),
    core: versionOf('packages/core'),
    'store-memory': versionOf('packages/store-memory'),
    'store-sql': versionOf('packages/store-sql'),
    'store-redis': versionOf('packages/store-redis'),
  },
};
console.log('measuring at', JSON.stringify(results.versions));

// Rounds: empty route, each store, empty route again; each round's ratios use the mean of its
// two empty-route runs. The table shows the round with the median SQLite ratio, and every round below.
const ROUNDS = Number(process.env.KEYPOOL_BENCH_ROUNDS ?? 3);
results.rounds = [];
for (let round = 1; round <= ROUNDS; round++) {
  console.log(`-- round ${round} of ${ROUNDS}`);
  const r = { emptyBefore: await emptyRoute() };
  r.memory = await leases('lease+report, memory', memoryStore());
  r.sqlite = await leases('lease+report, SQLite', openSqlite(`http${round}`));
  const redisHttp = await openRedis(`http${round}`);
  if (redisHttp !== undefined) r.redis = await leases('lease+report, Redis', redisHttp);
  r.memoryLogged = await leases(
    'lease+report, memory, info logs',
    memoryStore(),
    createLogger({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: false })),
  );
  r.emptyAfter = await emptyRoute();
  r.emptyRps = (r.emptyBefore.rps + r.emptyAfter.rps) / 2;
  for (const name of ['memory', 'sqlite', 'redis', 'memoryLogged']) {
    if (r[name] !== undefined) r[name].ratio = r[name].rps / r.emptyRps;
  }
  results.rounds.push(r);
}

results.poolAlone = {
  memory: await poolAlone('memory', memoryStore()),
  sqlite: await poolAlone('SQLite', openSqlite('pool')),
};
const redisPool = await openRedis('pool');
if (redisPool !== undefined) results.poolAlone.redis = await poolAlone('Redis', redisPool);
results.keyList = await keyList();
for (const file of sqliteFiles)
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true });

/** Per row, the round with the median ratio of that row. */
const median = (name) => {
  const measured = results.rounds.filter((r) => r[name] !== undefined);
  if (measured.length === 0) return undefined;
  const sorted = [...measured].sort((a, b) => a[name].ratio - b[name].ratio);
  const r = sorted[Math.floor((sorted.length - 1) / 2)];
  return { ...r[name], emptyRps: r.emptyRps };
};
results.median = {
  memory: median('memory'),
  sqlite: median('sqlite'),
  redis: median('redis'),
  memoryLogged: median('memoryLogged'),
};
results.ratioMemory = results.median.memory?.ratio;
results.ratioSqlite = results.median.sqlite?.ratio;
results.ratioRedis = results.median.redis?.ratio;
writeFileSync(new URL('results/admin-api.json', import.meta.url), `${JSON.stringify(results, null, 2)}\n`);

const pct = (x) => `${(x * 100).toFixed(0)}%`;
const row = (name, r, alone) =>
  r === undefined
    ? `| ${name} | skipped | | | | | | |`
    : `| ${name} | ${r.rps.toFixed(0)} | ${(r.rps / 2).toFixed(0)} | ${r.p50} | ${r.p99} | ${r.emptyRps.toFixed(0)} | ${pct(r.ratio)} | ${alone === undefined ? '' : `${alone.cyclesPerSecond.toFixed(0)} (HTTP gets ${pct(r.rps / 2 / alone.cyclesPerSecond)})`} |`;
const cell = (r) => (r === undefined ? 'skipped' : `${r.rps.toFixed(0)} (${pct(r.ratio)})`);
const verdict = (x) => (x === undefined ? 'not measured' : x >= 0.5 ? 'met' : 'NOT met');
writeFileSync(
  new URL('results/admin-api.md', import.meta.url),
  [
    '# admin-api: POST /v1/leases + report vs an empty Express route',
    '',
    `${results.date}, Node ${results.node}, autocannon c=${CONNECTIONS} for ${DURATION_S} s from a second process, ${KEYS} keys, logger silent unless said. Target: >= 50% of the empty route.`,
    `Measured at (git short hash of the last commit touching each package; +dirty = uncommitted changes in the built tree): ${Object.entries(
      results.versions,
    )
      .map(([name, hash]) => `${name} ${hash}`)
      .join(', ')}.`,
    '',
    `Each row: the median of ${ROUNDS} rounds by its ratio to the empty route of the same round (mean of the empty route run just before and just after the round).`,
    '',
    '| target | req/s | lease cycles/s | p50 ms | p99 ms | empty route req/s (that round) | vs empty | pool alone, cycles/s (no HTTP, c=50) |',
    '|---|---|---|---|---|---|---|---|',
    row('lease+report, memory (the API alone)', results.median.memory, results.poolAlone.memory),
    row('lease+report, SQLite', results.median.sqlite, results.poolAlone.sqlite),
    row('lease+report, Redis', results.median.redis, results.poolAlone.redis),
    row('lease+report, memory, request log lines at info', results.median.memoryLogged),
    '',
    'Every round (req/s, and the ratio to that round’s empty route):',
    '',
    '| round | empty before / after | memory | SQLite | Redis | memory, info logs |',
    '|---|---|---|---|---|---|',
    ...results.rounds.map(
      (r, i) =>
        `| ${i + 1} | ${r.emptyBefore.rps.toFixed(0)} / ${r.emptyAfter.rps.toFixed(0)} | ${cell(r.memory)} | ${cell(r.sqlite)} | ${cell(r.redis)} | ${cell(r.memoryLogged)} |`,
    ),
    '',
    `Target (>= 50% of the empty route): SQLite ${verdict(results.ratioSqlite)}, Redis ${verdict(results.ratioRedis)} (memory, for reference: ${verdict(results.ratioMemory)}).`,
    `Machine: ${results.cpus} CPUs, load average ${results.loadAvg.toFixed(1)} when the run started (autocannon shares the CPUs; other work on the machine moves every number).`,
    '',
    `GET /v1/keys with ${LIST_KEYS} keys (memory store, c=10): ${results.keyList.rps.toFixed(0)} req/s, p50 ${results.keyList.p50} ms, p99 ${results.keyList.p99} ms (was 100-170 ms per request when health was computed once per key).`,
    '',
    '## Where the time goes (CPU profiles of the server under this load, 2026-11-25)',
    '',
    '- **The API alone (memory store)**: about half of the server CPU is the kernel write of each HTTP',
    '  answer (the empty route pays it too); the rest is Express routing and body parsing (~20%), auth',
    '  (~5%: one SHA-256 of the bearer token, then the cached record), zod validation (~4%), the pool',
    '  (~8%) and prom-client (~2%). Removed: a second and third SHA-256 per request (constant-time',
    '  re-check now only on a store lookup, not on cache hits), a weak ETag hash of every JSON answer,',
    '  ~30 path matches before the lease routes, and blocking stdout writes for request log lines',
    '  (async destination now; info-level request logs cost ~40% of throughput with blocking writes,',
    '  see the "info logs" row for what they cost now).',
    '- **SQLite**: the hot path groups concurrent reserve/settle calls into one transaction; the',
    '  batch starts on the next check phase (`setImmediate`), so every request read in one poll phase',
    '  shares the commit (~30 calls per transaction under this load; it was one per call, 13%). What',
    '  is left: the main thread is saturated and about half of it is SQL during the SQLite rounds',
    '  (CPU profile, 2026-11-25 23:00). Per lease cycle, timed per statement: the usage insert with',
    '  its indexes, the lease insert and its claim, the window entry insert and stamp, counters,',
    '  state/totals, and COMMIT (a share of one group commit). Since the run at 21:44 (41%): a settle',
    '  deletes its lease in one statement instead of select + update, the usage day/month and leases',
    '  (key_id, status) indexes are gone (no query used them). A larger WAL checkpoint interval',
    '  (10,000 pages) was tried and dropped: interleaved runs showed no gain, and each checkpoint',
    '  blocks the event loop ten times longer.',
    '- **The ratio moves with the machine.** The 21:44 run (41%) had the empty route at 24k req/s;',
    '  the runs since 22:50 have it at 5-6k req/s (loopback writes cost several times more: pgbench',
    '  and a bare Redis round trip slowed alike), and there SQLite was 54% before and 64% after the',
    '  changes above (rounds 54-67%). The lease routes do more work per request than the empty',
    '  route outside the kernel, so they lose less when syscalls get dear: compare runs, not days.',
    '- **Redis**: reserve/settle calls are batched into one script call per event-loop turn',
    '  (`setImmediate`), so concurrent HTTP requests share an EVALSHA; before that each request sent',
    '  its own (~38% of server CPU was ioredis socket writes, 31%).',
    '- **Before / after the API changes** (memory store, same machine, side by side in scratch runs):',
    '  lease+report 6,200-7,000 req/s before, 7,500-8,900 after. The previous committed run of this',
    '  bench (20:39, stores at 14fa4f4 / c855064, one round) had SQLite 3% and Redis 43%.',
    '',
  ].join('\n'),
);
console.log(
  `ratio vs empty route: memory ${pct(results.ratioMemory)}, sqlite ${pct(results.ratioSqlite)}${results.ratioRedis !== undefined ? `, redis ${pct(results.ratioRedis)}` : ''}`,
);
process.exit(0);
