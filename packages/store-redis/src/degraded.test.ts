import { connect, createServer, type Server, type Socket } from 'node:net';
import type { ReserveRequest, StoreEvent, UsageRecord } from '@keypool/spec';
import { afterAll, describe, expect, it } from 'vitest';
import { redisStore } from './index.js';
import type { RedisStore } from './store.js';
import { dropPrefix, isRedisAvailable, redisUrl, testPrefix } from './test-fixture.js';

const available = await isRedisAvailable();

/**
 * A TCP proxy between the store and Redis. `cut()` drops every connection and
 * black-holes new ones (accepted, never answered: the worst case, a hang, not a
 * quick refusal); `restore()` forwards again.
 */
async function startProxy(
  target: URL,
): Promise<{ port: number; cut(): void; restore(): void; close(): void }> {
  let isCut = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    if (isCut) return; // black hole: accepted, never answered
    const upstream = connect(Number(target.port || 6379), target.hostname);
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      socket.destroy();
    });
    upstream.on('error', () => {});
    socket.on('close', () => upstream.destroy());
    socket.pipe(upstream).pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    cut() {
      isCut = true;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      isCut = false;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

let seq = 0;
function reserveRequest(keyId: string, now: number, rpm?: number): ReserveRequest {
  return {
    leaseId: `fault-${++seq}`,
    candidates: [{ keyId, limits: rpm === undefined ? {} : { rpm } }],
    estimatedTokens: 10,
    estimatedCostUsd: 0.01,
    now,
    windowMs: 60_000,
    day: '2026-11-25',
    month: '2026-11',
    dayEndsAt: now + 3_600_000,
    monthEndsAt: now + 86_400_000,
    leaseTtlMs: 30_000,
  };
}

function usage(id: string, time: number, keyId = 'k'): UsageRecord {
  return {
    id,
    time,
    day: '2026-11-25',
    month: '2026-11',
    keyId,
    keyAlias: keyId,
    provider: 'openai',
    inputTokens: 3,
    outputTokens: 4,
    costUsd: 0.01,
    status: 'ok',
  };
}

const snapshotQuery = { now: 1_000_300, windowMs: 60_000, day: '2026-11-25', month: '2026-11' };

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.skipIf(!available)('redisStore when Redis goes away', () => {
  const prefix = testPrefix();
  afterAll(() => dropPrefix(prefix));

  it('keeps answering from the fallback, then writes the outage usage back', {
    timeout: 20_000,
  }, async () => {
    const proxy = await startProxy(new URL(redisUrl));
    const timeoutMs = 300;
    // A second live process (direct connection): the fallback must take half of each limit.
    const peer: RedisStore = redisStore({ url: redisUrl, prefix });
    const store: RedisStore = redisStore({
      url: `redis://127.0.0.1:${proxy.port}`,
      prefix,
      commandTimeoutMs: timeoutMs,
    });
    const events: StoreEvent[] = [];
    store.subscribe((event) => events.push(event));
    try {
      await peer.init();
      await store.init();

      const held = await store.reserve(reserveRequest('k', 1_000_000));
      expect(held.ok).toBe(true);
      await store.appendUsage([usage('before-1', 1), usage('before-2', 2)]);

      proxy.cut();
      const slowest = { ms: 0 };
      const timed = async <T>(run: () => Promise<T>): Promise<T> => {
        const started = performance.now();
        const value = await run();
        slowest.ms = Math.max(slowest.ms, performance.now() - started);
        return value;
      };
      let granted = 0;
      for (let i = 0; i < 6; i++) {
        const result = await timed(() => store.reserve(reserveRequest('limited', 1_000_000 + i, 4)));
        if (result.ok) {
          granted += 1;
          // The usage rides on the settle, as the pool sends it: buffered with appendUsage's.
          const record = usage(`settle-${i}`, 20 + i, 'limited');
          const settle = { tokens: 5, costUsd: 0, now: 1_000_100, usage: record };
          expect((await timed(() => store.settle(result.lease.id, settle))).status).toBe('settled');
          expect((await timed(() => store.settle(result.lease.id, settle))).status).toBe('already-settled');
        }
        await timed(() => store.appendUsage([usage(`during-${i}`, 10 + i)]));
      }
      // A group's limits are divided too: rpm 4 over two keys of one organization grants 2 here.
      let grantedInGroup = 0;
      for (let i = 0; i < 6; i++) {
        const request = reserveRequest(`member-${i % 2}`, 1_000_000 + i);
        const candidates = request.candidates.map((c) => ({
          ...c,
          shared: { id: 'org', limits: { rpm: 4 } },
        }));
        const result = await timed(() => store.reserve({ ...request, candidates }));
        if (result.ok) {
          grantedInGroup += 1;
          expect(result.lease.sharedId).toBe('org');
        }
      }
      expect(grantedInGroup).toBe(2);
      // The lease taken before the outage settles from what this process remembers.
      const settled = await timed(() =>
        store.settle(held.ok ? held.lease.id : '', {
          tokens: 7,
          costUsd: 0,
          now: 1_000_200,
          usage: usage('held', 30),
        }),
      );
      expect(settled.status).toBe('settled');
      await timed(() => store.getKeyStates(['k']));
      expect(store.isDegraded).toBe(true);
      expect(events.filter((e) => e.type === 'degraded')).toHaveLength(1);
      // No background probe while this process cannot see the fleet's claims, even on a free slot.
      const probeSlot = { now: 1_000_300, ttlMs: 1_000 };
      expect(await store.claimProbe('probed', probeSlot)).toBe(false);
      // rpm 4 shared by two live processes: this one takes 2 while it cannot coordinate.
      expect(granted).toBe(2);
      // Generous bound (a loaded CI box): the point is "about the timeout", never a hang.
      expect(slowest.ms).toBeLessThan(timeoutMs + 700);

      proxy.restore();
      await until(() => events.some((e) => e.type === 'recovered'), 10_000);
      // 6 appendUsage calls, 2 fallback settles and the Redis lease's settle, each once.
      expect(events.find((e) => e.type === 'recovered')).toEqual({ type: 'recovered', flushedUsage: 9 });
      expect(store.isDegraded).toBe(false);
      expect(await store.claimProbe('probed', probeSlot)).toBe(true);
      const [total] = await store.queryUsage({});
      expect(total?.requests).toBe(11);
      expect(await store.queryUsage({ keyId: 'limited' })).toMatchObject([{ requests: 2 }]);
      // The replayed settle moved the Redis counters: the lease is no longer in flight there.
      expect((await peer.usageSnapshot(['k'], snapshotQuery))[0]).toMatchObject({
        inFlight: 0,
        tokensToday: 7,
      });
      // The settle made during the outage was replayed: the lease is gone fleet-wide.
      expect(await peer.getLease(held.ok ? held.lease.id : '')).toBeUndefined();
    } finally {
      await store.close();
      await peer.close();
      proxy.close();
    }
  });
});
