import { randomBytes } from 'node:crypto';
import { createKeyPool } from '@keypool/core';
import type { Store, StoreEvent } from '@keypool/spec';
import { isRedisServerAvailable, startRedisCluster, testStore, uniqueName } from '@keypool/testing';
import { Cluster } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { redisStore } from './index.js';

// A real Redis Cluster (three masters started from redis-server for this file): the store's
// hash tag must keep every key of a prefix in one slot, so its scripts and pipelines run there.
const cluster = (await isRedisServerAvailable()) ? await startRedisCluster() : undefined;
const clusterClient = () => new Cluster([...cluster!.nodes], { redisOptions: { commandTimeout: 2_000 } });

const prefixes = new WeakMap<Store, string>();

/** A store on its own Cluster client, which close() disconnects (the store never closes a user's client). */
function clusterStore(prefix: string): Store {
  const client = clusterClient();
  const store = redisStore({ client, prefix });
  prefixes.set(store, prefix);
  const close = store.close.bind(store);
  store.close = async () => {
    await close();
    client.disconnect();
  };
  return store;
}

/** Keys under `{prefix}` on each master, by node index. */
async function keysByNode(prefix: string): Promise<string[][]> {
  const client = clusterClient();
  try {
    await client.ping(); // learns the slot map
    return await Promise.all(
      client.nodes('master').map(async (node) => {
        const found: string[] = [];
        for await (const batch of node.scanStream({ match: `{${prefix}}*`, count: 1_000 })) {
          found.push(...(batch as string[]));
        }
        return { port: node.options.port, found };
      }),
    ).then((lists) => cluster!.nodes.map(({ port }) => lists.find((l) => l.port === port)?.found ?? []));
  } finally {
    client.disconnect();
  }
}

/** A prefix whose hash tag lands on master `node`. */
async function prefixOnNode(node: number): Promise<string> {
  for (;;) {
    const prefix = uniqueName('kp_cluster');
    if ((await cluster!.nodeOf(`{${prefix}}`)) === node) return prefix;
  }
}

describe.skipIf(!cluster)('Redis Cluster', () => {
  afterAll(() => cluster?.stop());

  testStore('redis cluster', {
    create: async () => clusterStore(uniqueName('kp_cluster')),
    // A second process, in effect: its own Cluster client on the same prefix.
    async peer(of) {
      return clusterStore(prefixes.get(of)!);
    },
  });

  it('keeps every key of a pool in its hash tag slot, whichever master serves it', async () => {
    for (const node of [1, 2]) {
      const prefix = await prefixOnNode(node);
      const store = clusterStore(prefix);
      const pool = await createKeyPool({
        store,
        masterKey: randomBytes(32).toString('base64'),
        keys: [
          { provider: 'openai', secret: `sk-cluster-a-${'0'.repeat(32)}`, limits: { rpm: 10, tpm: 10_000 } },
          {
            provider: 'openai',
            secret: `sk-cluster-b-${'0'.repeat(32)}`,
            limits: { rpm: 10 },
            organization: 'org-x',
            orgLimits: { rpm: 15 },
          },
        ],
      });
      try {
        for (let i = 0; i < 6; i++) {
          const lease = await pool.acquire({
            provider: 'openai',
            model: 'gpt-4o-mini',
            estimatedTokens: 100,
          });
          await lease.release({ ok: true, usage: { inputTokens: 40, outputTokens: 20 } });
        }
        const failing = await pool.acquire({ provider: 'openai' });
        await failing.release({ ok: false, status: 429, headers: { 'retry-after': '1' } });
        const usage = await store.queryUsage({ from: 0, to: Date.now() + 1 });
        expect(usage[0]?.requests).toBe(7);
        expect(pool.health().keys.every((key) => key.requests > 0 || key.inFlight === 0)).toBe(true);

        const byNode = await keysByNode(prefix);
        // Records, fingerprints, key hashes, windows, usage, audit: all on the one master.
        expect(byNode[node]!.length).toBeGreaterThan(6);
        expect(byNode.filter((_, i) => i !== node).flat()).toEqual([]);
      } finally {
        await pool.close();
      }
    }
  });

  it('init() refuses a cluster where any master may evict any key', async () => {
    const admin = clusterClient();
    try {
      await admin.ping();
      const [, second] = admin.nodes('master');
      await second!.config('SET', 'maxmemory-policy', 'allkeys-lfu');
      const store = clusterStore(uniqueName('kp_cluster'));
      await expect(store.init?.()).rejects.toThrow(/maxmemory-policy allkeys-lfu/);
      await store.close();
      await second!.config('SET', 'maxmemory-policy', 'noeviction');
    } finally {
      admin.disconnect();
    }
  });

  it("tells another process's store that the keys changed, over the Cluster's pub/sub", async () => {
    const prefix = uniqueName('kp_cluster');
    const writer = clusterStore(prefix);
    const reader = clusterStore(prefix);
    await Promise.all([writer.init?.(), reader.init?.()]);
    const events: StoreEvent[] = [];
    try {
      reader.subscribe?.((event) => events.push(event));
      // The subscriber connects lazily: write until the notice gets through (one write is enough once it has).
      const deadline = Date.now() + 5_000;
      let n = 0;
      while (!events.some((e) => e.type === 'keys-changed') && Date.now() < deadline) {
        await writer.setMeta?.(`touch-${n++}`, '1');
        await writer.putKey({
          id: 'key-1',
          alias: 'k1',
          provider: 'openai',
          sealedSecret: 'sealed',
          masterKeyId: 'mk',
          fingerprint: `fp-${n}`,
          maskedSecret: 'sk-...0000',
          priority: 0,
          weight: 1,
          limits: {},
          enabled: true,
          createdAt: 1,
          updatedAt: n,
        });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(events.some((e) => e.type === 'keys-changed')).toBe(true);
    } finally {
      await reader.close();
      await writer.close();
    }
  });
});
