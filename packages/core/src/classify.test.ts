import type { HeaderBag, UpstreamOutcome } from '@keypool/spec';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  classifyOutcome,
  cooldownFromHeaders,
  DEFAULT_RATE_LIMIT_COOLDOWN_MS,
  describeUpstreamError,
  parseGoDuration,
  parseRateLimitHeaders,
  readHeader,
} from './classify.js';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const iso = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();
const DAY_MS = 24 * 60 * 60 * 1000;

/** A 429 for tokens from the OpenAI API, as the rate-limit guide shows it. */
const OPENAI_429 = {
  'x-request-id': 'req_3b2c0c2e0f0d4d2f9d4f3f1a2b3c4d5e',
  'x-ratelimit-limit-requests': '10000',
  'x-ratelimit-limit-tokens': '2000000',
  'x-ratelimit-remaining-requests': '9999',
  'x-ratelimit-remaining-tokens': '0',
  'x-ratelimit-reset-requests': '6ms',
  'x-ratelimit-reset-tokens': '1m30s',
  'retry-after': '20',
};

/** A 429 for requests from the Anthropic API (reset times are RFC 3339). */
const ANTHROPIC_429 = {
  'request-id': 'req_018EeWyXxfu5pfWkrYcMdjWG',
  'retry-after': '18',
  'anthropic-ratelimit-requests-limit': '50',
  'anthropic-ratelimit-requests-remaining': '0',
  'anthropic-ratelimit-requests-reset': iso(17_500),
  'anthropic-ratelimit-tokens-limit': '100000',
  'anthropic-ratelimit-tokens-remaining': '98000',
  'anthropic-ratelimit-tokens-reset': iso(45_000),
  'anthropic-ratelimit-input-tokens-limit': '80000',
  'anthropic-ratelimit-input-tokens-remaining': '79000',
  'anthropic-ratelimit-input-tokens-reset': iso(1_000),
  'anthropic-ratelimit-output-tokens-limit': '20000',
  'anthropic-ratelimit-output-tokens-remaining': '19000',
  'anthropic-ratelimit-output-tokens-reset': iso(2_000),
};

const http = (status: number, extra: Partial<UpstreamOutcome> = {}): UpstreamOutcome => ({
  kind: 'http',
  status,
  ...extra,
});

describe('classifyOutcome: the failure table', () => {
  it.each([
    ['429 insufficient_quota', http(429, { code: 'insufficient_quota' }), 'quota', true, false],
    [
      '429 billing_hard_limit_reached',
      http(429, { code: 'billing_hard_limit_reached' }),
      'quota',
      true,
      false,
    ],
    ['429 billing_error', http(429, { code: 'billing_error' }), 'quota', true, false],
    ['429 credit_balance', http(429, { code: 'Credit_Balance' }), 'quota', true, false],
    [
      '400 billing_hard_limit_reached (images)',
      http(400, { code: 'billing_hard_limit_reached' }),
      'quota',
      true,
      false,
    ],
    [
      '400 low credit balance (Anthropic)',
      http(400, {
        code: 'invalid_request_error',
        message: 'Your credit balance is too low to access the Anthropic API.',
      }),
      'quota',
      true,
      false,
    ],
    ['402', http(402), 'quota', true, false],
    ['429 rate_limit_exceeded', http(429, { code: 'rate_limit_exceeded' }), 'rate-limit', true, false],
    ['401', http(401, { code: 'invalid_api_key' }), 'auth', true, false],
    ['403', http(403, { code: 'permission_error' }), 'forbidden', true, false],
    ['408', http(408), 'timeout', true, true],
    ['500', http(500), 'server', true, true],
    ['502', http(502), 'server', true, true],
    ['503', http(503), 'server', true, true],
    ['529 overloaded', http(529, { code: 'overloaded_error' }), 'server', true, true],
    ['timeout', { kind: 'timeout' }, 'timeout', true, true],
    ['connection', { kind: 'connection' }, 'connection', true, true],
    ['abort', { kind: 'abort' }, 'abort', false, false],
    ['400', http(400, { code: 'invalid_request_error' }), 'caller', false, false],
    ['404', http(404, { code: 'model_not_found' }), 'caller', false, false],
    ['409', http(409), 'caller', false, false],
    ['413', http(413, { code: 'request_too_large' }), 'caller', false, false],
    ['422', http(422), 'caller', false, false],
    ['418', http(418), 'caller', false, false],
    ['http without a status', { kind: 'http' }, 'caller', false, false],
  ] satisfies Array<[string, UpstreamOutcome, string, boolean, boolean]>)(
    '%s -> %s',
    (_, outcome, failure, retryable, countsForBreaker) => {
      const result = classifyOutcome(outcome, NOW);
      expect(result).toMatchObject({ failure, retryable, countsForBreaker });
      if (failure !== 'rate-limit') expect(result.cooldownMs).toBeUndefined();
    },
  );

  it('an Azure rate-limit message that mentions a quota link stays a rate limit', () => {
    const message =
      'Requests to the ChatCompletions_Create Operation have exceeded call rate limit. ' +
      'Please retry after 1 second. To increase the default rate limit, visit https://aka.ms/oai/quotaincrease.';
    const result = classifyOutcome(http(429, { code: '429', message, headers: { 'retry-after': '1' } }), NOW);
    expect(result).toMatchObject({ failure: 'rate-limit', cooldownMs: 1000 });
  });

  it('a 429 cools for 60 s when no header says otherwise', () => {
    expect(classifyOutcome(http(429), NOW).cooldownMs).toBe(DEFAULT_RATE_LIMIT_COOLDOWN_MS);
    expect(classifyOutcome(http(429, { headers: { 'retry-after': 'soon' } }), NOW).cooldownMs).toBe(60_000);
  });

  it('a 429 cools as long as the headers say, an explicit retry-after first', () => {
    // Buckets refill continuously: "full again in 1m30s" is later than the next allowed request.
    expect(classifyOutcome(http(429, { headers: OPENAI_429 }), NOW).cooldownMs).toBe(20_000);
    expect(classifyOutcome(http(429, { headers: ANTHROPIC_429 }), NOW).cooldownMs).toBe(18_000);
  });
});

