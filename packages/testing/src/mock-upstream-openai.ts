/**
 * The OpenAI dialect of the mock: chat completions, responses, embeddings and
 * models, in the wire shapes the official `openai` SDK parses, with OpenAI's
 * error bodies and `x-ratelimit-*` headers (Go durations).
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
import { formatGoDuration, type LimitView } from './mock-upstream-limits.js';

export const MOCK_OPENAI_MODELS = ['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small'] as const;

function errorBody(message: string, type: string, code: string | null, param: string | null = null) {
  return { error: { message, type, param, code } };
}

function faultDefaults(
  status: number,
  model: string | undefined,
): { message: string; type: string; code: string | null } {
  switch (status) {
    case 400:
      return { message: 'Invalid request.', type: 'invalid_request_error', code: null };
    case 401:
      return {
        message: 'Incorrect API key provided. You can find your API key in your account settings.',
        type: 'invalid_request_error',
        code: 'invalid_api_key',
      };
    case 403:
      return {
        message: 'You have insufficient permissions for this operation. Missing scopes: model.request.',
        type: 'invalid_request_error',
        code: null,
      };
    case 404:
      return {
        message: `The model \`${model ?? 'unknown'}\` does not exist or you do not have access to it.`,
        type: 'invalid_request_error',
        code: 'model_not_found',
      };
    case 429:
      return {
        message: `Rate limit reached for ${model ?? 'this model'} on requests per min (RPM). Please try again later.`,
        type: 'requests',
        code: 'rate_limit_exceeded',
      };
    case 500:
      return {
        message: 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        code: null,
      };
    default:
      return status >= 500
        ? { message: 'The server is overloaded or not ready yet.', type: 'server_error', code: null }
        : { message: `Request failed with status ${status}.`, type: 'invalid_request_error', code: null };
  }
}

function chatInputText(body: Record<string, unknown>): string {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  return messages.map((m) => textOf(m)).join('');
}

function responsesInputText(body: Record<string, unknown>): string {
  const instructions = typeof body.instructions === 'string' ? body.instructions : '';
  return instructions + textOf(body.input);
}

function embeddingInputs(input: unknown): string[] {
  if (typeof input === 'string') return [input];
  if (Array.isArray(input)) {
    // Token arrays (number[] or number[][]) count one token per number; render them as 4 chars each.
    if (input.every((x) => typeof x === 'number')) return ['    '.repeat(input.length)];
    return input.map((x) => (typeof x === 'string' ? x : Array.isArray(x) ? '    '.repeat(x.length) : ''));
  }
  return [];
}

/** A deterministic unit-ish vector derived from the text, so equal inputs embed equally. */
function embeddingFor(text: string, dimensions: number): number[] {
  const out: number[] = [];
  let seed = 2166136261;
  for (let i = 0; i < text.length; i++) seed = Math.imul(seed ^ text.charCodeAt(i), 16777619) >>> 0;
  for (let i = 0; i < dimensions; i++) {
    seed = Math.imul(seed ^ (i + 1), 2654435761) >>> 0;
    out.push(Math.fround((seed / 0xffffffff) * 2 - 1));
  }
  return out;
}

function base64Floats(values: number[]): string {
  return Buffer.from(new Float32Array(values).buffer).toString('base64');
}

function chatCompletions(body: Record<string, unknown>, ctx: RouteContext): RoutePlan {
  if (typeof body.model !== 'string') {
    return { ok: false, status: 400, message: 'you must provide a model parameter' };
  }
  if (!Array.isArray(body.messages)) {
    return { ok: false, status: 400, message: "Missing required parameter: 'messages'." };
  }
  const model = body.model;
  const inputTokens = mockTokens(chatInputText(body));
  const outputTokens = mockTokens(ctx.reply);
  const id = randomId('chatcmpl-');
  const created = Math.floor(ctx.now / 1000);
  const usage = {
    prompt_tokens: inputTokens,
    completion_tokens: outputTokens,
    total_tokens: inputTokens + outputTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
  const stream = body.stream === true;
  if (!stream) {
    return {
      ok: true,
      stream,
      model,
      inputTokens,
      outputTokens,
      answer: {
        kind: 'json',
        body: {
          id,
          object: 'chat.completion',
          created,
          model,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: ctx.reply, refusal: null, annotations: [] },
              logprobs: null,
              finish_reason: 'stop',
            },
          ],
          usage,
          service_tier: 'default',
          system_fingerprint: 'fp_keypool_mock',
        },
      },
    };
  }
  const options = (body.stream_options ?? {}) as { include_usage?: boolean };
  const includeUsage = options.include_usage === true;
  // As OpenAI does: with include_usage every chunk carries `usage: null` and one extra final chunk has it.
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    service_tier: 'default',
    system_fingerprint: 'fp_keypool_mock',
    choices,
    ...(includeUsage ? { usage: null } : {}),
    ...extra,
  });
  const frames = [
    sseFrame(
      chunk([
        {
          index: 0,
          delta: { role: 'assistant', content: '', refusal: null },
          logprobs: null,
          finish_reason: null,
        },
      ]),
    ),
    ...replyDeltas(ctx.reply).map((text) =>
      sseFrame(chunk([{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }])),
    ),
    sseFrame(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }])),
  ];
  if (includeUsage) frames.push(sseFrame(chunk([], { usage })));
  frames.push(sseFrame('[DONE]'));
  return { ok: true, stream, model, inputTokens, outputTokens, answer: { kind: 'sse', frames } };
}

