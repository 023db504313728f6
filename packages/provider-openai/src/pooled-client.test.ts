import { createKeyPool, NoKeyAvailableError } from '@keypool/core';
import type { KeyPool } from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import { type MockUpstream, startMockUpstream } from '@keypool/testing';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createPooledOpenAI } from './pooled-client.js';
import { openaiProvider } from './provider.js';

const SECRETS = { a: 'sk-test-primary-aaaa1111', b: 'sk-test-fallback-bbbb2222' } as const;
const messages = [{ role: 'user' as const, content: 'Say hello.' }];

let mock: MockUpstream;
let pool: KeyPool;
let openai: OpenAI;

beforeAll(async () => {
  mock = await startMockUpstream({ keys: SECRETS });
});
afterAll(async () => {
  await mock.close();
});

/** Key a is primary (tier 0), b the fallback (tier 1): which key served a request is then predictable. */
async function makePool(options: { breakerCooldownMs?: number } = {}) {
  return createKeyPool({
    store: memoryStore(),
    plugins: [openaiProvider()],
    keys: [
      { provider: 'openai', secret: SECRETS.a, alias: 'a', priority: 0 },
      { provider: 'openai', secret: SECRETS.b, alias: 'b', priority: 1 },
    ],
    maxWaitMs: 0,
    retry: { baseDelayMs: 1, maxDelayMs: 5 },
    breaker: { failureThreshold: 3, cooldownMs: options.breakerCooldownMs ?? 300_000 },
  });
}

beforeEach(async () => {
  mock.reset();
  pool = await makePool();
  openai = createPooledOpenAI(pool, { baseURL: `${mock.url}/v1` });
});
afterEach(async () => {
  await pool.close();
});

const keyHealth = (alias: string) => pool.health().keys.find((key) => key.alias === alias)!;
/** A stream's lease is released when the stream ends, just after the caller's loop: wait for it. */
const nextRelease = () =>
  new Promise<void>((resolve) => {
    const subscription = pool.on('lease:released', () => {
      subscription.dispose();
      resolve();
    });
  });

