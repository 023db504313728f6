// @keypool/store-redis hot path against a bare EVALSHA (a Lua script doing one
// INCR) on the same Redis, in the same run:
//  - serial: one reserve+settle pair vs one bare EVALSHA; target pair <= 2x bare
//  - concurrent c=50: reserve+settle pairs/s vs bare EVALSHA calls/s; target >= 50%
//  - memory: INFO used_memory delta after 1,000 keys with records and hot state
// Run after building: npm run build -w @keypool/store-redis && npm exec -- node bench/store-redis.bench.mjs
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { redisStore } from '@keypool/store-redis';
import { Redis } from 'ioredis';

const REDIS_URL = process.env.KEYPOOL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const SERIAL = Number(process.env.KEYPOOL_BENCH_SERIAL ?? 20_000);
const ROUNDS = 10;
const CONCURRENCY = 50;
const DURATION_MS = Number(process.env.KEYPOOL_BENCH_DURATION_MS ?? 3_000);
const KEYS = 100;
const TARGET = { serialRatioMax: 2, concurrentShareMin: 0.5 };

const run = `${process.pid}_${Date.now().toString(36)}`;
const prefix = `kp_bench_${run}`;
const memPrefix = `kp_bench_mem_${run}`;
// commandTimeout set as the README recommends, so the store needs no timer of its own per call.
const client = new Redis(REDIS_URL, { commandTimeout: 1_000 });
client.defineCommand('benchIncr', { numberOfKeys: 1, lua: "return redis.call('INCR', KEYS[1])" });
const bareKey = `{${prefix}}:bare`;
const store = redisStore({ client, prefix });
await store.init();

const limits = { rpm: 1e12, tpm: 1e15, requestsPerDay: 1e15, tokensPerDay: 1e18, monthlyBudgetUsd: 1e12 };
const keyIds = Array.from({ length: KEYS }, (_, i) => `key-${i}`);
let seq = 0;
function request() {
  const now = Date.now();
  const first = seq % KEYS;
  // What the pool passes: a few candidates in preference order; the first one has headroom.
  const candidates = [0, 1, 2, 3].map((o) => ({ keyId: keyIds[(first + o) % KEYS], limits }));
  return {
    leaseId: `l${seq++}`,
    candidates,
    model: 'gpt-4o-mini',
    estimatedTokens: 800,
    estimatedCostUsd: 0.0004,
    now,
    windowMs: 60_000,
    day: '2026-11-25',
    month: '2026-11',
    dayEndsAt: now + 3_600_000,
    monthEndsAt: now + 86_400_000,
    leaseTtlMs: 60_000,
  };
}

async function pair() {
  const result = await store.reserve(request());
  if (!result.ok) throw new Error(`bench reservation refused: ${JSON.stringify(result.reasons)}`);
  await store.settle(result.lease.id, { tokens: 600, costUsd: 0.0003, now: Date.now() });
}

const bare = () => client.benchIncr(bareKey);

async function serial(fn, n) {
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  return Number(process.hrtime.bigint() - started) / 1e3; // µs
}

async function concurrent(fn) {
  let done = 0;
  const deadline = Date.now() + DURATION_MS;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < deadline) {
        await fn();
        done++;
      }
    }),
  );
  return done / (Number(process.hrtime.bigint() - started) / 1e9);
}

async function usedMemory() {
  const info = await client.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)[1]);
}

// Memory first, on its own prefix, before the throughput runs fill windows.
const memStore = redisStore({ client, prefix: memPrefix });
const memBefore = await usedMemory();
const now = Date.now();
for (let i = 0; i < 1_000; i++) {
  await memStore.putKey({
    id: `mem-${String(i).padStart(4, '0')}`,
    alias: `openai-${i}`,
    provider: 'openai',
    // The shape of a real sealed secret (kp1.<kid>.<iv>.<ciphertext>.<tag>).
    sealedSecret: `kp1.mk_0123456789ab.${randomBytes(12).toString('base64url')}.${randomBytes(56).toString('base64url')}.${randomBytes(16).toString('base64url')}`,
    masterKeyId: 'mk_0123456789ab',
    fingerprint: randomBytes(32).toString('hex'),
    maskedSecret: 'sk-proj-…abcd',
    priority: 0,
    weight: 1,
    limits: { rpm: 500, tpm: 200_000, requestsPerDay: 10_000 },
    enabled: true,
    createdAt: now,
    updatedAt: now,
  });
  const keyId = `mem-${String(i).padStart(4, '0')}`;
  const r = await memStore.reserve({ ...request(), candidates: [{ keyId, limits: { rpm: 500 } }] });
  await memStore.settle(r.lease.id, { tokens: 600, costUsd: 0.0003, now });
  await memStore.updateKeyState(keyId, {
    set: { lastError: { at: now, failure: 'rate-limit', status: 429 }, coolingUntil: now - 1 },
    incrementFailures: true,
    now,
  });
}
const memAfter = await usedMemory();

