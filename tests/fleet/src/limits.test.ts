/**
 * Eight processes share one store and hammer four keys with rpm/tpm limits for four windows.
 * The mock upstream is the judge: it counts what each key really received per sliding window.
 */
import { createKeyPool, generateMasterKey } from '@keypool/core';
import type { KeyPool } from '@keypool/spec';
import { DEFAULT_MOCK_REPLY, type MockUpstream, mockTokens, startMockUpstream } from '@keypool/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTarget,
  dropTarget,
  isBackendUp,
  openStore,
  SERVER_BACKENDS,
  type StoreTarget,
} from './backends.js';
import { startFleet, type WorkerReport } from './fleet.js';
import { peakInAnyWindow } from './windows.js';

// 5 s, not 2: on a slow day of this 2-core machine, waking and re-reserving after each refill
// cost 7-17% of the limits in 2 s windows (old code alike); the calls per window are the same.
const WINDOW_MS = 5_000;
const WINDOWS = 4;
const PROCESSES = 8;
const LOOPS_PER_PROCESS = 2;
const LEASE_TTL_MS = 60_000;
// 280 characters → 70 input tokens, plus the mock's reply: 80 tokens a call, estimated exactly.
const CONTENT = 'x'.repeat(280);
const TOKENS_PER_CALL = mockTokens(CONTENT) + mockTokens(DEFAULT_MOCK_REPLY);

// Two keys bound by rpm (30 calls use 2 400 of 3 000 tokens), two by tpm (37 calls fit in 3 000
// tokens, under their rpm of 60): both limits are exercised.
const LIMITS = [
  { alias: 'rpm-a', limits: { rpm: 30, tpm: 3_000 } },
  { alias: 'rpm-b', limits: { rpm: 30, tpm: 3_000 } },
  { alias: 'tpm-c', limits: { rpm: 60, tpm: 3_000 } },
  { alias: 'tpm-d', limits: { rpm: 60, tpm: 3_000 } },
] as const;

/** Calls a key can take in one window: the tighter of its rpm and of its tpm at this call size. */
function capacityPerWindow(limits: { rpm: number; tpm: number }): number {
  return Math.min(limits.rpm, Math.floor(limits.tpm / TOKENS_PER_CALL));
}

const masterKey = generateMasterKey();
process.env.KEYPOOL_MASTER_KEY = masterKey; // inherited by the forked processes

