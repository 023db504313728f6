// acquire+release on the memory store, 100 keys with limits, against a bare
// round-robin loop over an array in the same run. Target: >= 300,000 pairs/s on
// one core, and no heap growth over 10 million pairs (KEYPOOL_BENCH_PAIRS).
import { writeFileSync } from 'node:fs';
import { createKeyPool } from '@keypool/core';
import { memoryStore } from '@keypool/store-memory';

const KEYS = 100;
const TOTAL_PAIRS = Number(process.env.KEYPOOL_BENCH_PAIRS ?? 10_000_000);
const SAMPLE_PAIRS = 1_000_000;

const keys = Array.from({ length: KEYS }, (_, i) => ({
  provider: 'openai',
  secret: `sk-bench-${String(i).padStart(24, '0')}`,
  alias: `k${i}`,
  // High enough never to bind, so the bench measures bookkeeping, not waiting.
  limits: { rpm: 1e12, tpm: 1e15, requestsPerDay: 1e15, tokensPerDay: 1e18 },
}));

async function baseline(pairs) {
  // What a hand-written rotation loop costs: pick the next key, hand it out, take it back.
  const ring = keys.map((k) => ({ secret: k.secret, inFlight: 0 }));
  let cursor = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < pairs; i++) {
    const key = ring[cursor++ % ring.length];
    key.inFlight++;
    await Promise.resolve();
    key.inFlight--;
  }
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function pooled(pool, pairs) {
  const usage = { inputTokens: 10, outputTokens: 5 };
  const outcome = { ok: true, usage };
  const options = { provider: 'openai', estimatedTokens: 20 };
  const started = process.hrtime.bigint();
  for (let i = 0; i < pairs; i++) {
    const lease = await pool.acquire(options);
    await lease.release(outcome);
  }
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function heapMb() {
  globalThis.gc?.();
  return process.memoryUsage().heapUsed / 1e6;
}

const pool = await createKeyPool({ store: memoryStore(), keys, refreshMs: 60_000 });
await pooled(pool, 50_000); // warm up
const baseSeconds = await baseline(SAMPLE_PAIRS);
const poolSeconds = await pooled(pool, SAMPLE_PAIRS);
const perSecond = SAMPLE_PAIRS / poolSeconds;
const basePerSecond = SAMPLE_PAIRS / baseSeconds;

const heap = [];
let done = 0;
const chunk = 1_000_000;
heap.push({ pairs: 0, heapMb: heapMb() });
const soakStarted = process.hrtime.bigint();
while (done < TOTAL_PAIRS) {
  const n = Math.min(chunk, TOTAL_PAIRS - done);
  await pooled(pool, n);
  done += n;
  heap.push({ pairs: done, heapMb: heapMb() });
  process.stderr.write(`  ${done.toLocaleString()} pairs, heap ${heap.at(-1).heapMb.toFixed(1)} MB\n`);
}
const soakSeconds = Number(process.hrtime.bigint() - soakStarted) / 1e9;
await pool.close();

const afterWarm = heap[1]?.heapMb ?? heap[0].heapMb;
const growthMb = heap.at(-1).heapMb - afterWarm;
const result = {
  bench: 'core acquire+release, memory store, 100 keys with limits',
  date: new Date().toISOString(),
  node: process.version,
  pairsPerSecond: Math.round(perSecond),
  microsecondsPerPair: Number((1e6 / perSecond).toFixed(3)),
  baselinePairsPerSecond: Math.round(basePerSecond),
  ratioToBaseline: Number((perSecond / basePerSecond).toFixed(3)),
  target: { pairsPerSecond: 300_000, met: perSecond >= 300_000 },
  soak: {
    pairs: TOTAL_PAIRS,
    seconds: Number(soakSeconds.toFixed(1)),
    heapMb: heap.map((h) => ({ pairs: h.pairs, heapMb: Number(h.heapMb.toFixed(1)) })),
    growthAfterFirstMillionMb: Number(growthMb.toFixed(2)),
    gcExposed: typeof globalThis.gc === 'function',
  },
};
writeFileSync(new URL('./results/core.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
writeFileSync(
  new URL('./results/core.md', import.meta.url),
  `# core: acquire+release on the memory store (100 keys with limits)

| measure | value |
|---|---|
| pooled acquire+release | ${result.pairsPerSecond.toLocaleString('en-US')} pairs/s (${result.microsecondsPerPair} µs each) |
| bare round-robin loop (baseline, same run) | ${result.baselinePairsPerSecond.toLocaleString('en-US')} pairs/s |
| pooled / baseline | ${result.ratioToBaseline} |
| target ≥ 300,000 pairs/s | ${result.target.met ? 'met' : 'NOT met'} |
| heap growth over ${TOTAL_PAIRS.toLocaleString('en-US')} pairs (after the first million) | ${result.soak.growthAfterFirstMillionMb} MB |

Node ${process.version}, ${result.date}. Run: \`npm run bench -- core\`.
`,
);
console.log(JSON.stringify(result, null, 2));
