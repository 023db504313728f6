// Swap `new Anthropic()` for `createPooledAnthropic(pool)`: the same client, every request on the best key.
// Runs against the keypool mock upstream, with the primary key scripted to answer 529 (overloaded).
import { createKeyPool } from '@keypool/core';
import { anthropicProvider, createPooledAnthropic } from '@keypool/provider-anthropic';
import { memoryStore } from '@keypool/store-memory';
import { startMockUpstream } from '@keypool/testing';

const PRIMARY = 'sk-ant-example-primary-000000000';
const BACKUP = 'sk-ant-example-backup-0000000000';

const upstream = await startMockUpstream();
upstream.setScript(PRIMARY, { steps: [529], repeat: true });

const pool = await createKeyPool({
  store: memoryStore(),
  plugins: [anthropicProvider()],
  keys: [
    { provider: 'anthropic', secret: PRIMARY, alias: 'primary' },
    { provider: 'anthropic', secret: BACKUP, alias: 'backup', priority: 1 },
  ],
  retry: { baseDelayMs: 10 },
});
pool.on('lease:released', (e) =>
  console.log(`${e.alias} ${e.ok ? 'served the request' : `failed (${e.failure})`}`),
);
pool.on('breaker:open', (e) => console.log(`${e.alias}: breaker open after ${e.failures} failures`));

const anthropic = createPooledAnthropic(pool, { baseURL: upstream.url });

const message = await anthropic.messages.create({
  model: 'claude-haiku-4-5',
  max_tokens: 256,
  messages: [{ role: 'user', content: 'Say hello.' }],
});
console.log(`answer: ${message.content[0]?.type === 'text' ? message.content[0].text : ''}`);

// Streams work the same; usage is recorded when the stream ends.
const stream = anthropic.messages.stream({
  model: 'claude-haiku-4-5',
  max_tokens: 256,
  messages: [{ role: 'user', content: 'Stream a hello.' }],
});
// The stream's lease is released (with its usage) just after its last event.
const released = new Promise<void>((resolve) => pool.on('lease:released', (e) => e.ok && resolve()));
const streamed = await stream.finalMessage();
console.log(`streamed: ${streamed.usage.output_tokens} output tokens`);
await released;
const [spent] = await pool.store.queryUsage({});
console.log(
  `usage log: ${spent?.requests} requests (${spent?.errors} failed), ${spent?.inputTokens} in / ${spent?.outputTokens} out, $${spent?.costUsd.toFixed(6)}`,
);

if (upstream.counts.requests(BACKUP) !== 2) throw new Error('expected the backup key to serve both requests');
await pool.close();
await upstream.close();