describe('cooldownFromHeaders', () => {
  it('reads retry-after-ms, retry-after seconds and HTTP dates', () => {
    expect(cooldownFromHeaders({ 'retry-after-ms': '1500' }, NOW)).toBe(1500);
    expect(cooldownFromHeaders({ 'Retry-After': '7' }, NOW)).toBe(7000);
    expect(cooldownFromHeaders({ 'retry-after': new Date(NOW + 30_000).toUTCString() }, NOW)).toBe(30_000);
    expect(cooldownFromHeaders({ 'retry-after-ms': '1500', 'retry-after': '2' }, NOW)).toBe(2000);
  });

  it('takes the reset of the empty bucket, else the later reset', () => {
    expect(cooldownFromHeaders({ ...OPENAI_429, 'retry-after': undefined }, NOW)).toBe(90_000);
    expect(
      cooldownFromHeaders(
        {
          'x-ratelimit-remaining-requests': '0',
          'x-ratelimit-reset-requests': '2s',
          'x-ratelimit-reset-tokens': '1m',
        },
        NOW,
      ),
    ).toBe(2000);
    expect(
      cooldownFromHeaders({ 'x-ratelimit-reset-requests': '2s', 'x-ratelimit-reset-tokens': '1m' }, NOW),
    ).toBe(60_000);
    const { 'retry-after': _, ...anthropic } = ANTHROPIC_429;
    expect(cooldownFromHeaders(anthropic, NOW)).toBe(17_500);
  });

  it('reads Azure plain-second resets', () => {
    expect(cooldownFromHeaders({ 'x-ratelimit-reset-tokens': '12' }, NOW)).toBe(12_000);
  });

  it('ignores negatives, past dates, zero and garbage', () => {
    const garbage = {
      'retry-after': '-5',
      'retry-after-ms': 'NaN',
      'x-ratelimit-reset-requests': '-1s',
      'x-ratelimit-reset-tokens': '0s',
      'anthropic-ratelimit-requests-reset': iso(-10_000),
      'anthropic-ratelimit-tokens-reset': 'tomorrow',
    };
    expect(cooldownFromHeaders(garbage, NOW)).toBeUndefined();
    expect(cooldownFromHeaders(undefined, NOW)).toBeUndefined();
    expect(cooldownFromHeaders({}, NOW)).toBeUndefined();
  });

  it('caps at 24 h', () => {
    expect(cooldownFromHeaders({ 'retry-after': '999999999' }, NOW)).toBe(DAY_MS);
    expect(cooldownFromHeaders({ 'x-ratelimit-reset-tokens': '1000h' }, NOW)).toBe(DAY_MS);
  });
});

