import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeyPool } from '@keypool/core';
import { memoryStore } from '@keypool/store-memory';
import supertest from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdminApp, createAdminApp } from './app.js';
import { createLogger } from './logger.js';

describe('dashboard at /', () => {
  let dir: string;
  let app: AdminApp;
  let close: () => Promise<void>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keypool-dashboard-'));
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>keypool</title><div id="root"></div>');
    writeFileSync(join(dir, 'assets', 'app-1234.js'), 'console.log(1)');
    const pool = await createKeyPool({ store: memoryStore() });
    app = createAdminApp({ pool, dashboardDir: dir, logger: createLogger({ level: 'silent' }) });
    close = async () => {
      await app.close({ graceMs: 0 });
      await pool.close();
    };
  });

  afterAll(async () => {
    await close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves index.html at / and at client-side routes, uncached', async () => {
    for (const path of ['/', '/keys/key_123', '/usage']) {
      const response = await supertest(app).get(path).expect(200);
      expect(response.text).toContain('<div id="root">');
      expect(response.headers['cache-control']).toBe('no-cache');
    }
  });

  it('serves hashed assets as immutable', async () => {
    const response = await supertest(app).get('/assets/app-1234.js').expect(200);
    expect(response.headers['cache-control']).toContain('immutable');
  });

  it('leaves the API alone: unknown API paths stay JSON 404s, API routes still need a token', async () => {
    const missing = await supertest(app).get('/v1/nope').expect(404);
    expect(missing.headers['content-type']).toMatch(/json/);
    await supertest(app).get('/v1/health').expect(401);
    await supertest(app).get('/healthz').expect(200);
  });
});
