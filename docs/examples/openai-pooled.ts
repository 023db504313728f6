// Swap `new OpenAI()` for `createPooledOpenAI(pool)`: the same client, every request on the best key.
// Runs against the keypool mock upstream, with the primary key scripted to answer 429 once.
import { createKeyPool } from '@keypool/core';
import { createPooledOpenAI, openaiProvider } from '@keypool/provider-openai';
import { memoryStore } from '@keypool/store-memory';
import { startMockUpstream } from '@keypool/testing';

const upstream = await startMockUpstream();
upstream.setScript('sk-example-primary-0000000000', [{ status: 429, retryAfterS: 20 }]);

const pool = await createKeyPool({
  store: memoryStore(),
  plugins: [openaiProvider()],
  keys: [
    { provider: 'openai', secret: 'sk-example-primary-0000000000', alias: 'primary' },
    { provider: 'openai', secret: 'sk-example-backup-00000000000', alias: 'backup', priority: 1 },
  ],
});
pool.on('key:cooldown', (e) => console.log(`${e.alias} answered 429: cooling for ${e.cooldownMs} ms`));
pool.on('lease:released', (e) =>
  console.log(`${e.alias} ${e.ok ? 'served the request' : `failed (${e.failure})`}`),
);

const openai = createPooledOpenAI(pool, { baseURL: `${upstream.url}/v1` });
const completion = await openai.chat.completions.create({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello.' }],
});
console.log(`answer: ${completion.choices[0]?.message.content}`);

// Every attempt is in the usage log, with tokens and cost priced from the provider's table.
const aliasOf = new Map(pool.keys().map((key) => [key.id, key.alias]));
for (const row of await pool.store.queryUsage({ groupBy: ['key'] })) {
  console.log(
    `usage ${aliasOf.get(row.keyId ?? '')}: ${row.requests} request(s), ${row.errors} error(s), ` +
      `${row.inputTokens} in / ${row.outputTokens} out tokens, $${row.costUsd.toFixed(6)}`,
  );
}

if (upstream.counts.requests('sk-example-backup-00000000000') !== 1)
  throw new Error('expected the backup key to serve');
await pool.close();
await upstream.close();
