/**
 * The Anthropic dialect of the mock: messages (plain and streamed) and models,
 * in the wire shapes `@anthropic-ai/sdk` parses, with Anthropic's error bodies
 * and `anthropic-ratelimit-*` headers (RFC 3339 reset times).
 */
import type { IncomingHttpHeaders } from 'node:http';
import {
  type Dialect,
  type DialectError,
  mockTokens,
  type RouteContext,
  type RoutePlan,
  randomId,
  replyDeltas,
  sseFrame,
  textOf,
} from './mock-upstream-dialect.js';
import type { FaultSpec } from './mock-upstream-faults.js';
import type { LimitView } from './mock-upstream-limits.js';
import { FIVE_MINUTES_MS, ONE_HOUR_MS, type PromptPiece } from './mock-upstream-prompt-cache.js';

export const MOCK_ANTHROPIC_MODELS = ['claude-sonnet-4-5', 'claude-haiku-4-5'] as const;

const CREDIT_TOO_LOW =
  'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.';

function errorBody(type: string, message: string, requestId?: string) {
  return { type: 'error', error: { type, message }, request_id: requestId ?? randomId('req_', 12) };
}

function faultDefaults(status: number): { type: string; message: string } {
  switch (status) {
    case 400:
      return { type: 'invalid_request_error', message: 'Invalid request.' };
    case 401:
      return { type: 'authentication_error', message: 'invalid x-api-key' };
    case 402:
      return {
        type: 'billing_error',
        message: 'There is an issue with your billing or payment information.',
      };
    case 403:
      return {
        type: 'permission_error',
        message: 'Your API key does not have permission to use the specified resource.',
      };
    case 404:
      return { type: 'not_found_error', message: 'Not found.' };
    case 413:
      return { type: 'request_too_large', message: 'Request exceeds the maximum allowed number of bytes.' };
    case 429:
      return {
        type: 'rate_limit_error',
        message: 'This request would exceed the rate limit for your organization. Please try again later.',
      };
    case 504:
      return { type: 'timeout_error', message: 'Request timed out.' };
    case 529:
      return { type: 'overloaded_error', message: 'Overloaded' };
    default:
      return status >= 500
        ? { type: 'api_error', message: 'Internal server error' }
        : { type: 'invalid_request_error', message: `Request failed with status ${status}.` };
  }
}

function inputText(body: Record<string, unknown>): string {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  return textOf(body.system) + messages.map((m) => textOf(m)).join('');
}

/** The prompt in the API's order (system, then messages), block by block, with `cache_control` breakpoints. */
function promptPieces(body: Record<string, unknown>): PromptPiece[] {
  const blocks = (content: unknown): PromptPiece[] =>
    Array.isArray(content)
      ? content.map((block) => {
          const control = (block as { cache_control?: { ttl?: unknown } } | null)?.cache_control;
          const text = textOf([block]);
          if (typeof control !== 'object' || control === null) return { text };
          return { text, ttlMs: control.ttl === '1h' ? ONE_HOUR_MS : FIVE_MINUTES_MS };
        })
      : [{ text: textOf(content) }];
  const messages = Array.isArray(body.messages) ? body.messages : [];
  return [
    ...blocks(body.system),
    ...messages.flatMap((m) => blocks((m as { content?: unknown } | null)?.content)),
  ];
}

