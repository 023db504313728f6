import { createKeyPool } from '@keypool/core';
import type { Store } from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import supertest from 'supertest';
import { describe, expect, it } from 'vitest';
import { createAdminApp } from './app.js';
import { createToken } from './auth.js';
import { createLogger } from './logger.js';

async function appOn(store: Store) {
  const pool = await createKeyPool({ store });
  const app = createAdminApp({ pool, logger: createLogger({ level: 'silent' }) });
  return {
    http: supertest(app),
    async close() {
      await app.close({ graceMs: 0 });
      await pool.close();
    },
  };
}

describe('auth with the default token cache', () => {
  it('a deleted token stops working at once on the instance that deleted it', async () => {
    const store = memoryStore();
    const admin = (await createToken(store, { name: 'admin', role: 'admin' })).token;
    const viewer = await createToken(store, { name: 'v', role: 'viewer' });
    const { http, close } = await appOn(store);
    const as = (token: string) => http.get('/v1/me').set('authorization', `Bearer ${token}`);
    expect((await as(viewer.token)).status).toBe(200);
    expect((await as(viewer.token)).status).toBe(200); // cached
    await http.delete(`/v1/tokens/${viewer.record.id}`).set('authorization', `Bearer ${admin}`).expect(204);
    expect((await as(viewer.token)).status).toBe(401);
    await close();
  });

  it('refuses a token a lax store matched to another record', async () => {
    const store = memoryStore();
    const real = await createToken(store, { name: 'real', role: 'admin' });
    // A store whose lookup ignores the hash: the constant-time check must still refuse.
    const lax: Store = Object.assign(Object.create(store) as Store, {
      getTokenByHash: async () => real.record,
    });
    const { http, close } = await appOn(lax);
    for (let i = 0; i < 2; i++) {
      const res = await http.get('/v1/me').set('authorization', 'Bearer kp_not-the-real-one');
      expect(res.status).toBe(401);
    }
    expect((await http.get('/v1/me').set('authorization', `Bearer ${real.token}`)).body.name).toBe('real');
    await close();
  });
});
