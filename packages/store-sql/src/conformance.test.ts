import type { Store } from '@keypool/spec';
import { redisStore } from '@keypool/store-redis';
import { isServiceAvailable, serviceUrls, testStore, uniqueName } from '@keypool/testing';
import { Redis } from 'ioredis';
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
const isHybridUp =
  (await hybrid.setUp()) &&
  (await isServiceAvailable('redis', async () => {
    const probe = new Redis(serviceUrls.redis, { lazyConnect: true, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    try {
      await probe.connect();
      await probe.ping();
    } finally {
      probe.disconnect();
    }
  }));
describe.skipIf(!isHybridUp)('sql:postgres with hotState: redisStore', () => {
  const prefixes = new WeakMap<Store, string>();
  const used: string[] = [];
  afterAll(async () => {
    await hybrid.tearDown();
    const client = new Redis(serviceUrls.redis);
    try {
      for (const prefix of used) {
        for await (const keys of client.scanStream({ match: `{${prefix}}*`, count: 1_000 })) {
          if ((keys as string[]).length > 0) await client.del(...(keys as string[]));
        }
      }
    } finally {
      client.disconnect();
    }
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
