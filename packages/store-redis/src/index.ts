import { RedisStore, type RedisStoreOptions } from './store.js';

export { RedisStoreError } from './errors.js';
export type { RedisStore, RedisStoreOptions };

/**
 * A fleet-wide Store on Redis. Pass your ioredis client (never closed by the
 * store) or a url (the store owns that connection and closes it on close()).
 */
export function redisStore(options: RedisStoreOptions = {}): RedisStore {
  return new RedisStore(options);
}