describe('parseRateLimitHeaders', () => {
  it('reads an OpenAI response', () => {
    expect(parseRateLimitHeaders(new Headers(OPENAI_429), NOW)).toEqual({
      requests: { limit: 10_000, remaining: 9999, resetAt: NOW + 6 },
      tokens: { limit: 2_000_000, remaining: 0, resetAt: NOW + 90_000 },
      retryAfterMs: 20_000,
      observedAt: NOW,
    });
  });

  it('reads an Anthropic response', () => {
    expect(parseRateLimitHeaders(ANTHROPIC_429, NOW)).toEqual({
      requests: { limit: 50, remaining: 0, resetAt: NOW + 17_500 },
      tokens: { limit: 100_000, remaining: 98_000, resetAt: NOW + 45_000 },
      inputTokens: { limit: 80_000, remaining: 79_000, resetAt: NOW + 1_000 },
      outputTokens: { limit: 20_000, remaining: 19_000, resetAt: NOW + 2_000 },
      retryAfterMs: 18_000,
      observedAt: NOW,
    });
  });

  it('prefers retry-after-ms for retryAfterMs and drops Azure -1 placeholders', () => {
    const snapshot = parseRateLimitHeaders(
      {
        'retry-after-ms': '250',
        'retry-after': '1',
        'x-ratelimit-limit-tokens': '-1',
        'x-ratelimit-remaining-tokens': '-1',
      },
      NOW,
    );
    expect(snapshot).toEqual({ retryAfterMs: 250, observedAt: NOW });
  });

  it('returns only observedAt when nothing is known', () => {
    expect(parseRateLimitHeaders(undefined, NOW)).toEqual({ observedAt: NOW });
  });
});

describe('parseGoDuration', () => {
  it.each([
    ['6m0s', 360_000],
    ['1.5s', 1500],
    ['20ms', 20],
    ['1h2m3s', 3_723_000],
    ['250us', 0.25],
    ['250µs', 0.25],
    ['100ns', 0.0001],
    ['0', 0],
    ['0s', 0],
    ['.5s', 500],
    ['+2s', 2000],
  ])('%s -> %d ms', (text, ms) => {
    expect(parseGoDuration(text)).toBeCloseTo(ms, 9);
  });

  it.each(['', '-1s', '5', 's', '1x', '1s2', 'abc', '1 s', '1.2.3s'])('%j -> undefined', (text) => {
    expect(parseGoDuration(text)).toBeUndefined();
  });
});

describe('readHeader', () => {
  it('reads every HeaderBag shape case-insensitively', () => {
    const bags: HeaderBag[] = [
      new Headers({ 'Retry-After': '3' }),
      { 'RETRY-AFTER': '3' },
      { 'retry-after': ['3', '4'] },
      { 'retry-after': undefined, 'Retry-After': '3' },
      [['Retry-After', '3']],
      new Map([['retry-after', '3']]),
    ];
    for (const bag of bags) expect(readHeader(bag, 'retry-after')).toBe('3');
    expect(readHeader(undefined, 'retry-after')).toBeUndefined();
    expect(readHeader({}, 'retry-after')).toBeUndefined();
  });

  it('treats throwing header objects as empty', () => {
    const hostile = new Proxy(
      {},
      {
        ownKeys() {
          throw new Error('nope');
        },
      },
    ) as HeaderBag;
    expect(readHeader(hostile, 'retry-after')).toBeUndefined();
  });
});