function responses(body: Record<string, unknown>, ctx: RouteContext): RoutePlan {
  if (typeof body.model !== 'string') {
    return { ok: false, status: 400, message: "Missing required parameter: 'model'." };
  }
  const model = body.model;
  const inputTokens = mockTokens(responsesInputText(body));
  const outputTokens = mockTokens(ctx.reply);
  const id = randomId('resp_');
  const messageId = randomId('msg_');
  const createdAt = Math.floor(ctx.now / 1000);
  const usage = {
    input_tokens: inputTokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: inputTokens + outputTokens,
  };
  const part = { type: 'output_text', text: ctx.reply, annotations: [], logprobs: [] };
  const message = { id: messageId, type: 'message', status: 'completed', role: 'assistant', content: [part] };
  const response = (status: string, output: unknown[], withUsage: boolean) => ({
    id,
    object: 'response',
    created_at: createdAt,
    status,
    background: false,
    error: null,
    incomplete_details: null,
    instructions: typeof body.instructions === 'string' ? body.instructions : null,
    max_output_tokens: typeof body.max_output_tokens === 'number' ? body.max_output_tokens : null,
    model,
    output,
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    service_tier: 'default',
    store: true,
    temperature: 1,
    text: { format: { type: 'text' } },
    tool_choice: 'auto',
    tools: [],
    top_p: 1,
    truncation: 'disabled',
    usage: withUsage ? usage : null,
    user: null,
    metadata: {},
  });
  const stream = body.stream === true;
  if (!stream) {
    return {
      ok: true,
      stream,
      model,
      inputTokens,
      outputTokens,
      answer: { kind: 'json', body: response('completed', [message], true) },
    };
  }
  let seq = 0;
  const event = (type: string, data: Record<string, unknown>) =>
    sseFrame({ type, sequence_number: seq++, ...data }, type);
  const at = { item_id: messageId, output_index: 0, content_index: 0 };
  const frames = [
    event('response.created', { response: response('in_progress', [], false) }),
    event('response.in_progress', { response: response('in_progress', [], false) }),
    event('response.output_item.added', {
      output_index: 0,
      item: { ...message, status: 'in_progress', content: [] },
    }),
    event('response.content_part.added', { ...at, part: { ...part, text: '' } }),
    ...replyDeltas(ctx.reply).map((delta) =>
      event('response.output_text.delta', { ...at, delta, logprobs: [] }),
    ),
    event('response.output_text.done', { ...at, text: ctx.reply, logprobs: [] }),
    event('response.content_part.done', { ...at, part }),
    event('response.output_item.done', { output_index: 0, item: message }),
    event('response.completed', { response: response('completed', [message], true) }),
  ];
  return { ok: true, stream, model, inputTokens, outputTokens, answer: { kind: 'sse', frames } };
}

