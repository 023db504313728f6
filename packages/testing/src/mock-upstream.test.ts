import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_MOCK_REPLY, type MockUpstream, startMockUpstream } from './mock-upstream.js';
import { maskSecret } from './mock-upstream-counts.js';
import { mockTokens } from './mock-upstream-dialect.js';
import { formatGoDuration, parseGoDuration } from './mock-upstream-limits.js';

const OPENAI_KEY = 'sk-test-openai-0000000000000001';
const OPENAI_KEY_2 = 'sk-test-openai-0000000000000002';
const ANTHROPIC_KEY = 'sk-ant-test-00000000000000000001';

const PROMPT = 'Say hello to the pool, please.'; // 30 chars → 8 tokens
const REPLY_TOKENS = mockTokens(DEFAULT_MOCK_REPLY);

let mock: MockUpstream;

// maxRetries 0: the SDKs would otherwise retry 429/5xx on their own and hide what the mock answered.
const openai = (apiKey = OPENAI_KEY) => new OpenAI({ apiKey, baseURL: `${mock.url}/v1`, maxRetries: 0 });
const anthropic = (apiKey = ANTHROPIC_KEY) => new Anthropic({ apiKey, baseURL: mock.url, maxRetries: 0 });

async function chat(apiKey = OPENAI_KEY) {
  return openai(apiKey).chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: PROMPT }],
  });
}

async function message(apiKey = ANTHROPIC_KEY) {
  return anthropic(apiKey).messages.create({
    model: 'claude-haiku-4-5',
    max_tokens: 100,
    messages: [{ role: 'user', content: PROMPT }],
  });
}

/** The error a promise rejects with (fails the test when it resolves). */
async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  mock = await startMockUpstream();
});
afterAll(async () => {
  await mock.close();
});
beforeEach(() => {
  mock.reset();
});

describe('OpenAI chat completions', () => {
  it('answers a plain request with exact usage and rate-limit headers', async () => {
    const { data, response } = await openai()
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] })
      .withResponse();
    expect(data.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(data.usage).toMatchObject({
      prompt_tokens: 8,
      completion_tokens: REPLY_TOKENS,
      total_tokens: 8 + REPLY_TOKENS,
    });
    expect(response.headers.get('x-request-id')).toMatch(/^req_/);
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('10000');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('9999');
    expect(response.headers.get('x-ratelimit-reset-requests')).toMatch(/^\d+(\.\d+)?s$|^\d+m[\d.]+s$/);
    expect(mock.counts.tokens(OPENAI_KEY)).toEqual({ input: 8, output: REPLY_TOKENS });
  });

  it('streams deltas and, with include_usage, a final chunk with usage and no choices', async () => {
    const stream = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: PROMPT }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: 8, completion_tokens: REPLY_TOKENS });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(mock.counts.log[0]).toMatchObject({ stream: true, status: 200, inputTokens: 8 });
  });

  it('streams without usage when include_usage is not asked for', async () => {
    const stream = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: PROMPT }],
      stream: true,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.some((c) => c.usage)).toBe(false);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
  });

  it('works with the SDK stream helper', async () => {
    const runner = openai().chat.completions.stream({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: PROMPT }],
      stream_options: { include_usage: true },
    });
    const completion = await runner.finalChatCompletion();
    expect(completion.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(completion.usage?.completion_tokens).toBe(REPLY_TOKENS);
  });
});

describe('OpenAI responses, embeddings, models', () => {
  it('answers responses.create with output_text and usage', async () => {
    const response = await openai().responses.create({ model: 'gpt-4o-mini', input: PROMPT });
    expect(response.output_text).toBe(DEFAULT_MOCK_REPLY);
    expect(response.usage).toMatchObject({ input_tokens: 8, output_tokens: REPLY_TOKENS });
  });

  it('streams responses events with usage in response.completed', async () => {
    const stream = await openai().responses.create({ model: 'gpt-4o-mini', input: PROMPT, stream: true });
    let text = '';
    let completed: unknown;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = event.response.usage;
    }
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    expect(completed).toMatchObject({ input_tokens: 8, output_tokens: REPLY_TOKENS });
  });

  it('embeds (default base64 encoding decoded by the SDK) and lists models', async () => {
    const result = await openai().embeddings.create({
      model: 'text-embedding-3-small',
      input: ['abcd', 'efgh'],
    });
    expect(result.data).toHaveLength(2);
    expect(result.data[0]?.embedding).toHaveLength(8);
    expect(result.usage.prompt_tokens).toBe(2);
    const models = await openai().models.list();
    expect(models.data.map((m) => m.id)).toContain('gpt-4o-mini');
  });
});

