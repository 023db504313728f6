import { randomBytes } from 'node:crypto';
import { createKeyPool } from '@keypool/core';
import { isRedisServerAvailable, startRedisCluster, uniqueName } from '@keypool/testing';
import { Cluster } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { redisStore } from './index.js';

// A Redis Cluster of its own (the test freezes one master), apart from cluster.test.ts's.
const cluster = (await isRedisServerAvailable()) ? await startRedisCluster() : undefined;

const COMMAND_TIMEOUT_MS = 300;
const FROZEN_MS = 2_000;

describe.skipIf(!cluster)('Redis Cluster: the master of the pool freezes, then comes back', () => {
  afterAll(() => cluster?.stop());

  it('keeps serving from the fallback, within the timeout, and logs every request once it is back', async () => {
    let prefix = uniqueName('kp_cluster_fault');
    while ((await cluster!.nodeOf(`{${prefix}}`)) !== 1) prefix = uniqueName('kp_cluster_fault');
    const client = new Cluster([...cluster!.nodes], { redisOptions: { commandTimeout: COMMAND_TIMEOUT_MS } });
    const store = redisStore({ client, prefix, commandTimeoutMs: COMMAND_TIMEOUT_MS });
    const pool = await createKeyPool({
      store,
      masterKey: randomBytes(32).toString('base64'),
      keys: [
        { provider: 'openai', secret: `sk-fault-a-${'0'.repeat(32)}`, limits: { rpm: 100_000 } },
        { provider: 'openai', secret: `sk-fault-b-${'0'.repeat(32)}`, limits: { rpm: 100_000 } },
      ],
    });
    const events: Array<{ type: string; at: number }> = [];
    pool.on('store:degraded', () => events.push({ type: 'degraded', at: Date.now() }));
    pool.on('store:recovered', () => events.push({ type: 'recovered', at: Date.now() }));
    let served = 0;
    let slowest = 0;
    const failures: string[] = [];
    let isRunning = true;
    const worker = async () => {
      while (isRunning) {
        const started = Date.now();
        try {
          const lease = await pool.acquire({ provider: 'openai', model: 'gpt-4o-mini', estimatedTokens: 20 });
          await lease.release({ ok: true, usage: { inputTokens: 10, outputTokens: 5 } });
          served++;
        } catch (error) {
          failures.push(String(error));
        }
        slowest = Math.max(slowest, Date.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    };
    try {
      const workers = [worker(), worker(), worker()];
      await new Promise((resolve) => setTimeout(resolve, 500));
      const servedBefore = served;
      cluster!.pause(1);
      const frozenAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, FROZEN_MS));
      cluster!.resume(1);
      const resumedAt = Date.now();
      const servedFrozen = served - servedBefore;
      // Until the store is back and has written its buffer out.
      const deadline = Date.now() + 10_000;
      while (!events.some((e) => e.type === 'recovered') && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
      isRunning = false;
      await Promise.all(workers);

      console.log(
        `[cluster fault] served ${served} (${servedFrozen} while frozen ${FROZEN_MS} ms); slowest call ${slowest} ms; degraded after ${(events.find((e) => e.type === 'degraded')?.at ?? Number.NaN) - frozenAt} ms, recovered ${(events.find((e) => e.type === 'recovered')?.at ?? Number.NaN) - resumedAt} ms after the resume`,
      );
      expect(failures).toEqual([]);
      expect(servedFrozen, 'requests served while the master was frozen').toBeGreaterThan(20);
      expect(slowest, 'no call waits much past the command timeout').toBeLessThan(
        2 * COMMAND_TIMEOUT_MS + 1_000,
      );
      const degraded = events.find((e) => e.type === 'degraded');
      const recovered = events.find((e) => e.type === 'recovered');
      expect(degraded!.at).toBeGreaterThanOrEqual(frozenAt);
      expect(degraded!.at).toBeLessThan(resumedAt);
      expect(recovered!.at).toBeGreaterThanOrEqual(resumedAt);
      expect(pool.health().store.degraded).toBe(false);

      // Nothing lost: the usage log counts every request served, before, during and after.
      await pool.close();
      const check = redisStore({ client, prefix });
      const [total] = await check.queryUsage({ from: 0, to: Date.now() + 1 });
      expect(total?.requests).toBe(served);
      await check.close();
    } finally {
      isRunning = false;
      cluster!.resume(1);
      await pool.close();
      client.disconnect();
    }
  }, 30_000);
});
