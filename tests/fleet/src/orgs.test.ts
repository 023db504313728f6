/**
 * Six processes share one store and call through three keys of one upstream organization whose
 * shared rpm (40) is well under the sum of the keys' own (3 × 30). The mock upstream enforces the
 * organization's rpm as the real APIs do and is the judge: it must never see the organization
 * over its limit, and the fleet must still use at least 95% of it.
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

const WINDOW_MS = 5_000;
const WINDOWS = 3;
const PROCESSES = 6;
const ORG_RPM = 40;
const CONTENT = 'x'.repeat(280);
const TOKENS_PER_CALL = mockTokens(CONTENT) + mockTokens(DEFAULT_MOCK_REPLY);

const masterKey = generateMasterKey();
process.env.KEYPOOL_MASTER_KEY = masterKey; // inherited by the forked processes

for (const backend of SERVER_BACKENDS) {
  const isUp = await isBackendUp(backend);

  describe.skipIf(!isUp)(`${PROCESSES} processes on one ${backend} store, one organization`, () => {
    let target: StoreTarget;
    let mock: MockUpstream;
    let pool: KeyPool;
    let reports: WorkerReport[];
    const keys = ['org-a1', 'org-a2', 'org-a3'].map((alias, i) => ({
      provider: 'openai',
      alias,
      secret: `sk-fleet-org-${backend}-${alias}-${Math.random().toString(36).slice(2, 14)}`,
      organization: 'org-fleet',
      limits: { rpm: 30 },
      // Declared on one key only: the others inherit it.
      ...(i === 0 && { orgLimits: { rpm: ORG_RPM } }),
    }));
    const summary: string[] = [];

    beforeAll(async () => {
      target = await createTarget(backend, 'kp_orgs');
      mock = await startMockUpstream({ windowMs: WINDOW_MS });
      mock.setOrgLimits(
        'org-fleet',
        keys.map((key) => key.secret),
        { rpm: ORG_RPM },
      );
      pool = await createKeyPool({ store: openStore(target), masterKey, windowMs: WINDOW_MS, keys });
      const fleet = await startFleet(
        PROCESSES,
        {
          target,
          mockUrl: mock.url,
          windowMs: WINDOW_MS,
          maxWaitMs: 10_000,
          leaseTtlMs: 60_000,
          concurrency: 2,
          content: CONTENT,
          estimatedTokens: TOKENS_PER_CALL,
        },
        WINDOWS * WINDOW_MS + WINDOW_MS / 4,
      );
      reports = await fleet.reports;
    }, 60_000);

    afterAll(async () => {
      if (summary.length > 0) console.log(`[fleet orgs ${backend}]\n  ${summary.join('\n  ')}`);
      await pool?.close();
      await mock?.close();
      if (target) await dropTarget(target);
    });

    it('the upstream never answers 429 and never sees the organization over its rpm', () => {
      const failures: Record<string, number> = {};
      for (const report of reports) {
        for (const [code, n] of Object.entries(report.failures)) failures[code] = (failures[code] ?? 0) + n;
      }
      delete failures.KEYPOOL_NO_KEY_AVAILABLE;
      expect(failures).toEqual({});
      expect(mock.counts.byStatus()).toEqual({ 200: mock.counts.requests() });
      const peak = mock.counts.maxInAnyWindow(
        keys.map((key) => key.secret),
        WINDOW_MS,
      );
      const reserved = peakInAnyWindow(
        reports.flatMap((r) => r.calls).map((call) => ({ time: call.reservedAt, tokens: call.tokens })),
        WINDOW_MS,
      );
      summary.push(
        `organization: max ${peak.requests} calls upstream, ${reserved.requests} reserved per window`,
      );
      expect(peak.requests).toBeLessThanOrEqual(ORG_RPM);
      expect(reserved.requests).toBeLessThanOrEqual(ORG_RPM);
      // Every key took part: the organization's limit, not one key's, was the bound.
      for (const key of keys) expect(mock.counts.requests(key.secret), key.alias).toBeGreaterThan(0);
    });

    it('uses at least 95% of the organization’s rpm', () => {
      const t0 = Math.min(...mock.counts.log.map((entry) => entry.time));
      const counted = mock.counts.log.filter((entry) => entry.time < t0 + WINDOWS * WINDOW_MS).length;
      const ideal = ORG_RPM * WINDOWS;
      summary.push(
        `throughput: ${counted} calls in ${WINDOWS} windows = ${((counted / ideal) * 100).toFixed(1)}% of ${ideal}`,
      );
      expect(counted / ideal).toBeGreaterThanOrEqual(0.95);
    });
  });
}
