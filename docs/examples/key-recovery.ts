// When keys fail: `lastResort` serves a call while every usable key is rate-limited, and background
// `probes` bring a key the upstream rejected back by themselves. Runs against the keypool mock
// upstream: key "a" is refused (401) and its first probe too, key "b" is rate-limited (429).
import { createKeyPool } from '@keypool/core';
import { createPooledOpenAI, openaiProvider } from '@keypool/provider-openai';
import { memoryStore } from '@keypool/store-memory';
import { startMockUpstream } from '@keypool/testing';

const upstream = await startMockUpstream();
const baseURL = `${upstream.url}/v1`;
const [a, b] = ['sk-example-key-a-000000000000', 'sk-example-key-b-000000000000'];

const pool = await createKeyPool({
  store: memoryStore(),
  plugins: [openaiProvider()],
  keys: [
    { provider: 'openai', secret: a, alias: 'a', baseURL },
    { provider: 'openai', secret: b, alias: 'b', baseURL },
  ],
  maxWaitMs: 1_000,
  // Rather than fail when every usable key cools: use the one whose cooldown ends first.
  lastResort: true,
  // Every 200 ms (a minute or more in production), list models with keys that are invalid,
  // exhausted or breaker-open; one probe per key at a time across every process on the store.
  probes: { intervalMs: 200 },
});
pool.on('key:last-resort', (e) =>
  console.warn(`warning: ${e.alias} used as a last resort (${e.reason} for ${e.until - Date.now()} ms more)`),
);
pool.on('probe:failed', (e) => console.log(`probe of ${e.alias}: still refused (${e.status})`));
const back = new Promise<void>((resolve) =>
  pool.on('probe:passed', (e) => {
    console.log(`probe of ${e.alias} passed: no longer ${e.reasons.join(', ')}`);
    resolve();
  }),
);

// The upstream rejects a (as a call would report it) and will refuse its first probe too...
upstream.setScript(a, [401]);
const refused = await pool.acquire({ provider: 'openai' });
await refused.release({ ok: false, status: 401 });
// ...and rate-limits b for 30 s.
const limited = await pool.acquire({ provider: 'openai' });
await limited.release({ ok: false, status: 429, headers: { 'retry-after': '30' } });
console.log(
  pool
    .health()
    .keys.map((k) => `${k.alias}: ${k.status}`)
    .join(', '),
);

// No key is eligible and waiting 1 s would not help: the call goes to b anyway (never to a).
const openai = createPooledOpenAI(pool);
const ask = () =>
  openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] });
await ask();
if (upstream.counts.requests(b) !== 1) throw new Error('expected the last resort to call key b');

// The probe brings a back; the next call goes to it, with no warning.
await back;
await ask();
if (upstream.counts.byStatus(a)[200] !== 2) throw new Error('expected a to pass its probe, then serve');
for (const entry of await pool.store.listAudit({ action: 'key.probe' })) {
  console.log(`audit: ${entry.actor} ${entry.action} ${JSON.stringify(entry.details)}`);
}

await pool.close();
await upstream.close();
