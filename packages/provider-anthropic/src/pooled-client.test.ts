import Anthropic from '@anthropic-ai/sdk';
import { createKeyPool, type KeyPoolOptions, NoKeyAvailableError } from '@keypool/core';
import type { KeyPool, KeySpec } from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import { type MockUpstream, startMockUpstream } from '@keypool/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createPooledAnthropic, type PooledAnthropicOptions } from './pooled-client.js';
import { anthropicProvider } from './provider.js';

const SECRETS = {
  a: 'sk-ant-api03-aaaaaaaaaaaaaaaaaaaaaaaa',
  b: 'sk-ant-api03-bbbbbbbbbbbbbbbbbbbbbbbb',
  c: 'sk-ant-api03-cccccccccccccccccccccccc',
};
type Alias = keyof typeof SECRETS;
const MODEL = 'claude-haiku-4-5';
const ASK = { model: MODEL, max_tokens: 64, messages: [{ role: 'user' as const, content: 'Say hello.' }] };

let upstream: MockUpstream;
let clock = Date.parse('2026-11-25T10:00:00Z');
const pools: KeyPool[] = [];

beforeAll(async () => {
  upstream = await startMockUpstream({ keys: SECRETS, now: () => clock });
});
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
  upstream.reset();
});
afterAll(() => upstream.close());

/** A pool where `a` is the primary (tier 0) and the others are fallbacks, so "who served" is predictable. */
async function setup(
  aliases: Alias[] = ['a', 'b'],
  options: Partial<KeyPoolOptions> = {},
  clientOptions: PooledAnthropicOptions = {},
) {
  const keys: KeySpec[] = aliases.map((alias, priority) => ({
    provider: 'anthropic',
    secret: SECRETS[alias],
    alias,
    priority,
  }));
  const pool = await createKeyPool({
    store: memoryStore(),
    plugins: [anthropicProvider()],
    keys,
    maxWaitMs: 0,
    retry: { baseDelayMs: 1, maxDelayMs: 2 },
    breaker: { failureThreshold: 3, cooldownMs: 1000 },
    now: () => clock,
    ...options,
  });
  pools.push(pool);
  const client = createPooledAnthropic(pool, { baseURL: upstream.url, ...clientOptions });
  return { pool, client };
}

const served = (alias: Alias) => upstream.counts.requests(SECRETS[alias]);
const statusOf = (pool: KeyPool, alias: Alias) => pool.health().keys.find((key) => key.alias === alias);