function embeddings(body: Record<string, unknown>): RoutePlan {
  if (typeof body.model !== 'string') {
    return { ok: false, status: 400, message: "Missing required parameter: 'model'." };
  }
  const inputs = embeddingInputs(body.input);
  if (inputs.length === 0) {
    return { ok: false, status: 400, message: "'input' must be a non-empty string or array." };
  }
  const dimensions = typeof body.dimensions === 'number' ? body.dimensions : 8;
  const asBase64 = body.encoding_format === 'base64';
  const inputTokens = inputs.reduce((sum, text) => sum + mockTokens(text), 0);
  return {
    ok: true,
    stream: false,
    model: body.model,
    inputTokens,
    outputTokens: 0,
    answer: {
      kind: 'json',
      body: {
        object: 'list',
        data: inputs.map((text, index) => {
          const vector = embeddingFor(text, dimensions);
          return { object: 'embedding', index, embedding: asBase64 ? base64Floats(vector) : vector };
        }),
        model: body.model,
        usage: { prompt_tokens: inputTokens, total_tokens: inputTokens },
      },
    },
  };
}

function models(ctx: RouteContext): RoutePlan {
  const created = Math.floor(ctx.now / 1000);
  return {
    ok: true,
    stream: false,
    inputTokens: 0,
    outputTokens: 0,
    answer: {
      kind: 'json',
      body: {
        object: 'list',
        data: MOCK_OPENAI_MODELS.map((id) => ({ id, object: 'model', created, owned_by: 'system' })),
      },
    },
  };
}

export const openaiDialect: Dialect = {
  provider: 'openai',

  secretOf(headers: IncomingHttpHeaders): string {
    const auth = headers.authorization ?? '';
    return auth.startsWith('Bearer ') ? auth.slice('Bearer '.length).trim() : '';
  },

  checkHeaders(_headers, secret): DialectError | undefined {
    if (secret !== '') return undefined;
    return {
      status: 401,
      body: errorBody(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        'invalid_request_error',
        null,
      ),
    };
  },

  route(method, path, body, ctx) {
    if (method === 'POST' && path === '/v1/chat/completions') return chatCompletions(body, ctx);
    if (method === 'POST' && path === '/v1/responses') return responses(body, ctx);
    if (method === 'POST' && path === '/v1/embeddings') return embeddings(body);
    if (method === 'GET' && path === '/v1/models') return models(ctx);
    return undefined;
  },

  faultError(step: FaultSpec, model): DialectError {
    if (step.fault === 'insufficient_quota' || step.fault === 'billing') {
      return {
        status: step.status ?? 429,
        body: errorBody(
          step.message ??
            'You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.',
          'insufficient_quota',
          step.code ?? 'insufficient_quota',
        ),
      };
    }
    const status = step.status ?? 500;
    const d = faultDefaults(status, model);
    return { status, body: errorBody(step.message ?? d.message, d.type, step.code ?? d.code) };
  },

  requestError(status, message, code): DialectError {
    return { status, body: errorBody(message, 'invalid_request_error', code ?? null) };
  },

  limitError(exceeded, view, model): DialectError {
    const per = exceeded === 'requests' ? 'requests per min (RPM)' : 'tokens per min (TPM)';
    const limit = exceeded === 'requests' ? view.requestsLimit : view.tokensLimit;
    const waitMs = exceeded === 'requests' ? view.requestsResetMs : view.tokensResetMs;
    return {
      status: 429,
      body: errorBody(
        `Rate limit reached for ${model ?? 'this model'} in organization org-keypool-mock on ${per}: Limit ${limit}. Please try again in ${formatGoDuration(waitMs)}.`,
        exceeded,
        'rate_limit_exceeded',
      ),
    };
  },

  // The SDK throws an APIError for any `data:` payload that has an `error` field.
  streamErrorFrame(error: DialectError): string {
    return sseFrame(error.body);
  },

  rateLimitHeaders(view: LimitView, _now, overrides = {}): Record<string, string> {
    return {
      'x-ratelimit-limit-requests': String(view.requestsLimit),
      'x-ratelimit-limit-tokens': String(view.tokensLimit),
      'x-ratelimit-remaining-requests': String(
        overrides.requestsResetMs === undefined ? view.requestsRemaining : 0,
      ),
      'x-ratelimit-remaining-tokens': String(
        overrides.tokensResetMs === undefined ? view.tokensRemaining : 0,
      ),
      'x-ratelimit-reset-requests': formatGoDuration(overrides.requestsResetMs ?? view.requestsResetMs),
      'x-ratelimit-reset-tokens': formatGoDuration(overrides.tokensResetMs ?? view.tokensResetMs),
    };
  },

  requestIdHeaders() {
    return {
      'x-request-id': randomId('req_', 16),
      'openai-organization': 'org-keypool-mock',
      'openai-processing-ms': '1',
      'openai-version': '2020-10-01',
    };
  },
};
