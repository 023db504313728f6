import { KeypoolError } from '@keypool/core';
import type { ExecuteOptions, KeyPool, Lease, ReleaseOutcome } from '@keypool/spec';
import OpenAI, { APIConnectionError, type ClientOptions } from 'openai';
import { tapStreamUsage } from './stream-usage.js';
import { estimateOpenAITokens } from './tokens.js';
import { extractOpenAIUsage } from './usage.js';

export interface PooledOpenAIOptions extends ClientOptions {
  /**
   * How each request runs on the pool (`maxAttempts`, `deadlineMs`, `maxWaitMs`,
   * `affinity`, `pool`, `caller`). Model and token estimate come from the request.
   */
  pooling?: Omit<ExecuteOptions, 'model' | 'estimatedTokens' | 'signal'>;
}

/** The SDK insists on an API key; the real one is set per attempt from the lease. */
const PLACEHOLDER_API_KEY = 'keypool-pooled-client';
/** Core's default; only used to size the SDK's overall timer. */
const DEFAULT_MAX_ATTEMPTS = 3;
const DEFAULT_TIMEOUT_MS = 600_000;

type Fetch = typeof globalThis.fetch;

/**
 * The official OpenAI client, pooled: same class, same methods and types, but
 * every attempt runs on a key leased from `pool`. The SDK's own retries are off
 * (`maxRetries: 0`); the pool retries on other keys per the failure table.
 *
 * `timeout` applies per attempt (as it does per try in the SDK), so a hanging
 * key gives way to the next one. `baseURL`, `organization`, `project`,
 * `defaultHeaders`, `defaultQuery` and `fetch` pass through; a key's own
 * `baseURL`, `organization` and `project` win for the attempts it serves.
 */
export function createPooledOpenAI(pool: KeyPool, options: PooledOpenAIOptions = {}): OpenAI {
  const { pooling, fetch: userFetch, timeout, apiKey: _ignored, ...clientOptions } = options;
  const attemptTimeoutMs = timeout ?? DEFAULT_TIMEOUT_MS;
  const maxAttempts = pooling?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  let clientBaseURL = '';
  const fetch = createPooledFetch(pool, {
    fetch: userFetch ?? globalThis.fetch,
    attemptTimeoutMs,
    pooling,
    baseURL: () => clientBaseURL,
  });
  const client = new PooledOpenAI({
    ...clientOptions,
    apiKey: PLACEHOLDER_API_KEY,
    maxRetries: 0,
    // The SDK's own timer bounds the whole pooled request: every attempt may use its full timeout.
    timeout: attemptTimeoutMs * maxAttempts,
    fetch,
  });
  clientBaseURL = client.baseURL;
  return client;
}

/**
 * A subclass only so keypool's own errors (no key available, deadline) reach the
 * caller as themselves: the SDK wraps anything `fetch` throws in an
 * `APIConnectionError`. `instanceof OpenAI` holds and `withOptions` keeps it.
 */
class PooledOpenAI extends OpenAI {}
const sdkMakeRequest = (OpenAI.prototype as unknown as Record<string, unknown>)['makeRequest'];
if (typeof sdkMakeRequest === 'function') {
  Object.defineProperty(PooledOpenAI.prototype, 'makeRequest', {
    configurable: true,
    writable: true,
    value: async function makeRequest(this: OpenAI, ...args: unknown[]) {
      try {
        return await sdkMakeRequest.apply(this, args);
      } catch (error) {
        if (error instanceof APIConnectionError && KeypoolError.isInstance(error.cause)) throw error.cause;
        throw error;
      }
    },
  });
}

interface PooledFetchOptions {
  fetch: Fetch;
  attemptTimeoutMs: number;
  pooling: PooledOpenAIOptions['pooling'];
  baseURL: () => string;
}

/**
 * Thrown inside `execute` for an upstream answer worth retrying on another key;
 * carries the answer so that, when every attempt failed, the SDK sees the last
 * real response and throws its own typed error (e.g. `RateLimitError`).
 */