describe('describeUpstreamError', () => {
  /** Shaped like the OpenAI SDK's RateLimitError. */
  class RateLimitError extends Error {
    override name = 'RateLimitError';
    status = 429;
    headers = new Headers(OPENAI_429);
    code = 'insufficient_quota';
    type = 'insufficient_quota';
    error = {
      message: 'You exceeded your current quota.',
      type: 'insufficient_quota',
      code: 'insufficient_quota',
    };
  }

  it('reads an OpenAI SDK error', () => {
    const outcome = describeUpstreamError(new RateLimitError('429 You exceeded your current quota.'));
    expect(outcome).toMatchObject({ kind: 'http', status: 429, code: 'insufficient_quota' });
    expect(readHeader(outcome.headers, 'x-ratelimit-reset-tokens')).toBe('1m30s');
    expect(classifyOutcome(outcome, NOW).failure).toBe('quota');
  });

  it('reads an Anthropic SDK error, whose body nests the error type', () => {
    const error = Object.assign(new Error('529 {"type":"error","error":{"type":"overloaded_error"}}'), {
      name: 'InternalServerError',
      status: 529,
      headers: { 'request-id': 'req_1' },
      error: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } },
    });
    expect(describeUpstreamError(error)).toMatchObject({
      kind: 'http',
      status: 529,
      code: 'overloaded_error',
    });
  });

  it('reads statusCode, response.status and string statuses', () => {
    expect(describeUpstreamError({ statusCode: 503 }).status).toBe(503);
    expect(
      describeUpstreamError({ response: { status: 401, headers: { 'retry-after': '1' } } }),
    ).toMatchObject({
      status: 401,
      headers: { 'retry-after': '1' },
    });
    expect(describeUpstreamError({ status: '404' }).status).toBe(404);
  });

  it('reads a fetch Response', () => {
    const response = new Response('{}', {
      status: 429,
      statusText: 'Too Many Requests',
      headers: { 'retry-after': '2' },
    });
    const outcome = describeUpstreamError(response);
    expect(outcome).toMatchObject({ kind: 'http', status: 429, message: 'Too Many Requests' });
    expect(classifyOutcome(outcome, NOW)).toMatchObject({ failure: 'rate-limit', cooldownMs: 2000 });
  });

  it.each([
    ['AbortError', Object.assign(new Error('This operation was aborted'), { name: 'AbortError' }), 'abort'],
    [
      'APIUserAbortError',
      Object.assign(new Error('Request was aborted.'), { name: 'APIUserAbortError' }),
      'abort',
    ],
    ['DOMException abort', new DOMException('aborted', 'AbortError'), 'abort'],
    ['AbortSignal.timeout', new DOMException('timed out', 'TimeoutError'), 'timeout'],
    [
      'APIConnectionTimeoutError',
      Object.assign(new Error('Request timed out.'), { name: 'APIConnectionTimeoutError' }),
      'timeout',
    ],
    ['ETIMEDOUT', Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' }), 'timeout'],
    [
      'undici headers timeout',
      new TypeError('fetch failed', {
        cause: Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' }),
      }),
      'timeout',
    ],
    [
      'fetch failed (refused)',
      new TypeError('fetch failed', { cause: Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }) }),
      'connection',
    ],
    ['fetch failed', new TypeError('fetch failed'), 'connection'],
    ['ECONNRESET', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 'connection'],
    ['EPIPE', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }), 'connection'],
    ['ENOTFOUND', Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }), 'connection'],
    [
      'APIConnectionError',
      Object.assign(new Error('Connection error.'), { name: 'APIConnectionError' }),
      'connection',
    ],
  ])('%s -> %s', (_, error, kind) => {
    const outcome = describeUpstreamError(error);
    expect(outcome.kind).toBe(kind);
    expect(outcome.status).toBeUndefined();
  });

  it('treats an unknown error as no evidence against the key', () => {
    const outcome = describeUpstreamError(new TypeError("Cannot read properties of undefined (reading 'x')"));
    expect(outcome).toMatchObject({ kind: 'http' });
    expect(classifyOutcome(outcome, NOW)).toMatchObject({ failure: 'caller', retryable: false });
    expect(describeUpstreamError(undefined)).toEqual({ kind: 'http' });
    expect(describeUpstreamError('boom')).toEqual({ kind: 'http', message: 'boom' });
  });

  it('scrubs key-like tokens from messages', () => {
    const secrets = [
      // Built at run time so the repository holds nothing that looks like a real key.
      `sk-proj-${'Abc123def456ghi789jkl012mno345pqr678'}`,
      'sk-ant-api03-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-AAAA',
      'sk-abc***************************xyz1',
      'AIzaSyD4k9f8Qm2x7LwT0pRzE1vB6nHcJ3uYgKo',
      '0123456789abcdef0123456789abcdef',
    ];
    for (const secret of secrets) {
      const message = `401 Incorrect API key provided: ${secret}. You can find your API key at https://platform.openai.com/account/api-keys.`;
      const outcome = describeUpstreamError(Object.assign(new Error(message), { status: 401 }));
      expect(outcome.message).toContain('[redacted]');
      expect(outcome.message).not.toContain(secret);
      expect(outcome.message).toContain('https://platform.openai.com/account/api-keys');
    }
    const bearer = describeUpstreamError(new Error('proxy said: Authorization: Bearer abc.def-ghi denied'));
    expect(bearer.message).toBe('proxy said: Authorization: Bearer [redacted] denied');
  });

  it('keeps messages short', () => {
    const outcome = describeUpstreamError(new Error('x '.repeat(5000)));
    expect(outcome.message!.length).toBeLessThanOrEqual(501);
  });
});

