import Anthropic, { type ClientOptions } from '@anthropic-ai/sdk';
import { ConfigError } from '@keypool/core';
import type { ExecuteOptions, KeyPool } from '@keypool/spec';
import { createPooledFetch, type Fetch, PoolFailure } from './pooled-fetch.js';
import { ANTHROPIC_PROVIDER_ID } from './provider.js';

/** Sent by the SDK and replaced per attempt by the leased key; never a real credential. */
const PLACEHOLDER_API_KEY = 'keypool-pooled-key';
/** The SDK's default timeout and core's default attempts; only used to size the SDK's overall timer. */
const DEFAULT_TIMEOUT_MS = 600_000;
const DEFAULT_MAX_ATTEMPTS = 3;

type Middleware = NonNullable<ClientOptions['middleware']>[number];

export interface PooledAnthropicOptions extends Omit<ClientOptions, 'apiKey' | 'authToken' | 'maxRetries'> {
  /**
   * How each request runs on the pool (`maxAttempts`, `deadlineMs`, `maxWaitMs`,
   * `affinity`, `pool`, `caller`). Model and token estimate come from the request.
   */
  pooling?: Omit<ExecuteOptions, 'model' | 'estimatedTokens' | 'signal'>;
}

/**
 * The official `Anthropic` client, with every request on a key from the pool:
 * `new Anthropic(options)` becomes `createPooledAnthropic(pool, options)` and the
 * rest of the application stays as it is (same class, types, methods, errors, streams).
 *
 * The SDK's own retries are off (`maxRetries: 0`); the pool retries on other keys
 * per the failure table. `timeout` applies per attempt (as it does per try in the
 * SDK), so a hanging key gives way to the next one. `baseURL`, `defaultHeaders`,
 * `defaultQuery`, `fetch` and `middleware` pass through; a key's own `baseURL` wins
 * for the attempts it serves.
 */
export function createPooledAnthropic(pool: KeyPool, options: PooledAnthropicOptions = {}): Anthropic {
  if (pool.provider(ANTHROPIC_PROVIDER_ID) === undefined) {
    throw new ConfigError(
      'createPooledAnthropic: the pool has no "anthropic" provider. Add anthropicProvider() to createKeyPool({ plugins }).',
    );
  }
  const { pooling = {}, fetch: userFetch, middleware = [], timeout, ...clientOptions } = options;
  const attemptTimeoutMs = timeout ?? DEFAULT_TIMEOUT_MS;
  const maxAttempts = pooling.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  let clientBaseURL = '';
  const fetch = createPooledFetch({
    ...pooling,
    keyPool: pool,
    attemptTimeoutMs,
    fetch: (userFetch as Fetch | undefined) ?? ((input, init) => globalThis.fetch(input, init)),
    baseURL: () => clientBaseURL,
  });
  const client = new Anthropic({
    ...clientOptions,
    apiKey: PLACEHOLDER_API_KEY,
    authToken: null,
    maxRetries: 0,
    // The SDK's own timer bounds the whole pooled request: every attempt may use its full timeout.
    timeout: attemptTimeoutMs * maxAttempts,
    fetch,
    middleware: [...middleware, surfacePoolErrors],
  });
  clientBaseURL = client.baseURL;
  return client;
}

/**
 * The SDK wraps anything `fetch` throws in `APIConnectionError`. A pool error
 * (`NoKeyAvailableError`, a closed pool) is not a connection problem, so it is
 * thrown as the pool's own error; errors from middleware reach the caller as-is.
 */
const surfacePoolErrors: Middleware = async (request, next) => {
  try {
    return await next(request);
  } catch (error) {
    if (error instanceof PoolFailure) throw error.error;
    throw error;
  }
};
