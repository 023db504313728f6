/**
 * Two pools on one store, each with its own store handle (as two processes would have): a key
 * disabled or added through one reaches the other within 2 s, without a restart.
 */
import { createKeyPool, generateMasterKey } from '@keypool/core';
import type { KeyPool } from '@keypool/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTarget,
  dropTarget,
  isBackendUp,
  openStore,
  SERVER_BACKENDS,
  type StoreTarget,
} from './backends.js';

const WITHIN_MS = 2_000;
const masterKey = generateMasterKey();

/** Aliases of the keys `pool` hands out for `n` acquires in a row (round-robin visits every key). */
async function servedBy(pool: KeyPool, n: number): Promise<Set<string>> {
  const aliases = new Set<string>();
  for (let i = 0; i < n; i++) {
    const lease = await pool.acquire({ provider: 'openai', maxWaitMs: 0 });
    aliases.add(lease.alias);
    await lease.release({ ok: true, usage: { inputTokens: 1, outputTokens: 1 } });
  }
  return aliases;
}

/** Polls until `check` holds; returns how long that took (or throws after 3 × WITHIN_MS). */
async function timeUntil(check: () => Promise<boolean>): Promise<number> {
  const startedAt = Date.now();
  while (!(await check())) {
    if (Date.now() - startedAt > 3 * WITHIN_MS) throw new Error(`still not seen after ${3 * WITHIN_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return Date.now() - startedAt;
}

const secret = (name: string) => `sk-prop-${name}-${Math.random().toString(36).slice(2, 14)}`;

for (const backend of SERVER_BACKENDS) {
  const isUp = await isBackendUp(backend);

  describe.skipIf(!isUp)(`two pools on one ${backend} store`, () => {
    let target: StoreTarget;
    let writer: KeyPool;
    let reader: KeyPool;

    beforeAll(async () => {
      target = await createTarget(backend, 'kp_prop');
      writer = await createKeyPool({
        store: openStore(target),
        masterKey,
        keys: [
          { provider: 'openai', alias: 'one', secret: secret('one') },
          { provider: 'openai', alias: 'two', secret: secret('two') },
        ],
      });
      // Declares nothing: it knows keys only from the store.
      reader = await createKeyPool({ store: openStore(target), masterKey });
    });

    afterAll(async () => {
      await reader?.close();
      await writer?.close();
      if (target) await dropTarget(target);
    });

    it(`a key disabled through one pool is no longer used by the other within ${WITHIN_MS} ms`, async () => {
      expect(await servedBy(reader, 4)).toEqual(new Set(['one', 'two']));
      const one = writer.keys().find((k) => k.alias === 'one')!;
      await writer.disableKey(one.id, 'propagation test');
      const tookMs = await timeUntil(async () => !(await servedBy(reader, 4)).has('one'));
      console.log(`[fleet ${backend}] disable seen by the other pool after ${tookMs} ms`);
      expect(tookMs).toBeLessThanOrEqual(WITHIN_MS);
      // And it stays out.
      expect(await servedBy(reader, 10)).toEqual(new Set(['two']));
    });

    it(`a key added through one pool is used by the other within ${WITHIN_MS} ms`, async () => {
      await writer.addKey({ provider: 'openai', alias: 'three', secret: secret('three') });
      const tookMs = await timeUntil(async () => (await servedBy(reader, 4)).has('three'));
      console.log(`[fleet ${backend}] new key used by the other pool after ${tookMs} ms`);
      expect(tookMs).toBeLessThanOrEqual(WITHIN_MS);
    });
  });
}