describe('createPooledAnthropic', () => {
  it('is the official client, answering as usual from a pooled key', async () => {
    const { client } = await setup(['a']);
    expect(client).toBeInstanceOf(Anthropic);
    const message = await client.messages.create(ASK);
    expect(message.content[0]).toMatchObject({ type: 'text' });
    expect(served('a')).toBe(1);
    // The upstream saw the pooled key, never the placeholder or a bearer token.
    expect(upstream.counts.keys()).toHaveLength(1);
  });

  it('moves off a rate-limited key and brings it back when retry-after has passed', async () => {
    const { client, pool } = await setup();
    const cooldowns: number[] = [];
    pool.on('key:cooldown', (event) => cooldowns.push(event.cooldownMs));
    upstream.setScript('a', [{ status: 429, retryAfterS: 7 }]);
    await client.messages.create(ASK);
    expect([served('a'), served('b')]).toEqual([1, 1]);
    expect(statusOf(pool, 'a')?.status).toBe('cooling');
    // retry-after is a floor; core may cool longer when a rate-limit bucket resets later.
    expect(cooldowns[0]).toBeGreaterThanOrEqual(7000);

    clock += 6000;
    await client.messages.create(ASK);
    expect([served('a'), served('b')]).toEqual([1, 2]);

    clock += cooldowns[0]! - 6000 + 1;
    await client.messages.create(ASK);
    expect([served('a'), served('b')]).toEqual([2, 2]);
  });

  it.each([
    ['the live API’s 400 "credit balance is too low"', 'billing' as const],
    ['a 402 billing_error', { fault: 'billing' as const, status: 402 }],
  ])('marks a key exhausted on %s and stops using it', async (_name, fault) => {
    const { client, pool } = await setup();
    upstream.setScript('a', [fault]);
    await client.messages.create(ASK);
    await client.messages.create(ASK);
    expect([served('a'), served('b')]).toEqual([1, 2]);
    expect(statusOf(pool, 'a')?.status).toBe('exhausted');
  });

  it('gives a 401 key no more traffic', async () => {
    const { client, pool } = await setup();
    upstream.setScript('a', [401]);
    for (let i = 0; i < 3; i++) await client.messages.create(ASK);
    expect([served('a'), served('b')]).toEqual([1, 3]);
    expect(statusOf(pool, 'a')?.status).toBe('invalid');
  });

  it('opens the breaker after 3 overloaded/5xx answers; one half-open probe closes it', async () => {
    const { client, pool } = await setup();
    upstream.setScript('a', [529, 500, 529]);
    for (let i = 0; i < 3; i++) await client.messages.create(ASK);
    expect(statusOf(pool, 'a')?.breaker).toBe('open');
    await client.messages.create(ASK);
    expect([served('a'), served('b')]).toEqual([3, 4]);

    clock += 1001;
    upstream.setScript('a', [{ fault: 'ok', slow: 150 }]);
    // Two requests at once: only one may probe the half-open key.
    await Promise.all([client.messages.create(ASK), client.messages.create(ASK)]);
    expect([served('a'), served('b')]).toEqual([4, 5]);
    await vi.waitFor(() => expect(statusOf(pool, 'a')?.breaker).toBe('closed'));
    await client.messages.create(ASK);
    expect(served('a')).toBe(5);
  });

  it('returns a 400 at once without touching other keys or blaming the key', async () => {
    const { client, pool } = await setup();
    upstream.setScript('a', [400]);
    await expect(client.messages.create(ASK)).rejects.toBeInstanceOf(Anthropic.BadRequestError);
    expect([served('a'), served('b')]).toEqual([1, 0]);
    expect(statusOf(pool, 'a')?.status).toBe('active');
  });

  it('throws the SDK’s own typed error when every key fails', async () => {
    const { client } = await setup();
    upstream.setScript('*', { steps: [529], repeat: true });
    const error = await client.messages.create(ASK).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect((error as InstanceType<typeof Anthropic.APIError>).status).toBe(529);
    expect([served('a'), served('b')]).toEqual([1, 1]);
  });

  it('throws the pool’s NoKeyAvailableError when no key is available', async () => {
    const { client, pool } = await setup(['a']);
    await pool.disableKey(pool.keys()[0]!.id, 'test');
    await expect(client.messages.create(ASK)).rejects.toBeInstanceOf(NoKeyAvailableError);
    expect(served('a')).toBe(0);
  });

  it('moves on from a key that answers slower than the timeout', async () => {
    const { client, pool } = await setup(['a', 'b'], {}, { timeout: 100 });
    upstream.setScript('a', [{ fault: 'ok', slow: 1000 }]);
    await client.messages.create(ASK);
    expect(served('b')).toBe(1);
    expect(statusOf(pool, 'a')?.lastError?.failure).toBe('timeout');
  });

  it('retries a dropped connection on another key', async () => {
    const { client } = await setup();
    upstream.setScript('a', ['drop']);
    await client.messages.create(ASK);
    expect(served('b')).toBe(1);
  });

  it('sends a key to its own baseURL', async () => {
    const pool = await createKeyPool({
      store: memoryStore(),
      plugins: [anthropicProvider()],
      keys: [{ provider: 'anthropic', secret: SECRETS.c, alias: 'c', baseURL: upstream.url }],
      maxWaitMs: 0,
    });
    pools.push(pool);
    const client = createPooledAnthropic(pool, { baseURL: 'http://127.0.0.1:9' });
    await client.messages.create(ASK);
    expect(served('c')).toBe(1);
  });

  it('refuses a pool without the anthropic provider, saying how to fix it', async () => {
    const pool = await createKeyPool({ store: memoryStore(), maxWaitMs: 0 });
    pools.push(pool);
    expect(() => createPooledAnthropic(pool)).toThrow(/anthropicProvider\(\)/);
  });
});

