import { createKeyPool } from '@keypool/core';
import { openaiProvider } from '@keypool/provider-openai';
import type { KeyPool } from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import supertest from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdminApp, createAdminApp } from './app.js';
import { createToken } from './auth.js';
import { createLogger } from './logger.js';

const COUNT = 500;
const secretOf = (i: number) => `sk-many-${String(i).padStart(4, '0')}-${'x'.repeat(24)}`;

describe(`GET /v1/keys with ${COUNT} keys`, () => {
  let pool: KeyPool;
  let app: AdminApp;
  let token: string;

  beforeAll(async () => {
    const store = memoryStore();
    pool = await createKeyPool({
      store,
      plugins: [openaiProvider()],
      keys: Array.from({ length: COUNT }, (_, i) => ({
        provider: 'openai',
        alias: `many-${i}`,
        secret: secretOf(i),
      })),
    });
    app = createAdminApp({ pool, logger: createLogger({ level: 'silent' }) });
    token = (await createToken(store, { name: 'viewer', role: 'viewer' })).token;
  });

  afterAll(async () => {
    await app?.close({ graceMs: 0 });
    await pool?.close();
  });

  it('lists every key with its live status, masked', async () => {
    await pool.disableKey(pool.keys().find((k) => k.alias === 'many-7')!.id, 'test');
    const res = await supertest(app).get('/v1/keys').set('authorization', `Bearer ${token}`);
    expect(res.status).toBe(200);
    const keys = res.body.keys as { alias: string; status: string }[];
    expect(keys).toHaveLength(COUNT);
    expect(keys.find((k) => k.alias === 'many-7')?.status).toBe('disabled');
    expect(keys.filter((k) => k.status === 'active')).toHaveLength(COUNT - 1);
    expect(res.text).not.toContain(secretOf(0));
    expect(res.text).not.toContain(secretOf(COUNT - 1));
  });
});
