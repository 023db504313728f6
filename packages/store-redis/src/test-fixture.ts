import { isServiceAvailable, serviceUrls, uniqueName } from '@keypool/testing';
import { Redis } from 'ioredis';

/** Test-only: real Redis, one prefix per run, everything under it removed afterwards. */
export const redisUrl = serviceUrls.redis;

export async function isRedisAvailable(): Promise<boolean> {
  return isServiceAvailable('redis', async () => {
    const probe = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1_000 });
    probe.on('error', () => {});
    try {
      await probe.connect();
      await probe.ping();
    } finally {
      probe.disconnect();
    }
  });
}

export function testPrefix(): string {
  return uniqueName('kp_redis_test');
}

/** Every key under `{prefix}` (SCAN, never KEYS). */
export async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `{${prefix}}*`, 'COUNT', 1_000);
    found.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return found;
}

export async function dropPrefix(prefix: string): Promise<void> {
  const client = new Redis(redisUrl);
  try {
    const keys = await keysUnder(client, prefix);
    for (let i = 0; i < keys.length; i += 500) await client.del(...keys.slice(i, i + 500));
  } finally {
    client.disconnect();
  }
}
