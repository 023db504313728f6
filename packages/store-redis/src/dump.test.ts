import {
  fingerprintSecret,
  generateMasterKey,
  maskSecret,
  parseMasterKey,
  sealedKeyId,
  sealSecret,
} from '@keypool/core';
import type { KeyRecord } from '@keypool/spec';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { redisStore } from './index.js';
import { dropPrefix, isRedisAvailable, keysUnder, redisUrl, testPrefix } from './test-fixture.js';

const available = await isRedisAvailable();

describe.skipIf(!available)('what redisStore writes to Redis', () => {
  const prefix = testPrefix();
  afterAll(() => dropPrefix(prefix));

  it('never holds a plaintext secret, in any key, value or dump', async () => {
    const master = parseMasterKey(generateMasterKey());
    const secrets = ['sk-proj-Plaintext0123456789abcdefXYZ', 'sk-ant-api03-AnotherPlaintextSecret9876'];
    const store = redisStore({ url: redisUrl, prefix });
    const raw = new Redis(redisUrl);
    try {
      const records: KeyRecord[] = secrets.map((secret, i) => {
        const sealedSecret = sealSecret(secret, master);
        return {
          id: `key-${i}`,
          alias: `alias-${i}`,
          provider: i === 0 ? 'openai' : 'anthropic',
          sealedSecret,
          masterKeyId: sealedKeyId(sealedSecret),
          fingerprint: fingerprintSecret(secret, master),
          maskedSecret: maskSecret(secret),
          priority: 0,
          weight: 1,
          limits: { rpm: 10 },
          enabled: true,
          createdAt: i,
          updatedAt: i,
        };
      });
      for (const record of records) await store.putKey(record);
      // Touch every kind of record and hot state too.
      const now = Date.now();
      const lease = await store.reserve({
        leaseId: 'lease-dump',
        candidates: records.map((r) => ({ keyId: r.id, limits: r.limits })),
        estimatedTokens: 10,
        estimatedCostUsd: 0.01,
        now,
        windowMs: 60_000,
        day: '2026-11-25',
        month: '2026-11',
        dayEndsAt: now + 3_600_000,
        monthEndsAt: now + 86_400_000,
        leaseTtlMs: 30_000,
      });
      expect(lease.ok).toBe(true);
      await store.updateKeyState('key-1', { set: { coolingUntil: now + 1_000 }, now });
      await store.appendAudit({ id: 'a', time: now, actor: 'cli', action: 'key.create', target: 'key-0' });
      await store.setMeta('canary', 'sealed-canary');

      const keys = await keysUnder(raw, prefix);
      expect(keys.length).toBeGreaterThan(5);
      const dumped: string[] = [];
      for (const key of keys) {
        dumped.push(key);
        const dump = await raw.dumpBuffer(key);
        if (dump) dumped.push(dump.toString('latin1'));
        const type = await raw.type(key);
        if (type === 'string') dumped.push((await raw.get(key)) ?? '');
        if (type === 'hash') dumped.push(JSON.stringify(await raw.hgetall(key)));
        if (type === 'zset') dumped.push(JSON.stringify(await raw.zrange(key, '0', '-1', 'WITHSCORES')));
      }
      const all = dumped.join('\n');
      expect(all).toContain(records[0]!.sealedSecret); // the dump is real
      for (const secret of secrets) {
        expect(all).not.toContain(secret);
        // Nor any long piece of it (the masked form keeps only a prefix and 4 characters).
        expect(all).not.toContain(secret.slice(8, 20));
      }
    } finally {
      await store.close();
      raw.disconnect();
    }
  });
});
