import { isRedisServerAvailable, startRedisServer } from '@keypool/testing';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { redisStore } from './index.js';

// A Redis of its own: the test changes maxmemory-policy, which the shared server must keep.
const server = (await isRedisServerAvailable()) ? await startRedisServer() : undefined;

describe.skipIf(!server)('a Redis that may evict any key', () => {
  afterAll(() => server?.stop());

  it('init() refuses allkeys-* with a message that says what to change; noeviction, volatile-* and allowEviction start', async () => {
    const admin = new Redis(server!.url);
    try {
      for (const policy of ['allkeys-lru', 'allkeys-random']) {
        await admin.config('SET', 'maxmemory-policy', policy);
        const store = redisStore({ url: server!.url, prefix: 'evict' });
        try {
          const refused = await store.init().then(
            () => undefined,
            (error: unknown) => error as { code?: string; message: string },
          );
          expect(refused?.code).toBe('KEYPOOL_INVALID_CONFIG');
          expect(refused?.message).toContain(`maxmemory-policy ${policy}`);
          expect(refused?.message).toContain('noeviction');
          expect(refused?.message).toContain('allowEviction: true');
        } finally {
          await store.close();
        }
        const accepting = redisStore({ url: server!.url, prefix: 'evict', allowEviction: true });
        await expect(accepting.init()).resolves.toBeUndefined();
        await accepting.close();
      }
      for (const policy of ['noeviction', 'volatile-lru']) {
        await admin.config('SET', 'maxmemory-policy', policy);
        const store = redisStore({ url: server!.url, prefix: 'evict' });
        await expect(store.init()).resolves.toBeUndefined();
        await store.close();
      }
    } finally {
      admin.disconnect();
    }
  });
});
