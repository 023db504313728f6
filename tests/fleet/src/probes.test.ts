/**
 * Background probes across a fleet: three pools, each with its own store handle (as three
 * processes would have), probe one invalid key. The store's claim lets one of them probe it at a
 * time; the one whose probe passes brings it back, and the others see it come back instead of
 * probing it again.
 */
import { createKeyPool, definePlugin, describeUpstreamError, generateMasterKey } from '@keypool/core';
import type { KeyPool, PoolEventName, PoolEvents, ProbeResult, Provider } from '@keypool/spec';
import { type MockUpstream, startMockUpstream } from '@keypool/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTarget,
  dropTarget,
  isBackendUp,
  openStore,
  SERVER_BACKENDS,
  type StoreTarget,
} from './backends.js';

const masterKey = generateMasterKey();
const secret = `sk-probe-${Math.random().toString(36).slice(2, 14)}`;

/** Probes of the key running right now in this process (every pool of the fleet runs here). */
let running = 0;
let mostAtOnce = 0;

/** The OpenAI adapter's probe, counted: GET {baseURL}/models with the key. */
async function probe(key: string, options: { baseURL?: string; signal?: AbortSignal }): Promise<ProbeResult> {
  running++;
  mostAtOnce = Math.max(mostAtOnce, running);
  const startedAt = performance.now();
  try {
    const response = await fetch(`${options.baseURL}/models`, {
      headers: { authorization: `Bearer ${key}` },
      ...(options.signal && { signal: options.signal }),
    });
    await response.arrayBuffer();
    const latencyMs = performance.now() - startedAt;
    return response.ok
      ? { ok: true, latencyMs }
      : { ok: false, latencyMs, outcome: { kind: 'http', status: response.status } };
  } finally {
    running--;
  }
}

const provider: Provider = {
  specificationVersion: 'v1',
  id: 'openai',
  describeError: describeUpstreamError,
  readRateLimits: (_headers, now) => ({ observedAt: now }),
  estimateTokens: () => 0,
  probe,
};

function collect<E extends PoolEventName>(pools: KeyPool[], event: E): PoolEvents[E][] {
  const seen: PoolEvents[E][] = [];
  for (const pool of pools) pool.on(event, (payload) => seen.push(payload));
  return seen;
}

async function until(check: () => boolean, what: string): Promise<void> {
  const startedAt = Date.now();
  while (!check()) {
    if (Date.now() - startedAt > 20_000) throw new Error(`${what}: not seen within 20 s`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

for (const backend of SERVER_BACKENDS) {
  const isUp = await isBackendUp(backend);

  describe.skipIf(!isUp)(`background probes of three pools on one ${backend} store`, () => {
    let target: StoreTarget;
    let mock: MockUpstream;
    const fleet: KeyPool[] = [];

    beforeAll(async () => {
      target = await createTarget(backend, 'kp_probe');
      mock = await startMockUpstream();
      for (let i = 0; i < 3; i++) {
        fleet.push(
          await createKeyPool({
            store: openStore(target),
            masterKey,
            plugins: [
              definePlugin({
                id: 'fleet-probe-openai',
                activate: (ctx) => void ctx.providers.register(provider),
              }),
            ],
            keys: [{ provider: 'openai', alias: 'probed', secret, baseURL: `${mock.url}/v1` }],
            refreshMs: 100,
            probes: { intervalMs: 400 },
          }),
        );
      }
    });

    afterAll(async () => {
      for (const pool of fleet) await pool.close();
      await mock?.close();
      if (target) await dropTarget(target);
    });

    it('one probe of the key at a time fleet-wide; the pass is made and audited once', async () => {
      const failed = collect(fleet, 'probe:failed');
      const passed = collect(fleet, 'probe:passed');
      // Each refused probe takes a while, so the pools' rounds overlap.
      mock.setScript(secret, { steps: [{ status: 401, slow: 150 }], repeat: true });
      const lease = await fleet[0]!.acquire({ provider: 'openai', maxWaitMs: 0 });
      await lease.release({ ok: false, status: 401 });

      await until(() => failed.length >= 6, 'six refused probes');
      expect(failed.every((e) => e.status === 401 && e.reasons.includes('invalid'))).toBe(true);
      expect(mostAtOnce).toBe(1);

      mock.setScript(secret, []);
      await until(() => passed.length > 0, 'a passing probe');
      await until(
        () => fleet.every((pool) => pool.health().keys[0]?.status === 'active'),
        'the key active everywhere',
      );
      // Two more intervals: nobody probes a key that is back.
      const requests = mock.counts.requests(secret);
      await new Promise((resolve) => setTimeout(resolve, 800));
      expect(mock.counts.requests(secret)).toBe(requests);
      expect(passed).toHaveLength(1);
      const audit = await fleet[1]!.store.listAudit({ action: 'key.probe' });
      expect(audit).toEqual([expect.objectContaining({ actor: 'probe', target: fleet[0]!.keys()[0]!.id })]);
      console.log(
        `[fleet ${backend}] ${failed.length} refused probes and 1 pass over 3 pools, never two at once`,
      );
    });
  });
}
