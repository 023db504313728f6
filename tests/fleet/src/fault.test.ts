/**
 * Redis goes away mid-run (a proxy black-holes it for a few seconds) under three processes
 * calling the upstream through their pools. Judged by what users observe: calls keep being
 * served without long stalls, the pools say they are degraded and recover, and the usage log
 * afterwards holds exactly what the upstream counted.
 */
import { createKeyPool, generateMasterKey } from '@keypool/core';
import type { KeyPool } from '@keypool/spec';
import { DEFAULT_MOCK_REPLY, type MockUpstream, mockTokens, startMockUpstream } from '@keypool/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTarget, dropTarget, isBackendUp, openStore, type StoreTarget } from './backends.js';
import { startFleet, type WorkerReport } from './fleet.js';
import { type RedisProxy, startProxy } from './proxy.js';

const PROCESSES = 3;
const COMMAND_TIMEOUT_MS = 300;
/** No call may take longer than a reserve and a settle that both time out, plus this. */
const MARGIN_MS = 1_000;
const RUN_MS = 7_000;
const CUT_AFTER_MS = 2_000;
const CUT_FOR_MS = 2_500;
const CONTENT = 'Summarise the fault test in one line.';

const masterKey = generateMasterKey();
process.env.KEYPOOL_MASTER_KEY = masterKey;

const isUp = await isBackendUp('redis');

describe.skipIf(!isUp)(`${PROCESSES} processes while Redis is cut off for ${CUT_FOR_MS} ms`, () => {
  let target: StoreTarget;
  let mock: MockUpstream;
  let proxy: RedisProxy;
  let pool: KeyPool;
  let reports: WorkerReport[];
  let cutAt = 0;
  let restoredAt = 0;
  const keys = ['a', 'b', 'c'].map((alias) => ({
    provider: 'openai',
    alias,
    secret: `sk-fault-${alias}-${Math.random().toString(36).slice(2, 14)}`,
    // Loose limits: this test is about the outage, not about waiting for a window.
    limits: { rpm: 100_000, tpm: 100_000_000 },
  }));

  beforeAll(async () => {
    target = await createTarget('redis', 'kp_fault');
    mock = await startMockUpstream();
    proxy = await startProxy(target.url);
    // Seeds the keys and later reads the usage log, straight to Redis (not through the proxy).
    pool = await createKeyPool({ store: openStore(target), masterKey, keys });
    const fleet = await startFleet(
      PROCESSES,
      {
        target,
        storeOptions: { url: proxy.url, commandTimeoutMs: COMMAND_TIMEOUT_MS },
        mockUrl: mock.url,
        windowMs: 60_000,
        maxWaitMs: 1_000,
        leaseTtlMs: 60_000,
        concurrency: 2,
        content: CONTENT,
        estimatedTokens: mockTokens(CONTENT) + mockTokens(DEFAULT_MOCK_REPLY),
        recoverWaitMs: 5_000,
      },
      RUN_MS,
    );
    await new Promise((resolve) => setTimeout(resolve, fleet.startAt + CUT_AFTER_MS - Date.now()));
    cutAt = Date.now();
    proxy.cut();
    await new Promise((resolve) => setTimeout(resolve, CUT_FOR_MS));
    restoredAt = Date.now();
    proxy.restore();
    reports = await fleet.reports;
  }, 30_000);

  afterAll(async () => {
    await pool?.close();
    await proxy?.close();
    await mock?.close();
    if (target) await dropTarget(target);
  });

  it('every process keeps serving, during the cut too, and no call fails', () => {
    const summary = reports.map(
      (r) =>
        `pid ${r.pid}: ${r.ok} ok (${r.okWhileDegraded} while degraded), failures ${JSON.stringify(r.failures)}, ` +
        `longest call cycle ${r.maxCycleMs} ms, degraded ${r.degradedAt.map((t) => t - cutAt)} ms after the cut, ` +
        `recovered ${r.recoveredAt.map((t) => t - restoredAt)} ms after the restore (${r.flushedUsage} usage records written back)`,
    );
    console.log(`[fleet fault]\n  ${summary.join('\n  ')}`);
    for (const report of reports) {
      expect(report.failures, `failures in ${report.pid}`).toEqual({});
      expect(report.okWhileDegraded, `calls served by ${report.pid} while degraded`).toBeGreaterThan(0);
    }
  });

  it(`no call waits longer than a timed-out reserve and settle (${COMMAND_TIMEOUT_MS} ms each) + ${MARGIN_MS} ms`, () => {
    for (const report of reports) {
      expect(report.maxCycleMs, `longest call in ${report.pid}`).toBeLessThanOrEqual(
        2 * COMMAND_TIMEOUT_MS + MARGIN_MS,
      );
    }
  });

  it('each pool says so: store:degraded during the cut, health() degraded, then store:recovered', () => {
    for (const report of reports) {
      expect(report.degradedAt.length, `store:degraded events in ${report.pid}`).toBeGreaterThanOrEqual(1);
      expect(report.degradedAt[0]!).toBeGreaterThanOrEqual(cutAt);
      expect(report.degradedAt[0]!).toBeLessThan(restoredAt);
      expect(report.degradedSamples, `health() samples saying degraded in ${report.pid}`).toBeGreaterThan(0);
      expect(report.recoveredAt.length, `store:recovered events in ${report.pid}`).toBeGreaterThanOrEqual(1);
      expect(report.recoveredAt.at(-1)!).toBeGreaterThanOrEqual(restoredAt);
      expect(report.degradedAtEnd, `${report.pid} still degraded at the end`).toBe(false);
    }
  });

  it('afterwards the usage log equals what the upstream counted, key by key', async () => {
    const ids = new Map(pool.keys().map((info) => [info.alias, info.id]));
    const rows = await pool.store.queryUsage({ groupBy: ['key'] });
    const logged = Object.fromEntries(
      keys.map((key) => {
        const row = rows.find((r) => r.keyId === ids.get(key.alias));
        return [
          key.alias,
          { requests: row?.requests ?? 0, input: row?.inputTokens ?? 0, output: row?.outputTokens ?? 0 },
        ];
      }),
    );
    const counted = Object.fromEntries(
      keys.map((key) => [
        key.alias,
        { requests: mock.counts.requests(key.secret), ...mock.counts.tokens(key.secret) },
      ]),
    );
    expect(logged).toEqual(counted);
    expect(reports.reduce((n, r) => n + r.ok, 0)).toBe(mock.counts.requests());
  });
});
