/** Helpers shared by core's test files (not exported from the package). */
import type { KeyPool, PoolEventName, PoolEvents } from '@keypool/spec';
import { afterEach, beforeEach, vi } from 'vitest';

/** Every payload of `event` the pool emits from now on, in order. */
export function record<E extends PoolEventName>(pool: KeyPool, event: E): PoolEvents[E][] {
  const seen: PoolEvents[E][] = [];
  pool.on(event, (payload) => seen.push(payload));
  return seen;
}

/**
 * Runs each test of the file on a fake clock starting at `now`; the returned list is for the
 * pools a test opens, closed after it.
 */
export function onFakeClock(now: number): KeyPool[] {
  const pools: KeyPool[] = [];
  beforeEach(() => {
    vi.useFakeTimers({ now });
  });
  afterEach(async () => {
    for (const pool of pools.splice(0)) await pool.close();
    vi.useRealTimers();
  });
  return pools;
}
