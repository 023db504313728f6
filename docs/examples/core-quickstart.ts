// The @keypool/core README example: two keys in tiers, a lease by hand, and execute().
import { createKeyPool } from '@keypool/core';
import { memoryStore } from '@keypool/store-memory';

const pool = await createKeyPool({
  store: memoryStore(),
  keys: [
    {
      provider: 'openai',
      secret: 'sk-example-a-000000000000000',
      alias: 'a',
      limits: { rpm: 500, tpm: 200_000 },
    },
    { provider: 'openai', secret: 'sk-example-b-000000000000000', alias: 'b', priority: 1 }, // fallback tier
  ],
  strategy: 'least-used',
  maxWaitMs: 5_000,
});

pool.on('key:cooldown', (e) => console.log(`${e.alias} cools for ${e.cooldownMs} ms`));

const lease = await pool.acquire({ provider: 'openai', model: 'gpt-4o-mini', estimatedTokens: 800 });
console.log(`leased ${lease.alias}`);
// The upstream said 429: the primary cools and the next request goes to the fallback tier.
await lease.release({ ok: false, status: 429, headers: { 'retry-after': '30' } });

const answer = await pool.execute('openai', async (l) => `called with ${l.alias}`, { maxAttempts: 3 });
console.log(answer);
const health = pool.health();
console.log(`pool is ${health.status}: ${health.reasons.join('; ')}`);
if (answer !== 'called with b' || health.status !== 'degraded') throw new Error('unexpected outcome');
await pool.close();
