/**
 * The suite run against two minimal reference adapters written straight on
 * the SDKs, so a change to the suite or the mock is checked here before the
 * real adapters (provider-openai, provider-anthropic) run it in their packages.
 */
import Anthropic from '@anthropic-ai/sdk';
import type { HeaderBag, Provider, RateLimitBucket, RateLimitSnapshot, UpstreamOutcome } from '@keypool/spec';
import OpenAI from 'openai';
import { parseGoDuration } from './mock-upstream-limits.js';
import { headerValue, testProvider } from './provider-suite.js';

type SdkError = Error & { status?: number; headers?: Headers; code?: string; type?: string; error?: unknown };

function describeSdkError(error: unknown): UpstreamOutcome {
  const e = error as SdkError;
  const name = e?.constructor?.name ?? '';
  if (name === 'APIUserAbortError') return { kind: 'abort' };
  if (name === 'APIConnectionTimeoutError') return { kind: 'timeout' };
  if (name === 'APIConnectionError' || typeof e?.status !== 'number') return { kind: 'connection' };
  const body = e.error as { error?: { type?: string; message?: string }; message?: string } | undefined;
  const code = e.code ?? body?.error?.type ?? e.type;
  const message = body?.error?.message ?? body?.message;
  return {
    kind: 'http',
    status: e.status,
    ...(code ? { code } : {}),
    ...(message ? { message } : {}),
    ...(e.headers ? { headers: e.headers } : {}),
  };
}

function bucket(
  headers: HeaderBag,
  prefix: string,
  resetAt: (raw: string) => number,
): RateLimitBucket | undefined {
  const limit = headerValue(headers, `${prefix}limit`);
  if (limit === undefined) return undefined;
  const reset = headerValue(headers, `${prefix}reset`);
  return {
    limit: Number(limit),
    remaining: Number(headerValue(headers, `${prefix}remaining`)),
    ...(reset ? { resetAt: resetAt(reset) } : {}),
  };
}

function retryAfterMs(headers: HeaderBag): number | undefined {
  const ms = headerValue(headers, 'retry-after-ms');
  if (ms !== undefined) return Number(ms);
  const s = headerValue(headers, 'retry-after');
  return s === undefined ? undefined : Number(s) * 1000;
}

function withRetryAfter(snapshot: RateLimitSnapshot, headers: HeaderBag): RateLimitSnapshot {
  const retry = retryAfterMs(headers);
  return retry === undefined ? snapshot : { ...snapshot, retryAfterMs: retry };
}

const estimate = (request: unknown) => {
  const body = request as { messages: { content: string }[]; max_tokens: number };
  return Math.ceil(body.messages.map((m) => m.content).join('').length / 4) + body.max_tokens;
};

const openaiReference: Provider = {
  specificationVersion: 'v1',
  id: 'openai',
  describeError: describeSdkError,
  readRateLimits(headers, now) {
    const at = (raw: string) => now + parseGoDuration(raw);
    const snapshot: RateLimitSnapshot = { observedAt: now };
    // OpenAI spreads a bucket over limit/remaining/reset headers named by suffix.
    const read = (kind: 'requests' | 'tokens'): RateLimitBucket | undefined => {
      const limit = headerValue(headers, `x-ratelimit-limit-${kind}`);
      if (limit === undefined) return undefined;
      const reset = headerValue(headers, `x-ratelimit-reset-${kind}`);
      return {
        limit: Number(limit),
        remaining: Number(headerValue(headers, `x-ratelimit-remaining-${kind}`)),
        ...(reset ? { resetAt: at(reset) } : {}),
      };
    };
    const r = read('requests');
    const t = read('tokens');
    if (r) snapshot.requests = r;
    if (t) snapshot.tokens = t;
    return withRetryAfter(snapshot, headers);
  },
  estimateTokens: estimate,
  extractUsage(response) {
    const usage = (response as { usage?: { prompt_tokens: number; completion_tokens: number } }).usage;
    return usage && { inputTokens: usage.prompt_tokens, outputTokens: usage.completion_tokens };
  },
};

const anthropicReference: Provider = {
  specificationVersion: 'v1',
  id: 'anthropic',
  describeError: describeSdkError,
  readRateLimits(headers, now) {
    const at = (raw: string) => Date.parse(raw);
    const snapshot: RateLimitSnapshot = { observedAt: now };
    const requests = bucket(headers, 'anthropic-ratelimit-requests-', at);
    const tokens = bucket(headers, 'anthropic-ratelimit-tokens-', at);
    if (requests) snapshot.requests = requests;
    if (tokens) snapshot.tokens = tokens;
    return withRetryAfter(snapshot, headers);
  },
  estimateTokens: estimate,
  extractUsage(response) {
    const usage = (response as { usage?: { input_tokens: number; output_tokens: number } }).usage;
    return usage && { inputTokens: usage.input_tokens, outputTokens: usage.output_tokens };
  },
};

testProvider('openai reference', () => ({
  provider: openaiReference,
  secretPrefix: 'sk-proj-',
  request: ({ text, maxTokens }) => ({
    model: 'gpt-4o-mini',
    max_tokens: maxTokens,
    messages: [{ role: 'user', content: text }],
  }),
  async call({ secret, baseURL, stream }) {
    const client = new OpenAI({ apiKey: secret, baseURL: `${baseURL}/v1`, maxRetries: 0 });
    const body = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'Hello there.' }] };
    if (!stream) return client.chat.completions.create(body);
    const chunks = [];
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true }))
      chunks.push(chunk);
    return chunks;
  },
}));

testProvider('anthropic reference', () => ({
  provider: anthropicReference,
  secretPrefix: 'sk-ant-api03-',
  request: ({ text, maxTokens }) => ({
    model: 'claude-haiku-4-5',
    max_tokens: maxTokens,
    messages: [{ role: 'user', content: text }],
  }),
  async call({ secret, baseURL, stream }) {
    const client = new Anthropic({ apiKey: secret, baseURL, maxRetries: 0 });
    const body = {
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      messages: [{ role: 'user' as const, content: 'Hello there.' }],
    };
    if (!stream) return client.messages.create(body);
    const events = [];
    for await (const event of await client.messages.create({ ...body, stream: true })) events.push(event);
    return events;
  },
}));
