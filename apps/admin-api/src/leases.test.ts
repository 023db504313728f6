import { createKeyPool, generateMasterKey } from '@keypool/core';
import { openaiProvider } from '@keypool/provider-openai';
import { memoryStore } from '@keypool/store-memory';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken } from './auth.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';
import { addKey, type Harness, SECRETS, startHarness } from './test-fixture.js';

describe('lease expiry on SQLite', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness('sqlite', { leaseTtlMs: 300 });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('an expired lease frees its key, and a late report is still recorded as usage', async () => {
    const key = await addKey(h, 'a', { limits: { rpm: 100 } });
    const from = Date.now() - 1;
    const lease = await h
      .as('service', 'post', '/v1/leases')
      .send({ provider: 'openai', estimatedTokens: 10 });
    expect(lease.status).toBe(201);
    expect(lease.body.expiresAt - Date.now()).toBeLessThanOrEqual(300);
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(h.pool.stats().inFlight).toBe(0);
    const late = await h.as('service', 'post', `/v1/leases/${lease.body.leaseId}/report`).send({
      ok: true,
      usage: { inputTokens: 7, outputTokens: 5 },
    });
    expect(late.status).toBe(200);
    expect(late.body).toMatchObject({ recorded: true, expired: true });
    const usage = await h.as('viewer', 'get', `/v1/usage?from=${from}&keyId=${key.id}`);
    expect(usage.body.rows[0]).toMatchObject({ requests: 1, inputTokens: 7, outputTokens: 5 });
  });
});

describe('graceful shutdown', () => {
  it('finishes in-flight requests, waits for open leases to be reported, then closes the pool', async () => {
    const store = memoryStore();
    const masterKey = generateMasterKey();
    const pool = await createKeyPool({
      store,
      plugins: [openaiProvider()],
      masterKey,
      keys: [{ provider: 'openai', secret: SECRETS.a, alias: 'a' }],
    });
    const { token } = await createToken(store, { name: 'svc', role: 'service' });
    const running = await startServer({
      pool,
      port: 0,
      logger: createLogger({ level: 'silent' }),
      shutdownGraceMs: 5000,
    });
    expect(running.adminToken).toMatch(/^kp_/);
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const lease = (await (
      await fetch(`${running.url}/v1/leases`, {
        method: 'POST',
        headers: auth,
        body: '{"provider":"openai"}',
      })
    ).json()) as { leaseId: string };
    const closing = running.close();
    let closed = false;
    void closing.then(() => {
      closed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Shutdown waits for this lease; new leases are refused meanwhile.
    expect(closed).toBe(false);
    expect((await fetch(`${running.url}/readyz`)).status).toBe(503);
    const refused = await fetch(`${running.url}/v1/leases`, {
      method: 'POST',
      headers: auth,
      body: '{"provider":"openai"}',
    });
    expect(refused.status).toBe(503);
    const report = await fetch(`${running.url}/v1/leases/${lease.leaseId}/report`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ ok: true, usage: { inputTokens: 1, outputTokens: 2 } }),
    });
    expect(report.status).toBe(200);
    expect(((await report.json()) as { recorded: boolean }).recorded).toBe(true);
    await closing;
    expect(closed).toBe(true);
    await expect(fetch(`${running.url}/healthz`)).rejects.toThrow();
  });
});