function messages(body: Record<string, unknown>, ctx: RouteContext): RoutePlan {
  if (typeof body.model !== 'string') return { ok: false, status: 400, message: 'model: Field required' };
  if (typeof body.max_tokens !== 'number')
    return { ok: false, status: 400, message: 'max_tokens: Field required' };
  if (!Array.isArray(body.messages)) return { ok: false, status: 400, message: 'messages: Field required' };
  const model = body.model;
  const inputTokens = mockTokens(inputText(body));
  const outputTokens = mockTokens(ctx.reply);
  const cache = ctx.promptCache.use(`${ctx.secret}\0${model}`, promptPieces(body), ctx.now);
  const id = randomId('msg_');
  const usage = {
    input_tokens: cache.uncachedTokens,
    cache_creation_input_tokens: cache.write5mTokens + cache.write1hTokens,
    cache_read_input_tokens: cache.readTokens,
    cache_creation: {
      ephemeral_5m_input_tokens: cache.write5mTokens,
      ephemeral_1h_input_tokens: cache.write1hTokens,
    },
    output_tokens: outputTokens,
    service_tier: 'standard',
  };
  const commit = cache.commit;
  const message = {
    id,
    type: 'message',
    role: 'assistant',
    model,
    content: [{ type: 'text', text: ctx.reply }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage,
  };
  const stream = body.stream === true;
  if (!stream)
    return {
      ok: true,
      stream,
      model,
      inputTokens,
      outputTokens,
      commit,
      answer: { kind: 'json', body: message },
    };
  const event = (type: string, data: Record<string, unknown>) => sseFrame({ type, ...data }, type);
  // As Anthropic does: message_start carries the input tokens (output 1), message_delta the final counts.
  const frames = [
    event('message_start', {
      message: {
        ...message,
        content: [],
        stop_reason: null,
        usage: { ...usage, output_tokens: 1 },
      },
    }),
    event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
    event('ping', {}),
    ...replyDeltas(ctx.reply).map((text) =>
      event('content_block_delta', { index: 0, delta: { type: 'text_delta', text } }),
    ),
    event('content_block_stop', { index: 0 }),
    event('message_delta', {
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      // Cumulative totals, without the TTL breakdown (as MessageDeltaUsage).
      usage: {
        input_tokens: usage.input_tokens,
        cache_creation_input_tokens: usage.cache_creation_input_tokens,
        cache_read_input_tokens: usage.cache_read_input_tokens,
        output_tokens: outputTokens,
      },
    }),
    event('message_stop', {}),
  ];
  return { ok: true, stream, model, inputTokens, outputTokens, commit, answer: { kind: 'sse', frames } };
}

function models(ctx: RouteContext): RoutePlan {
  const createdAt = new Date(ctx.now).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const data = MOCK_ANTHROPIC_MODELS.map((id) => ({
    type: 'model',
    id,
    display_name: id,
    created_at: createdAt,
  }));
  return {
    ok: true,
    stream: false,
    inputTokens: 0,
    outputTokens: 0,
    answer: {
      kind: 'json',
      body: { data, has_more: false, first_id: data[0]!.id, last_id: data.at(-1)!.id },
    },
  };
}

/** RFC 3339 at whole seconds, rounded up, as Anthropic's reset headers are. */
function resetAt(now: number, inMs: number): string {
  return new Date(Math.ceil((now + inMs) / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export const anthropicDialect: Dialect = {
  provider: 'anthropic',

  // `x-api-key` is the documented header; SDK v1 sends the key as `Authorization: Bearer` instead.
  secretOf(headers: IncomingHttpHeaders): string {
    const key = headers['x-api-key'];
    if (typeof key === 'string' && key.trim() !== '') return key.trim();
    const auth = headers.authorization ?? '';
    return auth.startsWith('Bearer ') ? auth.slice('Bearer '.length).trim() : '';
  },

  checkHeaders(headers, secret): DialectError | undefined {
    if (secret === '') {
      return {
        status: 401,
        body: errorBody('authentication_error', 'x-api-key header is required (or Authorization: Bearer)'),
      };
    }
    if (typeof headers['anthropic-version'] !== 'string') {
      return {
        status: 400,
        body: errorBody('invalid_request_error', 'anthropic-version: header is required'),
      };
    }
    return undefined;
  },

  route(method, path, body, ctx) {
    if (method === 'POST' && path === '/v1/messages') return messages(body, ctx);
    if (method === 'GET' && path === '/v1/models') return models(ctx);
    return undefined;
  },

  faultError(step: FaultSpec): DialectError {
    if (step.fault === 'billing' || step.fault === 'insufficient_quota') {
      // The live API answers an empty credit balance with 400 invalid_request_error; the documented
      // 402 billing_error is available with `status: 402`.
      if (step.status === 402) {
        const d = faultDefaults(402);
        return { status: 402, body: errorBody(step.code ?? d.type, step.message ?? d.message) };
      }
      return {
        status: step.status ?? 400,
        body: errorBody(step.code ?? 'invalid_request_error', step.message ?? CREDIT_TOO_LOW),
      };
    }
    const status = step.status ?? 500;
    const d = faultDefaults(status);
    return { status, body: errorBody(step.code ?? d.type, step.message ?? d.message) };
  },

  requestError(status, message, code): DialectError {
    return { status, body: errorBody(code ?? faultDefaults(status).type, message) };
  },

  limitError(exceeded, view): DialectError {
    const what =
      exceeded === 'requests'
        ? `${view.requestsLimit} requests per minute`
        : `${view.tokensLimit} input tokens per minute`;
    return {
      status: 429,
      body: errorBody(
        'rate_limit_error',
        `This request would exceed the rate limit for your organization of ${what}. Please reduce the prompt length or the maximum tokens requested, or try again later.`,
      ),
    };
  },

  streamErrorFrame(error: DialectError): string {
    return sseFrame(error.body, 'error');
  },

  rateLimitHeaders(view: LimitView, now, overrides = {}): Record<string, string> {
    const requestsReset = resetAt(now, overrides.requestsResetMs ?? view.requestsResetMs);
    const tokensReset = resetAt(now, overrides.tokensResetMs ?? view.tokensResetMs);
    const tokensExhausted = overrides.tokensResetMs !== undefined;
    return {
      'anthropic-ratelimit-requests-limit': String(view.requestsLimit),
      'anthropic-ratelimit-requests-remaining': String(
        overrides.requestsResetMs === undefined ? view.requestsRemaining : 0,
      ),
      'anthropic-ratelimit-requests-reset': requestsReset,
      'anthropic-ratelimit-tokens-limit': String(view.tokensLimit),
      'anthropic-ratelimit-tokens-remaining': String(tokensExhausted ? 0 : view.tokensRemaining),
      'anthropic-ratelimit-tokens-reset': tokensReset,
      'anthropic-ratelimit-input-tokens-limit': String(view.tokensLimit),
      'anthropic-ratelimit-input-tokens-remaining': String(tokensExhausted ? 0 : view.inputTokensRemaining),
      'anthropic-ratelimit-input-tokens-reset': tokensReset,
      'anthropic-ratelimit-output-tokens-limit': String(view.tokensLimit),
      'anthropic-ratelimit-output-tokens-remaining': String(tokensExhausted ? 0 : view.outputTokensRemaining),
      'anthropic-ratelimit-output-tokens-reset': tokensReset,
    };
  },

  requestIdHeaders() {
    return { 'request-id': randomId('req_', 12), 'anthropic-organization-id': 'keypool-mock-org' };
  },
};