// Also on a Redis Cluster (a local three-master cluster, the processes on ioredis Cluster clients)
// and on PostgreSQL records with hot state in Redis (sqlStore's hotState).
for (const backend of [...SERVER_BACKENDS, 'redis-cluster', 'postgres+redis'] as const) {
  const isUp = await isBackendUp(backend);

  describe.skipIf(!isUp)(`${PROCESSES} processes on one ${backend} store, ${WINDOWS} windows`, () => {
    let target: StoreTarget;
    let mock: MockUpstream;
    let pool: KeyPool;
    let reports: WorkerReport[];
    const keys = LIMITS.map(({ alias, limits }) => ({
      provider: 'openai',
      alias,
      secret: `sk-fleet-${backend}-${alias}-${Math.random().toString(36).slice(2, 14)}`,
      limits,
    }));
    const summary: string[] = [];

    beforeAll(async () => {
      target = await createTarget(backend);
      mock = await startMockUpstream({ windowMs: WINDOW_MS });
      // The seeding pool stays open: its store reads the usage log at the end.
      pool = await createKeyPool({ store: openStore(target), masterKey, windowMs: WINDOW_MS, keys });
      const fleet = await startFleet(
        PROCESSES,
        {
          target,
          mockUrl: mock.url,
          windowMs: WINDOW_MS,
          maxWaitMs: 10_000,
          leaseTtlMs: LEASE_TTL_MS,
          concurrency: LOOPS_PER_PROCESS,
          content: CONTENT,
          estimatedTokens: TOKENS_PER_CALL,
        },
        // A quarter window of tail, so each key's last refill (a little after the k-th window
        // boundary) happens inside the run; see the throughput formula.
        WINDOWS * WINDOW_MS + WINDOW_MS / 4,
      );
      reports = await fleet.reports;
    }, 60_000);

    afterAll(async () => {
      if (summary.length > 0) console.log(`[fleet ${backend}]\n  ${summary.join('\n  ')}`);
      await pool?.close();
      await mock?.close();
      if (target) await dropTarget(target);
    });

    it('every call succeeded (only waits cut short by the end of the run gave up)', () => {
      const failures: Record<string, number> = {};
      for (const report of reports) {
        for (const [code, n] of Object.entries(report.failures)) failures[code] = (failures[code] ?? 0) + n;
      }
      const degraded = reports.reduce((n, r) => n + r.degradedAt.length, 0);
      summary.push(`failures: ${JSON.stringify(failures)}; store:degraded events: ${degraded}`);
      delete failures.KEYPOOL_NO_KEY_AVAILABLE;
      expect(failures).toEqual({});
      expect(mock.counts.byStatus()).toEqual({ 200: mock.counts.requests() });
    });

    it('the pool never reserves more than a key’s rpm or tpm in any window (its leases’ times)', () => {
      for (const key of keys) {
        const points = reports
          .flatMap((r) => r.calls)
          .filter((call) => call.alias === key.alias)
          .map((call) => ({ time: call.reservedAt, tokens: call.tokens }));
        const peak = peakInAnyWindow(points, WINDOW_MS);
        summary.push(`${key.alias} reserved: max ${peak.requests} calls / ${peak.tokens} tokens per window`);
        expect(peak.requests, `${key.alias} calls reserved in a window`).toBeLessThanOrEqual(key.limits.rpm);
        expect(peak.tokens, `${key.alias} tokens reserved in a window`).toBeLessThanOrEqual(key.limits.tpm);
      }
    });

    it('the upstream never sees more than a key’s rpm or tpm in any window', () => {
      // How late calls reached the upstream after the pool stamped their reservation: a call
      // reserved at r and one reserved at r + W may arrive less than W apart, by up to this much.
      const arrivals = new Map(mock.counts.log.map((entry) => [entry.headers['x-request-id'], entry.time]));
      const delays = reports
        .flatMap((r) => r.calls)
        .map((c) => (arrivals.get(c.requestId) ?? NaN) - c.reservedAt);
      const maxDelay = Math.max(...delays);
      summary.push(
        `reservation → upstream arrival: max ${maxDelay} ms, mean ${(delays.reduce((a, b) => a + b, 0) / delays.length).toFixed(1)} ms`,
      );
      const over: string[] = [];
      for (const key of keys) {
        const peak = mock.counts.maxInAnyWindow(key.secret, WINDOW_MS);
        const shortened = mock.counts.maxInAnyWindow(key.secret, WINDOW_MS - maxDelay);
        summary.push(
          `${key.alias} upstream: max ${peak.requests} calls (rpm ${key.limits.rpm}) / ${peak.tokens} tokens (tpm ${key.limits.tpm}) per ${WINDOW_MS} ms; ` +
            `${shortened.requests} / ${shortened.tokens} per ${WINDOW_MS - maxDelay} ms`,
        );
        if (peak.requests > key.limits.rpm || peak.tokens > key.limits.tpm) {
          over.push(`${key.alias}: ${peak.requests} calls / ${peak.tokens} tokens`);
        }
      }
      expect(over, 'keys over their limits in some window, as the upstream counted').toEqual([]);
    });

    it('uses at least 95% of the keys’ limits', () => {
      // A sliding window lets a key take at most `capacity` calls in any window, so in k
      // back-to-back windows at most k × capacity. The run starts at the first call the upstream
      // saw (T0); we count calls that arrived in [T0, T0 + k·W) for the k = WINDOWS whole windows
      // the run covers and expect at least 95% of Σ capacity × k. The run lasts k·W + W/4, so
      // every key's k-th refill, which lands a few ms after T0 + (k-1)·W, is inside it; calls in
      // the tail after T0 + k·W are neither counted nor needed.
      const t0 = Math.min(...mock.counts.log.map((entry) => entry.time));
      const counted = mock.counts.log.filter((entry) => entry.time < t0 + WINDOWS * WINDOW_MS).length;
      const ideal = keys.reduce((sum, key) => sum + capacityPerWindow(key.limits), 0) * WINDOWS;
      summary.push(
        `throughput: ${counted} calls in ${WINDOWS} windows = ${((counted / ideal) * 100).toFixed(1)}% of ${ideal} ` +
          `(${mock.counts.requests()} in the whole run); longest acquire wait ${Math.max(...reports.map((r) => r.maxAcquireMs))} ms`,
      );
      expect(counted / ideal).toBeGreaterThanOrEqual(0.95);
    });

    it('the usage log equals what the upstream counted, key by key', async () => {
      const ids = new Map(pool.keys().map((info) => [info.alias, info.id]));
      const rows = await pool.store.queryUsage({ groupBy: ['key'] });
      const logged = Object.fromEntries(
        keys.map((key) => {
          const row = rows.find((r) => r.keyId === ids.get(key.alias));
          return [key.alias, { requests: row?.requests, input: row?.inputTokens, output: row?.outputTokens }];
        }),
      );
      const counted = Object.fromEntries(
        keys.map((key) => [
          key.alias,
          { requests: mock.counts.requests(key.secret), ...mock.counts.tokens(key.secret) },
        ]),
      );
      expect(logged).toEqual(counted);
    });
  });
}