// Warm up both paths (script load, JIT).
await serial(pair, 2_000);
await serial(bare, 2_000);

// Interleaved rounds so drift and GC hit both alike.
let pairUs = 0;
let bareUs = 0;
const per = Math.ceil(SERIAL / ROUNDS);
for (let round = 0; round < ROUNDS; round++) {
  if (round % 2 === 0) {
    pairUs += await serial(pair, per);
    bareUs += await serial(bare, per);
  } else {
    bareUs += await serial(bare, per);
    pairUs += await serial(pair, per);
  }
}
const serialPairUs = pairUs / (per * ROUNDS);
const serialBareUs = bareUs / (per * ROUNDS);

const bareRate1 = await concurrent(bare);
const pairRate1 = await concurrent(pair);
const pairRate2 = await concurrent(pair);
const bareRate2 = await concurrent(bare);
const bareRate = (bareRate1 + bareRate2) / 2;
const pairRate = (pairRate1 + pairRate2) / 2;

const results = {
  bench: 'store-redis',
  date: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  loadAverage1m: Number(loadavg()[0].toFixed(2)),
  redis: (await client.info('server')).match(/redis_version:(\S+)/)?.[1],
  serial: {
    iterations: per * ROUNDS,
    reserveSettlePairUs: Number(serialPairUs.toFixed(1)),
    bareEvalshaUs: Number(serialBareUs.toFixed(1)),
    ratio: Number((serialPairUs / serialBareUs).toFixed(2)),
    target: `<= ${TARGET.serialRatioMax}`,
    pass: serialPairUs / serialBareUs <= TARGET.serialRatioMax,
  },
  concurrent: {
    concurrency: CONCURRENCY,
    durationMs: DURATION_MS,
    reserveSettlePairsPerSec: Math.round(pairRate),
    storeCallsPerSec: Math.round(pairRate * 2),
    bareEvalshaPerSec: Math.round(bareRate),
    pairShare: Number((pairRate / bareRate).toFixed(2)),
    callShare: Number(((2 * pairRate) / bareRate).toFixed(2)),
    target: `pairs/s >= ${TARGET.concurrentShareMin * 100}% of bare calls/s`,
    pass: pairRate / bareRate >= TARGET.concurrentShareMin,
  },
  memory: {
    keys: 1_000,
    usedMemoryDeltaBytes: memAfter - memBefore,
    bytesPerKey: Math.round((memAfter - memBefore) / 1_000),
    note: 'record + fingerprint index + state + window + counters per key; INFO used_memory on a shared server is approximate',
  },
};

const md = `# store-redis bench

${results.date} · Node ${results.node} · Redis ${results.redis} (localhost) · ${results.cpus} CPUs, load ${results.loadAverage1m}

| measure | keypool redis store | bare EVALSHA (INCR) | ratio | target | pass |
|---|---|---|---|---|---|
| serial round trip | ${results.serial.reserveSettlePairUs} µs per reserve+settle | ${results.serial.bareEvalshaUs} µs per call | ${results.serial.ratio}x | ${results.serial.target} | ${results.serial.pass ? 'yes' : 'NO'} |
| concurrent c=${CONCURRENCY} | ${results.concurrent.reserveSettlePairsPerSec} pairs/s (${results.concurrent.storeCallsPerSec} calls/s) | ${results.concurrent.bareEvalshaPerSec} calls/s | ${Math.round(results.concurrent.pairShare * 100)}% (calls: ${Math.round(results.concurrent.callShare * 100)}%) | ${results.concurrent.target} | ${results.concurrent.pass ? 'yes' : 'NO'} |

Memory: ${results.memory.usedMemoryDeltaBytes} bytes for 1,000 keys with records and hot state
(≈ ${results.memory.bytesPerKey} bytes per key; ${results.memory.note}).

Each reserve passes 4 candidates (the first eligible) with all five limits set; each settle
reconciles tokens and cost. Serial runs are interleaved in ${ROUNDS} rounds.
`;

mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('./results/store-redis.json', import.meta.url),
  `${JSON.stringify(results, null, 2)}\n`,
);
writeFileSync(new URL('./results/store-redis.md', import.meta.url), md);
console.log(md);

// Clean up everything this run wrote.
for (const p of [prefix, memPrefix]) {
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `{${p}}*`, 'COUNT', 1_000);
    if (batch.length > 0) await client.del(...batch);
    cursor = next;
  } while (cursor !== '0');
}
await store.close();
await memStore.close();
client.disconnect();