describe('streams', () => {
  async function collect(stream: AsyncIterable<{ type: string; delta?: unknown }>): Promise<string> {
    let text = '';
    for await (const event of stream) {
      const delta = event.delta as { type?: string; text?: string } | undefined;
      if (event.type === 'content_block_delta' && delta?.type === 'text_delta') text += delta.text;
    }
    return text;
  }

  it('switches keys when a stream fails before its first event', async () => {
    const { client } = await setup();
    upstream.setScript('a', ['beforeFirstChunkError']);
    const text = await collect(await client.messages.create({ ...ASK, stream: true }));
    expect(text.length).toBeGreaterThan(0);
    expect([served('a'), served('b')]).toEqual([1, 1]);
  });

  it('switches keys when the first event is an error, through the user’s own fetch and headers', async () => {
    const seen: Array<{ key: string | null; authorization: string | null; app: string | null }> = [];
    const userFetch = async (input: string | URL | Request, init?: RequestInit) => {
      const headers = new Headers(init?.headers);
      seen.push({
        key: headers.get('x-api-key'),
        authorization: headers.get('authorization'),
        app: headers.get('x-app'),
      });
      if (headers.get('x-api-key') === SECRETS.a) {
        const overloaded = { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } };
        return new Response(`event: error\ndata: ${JSON.stringify(overloaded)}\n\n`, {
          headers: { 'content-type': 'text/event-stream' },
        });
      }
      return fetch(input, init);
    };
    const { client, pool } = await setup(
      ['a', 'b'],
      {},
      { fetch: userFetch, defaultHeaders: { 'x-app': 'demo' } },
    );
    const text = await collect(await client.messages.create({ ...ASK, stream: true }));
    expect(text.length).toBeGreaterThan(0);
    expect(seen).toEqual([
      { key: SECRETS.a, authorization: null, app: 'demo' },
      { key: SECRETS.b, authorization: null, app: 'demo' },
    ]);
    expect(statusOf(pool, 'a')?.lastError).toMatchObject({ failure: 'server', code: 'overloaded_error' });
  });

  it('surfaces an error after the first event instead of switching keys', async () => {
    const { client, pool } = await setup();
    upstream.setScript('a', [{ fault: 'midStreamError', afterChunks: 2 }]);
    const stream = await client.messages.create({ ...ASK, stream: true });
    await expect(collect(stream)).rejects.toThrow();
    expect([served('a'), served('b')]).toEqual([1, 0]);
    await vi.waitFor(() => expect(statusOf(pool, 'a')?.lastError?.failure).toBe('connection'));
  });

  it('releases a stream the caller stops without blaming the key, keeping its usage', async () => {
    const { client, pool } = await setup(['a']);
    const stream = await client.messages.create({ ...ASK, stream: true });
    for await (const event of stream) {
      if (event.type === 'message_start') break;
    }
    await vi.waitFor(async () => {
      const [row] = await pool.store.queryUsage({ provider: 'anthropic' });
      expect(row).toMatchObject({ requests: 1 });
      expect(row?.inputTokens).toBeGreaterThan(0);
    });
    expect(statusOf(pool, 'a')).toMatchObject({ status: 'active', breaker: 'closed' });
    expect(statusOf(pool, 'a')?.lastError).toBeUndefined();
  });

  it('records usage and cost of create({ stream: true }), messages.stream() and plain calls', async () => {
    const { client, pool } = await setup(['a']);
    await client.messages.create(ASK);
    await collect(await client.messages.create({ ...ASK, stream: true }));
    const final = await client.messages.stream(ASK).finalMessage();
    expect(final.usage.output_tokens).toBeGreaterThan(0);

    const seen = upstream.counts.tokens(SECRETS.a);
    const expectedCost = (seen.input * 1 + seen.output * 5) / 1_000_000; // claude-haiku-4-5: $1 / $5 per MTok
    await vi.waitFor(async () => {
      const [row] = await pool.store.queryUsage({ provider: 'anthropic' });
      expect(row).toMatchObject({
        requests: 3,
        errors: 0,
        inputTokens: seen.input,
        outputTokens: seen.output,
      });
      expect(row?.costUsd).toBeCloseTo(expectedCost, 10);
    });
  });

  it('prices prompt-cache writes at 1.25x (5 minutes) and 2x (1 hour) input, reads at the cached rate', async () => {
    const { client, pool } = await setup(['a']);
    const cachedAsk = {
      ...ASK,
      system: [
        // 400 and 200 characters: 100 and 50 mock tokens; the question is 10 characters, 3 tokens.
        {
          type: 'text' as const,
          text: 'd'.repeat(400),
          cache_control: { type: 'ephemeral' as const, ttl: '1h' as const },
        },
        { type: 'text' as const, text: 'r'.repeat(200), cache_control: { type: 'ephemeral' as const } },
      ],
    };
    // Streamed: writes 100 tokens for an hour and 50 for 5 minutes.
    await collect(await client.messages.create({ ...cachedAsk, stream: true }));
    // Plain: reads all 150.
    await client.messages.create(cachedAsk);
    // Six minutes on, through the stream helper: reads the hour's 100, writes the 50 again.
    clock += 6 * 60_000;
    await client.messages.stream(cachedAsk).finalMessage();

    const output = upstream.counts.tokens(SECRETS.a).output / 3;
    // claude-haiku-4-5 per MTok: input $1, output $5, cache read $0.10, 5-minute write $1.25, 1-hour write $2.
    const costs = [
      3 * 1 + 50 * 1.25 + 100 * 2 + output * 5,
      3 * 1 + 150 * 0.1 + output * 5,
      3 * 1 + 100 * 0.1 + 50 * 1.25 + output * 5,
    ];
    await vi.waitFor(async () => {
      const [row] = await pool.store.queryUsage({ provider: 'anthropic' });
      expect(row).toMatchObject({ requests: 3, inputTokens: 3 * 153, outputTokens: 3 * output });
      expect(row?.costUsd).toBeCloseTo((costs[0]! + costs[1]! + costs[2]!) / 1_000_000, 12);
    });
  });
});