describe('createPooledOpenAI', () => {
  it('is the official client', () => {
    expect(openai).toBeInstanceOf(OpenAI);
  });

  it('moves to another key on 429 and lets the limited key cool for retry-after', async () => {
    mock.setScript('a', [{ status: 429, retryAfterS: 30 }]);
    const before = Date.now();
    const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(completion.choices[0]?.message.content).toBeTruthy();
    expect(mock.counts.requests('a')).toBe(1);
    expect(mock.counts.requests('b')).toBe(1);

    const cooling = keyHealth('a');
    expect(cooling.status).toBe('cooling');
    expect(cooling.until! - before).toBeGreaterThanOrEqual(29_000);
    expect(cooling.until! - Date.now()).toBeLessThanOrEqual(31_000);

    await openai.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(mock.counts.requests('a')).toBe(1);
    expect(mock.counts.requests('b')).toBe(2);
  });

  it('marks a key exhausted on insufficient_quota', async () => {
    mock.setScript('a', ['insufficient_quota']);
    await openai.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(keyHealth('a').status).toBe('exhausted');
    expect(mock.counts.requests('b')).toBe(1);
  });

  it('sends no more traffic to a key that answered 401', async () => {
    mock.setScript('a', [401]);
    for (let i = 0; i < 3; i++) await openai.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(keyHealth('a').status).toBe('invalid');
    expect(mock.counts.requests('a')).toBe(1);
    expect(mock.counts.requests('b')).toBe(3);
  });

  it('opens the breaker after three 5xx and closes it with one half-open probe', async () => {
    await pool.close();
    pool = await makePool({ breakerCooldownMs: 150 });
    openai = createPooledOpenAI(pool, { baseURL: `${mock.url}/v1` });
    mock.setScript('a', { steps: [500], repeat: true });
    for (let i = 0; i < 4; i++) await openai.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(mock.counts.requests('a')).toBe(3);
    expect(keyHealth('a').breaker).toBe('open');

    mock.setScript('a', []);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await openai.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(mock.counts.requests('a')).toBe(4);
    expect(keyHealth('a').breaker).toBe('closed');
    await openai.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(mock.counts.requests('a')).toBe(5);
  });

  it('returns a 400 to the caller at once, without trying other keys or blaming the key', async () => {
    mock.setScript('a', [{ status: 400, message: 'Invalid value for messages.' }]);
    const error = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages }).catch((e) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error.message).toContain('Invalid value for messages.');
    expect(mock.counts.requests('b')).toBe(0);
    expect(keyHealth('a').status).toBe('active');
    expect(keyHealth('a').breaker).toBe('closed');
  });

  it('surfaces the SDK’s own error when every key fails', async () => {
    mock.setScript('*', { steps: [{ status: 429, retryAfterS: 5 }], repeat: true });
    const error = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages }).catch((e) => e);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(mock.counts.requests()).toBe(2);
  });

  it('throws NoKeyAvailableError when no key is available at all', async () => {
    mock.setScript('*', { steps: [401], repeat: true });
    await openai.chat.completions.create({ model: 'gpt-4o-mini', messages }).catch(() => {});
    const error = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages }).catch((e) => e);
    expect(error).toBeInstanceOf(NoKeyAvailableError);
    expect(error.code).toBe('KEYPOOL_NO_KEY_AVAILABLE');
    expect(mock.counts.requests()).toBe(2);
  });

  it('switches keys when a stream fails before its first chunk', async () => {
    mock.setScript('a', ['beforeFirstChunkError']);
    const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text.length).toBeGreaterThan(0);
    expect(mock.counts.requests('a')).toBe(1);
    expect(mock.counts.requests('b')).toBe(1);
  });

  it('surfaces a failure after the first chunk to the caller, without retrying', async () => {
    mock.setScript('a', [{ fault: 'midStreamError', afterChunks: 2 }]);
    const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true });
    const received: string[] = [];
    const consume = async () => {
      for await (const chunk of stream) received.push(chunk.choices[0]?.delta.content ?? '');
    };
    await expect(consume()).rejects.toThrow();
    expect(received.length).toBeGreaterThan(0);
    expect(mock.counts.requests('b')).toBe(0);
  });

  it('records usage and cost for non-stream calls (chat, responses, embeddings)', async () => {
    await openai.chat.completions.create({ model: 'gpt-4o-mini', messages });
    await openai.responses.create({ model: 'gpt-4o-mini', input: 'Say hello.' });
    await openai.embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two'] });
    const seen = mock.counts.tokens('a');
    const [row] = await pool.store.queryUsage({});
    expect(row).toMatchObject({ requests: 3, errors: 0, inputTokens: seen.input, outputTokens: seen.output });
    expect(seen.input).toBeGreaterThan(0);
    expect(row!.costUsd).toBeGreaterThan(0);
    const byModel = await pool.store.queryUsage({ groupBy: ['model'] });
    expect(byModel.map((r) => r.model)).toEqual(['gpt-4o-mini', 'text-embedding-3-small']);
  });

  it('records stream usage without showing the caller a usage chunk it did not ask for', async () => {
    const released = nextRelease();
    const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) {
      expect(chunk.choices.length).toBeGreaterThan(0);
      expect('usage' in chunk).toBe(false);
    }
    await released;
    const seen = mock.counts.tokens('a');
    const [row] = await pool.store.queryUsage({});
    expect(row).toMatchObject({ requests: 1, inputTokens: seen.input, outputTokens: seen.output });
    expect(seen.output).toBeGreaterThan(0);
    expect(row!.costUsd).toBeGreaterThan(0);
  });

  it('leaves the usage chunk in place when the caller asked for it', async () => {
    const released = nextRelease();
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) usage = chunk.usage ?? usage;
    expect(usage?.completion_tokens).toBe(mock.counts.tokens('a').output);
    await released;
    const [row] = await pool.store.queryUsage({});
    expect(row?.outputTokens).toBe(usage?.completion_tokens);
  });

  it('records usage of a streamed Responses API call', async () => {
    const released = nextRelease();
    const stream = await openai.responses.create({ model: 'gpt-4o-mini', input: 'Say hello.', stream: true });
    const types = new Set<string>();
    for await (const event of stream) types.add(event.type);
    expect(types.has('response.completed')).toBe(true);
    await released;
    const [row] = await pool.store.queryUsage({});
    expect(row).toMatchObject({ requests: 1, outputTokens: mock.counts.tokens('a').output });
    expect(row!.outputTokens).toBeGreaterThan(0);
  });

  it('passes client options through and uses the caller’s fetch underneath', async () => {
    const sent: Headers[] = [];
    const client = createPooledOpenAI(pool, {
      baseURL: `${mock.url}/v1`,
      organization: 'org-from-client',
      defaultHeaders: { 'x-app': 'demo' },
      fetch: (input, init) => {
        sent.push(new Headers(init?.headers));
        return fetch(input, init);
      },
    });
    await client.models.list();
    expect(sent).toHaveLength(1);
    expect(sent[0]!.get('authorization')).toBe(`Bearer ${SECRETS.a}`);
    expect(sent[0]!.get('openai-organization')).toBe('org-from-client');
    expect(sent[0]!.get('x-app')).toBe('demo');
  });

  it('sends a key’s own organization and project', async () => {
    await pool.updateKey(pool.keys().find((key) => key.alias === 'a')!.id, {
      organization: 'org-of-key',
      project: 'proj-of-key',
    });
    const sent: Headers[] = [];
    const client = createPooledOpenAI(pool, {
      baseURL: `${mock.url}/v1`,
      organization: 'org-from-client',
      fetch: (input, init) => {
        sent.push(new Headers(init?.headers));
        return fetch(input, init);
      },
    });
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(sent[0]!.get('openai-organization')).toBe('org-of-key');
    expect(sent[0]!.get('openai-project')).toBe('proj-of-key');
  });

  it('gives a hanging key up after the per-attempt timeout and serves from the next', async () => {
    mock.setScript('a', [{ slow: 2_000 }]);
    const client = createPooledOpenAI(pool, { baseURL: `${mock.url}/v1`, timeout: 300 });
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages });
    expect(completion.choices.length).toBe(1);
    expect(mock.counts.requests('b')).toBe(1);
  });
});
