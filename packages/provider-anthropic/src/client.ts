import Anthropic, { type ClientOptions } from '@anthropic-ai/sdk';
import { ConfigError } from '@keypool/core';
import type { KeyPool } from '@keypool/spec';
import { createPooledFetch, type Fetch, type PoolCallOptions, PoolFailure } from './pooled-fetch.js';
import { ANTHROPIC_PROVIDER_ID } from './provider.js';

/** Sent by the SDK and replaced per attempt by the leased key; never a real credential. */
const PLACEHOLDER_API_KEY = 'keypool-pooled-key';

type Middleware = NonNullable<ClientOptions['middleware']>[number];

/**
 * The official `Anthropic` client, with every request on a key from the pool:
 * `new Anthropic(options)` becomes `createPooledAnthropic(pool, options)` and the
 * rest of the application stays as it is (same types, methods, errors, streams).
 *
 * The SDK's own retries are off (`maxRetries: 0`); the pool retries on other keys
 * instead. `baseURL`, `timeout`, `defaultHeaders`, `defaultQuery`, `fetch` and the
 * other client options pass through; a key's own `baseURL` wins for its requests.
 */
export function createPooledAnthropic(
  pool: KeyPool,
  clientOptions: Omit<ClientOptions, 'apiKey' | 'authToken' | 'maxRetries'> = {},
  poolOptions: PoolCallOptions = {},
): Anthropic {
  if (pool.provider(ANTHROPIC_PROVIDER_ID) === undefined) {
    throw new ConfigError(
      'createPooledAnthropic: the pool has no "anthropic" provider. Add anthropicProvider() to createKeyPool({ plugins }).',
    );
  }
  const { fetch: userFetch, middleware = [], ...rest } = clientOptions;
  let client: Anthropic | undefined;
  const fetch = createPooledFetch({
    ...poolOptions,
    keyPool: pool,
    fetch: (userFetch as Fetch | undefined) ?? ((input, init) => globalThis.fetch(input, init)),
    baseURL: () => client?.baseURL ?? '',
  });
  client = new Anthropic({
    ...rest,
    apiKey: PLACEHOLDER_API_KEY,
    authToken: null,
    maxRetries: 0,
    fetch,
    middleware: [...middleware, surfacePoolErrors],
  });
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