class RetryableResponse extends Error {
  readonly response: () => Response;
  constructor(status: number, alias: string, response: () => Response) {
    super(`OpenAI answered ${status} on key ${alias}; trying another key.`);
    this.name = 'RetryableResponse';
    this.response = response;
  }
}

class AttemptTimeoutError extends Error {
  constructor(ms: number) {
    super(`The OpenAI request timed out after ${ms} ms on one key.`);
    this.name = 'TimeoutError';
  }
}

function createPooledFetch(pool: KeyPool, options: PooledFetchOptions): Fetch {
  const { attemptTimeoutMs } = options;
  return (input, init = {}) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const request = parseJsonBody(init.body);
    const model = typeof request?.model === 'string' ? request.model : undefined;
    const isStream = request?.stream === true;
    let body = init.body;
    // Chat and legacy completions report stream usage only when asked; the Responses API always does.
    const injectUsage =
      isStream &&
      /\/(chat\/)?completions$/.test(new URL(url).pathname) &&
      !(isRecord(request?.stream_options) && request.stream_options.include_usage === true);
    if (injectUsage && request !== undefined) {
      const streamOptions = isRecord(request.stream_options) ? request.stream_options : {};
      body = JSON.stringify({ ...request, stream_options: { ...streamOptions, include_usage: true } });
    }
    const callerSignal = init.signal ?? undefined;
    // A one-shot body stream cannot be sent twice: such a request gets one attempt.
    const replayable = !(body instanceof ReadableStream);

    return new Promise<Response>((resolve, reject) => {
      let delivered = false;
      const deliver = (response: Response) => {
        delivered = true;
        resolve(response);
      };

      const attempt = async (lease: Lease): Promise<void> => {
        const headers = new Headers(init.headers);
        headers.set('authorization', `Bearer ${lease.secret}`);
        if (lease.organization !== undefined) headers.set('openai-organization', lease.organization);
        if (lease.project !== undefined) headers.set('openai-project', lease.project);
        const timer = new AbortController();
        const timeout = setTimeout(
          () => timer.abort(new AttemptTimeoutError(attemptTimeoutMs)),
          attemptTimeoutMs,
        );
        const signal =
          callerSignal !== undefined ? AbortSignal.any([callerSignal, timer.signal]) : timer.signal;
        const startedAt = performance.now();
        let response: Response;
        try {
          response = await options.fetch(keyURL(url, options.baseURL(), lease.baseURL), {
            ...init,
            body,
            headers,
            signal,
          });
        } catch (error) {
          clearTimeout(timeout);
          // Say which failure it was; a plain fetch error is left to the provider's describeError.
          if (timer.signal.aborted && callerSignal?.aborted !== true) {
            await lease.release({
              ok: false,
              kind: 'timeout',
              error,
              latencyMs: performance.now() - startedAt,
            });
          } else if (callerSignal?.aborted === true) {
            await lease.release({
              ok: false,
              kind: 'abort',
              error,
              latencyMs: performance.now() - startedAt,
            });
          }
          throw error;
        }
        const latencyMs = performance.now() - startedAt;
        // The upstream had the request by now: the key's rate window counts it from here.
        const respondedAt = Date.now();

        if (!response.ok) {
          const text = await response.text().catch(() => '');
          clearTimeout(timeout);
          const rebuilt = () => new Response(text, response);
          const classification = await lease.release({
            ok: false,
            status: response.status,
            headers: response.headers,
            ...errorFields(text),
            latencyMs,
            respondedAt,
          });
          if (classification?.retryable === true)
            throw new RetryableResponse(response.status, lease.alias, rebuilt);
          deliver(rebuilt());
          return;
        }

        const contentType = response.headers.get('content-type') ?? '';
        if (isStream && contentType.includes('text/event-stream') && response.body !== null) {
          await streamAttempt(lease, response, latencyMs, respondedAt, () => clearTimeout(timeout));
          return;
        }
        if (!contentType.includes('json')) {
          clearTimeout(timeout);
          // Binary answers (speech, file contents) report no usage: hand them over untouched.
          await lease.release({ ok: true, headers: response.headers, latencyMs, respondedAt });
          deliver(response);
          return;
        }
        // A body cut before the caller saw anything is a failed attempt like any other (retried by execute).
        const text = await response.text().finally(() => clearTimeout(timeout));
        const usage = extractOpenAIUsage(parseJson(text));
        await lease.release({
          ok: true,
          headers: response.headers,
          latencyMs,
          respondedAt,
          ...(usage !== undefined && { usage }),
        });
        deliver(new Response(text, response));
      };

      /** Hands the stream over once its first chunk arrived; reports usage when it ends. */
      const streamAttempt = async (
        lease: Lease,
        response: Response,
        latencyMs: number,
        respondedAt: number,
        headersDone: () => void,
      ) => {
        const reader = (response.body as ReadableStream<Uint8Array>).getReader();
        let first: Awaited<ReturnType<typeof reader.read>>;
        try {
          first = await reader.read();
        } catch (error) {
          headersDone();
          await lease.release({
            ok: false,
            kind: callerSignal?.aborted === true ? 'abort' : 'connection',
            error,
            latencyMs,
            respondedAt,
          });
          throw error;
        }
        headersDone();
        if (first.done) {
          const error = new Error('The OpenAI stream ended before its first chunk.');
          await lease.release({ ok: false, kind: 'connection', error, latencyMs, respondedAt });
          throw error;
        }
        const tap = tapStreamUsage(first.value, reader, injectUsage);
        deliver(new Response(tap.stream, response));
        // From here on the caller owns the stream: failures surface there, never as a retry.
        const end = await tap.ended;
        const usage = end.usage !== undefined ? { usage: end.usage, respondedAt } : { respondedAt };
        let outcome: ReleaseOutcome;
        if (end.kind === 'done') outcome = { ok: true, headers: response.headers, latencyMs, ...usage };
        else if (end.kind === 'cancelled') outcome = { ok: false, kind: 'abort', latencyMs, ...usage };
        else outcome = { ok: false, kind: 'connection', error: end.error, latencyMs, ...usage };
        await lease.release({ ...outcome });
      };

      const estimatedTokens = request !== undefined ? estimateOpenAITokens(request, model) : 0;
      const executeOptions: ExecuteOptions = {
        ...options.pooling,
        estimatedTokens,
        ...(model !== undefined && { model }),
        ...(callerSignal !== undefined && { signal: callerSignal }),
        ...(!replayable && { maxAttempts: 1 }),
      };
      pool.execute('openai', attempt, executeOptions).then(
        () => {
          if (!delivered) reject(new Error('keypool: the pooled OpenAI request ended without a response.'));
        },
        (error: unknown) => {
          if (delivered) return;
          if (error instanceof RetryableResponse) resolve(error.response());
          else reject(error);
        },
      );
    });
  };
}

