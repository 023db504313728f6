import { KeypoolError } from '@keypool/core';
import type { ExecuteOptions, KeyPool, Lease, ReleaseOutcome, UpstreamOutcome } from '@keypool/spec';
import { describeAnthropicResponse } from './describe-error.js';
import { parseJson } from './probe.js';
import { ANTHROPIC_PROVIDER_ID } from './provider.js';
import { StreamWatcher } from './stream-usage.js';
import { estimateAnthropicTokens } from './tokens.js';
import { extractAnthropicUsage } from './usage.js';

export type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface PooledFetchOptions extends Omit<ExecuteOptions, 'model' | 'estimatedTokens' | 'signal'> {
  keyPool: KeyPool;
  /** The fetch that reaches upstream (the user's, or the global one). */
  fetch: Fetch;
  /** The client's base URL, read per request (the client is built after this fetch). */
  baseURL: () => string;
  /**
   * Time limit for one key's attempt (headers and body, or up to a stream's first
   * event). When it passes, the key takes a timeout failure and the request moves on.
   */
  attemptTimeoutMs: number;
}

/** An attempt failed in a way another key may fix; carries the upstream answer in case none does. */
class RetryOnAnotherKey extends Error {
  constructor(
    readonly response: Response,
    outcome: UpstreamOutcome,
  ) {
    super(`Anthropic answered ${outcome.status ?? ''} ${outcome.code ?? ''}`.trim());
    this.name = 'RetryOnAnotherKey';
  }
}

/**
 * A pool error (no key available, pool closed …) thrown out of `fetch`. The SDK wraps
 * whatever `fetch` throws in `APIConnectionError`; the client's middleware unwraps
 * this so the caller gets the pool's own error class.
 */
export class PoolFailure extends Error {
  constructor(readonly error: unknown) {
    super((error as Error)?.message ?? String(error), { cause: error });
    this.name = 'PoolFailure';
  }
}

/**
 * A `fetch` for the Anthropic SDK whose every call runs through
 * `pool.execute('anthropic', …)`: each attempt on the key the pool picks, the
 * outcome released to the pool, retryable failures moved to another key, caller
 * errors (400/404/413/422 …) returned to the SDK at once. When every attempt
 * fails the last upstream answer goes back, so the SDK throws its usual typed
 * error.
 */
export function createPooledFetch(options: PooledFetchOptions): Fetch {
  const { keyPool: pool, fetch: upstreamFetch, baseURL, attemptTimeoutMs, ...executeOptions } = options;

  return async function pooledFetch(input, init = {}) {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const request = typeof init.body === 'string' ? parseJson(init.body) : undefined;
    const model = readModel(request);
    const provider = pool.provider(ANTHROPIC_PROVIDER_ID);
    const estimatedTokens = provider
      ? provider.estimateTokens(request, model)
      : estimateAnthropicTokens(request);
    // A streamed request body can be sent once only.
    const isReplayable = init.body === undefined || init.body === null || !isStreamBody(init.body);
    const signal = init.signal ?? undefined;

    let delivered = false;
    return new Promise<Response>((resolve, reject) => {
      const deliver = (response: Response) => {
        delivered = true;
        resolve(response);
      };
      const attempt = (lease: Lease) =>
        runAttempt({ lease, url, init, baseURL: baseURL(), upstreamFetch, attemptTimeoutMs, deliver });
      pool
        .execute(ANTHROPIC_PROVIDER_ID, attempt, {
          ...executeOptions,
          ...(model !== undefined && { model }),
          estimatedTokens,
          ...(signal !== undefined && { signal }),
          ...(!isReplayable && { maxAttempts: 1 }),
        })
        .catch((error: unknown) => {
          if (delivered) return;
          if (error instanceof RetryOnAnotherKey) resolve(error.response);
          else if (KeypoolError.isInstance(error)) reject(new PoolFailure(error));
          else reject(error);
        });
    });
  };
}

interface AttemptContext {
  lease: Lease;
  url: string;
  init: RequestInit;
  baseURL: string;
  upstreamFetch: Fetch;
  attemptTimeoutMs: number;
  deliver: (response: Response) => void;
}