describe('Anthropic messages and models', () => {
  it('answers a plain request with exact usage and rate-limit headers', async () => {
    const { data, response } = await anthropic()
      .messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 100,
        system: 'Be kind.', // 8 chars → the system prompt counts too
        messages: [{ role: 'user', content: PROMPT }],
      })
      .withResponse();
    expect(data.content[0]).toMatchObject({ type: 'text', text: DEFAULT_MOCK_REPLY });
    expect(data.usage).toMatchObject({
      input_tokens: mockTokens('Be kind.' + PROMPT),
      output_tokens: REPLY_TOKENS,
    });
    expect(response.headers.get('request-id')).toMatch(/^req_/);
    expect(response.headers.get('anthropic-ratelimit-requests-remaining')).toBe('9999');
    const reset = response.headers.get('anthropic-ratelimit-tokens-reset')!;
    expect(reset).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Number.isFinite(Date.parse(reset))).toBe(true);
    expect(response.headers.get('anthropic-ratelimit-input-tokens-limit')).toBeTruthy();
    expect(response.headers.get('anthropic-ratelimit-output-tokens-remaining')).toBeTruthy();
  });

  it('streams message_start, deltas and message_delta with the final usage', async () => {
    const stream = await anthropic().messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      messages: [{ role: 'user', content: PROMPT }],
      stream: true,
    });
    const types: string[] = [];
    let text = '';
    let outputTokens = 0;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
      if (event.type === 'message_delta') outputTokens = event.usage.output_tokens;
    }
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    expect(outputTokens).toBe(REPLY_TOKENS);
    expect(types[0]).toBe('message_start');
    expect(types.slice(-2)).toEqual(['message_delta', 'message_stop']);
  });

  it('works with the SDK stream helper and lists models', async () => {
    const final = await anthropic()
      .messages.stream({
        model: 'claude-haiku-4-5',
        max_tokens: 100,
        messages: [{ role: 'user', content: PROMPT }],
      })
      .finalMessage();
    expect(final.usage).toMatchObject({ input_tokens: 8, output_tokens: REPLY_TOKENS });
    const models = await anthropic().models.list();
    expect(models.data.length).toBeGreaterThan(0);
  });

  it('requires x-api-key and anthropic-version like the real API', async () => {
    const res = await fetch(`${mock.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': ANTHROPIC_KEY },
      body: JSON.stringify({ model: 'x', max_tokens: 1, messages: [] }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  });
});

describe('Anthropic prompt caching', () => {
  const KEY_2 = 'sk-ant-test-00000000000000000002';
  const DOC = 'd'.repeat(400); // 100 tokens, cached for an hour
  const RULES = 'r'.repeat(200); // 50 tokens, cached for 5 minutes
  const QUESTION = 'Why not?'; // 2 tokens, never cached
  let clock = Date.parse('2026-11-25T10:00:00Z');
  let cached: MockUpstream;
  beforeAll(async () => {
    cached = await startMockUpstream({ now: () => clock });
  });
  afterAll(() => cached.close());

  const request = {
    model: 'claude-haiku-4-5',
    max_tokens: 100,
    system: [
      { type: 'text' as const, text: DOC, cache_control: { type: 'ephemeral' as const, ttl: '1h' as const } },
      { type: 'text' as const, text: RULES, cache_control: { type: 'ephemeral' as const } },
    ],
    messages: [{ role: 'user' as const, content: QUESTION }],
  };
  const client = (apiKey: string) => new Anthropic({ apiKey, baseURL: cached.url, maxRetries: 0 });
  const ask = (apiKey = ANTHROPIC_KEY) => client(apiKey).messages.create(request);
  const cacheUsage = (input: number, read: number, write5m: number, write1h: number) => ({
    input_tokens: input,
    cache_read_input_tokens: read,
    cache_creation_input_tokens: write5m + write1h,
    cache_creation: { ephemeral_5m_input_tokens: write5m, ephemeral_1h_input_tokens: write1h },
  });

  it('writes cache_control prefixes, reads them back per key, and lets each TTL run out', async () => {
    expect((await ask()).usage).toMatchObject(cacheUsage(2, 0, 50, 100));
    expect((await ask()).usage).toMatchObject(cacheUsage(2, 150, 0, 0));
    expect((await ask(KEY_2)).usage).toMatchObject(cacheUsage(2, 0, 50, 100));
    clock += 6 * 60_000; // the 5-minute prefix is gone, the 1-hour one stays
    expect((await ask()).usage).toMatchObject(cacheUsage(2, 100, 50, 0));
    expect(cached.counts.tokens(ANTHROPIC_KEY).input).toBe(3 * 152);
  });

  it('writes nothing for a request that failed, and streams the breakdown in message_start', async () => {
    const KEY_3 = 'sk-ant-test-00000000000000000003';
    cached.setScript(KEY_3, [500]);
    await expect(ask(KEY_3)).rejects.toThrow();
    const usages: unknown[] = [];
    for await (const event of await client(KEY_3).messages.create({ ...request, stream: true })) {
      if (event.type === 'message_start') usages.push(event.message.usage);
      if (event.type === 'message_delta') usages.push(event.usage);
    }
    expect(usages[0]).toMatchObject(cacheUsage(2, 0, 50, 100));
    expect(usages[1]).toMatchObject({
      input_tokens: 2,
      cache_read_input_tokens: 0,
      cache_creation_input_tokens: 150,
      output_tokens: REPLY_TOKENS,
    });
  });
});

describe('scripted faults through the real SDKs', () => {
  it('429 with retry-after and reset headers, then success', async () => {
    mock.setScript(OPENAI_KEY, [{ status: 429, retryAfterS: 7, retryAfterMs: 7000, resetRequests: '6m0s' }]);
    const error = await failure(chat());
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    const e = error as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.status).toBe(429);
    expect(e.code).toBe('rate_limit_exceeded');
    expect(e.headers.get('retry-after')).toBe('7');
    expect(e.headers.get('retry-after-ms')).toBe('7000');
    expect(e.headers.get('x-ratelimit-reset-requests')).toBe('6m0s');
    expect(e.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    await expect(chat()).resolves.toBeTruthy();
    expect(mock.counts.byStatus(OPENAI_KEY)).toEqual({ 200: 1, 429: 1 });
  });

  it('insufficient_quota (OpenAI 429) and billing (Anthropic 400 credit balance, or 402)', async () => {
    mock.setScript(OPENAI_KEY, ['insufficient_quota']);
    const quota = (await failure(chat())) as InstanceType<typeof OpenAI.APIError>;
    expect(quota.status).toBe(429);
    expect(quota.code).toBe('insufficient_quota');

    mock.setScript(ANTHROPIC_KEY, ['billing', { fault: 'billing', status: 402 }]);
    const low = (await failure(message())) as InstanceType<typeof Anthropic.APIError>;
    expect(low.status).toBe(400);
    expect(low.type).toBe('invalid_request_error');
    expect(low.message).toContain('credit balance is too low');
    const billing = (await failure(message())) as InstanceType<typeof Anthropic.APIError>;
    expect(billing.status).toBe(402);
    expect(billing.type).toBe('billing_error');
  });

  it.each([
    [401, 'AuthenticationError', 'authentication_error'],
    [403, 'PermissionDeniedError', 'permission_error'],
    [500, 'InternalServerError', 'api_error'],
    [503, 'InternalServerError', 'api_error'],
    [529, 'InternalServerError', 'overloaded_error'],
  ] as const)(
    '%i reaches both SDKs as their error class and shape',
    async (status, className, anthropicType) => {
      mock.setScript(OPENAI_KEY, [status]);
      mock.setScript(ANTHROPIC_KEY, [status]);
      const o = (await failure(chat())) as InstanceType<typeof OpenAI.APIError>;
      expect(o.status).toBe(status);
      expect(o.constructor.name).toBe(className);
      expect(o.headers?.get('x-request-id')).toMatch(/^req_/);
      const a = (await failure(message())) as InstanceType<typeof Anthropic.APIError>;
      expect(a.status).toBe(status);
      expect(a.type).toBe(anthropicType);
      expect(a.requestID).toMatch(/^req_/);
    },
  );

  it('scripts repeat when asked, and `*` applies to every key', async () => {
    mock.setScript(OPENAI_KEY, { steps: [500, 'ok'], repeat: true });
    mock.setScript('*', [503]);
    const outcomes = [];
    for (let i = 0; i < 4; i++)
      outcomes.push(
        await chat().then(
          () => 200,
          (e: { status: number }) => e.status,
        ),
      );
    expect(outcomes).toEqual([500, 200, 500, 200]);
    expect(
      await chat(OPENAI_KEY_2).then(
        () => 200,
        (e: { status: number }) => e.status,
      ),
    ).toBe(503);
  });

  it('a slow answer meets the SDK timeout as a timeout error', async () => {
    mock.setScript(OPENAI_KEY, [{ slow: 2000 }]);
    const client = new OpenAI({ apiKey: OPENAI_KEY, baseURL: `${mock.url}/v1`, maxRetries: 0, timeout: 100 });
    const error = await failure(
      client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    );
    expect(error).toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
  });

  it('drop reaches the SDKs as a connection error', async () => {
    mock.setScript(OPENAI_KEY, ['drop']);
    mock.setScript(ANTHROPIC_KEY, ['drop']);
    expect(await failure(chat())).toBeInstanceOf(OpenAI.APIConnectionError);
    expect(await failure(message())).toBeInstanceOf(Anthropic.APIConnectionError);
    expect(mock.counts.byStatus()).toEqual({ 0: 2 });
  });

  it('midStreamError delivers some chunks, then the stream breaks', async () => {
    mock.setScript(OPENAI_KEY, [{ fault: 'midStreamError', afterChunks: 3 }]);
    const stream = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: PROMPT }],
      stream: true,
    });
    let received = 0;
    const error = await failure(
      (async () => {
        for await (const _ of stream) received++;
      })(),
    );
    expect(received).toBe(3);
    expect(error).toBeInstanceOf(Error);
    expect(mock.counts.log[0]).toMatchObject({ status: 200, cut: true, outputTokens: 0 });

    mock.setScript(ANTHROPIC_KEY, ['midStreamError']);
    const events: string[] = [];
    const aError = await failure(
      (async () => {
        const s = await anthropic().messages.create({
          model: 'claude-haiku-4-5',
          max_tokens: 100,
          messages: [{ role: 'user', content: PROMPT }],
          stream: true,
        });
        for await (const event of s) events.push(event.type);
      })(),
    );
    expect(events).toEqual(['message_start', 'content_block_start']);
    expect(aError).toBeInstanceOf(Error);
  });

  it('beforeFirstChunkError breaks a stream before any event', async () => {
    mock.setScript(ANTHROPIC_KEY, ['beforeFirstChunkError']);
    const events: string[] = [];
    const error = await failure(
      (async () => {
        const s = await anthropic().messages.create({
          model: 'claude-haiku-4-5',
          max_tokens: 100,
          messages: [{ role: 'user', content: PROMPT }],
          stream: true,
        });
        for await (const event of s) events.push(event.type);
      })(),
    );
    expect(events).toEqual([]);
    expect(error).toBeInstanceOf(Error);
  });

  it('a non-stream answer cut halfway is an error, not a success', async () => {
    mock.setScript(OPENAI_KEY, ['midStreamError']);
    expect(await failure(chat())).toBeInstanceOf(Error);
  });
});

describe('enforced limits', () => {
  it('answers 429 past rpm within a sliding window, then admits again once it slides', async () => {
    // A controlled clock keeps the window exact; windowMs shortens it as a fleet test would.
    let clock = 5_000_000;
    const short = await startMockUpstream({ windowMs: 300, now: () => clock });
    try {
      short.setLimits(OPENAI_KEY, { rpm: 2 });
      const client = new OpenAI({ apiKey: OPENAI_KEY, baseURL: `${short.url}/v1`, maxRetries: 0 });
      const call = (at: number) => {
        clock = 5_000_000 + at;
        return client.chat.completions
          .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] })
          .withResponse()
          .then(
            ({ response }) => ({
              status: 200,
              remaining: response.headers.get('x-ratelimit-remaining-requests'),
              reset: response.headers.get('x-ratelimit-reset-requests'),
            }),
            (e: InstanceType<typeof OpenAI.APIError>) => ({
              status: e.status,
              remaining: e.headers?.get('x-ratelimit-remaining-requests') ?? null,
              reset: e.headers?.get('x-ratelimit-reset-requests') ?? null,
              code: e.code,
            }),
          );
      };
      expect(await call(0)).toEqual({ status: 200, remaining: '1', reset: '300ms' });
      expect(await call(100)).toEqual({ status: 200, remaining: '0', reset: '200ms' });
      expect(await call(250)).toEqual({
        status: 429,
        remaining: '0',
        reset: '50ms',
        code: 'rate_limit_exceeded',
      });
      // At 300 the first request has left the window: one slot is free again.
      expect(await call(300)).toMatchObject({ status: 200, remaining: '0' });
      // The 429 counts as a request the key sent, but used no tokens.
      expect(short.counts.maxInAnyWindow(OPENAI_KEY)).toEqual({
        requests: 3,
        tokens: 2 * (8 + REPLY_TOKENS),
      });
      expect(short.counts.maxInAnyWindow(OPENAI_KEY, 1000)).toEqual({
        requests: 4,
        tokens: 3 * (8 + REPLY_TOKENS),
      });
    } finally {
      await short.close();
    }
  });

  it('holds the keys of one organization to its shared rpm, on top of each key own', async () => {
    let clock = 7_000_000;
    const short = await startMockUpstream({ windowMs: 300, now: () => clock });
    try {
      const [a, b, outsider] = ['a', 'b', 'c'].map((k) => `sk-org-member-${k.repeat(20)}`) as [
        string,
        string,
        string,
      ];
      short.setOrgLimits('org-1', [a, b], { rpm: 3 });
      const call = (apiKey: string, at: number) => {
        clock = 7_000_000 + at;
        return new OpenAI({ apiKey, baseURL: `${short.url}/v1`, maxRetries: 0 }).chat.completions
          .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] })
          .then(
            () => 200,
            (e: InstanceType<typeof OpenAI.APIError>) => e.status,
          );
      };
      expect([await call(a, 0), await call(b, 10), await call(a, 20), await call(b, 30)]).toStrictEqual([
        200, 200, 200, 429,
      ]);
      // Another key is not in the organization; the window slides for the members.
      expect(await call(outsider, 40)).toBe(200);
      expect(await call(b, 300)).toBe(200);
      expect(short.counts.maxInAnyWindow([a, b]).requests).toBe(4);
      expect(short.counts.maxInAnyWindow([a, b], 1000).requests).toBe(5);
    } finally {
      await short.close();
    }
  });

  it('answers 429 past tpm with Anthropic retry-after', async () => {
    mock.setLimits(ANTHROPIC_KEY, { tpm: 8 + REPLY_TOKENS });
    await message();
    const error = (await failure(message())) as InstanceType<typeof Anthropic.RateLimitError>;
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    expect(Number(error.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(error.headers.get('anthropic-ratelimit-tokens-remaining')).toBe('0');
  });
});

describe('counts', () => {
  it('maxInAnyWindow slides over recorded times rather than fixed buckets', async () => {
    let clock = 1_000_000;
    const timed = await startMockUpstream({ now: () => clock, keys: { a: OPENAI_KEY } });
    try {
      const client = new OpenAI({ apiKey: OPENAI_KEY, baseURL: `${timed.url}/v1`, maxRetries: 0 });
      const call = () =>
        client.chat.completions.create({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: PROMPT }],
        });
      // 2 requests late in one minute and 2 early in the next: fixed buckets would say 2, a sliding window 4.
      for (const t of [50_000, 55_000, 61_000, 65_000, 200_000]) {
        clock = 1_000_000 + t;
        await call();
      }
      expect(timed.counts.maxInAnyWindow(OPENAI_KEY, 60_000)).toEqual({
        requests: 4,
        tokens: 4 * (8 + REPLY_TOKENS),
      });
      expect(timed.counts.maxInAnyWindow('a', 10_000).requests).toBe(2);
      expect(timed.counts.maxInAnyWindow(maskSecret(OPENAI_KEY), 1).requests).toBe(1);
      expect(timed.counts.requests('a')).toBe(5);
    } finally {
      await timed.close();
    }
  });

  it('keeps secrets out of printed and serialised entries', async () => {
    await chat();
    const entry = mock.counts.log[0]!;
    expect(entry.secret).toBe(OPENAI_KEY);
    expect(entry.key).toBe(maskSecret(OPENAI_KEY));
    expect(JSON.stringify(mock.counts.log)).not.toContain(OPENAI_KEY);
    const { inspect } = await import('node:util');
    expect(inspect(mock.counts.log, { showHidden: true, depth: 5 })).not.toContain(OPENAI_KEY);
    expect(mock.counts.keys()).toEqual([maskSecret(OPENAI_KEY)]);
  });

  it('counts requests per key and per status, and reset clears them', async () => {
    mock.setScript(OPENAI_KEY_2, [500]);
    await chat();
    await failure(chat(OPENAI_KEY_2));
    await message();
    expect(mock.counts.requests()).toBe(3);
    expect(mock.counts.requests(OPENAI_KEY)).toBe(1);
    expect(mock.counts.byStatus(OPENAI_KEY_2)).toEqual({ 500: 1 });
    expect(mock.counts.log.map((e) => e.provider)).toEqual(['openai', 'openai', 'anthropic']);
    mock.reset();
    expect(mock.counts.requests()).toBe(0);
  });
});

describe('Go durations', () => {
  it('formats and parses like Go', () => {
    expect(formatGoDuration(0)).toBe('0s');
    expect(formatGoDuration(20)).toBe('20ms');
    expect(formatGoDuration(1500)).toBe('1.5s');
    expect(formatGoDuration(360_000)).toBe('6m0s');
    expect(formatGoDuration(3_723_000)).toBe('1h2m3s');
    for (const text of ['6m0s', '1.5s', '20ms', '1h2m3s'])
      expect(formatGoDuration(parseGoDuration(text))).toBe(text);
    expect(() => parseGoDuration('soon')).toThrow(/Go duration/);
  });
});

it('closes cleanly with a request still waiting', async () => {
  const m = await startMockUpstream();
  m.setScript(OPENAI_KEY, [{ slow: 60_000 }]);
  const pending = new OpenAI({ apiKey: OPENAI_KEY, baseURL: `${m.url}/v1`, maxRetries: 0 }).chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })
    .catch((e: unknown) => e);
  await new Promise((r) => setTimeout(r, 50));
  await m.close();
  expect(await pending).toBeInstanceOf(Error);
});

describe('in-stream error events', () => {
  it('Anthropic: event: error with overloaded_error after some events', async () => {
    mock.setScript(ANTHROPIC_KEY, [{ fault: 'midStreamError', status: 529, afterChunks: 1 }]);
    const events: string[] = [];
    const error = (await failure(
      (async () => {
        const s = await anthropic().messages.create({
          model: 'claude-haiku-4-5',
          max_tokens: 100,
          messages: [{ role: 'user', content: PROMPT }],
          stream: true,
        });
        for await (const event of s) events.push(event.type);
      })(),
    )) as InstanceType<typeof Anthropic.APIError>;
    expect(events).toEqual(['message_start']);
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect(error.type).toBe('overloaded_error');
    expect(mock.counts.log[0]).toMatchObject({ status: 200, cut: true });
  });

  it('OpenAI: a data payload with an error field', async () => {
    mock.setScript(OPENAI_KEY, [{ fault: 'midStreamError', status: 500 }]);
    const stream = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: PROMPT }],
      stream: true,
    });
    let received = 0;
    const error = (await failure(
      (async () => {
        for await (const _ of stream) received++;
      })(),
    )) as InstanceType<typeof OpenAI.APIError>;
    expect(received).toBe(2);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error.type).toBe('server_error');
  });
});