/** A key's own base URL replaces the client's for the attempts that key serves. */
function keyURL(url: string, clientBaseURL: string, keyBaseURL: string | undefined): string {
  if (keyBaseURL === undefined || clientBaseURL === '' || !url.startsWith(clientBaseURL)) return url;
  return keyBaseURL.replace(/\/+$/, '') + url.slice(clientBaseURL.replace(/\/+$/, '').length);
}

/** OpenAI error bodies: `{ error: { message, type, code } }`; the code tells insufficient_quota from a rate limit. */
function errorFields(text: string): { code?: string; error?: Error } {
  const parsed = parseJson(text);
  const error = isRecord(parsed) && isRecord(parsed.error) ? parsed.error : undefined;
  if (error === undefined) return {};
  const code =
    typeof error.code === 'string' && error.code !== ''
      ? error.code
      : typeof error.type === 'string' && error.type !== ''
        ? error.type
        : undefined;
  const message = typeof error.message === 'string' ? error.message : undefined;
  return {
    ...(code !== undefined && { code }),
    ...(message !== undefined && { error: new Error(message) }),
  };
}

function parseJsonBody(body: RequestInit['body']): Record<string, unknown> | undefined {
  if (typeof body !== 'string') return undefined;
  const parsed = parseJson(body);
  return isRecord(parsed) ? parsed : undefined;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
