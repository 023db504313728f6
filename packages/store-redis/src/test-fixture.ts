import { dropRedisPrefix, isRedisAvailable, serviceUrls, uniqueName } from '@keypool/testing';
import type { Redis } from 'ioredis';

/** Test-only: real Redis, one prefix per run, everything under it removed afterwards. */
export const redisUrl = serviceUrls.redis;

export { isRedisAvailable };

export function testPrefix(): string {
  return uniqueName('kp_redis_test');
}

/** Every key under `{prefix}` (SCAN, never KEYS). */
export async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const batch of client.scanStream({ match: `{${prefix}}*`, count: 1_000 })) {
    found.push(...(batch as string[]));
  }
  return found;
}

export function dropPrefix(prefix: string): Promise<void> {
  return dropRedisPrefix(prefix, redisUrl);
}