async function runAttempt(context: AttemptContext): Promise<void> {
  const { lease, init, deliver } = context;
  const headers = new Headers(init.headers);
  // The SDK adds the placeholder key; the lease's key replaces it. A stray bearer token must not leak upstream.
  headers.delete('authorization');
  headers.set('x-api-key', lease.secret);
  const timer = new AttemptTimer(init.signal ?? undefined, context.attemptTimeoutMs);
  const started = performance.now();
  const fail = async (outcome: Extract<ReleaseOutcome, { ok: false }>, error: unknown): Promise<never> => {
    timer.dispose();
    await lease.release({ ...outcome, latencyMs: performance.now() - started });
    throw error;
  };

  let response: Response;
  try {
    response = await context.upstreamFetch(rebase(context.url, context.baseURL, lease.baseURL), {
      ...init,
      headers,
      signal: timer.signal,
    });
  } catch (error) {
    return fail({ ok: false, kind: timer.kind(), error }, error);
  }
  const latencyMs = performance.now() - started;
  // The upstream had the request by now: the key's rate window counts it from here.
  const respondedAt = Date.now();

  if (!response.ok) {
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      return fail({ ok: false, kind: timer.kind(), error }, error);
    }
    timer.dispose();
    const outcome = describeAnthropicResponse(response.status, parseJson(text), response.headers);
    const answer = new Response(text, response);
    const classification = await lease.release({ ...failure(outcome, latencyMs), respondedAt });
    if (classification?.retryable) throw new RetryOnAnotherKey(answer, outcome);
    deliver(answer);
    return;
  }

  if (isEventStream(response))
    return streamAttempt(context, response, timer, started, latencyMs, respondedAt);

  // Non-stream: read a copy to the end before the caller sees anything, so a body cut
  // off half-way is still a failure another key can retry.
  let usage: ReleaseOutcome['usage'];
  if (isJson(response)) {
    let text: string;
    try {
      text = await response.clone().text();
    } catch (error) {
      return fail({ ok: false, kind: timer.kind(), error }, error);
    }
    usage = extractAnthropicUsage(parseJson(text));
  }
  timer.dispose();
  await lease.release({
    ok: true,
    latencyMs,
    respondedAt,
    headers: response.headers,
    ...(usage !== undefined && { usage }),
  });
  deliver(response);
}

/**
 * A stream is retried on another key only until its first event would reach the
 * caller: peek until one complete event has arrived, then hand the stream over and
 * release the lease with its usage when it ends (or fails, or the caller stops).
 */
async function streamAttempt(
  context: AttemptContext,
  response: Response,
  timer: AttemptTimer,
  started: number,
  latencyMs: number,
  respondedAt: number,
): Promise<void> {
  const { lease, deliver } = context;
  const body = response.body;
  const watcher = new StreamWatcher();
  const peeked: Uint8Array[] = [];
  const reader = body?.getReader();
  const releaseFailure = async (error: unknown): Promise<never> => {
    timer.dispose();
    await reader?.cancel().catch(() => {});
    await lease.release({
      ok: false,
      kind: timer.kind(),
      error,
      latencyMs: performance.now() - started,
      respondedAt,
    });
    throw error;
  };

  if (reader === undefined) return releaseFailure(new Error('Anthropic answered a stream without a body'));
  while (watcher.events === 0) {
    let chunk: Awaited<ReturnType<typeof reader.read>>;
    try {
      chunk = await reader.read();
    } catch (error) {
      return releaseFailure(error);
    }
    if (chunk.done) return releaseFailure(new Error('Anthropic closed the stream before its first event'));
    peeked.push(chunk.value);
    watcher.push(chunk.value);
  }
  timer.dispose();

  // The first event itself is an error (e.g. `overloaded_error`): nothing reached the caller yet.
  if (watcher.error !== undefined) {
    const classification = await lease.release({
      ...failure({ ...watcher.error, headers: response.headers }, latencyMs),
      respondedAt,
    });
    if (classification?.retryable) {
      await reader.cancel().catch(() => {});
      throw new RetryOnAnotherKey(new Response(replay(peeked), response), watcher.error);
    }
    deliver(new Response(replay(peeked, reader), response));
    return;
  }

  const ended = new Promise<ReleaseOutcome>((resolve) => {
    const settle = (outcome: ReleaseOutcome) => resolve(outcome);
    const outcomeAtEnd = (): ReleaseOutcome => {
      const usage = watcher.usage.usage;
      if (watcher.error !== undefined)
        return { ...failure(watcher.error, latencyMs), ...(usage && { usage }) };
      return { ok: true, latencyMs, headers: response.headers, ...(usage && { usage }) };
    };
    const stopped = (kind: 'abort' | 'connection', error?: unknown): ReleaseOutcome => {
      const usage = watcher.usage.usage;
      return { ok: false, kind, latencyMs, ...(error !== undefined && { error }), ...(usage && { usage }) };
    };
    // The SDK aborts its signal when the caller aborts or drops the stream.
    context.init.signal?.addEventListener('abort', () => settle(stopped('abort')), { once: true });
    deliver(
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            for (const chunk of peeked) controller.enqueue(chunk);
          },
          async pull(controller) {
            try {
              const chunk = await reader.read();
              if (chunk.done) {
                controller.close();
                settle(outcomeAtEnd());
                return;
              }
              watcher.push(chunk.value);
              controller.enqueue(chunk.value);
            } catch (error) {
              controller.error(error);
              settle(stopped(context.init.signal?.aborted ? 'abort' : 'connection', error));
            }
          },
          async cancel(reason) {
            settle(stopped('abort'));
            await reader.cancel(reason).catch(() => {});
          },
        }),
        response,
      ),
    );
  });
  await lease.release({ ...(await ended), respondedAt });
}

