import { createKeyPool } from '@keypool/core';
import { memoryStore } from '@keypool/store-memory';
import { testProvider } from '@keypool/testing';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { openaiAdapter, openaiProvider } from './provider.js';

testProvider('openai', () => ({
  provider: openaiAdapter,
  request: ({ text, maxTokens }) => ({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: text }],
    max_tokens: maxTokens,
  }),
  async call({ secret, baseURL, stream }) {
    const client = new OpenAI({ apiKey: secret, baseURL: `${baseURL}/v1`, maxRetries: 0 });
    const body = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'Say hello.' }] };
    if (!stream) return client.chat.completions.create(body);
    const chunks = [];
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true }))
      chunks.push(chunk);
    return chunks;
  },
}));

describe('openaiProvider', () => {
  it('contributes the openai provider and its prices to a pool', async () => {
    const pool = await createKeyPool({
      store: memoryStore(),
      plugins: [openaiProvider()],
      keys: [{ provider: 'openai', secret: 'sk-test-provider-0000000000', alias: 'a' }],
    });
    expect(pool.provider('openai')).toBe(openaiAdapter);
    await pool.close();
  });

  it('probes a key by listing models', async () => {
    const { startMockUpstream } = await import('@keypool/testing');
    const mock = await startMockUpstream();
    mock.setScript('sk-test-probe-bad-000000000', [401]);
    const good = await openaiAdapter.probe!('sk-test-probe-good-00000000', { baseURL: `${mock.url}/v1` });
    const bad = await openaiAdapter.probe!('sk-test-probe-bad-000000000', { baseURL: `${mock.url}/v1` });
    await mock.close();
    expect(good.ok).toBe(true);
    expect(bad).toMatchObject({ ok: false, outcome: { kind: 'http', status: 401 } });
    expect(mock.counts.log.map((entry) => entry.path)).toEqual(['/v1/models', '/v1/models']);
  });
});
