import type { Store } from '@keypool/spec';
import { testStore } from '@keypool/testing';
import { Redis } from 'ioredis';
import { afterAll, describe } from 'vitest';
import { redisStore } from './index.js';
import { dropPrefix, isRedisAvailable, redisUrl, testPrefix } from './test-fixture.js';

const available = await isRedisAvailable();
const prefixes = new WeakMap<Store, string>();
const used: string[] = [];

describe.skipIf(!available)('conformance', () => {
  afterAll(async () => {
    for (const prefix of used) await dropPrefix(prefix);
  });

  testStore('redis', {
    async create() {
      const prefix = testPrefix();
      used.push(prefix);
      const store = redisStore({ url: redisUrl, prefix });
      prefixes.set(store, prefix);
      return store;
    },
    // A second process, in effect: its own ioredis connection (a user's client), same prefix.
    async peer(of) {
      const prefix = prefixes.get(of)!;
      const client = new Redis(redisUrl);
      const store = redisStore({ client, prefix });
      const close = store.close.bind(store);
      store.close = async () => {
        await close();
        client.disconnect(); // the store never closes a user's client: the test owns it
      };
      return store;
    },
  });
});