describe('header parsing never throws and yields sane numbers (property)', () => {
  const names = [
    'retry-after',
    'retry-after-ms',
    'x-ratelimit-limit-requests',
    'x-ratelimit-limit-tokens',
    'x-ratelimit-remaining-requests',
    'x-ratelimit-remaining-tokens',
    'x-ratelimit-reset-requests',
    'x-ratelimit-reset-tokens',
    ...['requests', 'tokens', 'input-tokens', 'output-tokens'].flatMap((bucket) =>
      ['limit', 'remaining', 'reset'].map((field) => `anthropic-ratelimit-${bucket}-${field}`),
    ),
  ];
  const name = fc.oneof(fc.mixedCase(fc.constantFrom(...names)), fc.string({ maxLength: 30 }));
  const value = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.double().map(String),
    fc.integer().map(String),
    fc.bigInt().map(String),
    fc
      .tuple(fc.nat(100_000), fc.constantFrom('h', 'm', 's', 'ms', 'us', 'ns', ''))
      .map(([n, u]) => `${n}${u}`),
    fc
      .date({ noInvalidDate: false })
      .map((d) => (Number.isNaN(d.getTime()) ? 'Invalid Date' : d.toISOString())),
    fc.date().map((d) => (Number.isNaN(d.getTime()) ? '' : d.toUTCString())),
  );
  const objectBag = fc.dictionary(
    name,
    fc.oneof(value, fc.array(value, { maxLength: 3 }), fc.constant(undefined)),
  );
  const pairsBag = fc.array(fc.tuple(name, value), { maxLength: 12 });
  const bag: fc.Arbitrary<unknown> = fc.oneof(
    objectBag,
    pairsBag,
    pairsBag.map((pairs) => new Map(pairs)),
    pairsBag.map((pairs) => {
      const headers = new Headers();
      for (const [n, v] of pairs) {
        try {
          headers.append(n, v);
        } catch {
          // Not a valid HTTP header; fetch would never produce it.
        }
      }
      return headers;
    }),
    fc.constant(undefined),
    fc.anything(),
  );

  const isSane = (n: unknown) => typeof n === 'number' && Number.isFinite(n) && n >= 0;

  it('parseRateLimitHeaders, cooldownFromHeaders, classifyOutcome', () => {
    fc.assert(
      fc.property(
        bag,
        fc.integer({ min: 0, max: 4e12 }),
        fc.integer({ min: 0, max: 999 }),
        (headers, now, status) => {
          const bagged = headers as HeaderBag | undefined;
          const snapshot = parseRateLimitHeaders(bagged, now);
          expect(snapshot.observedAt).toBe(now);
          for (const bucket of [
            snapshot.requests,
            snapshot.tokens,
            snapshot.inputTokens,
            snapshot.outputTokens,
          ]) {
            if (bucket === undefined) continue;
            for (const field of Object.values(bucket)) expect(isSane(field)).toBe(true);
            if (bucket.resetAt !== undefined) expect(bucket.resetAt).toBeGreaterThanOrEqual(now);
          }
          if (snapshot.retryAfterMs !== undefined) expect(isSane(snapshot.retryAfterMs)).toBe(true);

          const cooldown = cooldownFromHeaders(bagged, now);
          if (cooldown !== undefined) {
            expect(isSane(cooldown)).toBe(true);
            expect(cooldown).toBeLessThanOrEqual(DAY_MS);
          }

          const result = classifyOutcome({ kind: 'http', status, headers: bagged }, now);
          if (result.cooldownMs !== undefined) expect(isSane(result.cooldownMs)).toBe(true);
          for (const n of names) readHeader(bagged, n);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('parseGoDuration and describeUpstreamError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.anything(), (text, error) => {
        const ms = parseGoDuration(text);
        if (ms !== undefined) expect(isSane(ms)).toBe(true);
        const outcome = describeUpstreamError(error);
        expect(['http', 'timeout', 'connection', 'abort']).toContain(outcome.kind);
        classifyOutcome(outcome, NOW);
      }),
      { numRuns: 300 },
    );
  });
});