function failure(outcome: UpstreamOutcome, latencyMs: number): Extract<ReleaseOutcome, { ok: false }> {
  return {
    ok: false,
    latencyMs,
    ...(outcome.status !== undefined && { status: outcome.status }),
    ...(outcome.code !== undefined && { code: outcome.code }),
    ...(outcome.headers !== undefined && { headers: outcome.headers }),
    ...(outcome.message !== undefined && { error: new Error(outcome.message) }),
  };
}

/** The bytes already read, then (optionally) the rest of the upstream stream. */
function replay(
  peeked: Uint8Array[],
  rest?: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of peeked) controller.enqueue(chunk);
      if (rest === undefined) controller.close();
    },
    async pull(controller) {
      if (rest === undefined) return;
      const chunk = await rest.read();
      if (chunk.done) controller.close();
      else controller.enqueue(chunk.value);
    },
    cancel: (reason) => rest?.cancel(reason),
  });
}

/** Per-attempt abort: the caller's signal (and the SDK's overall timer), plus this attempt's time limit. */
class AttemptTimer {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly handle: ReturnType<typeof setTimeout>;
  private timedOut = false;

  constructor(
    private readonly outer: AbortSignal | undefined,
    timeoutMs: number,
  ) {
    this.handle = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new DOMException('The attempt timed out', 'TimeoutError'));
    }, timeoutMs);
    this.signal = outer ? AbortSignal.any([outer, this.controller.signal]) : this.controller.signal;
  }

  /** What ended the attempt, when a signal did; undefined lets the error speak for itself. */
  kind(): 'timeout' | 'abort' | undefined {
    if (this.timedOut) return 'timeout';
    if (this.outer?.aborted) return 'abort';
    return undefined;
  }

  dispose(): void {
    clearTimeout(this.handle);
  }
}

/** Sends the request to the key's own base URL when it has one. */
function rebase(url: string, clientBase: string, keyBase: string | undefined): string {
  if (keyBase === undefined) return url;
  const from = clientBase.replace(/\/+$/, '');
  if (!url.startsWith(from)) return url;
  return keyBase.replace(/\/+$/, '') + url.slice(from.length);
}

function readModel(request: unknown): string | undefined {
  const model = (request as { model?: unknown } | undefined)?.model;
  return typeof model === 'string' ? model : undefined;
}

function isEventStream(response: Response): boolean {
  return response.headers.get('content-type')?.includes('text/event-stream') === true;
}

function isJson(response: Response): boolean {
  return response.headers.get('content-type')?.includes('json') === true;
}

function isStreamBody(body: NonNullable<RequestInit['body']>): boolean {
  return body instanceof ReadableStream || (typeof body === 'object' && Symbol.asyncIterator in body);
}
