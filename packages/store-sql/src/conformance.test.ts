import type { Store } from '@keypool/spec';
import { redisStore } from '@keypool/store-redis';
import { dropRedisPrefix, isRedisAvailable, serviceUrls, testStore, uniqueName } from '@keypool/testing';
import { afterAll, describe } from 'vitest';
import { DIALECTS, target } from './test-fixture.js';

// The shared conformance suite on every dialect. `peer` opens a second Kysely
// instance (its own connection pool) on the same tables, so the concurrency
// tests run across connections, as two processes would.
for (const dialect of DIALECTS) {
  const run = target(dialect);
  const isUp = await run.setUp();
  describe.skipIf(!isUp)(`sql:${dialect}`, () => {
    afterAll(() => run.tearDown());
    testStore(`sql:${dialect}`, {
      async create() {
        await run.empty();
        return run.open();
      },
      async peer() {
        return run.open();
      },
    });
  });
}

// Records in PostgreSQL, hot state in Redis (`hotState`): the same suite on the pair. Each store
// gets a Redis prefix of its own; a peer opens its own SQL pool and Redis connection on both.
const hybrid = target('postgres');
const isHybridUp = (await hybrid.setUp()) && (await isRedisAvailable());
describe.skipIf(!isHybridUp)('sql:postgres with hotState: redisStore', () => {
  const prefixes = new WeakMap<Store, string>();
  const used: string[] = [];
  afterAll(async () => {
    await hybrid.tearDown();
    for (const prefix of used) await dropRedisPrefix(prefix);
  });
  /** The SQL store does not close its hotState store; this one does, after it. */
  function open(prefix: string): Store {
    const hot = redisStore({ url: serviceUrls.redis, prefix });
    const store = hybrid.open({ hotState: hot });
    const close = store.close.bind(store);
    store.close = async () => {
      await close();
      await hot.close();
    };
    prefixes.set(store, prefix);
    return store;
  }
  testStore('sql:postgres + redis hot state', {
    async create() {
      await hybrid.empty();
      const prefix = uniqueName('kp_hybrid');
      used.push(prefix);
      return open(prefix);
    },
    async peer(of) {
      return open(prefixes.get(of)!);
    },
  });
});
