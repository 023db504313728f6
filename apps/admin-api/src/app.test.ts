import supertest from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminApp } from './app.js';
import { createLogger } from './logger.js';
import {
  addKey,
  type Harness,
  SECRETS,
  type StoreKind,
  startHarness,
  storeAvailable,
} from './test-fixture.js';

const KINDS: StoreKind[] = ['sqlite', 'postgres'];
const ROLES = ['admin', 'operator', 'viewer', 'service'] as const;

function noSecretIn(text: string) {
  for (const secret of Object.values(SECRETS)) expect(text).not.toContain(secret);
}

/** A call through the mock upstream the way a client without the SDK makes it. */
async function callUpstream(h: Harness, secret: string) {
  const res = await fetch(`${h.mock.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] }),
  });
  const body = (await res.json()) as { usage?: { prompt_tokens: number; completion_tokens: number } };
  return { status: res.status, headers: Object.fromEntries(res.headers), usage: body.usage };
}

for (const kind of KINDS) {
  const available = await storeAvailable(kind);
  describe.skipIf(!available)(`admin API on ${kind}`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(kind);
    });
    afterAll(async () => {
      await h?.close();
    });

    it('answers liveness, readiness and the OpenAPI document without a token', async () => {
      expect((await h.http.get('/healthz')).body).toEqual({ status: 'ok' });
      expect((await h.http.get('/readyz')).status).toBe(200);
      expect((await h.http.get('/v1/openapi.json')).status).toBe(200);
    });

    it('keys: create (write-only secret), list, read, update, disable, enable, reset, test, delete', async () => {
      const created = await h.as('admin', 'post', '/v1/keys').send({
        provider: 'openai',
        secret: SECRETS.a,
        alias: 'a',
        baseURL: `${h.mock.url}/v1`,
        limits: { rpm: 100 },
      });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({
        alias: 'a',
        provider: 'openai',
        maskedSecret: 'sk-test-…1111',
        status: 'active',
      });
      expect(created.body).not.toHaveProperty('secret');
      expect(created.body).not.toHaveProperty('sealedSecret');
      noSecretIn(created.text);
      const id = created.body.id as string;

      const list = await h.as('viewer', 'get', '/v1/keys');
      expect(list.body.keys.map((k: { alias: string }) => k.alias)).toContain('a');
      noSecretIn(list.text);
      expect((await h.as('viewer', 'get', `/v1/keys/${id}`)).body.alias).toBe('a');

      const renamed = await h.as('admin', 'patch', `/v1/keys/${id}`).send({ priority: 1 });
      expect(renamed.body).toMatchObject({ priority: 1, maskedSecret: 'sk-test-…1111' });

      const disabled = await h.as('operator', 'post', `/v1/keys/${id}/disable`).send({ reason: 'rotating' });
      expect(disabled.body).toMatchObject({ enabled: false, disabledReason: 'rotating', status: 'disabled' });
      const enabled = await h.as('operator', 'post', `/v1/keys/${id}/enable`);
      expect(enabled.body).toMatchObject({ enabled: true, status: 'active' });
      expect((await h.as('operator', 'post', `/v1/keys/${id}/reset`).send({ counters: true })).status).toBe(
        200,
      );

      const probed = await h.as('operator', 'post', `/v1/keys/${id}/test`);
      expect(probed.status).toBe(200);
      expect(probed.body.ok).toBe(true);
      expect(h.mock.counts.requests('a')).toBeGreaterThan(0);

      const duplicate = await h
        .as('admin', 'post', '/v1/keys')
        .send({ provider: 'openai', secret: SECRETS.a });
      expect(duplicate.status).toBe(409);
      expect(duplicate.body.error.code).toBe('KEYPOOL_DUPLICATE_KEY');
      noSecretIn(duplicate.text);

      expect((await h.as('admin', 'delete', `/v1/keys/${id}`)).status).toBe(204);
      const gone = await h.as('viewer', 'get', `/v1/keys/${id}`);
      expect(gone.status).toBe(404);
      expect(gone.body.error).toMatchObject({ code: 'KEYPOOL_NOT_FOUND', field: 'id' });
    });

    it('a key test reports an upstream refusal as ok: false without the secret', async () => {
      const key = await addKey(h, 'c');
      h.mock.setScript('c', [401]);
      const res = await h.as('admin', 'post', `/v1/keys/${key.id}/test`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ ok: false, status: 401, recovered: [] });
      noSecretIn(res.text);
      // A refused test is only reported: the key stays active.
      expect((await h.as('viewer', 'get', `/v1/keys/${key.id}`)).body.status).toBe('active');
      await h.as('admin', 'delete', `/v1/keys/${key.id}`);
    });

    it('a passing key test brings a refused key back as a background probe would, audited by the operator', async () => {
      const key = await addKey(h, 'c');
      // A pool of this key alone, so the lease below is on it whatever else the store holds.
      await h.as('admin', 'post', '/v1/pools').send({ id: 'recover', name: 'Recover', keyIds: [key.id] });
      const recoverLease = { pool: 'recover', provider: 'openai', model: 'gpt-4o-mini' };
      const lease = await h.as('service', 'post', '/v1/leases').send(recoverLease);
      expect(lease.status).toBe(201);
      // The upstream refused the key on a real call (401): the pool takes it out as invalid.
      await h
        .as('service', 'post', `/v1/leases/${lease.body.leaseId}/report`)
        .send({ ok: false, status: 401 })
        .expect(200);
      const statusOf = async () => (await h.as('viewer', 'get', `/v1/keys/${key.id}`)).body.status;
      expect(await statusOf()).toBe('invalid');
      const probeAudit = async () =>
        (await h.as('viewer', 'get', `/v1/audit?target=${key.id}&action=key.probe`)).body.entries;

      // Still refused: the test fails and the key stays out.
      h.mock.setScript('c', [401]);
      const refused = await h.as('operator', 'post', `/v1/keys/${key.id}/test`);
      expect(refused.body).toMatchObject({ ok: false, status: 401, recovered: [] });
      expect(await statusOf()).toBe('invalid');
      expect(await probeAudit()).toEqual([]);
      const noLease = await h.as('service', 'post', '/v1/leases').send(recoverLease);
      expect(noLease.status).toBe(429);

      // Accepted again: the test brings it back, says so, and the live stream tells the dashboard.
      const address = h.server.address() as { port: number };
      const controller = new AbortController();
      const stream = await fetch(`http://127.0.0.1:${address.port}/v1/events`, {
        headers: { authorization: `Bearer ${h.tokens.viewer}` },
        signal: controller.signal,
      });
      const reader = stream.body!.getReader();
      const passed = await h.as('operator', 'post', `/v1/keys/${key.id}/test`);
      expect(passed.status).toBe(200);
      expect(passed.body).toMatchObject({ ok: true, recovered: ['invalid'] });
      noSecretIn(passed.text);
      let text = '';
      while (!text.includes('event: probe:passed')) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      controller.abort();
      expect(text).toMatch(/event: probe:passed\ndata: \{[^\n]*"alias":"c"[^\n]*"reasons":\["invalid"\]/);
      noSecretIn(text);
      expect(await statusOf()).toBe('active');
      const entries = await probeAudit();
      expect(entries).toEqual([
        expect.objectContaining({
          actor: expect.stringContaining('operator-test'),
          action: 'key.probe',
          details: expect.objectContaining({ alias: 'c', ok: true, reasons: ['invalid'] }),
        }),
      ]);
      noSecretIn(JSON.stringify(entries));
      const tests = (await h.as('viewer', 'get', `/v1/audit?target=${key.id}&action=key.test`)).body.entries;
      expect(tests.map((e: { details: { ok: boolean } }) => e.details.ok).sort()).toEqual([false, true]);

      // Back in service; a key with nothing to clear passes without another entry.
      const served = await h.as('service', 'post', '/v1/leases').send(recoverLease);
      expect(served.status).toBe(201);
      await h
        .as('service', 'post', `/v1/leases/${served.body.leaseId}/report`)
        .send({ ok: true })
        .expect(200);
      expect((await h.as('operator', 'post', `/v1/keys/${key.id}/test`)).body).toMatchObject({
        ok: true,
        recovered: [],
      });
      expect(await probeAudit()).toHaveLength(1);

      await h.as('admin', 'delete', '/v1/pools/recover');
      await h.as('admin', 'delete', `/v1/keys/${key.id}`);
    });

    it('imports env text and reports added, duplicate and invalid entries without echoing secrets', async () => {
      const env = [
        `OPENAI_API_KEYS=${SECRETS.b},${SECRETS.c}`,
        `OPENAI_API_KEY_FALLBACK_1=${SECRETS.b}`,
        'ANTHROPIC_API_KEY="has a space"',
        '# a comment',
      ].join('\n');
      const res = await h.as('admin', 'post', '/v1/keys/import').send({ env });
      expect(res.status).toBe(200);
      noSecretIn(res.text);
      expect(res.body.added).toHaveLength(2);
      expect(res.body.invalid.map((i: { source: string }) => i.source)).toContain('ANTHROPIC_API_KEY');
      const again = await h
        .as('admin', 'post', '/v1/keys/import')
        .send({ env: `OPENAI_API_KEY=${SECRETS.b}` });
      expect(again.body.added).toHaveLength(0);
      expect(again.body.duplicates).toHaveLength(1);
      expect(again.body.duplicates[0].existingAlias).toBeTruthy();
      noSecretIn(again.text);
      for (const k of res.body.added) await h.as('admin', 'delete', `/v1/keys/${k.id}`);
    });

    it('pools: create with keys, read, update, refuse unknown keys, delete', async () => {
      const key = await addKey(h, 'b');
      const created = await h
        .as('admin', 'post', '/v1/pools')
        .send({ id: 'batch', name: 'Batch jobs', keyIds: [key.id] });
      expect(created.status).toBe(201);
      expect(created.body.keys).toEqual([
        expect.objectContaining({ id: key.id, alias: 'b', status: 'active' }),
      ]);
      expect(
        (await h.as('viewer', 'get', '/v1/pools')).body.pools.map((p: { id: string }) => p.id),
      ).toContain('batch');
      const patched = await h.as('admin', 'patch', '/v1/pools/batch').send({ description: 'nightly' });
      expect(patched.body).toMatchObject({ description: 'nightly', keyIds: [key.id] });
      const bad = await h.as('admin', 'post', '/v1/pools').send({ name: 'x', keyIds: ['key_nope'] });
      expect(bad.status).toBe(400);
      expect(bad.body.error.field).toBe('body.keyIds.0');
      expect((await h.as('admin', 'post', '/v1/pools').send({ id: 'batch', name: 'again' })).status).toBe(
        409,
      );
      expect((await h.as('admin', 'delete', '/v1/pools/batch')).status).toBe(204);
      expect((await h.as('viewer', 'get', '/v1/pools/batch')).status).toBe(404);
      await h.as('admin', 'delete', `/v1/keys/${key.id}`);
    });

    it('GET /v1/me names the calling token for every role, never its value', async () => {
      for (const role of ROLES) {
        const res = await h.as(role, 'get', '/v1/me');
        expect(res.status, role).toBe(200);
        expect(res.body).toEqual({ tokenId: expect.stringMatching(/^tok_/), name: `${role}-test`, role });
        expect(res.text).not.toContain(h.tokens[role]);
      }
      const scoped = await h.as('scoped', 'get', '/v1/me');
      expect(scoped.body).toMatchObject({ name: 'scoped-test', role: 'service', pools: ['tenant-a'] });
      expect((await h.http.get('/v1/me')).status).toBe(401);
      const doc = (await h.http.get('/v1/openapi.json')).body;
      expect(doc.paths['/v1/me'].get.responses['200'].content['application/json'].schema.$ref).toBe(
        '#/components/schemas/Me',
      );
    });

    it('tokens: created once in clear, listed without hashes, deleted; the last admin token stays', async () => {
      const created = await h.as('admin', 'post', '/v1/tokens').send({ name: 'ci', role: 'viewer' });
      expect(created.status).toBe(201);
      expect(created.body.token).toMatch(/^kp_/);
      // The audit entry keeps who did it (an admin) apart from what was created (a viewer token).
      const entry = (await h.as('viewer', 'get', `/v1/audit?target=${created.body.id}`)).body.entries[0];
      expect(entry).toMatchObject({ action: 'token.create', actor: expect.stringContaining('admin-test') });
      expect(entry.details).toMatchObject({ name: 'ci', role: 'viewer', actorRole: 'admin' });
      expect(entry.details.actorTokenId).toMatch(/^tok_/);
      const list = await h.as('admin', 'get', '/v1/tokens');
      expect(list.text).not.toContain(created.body.token);
      expect(list.text).not.toContain('tokenHash');
      expect(
        (await h.http.get('/v1/health').set('authorization', `Bearer ${created.body.token}`)).status,
      ).toBe(200);
      expect((await h.as('admin', 'delete', `/v1/tokens/${created.body.id}`)).status).toBe(204);
      expect(
        (await h.http.get('/v1/health').set('authorization', `Bearer ${created.body.token}`)).status,
      ).toBe(401);
      const scopedWrongRole = await h
        .as('admin', 'post', '/v1/tokens')
        .send({ name: 'x', role: 'viewer', pools: ['tenant-a'] });
      expect(scopedWrongRole.body.error.field).toBe('body.pools');
      const admin = list.body.tokens.find((t: { name: string }) => t.name === 'admin-test');
      const last = await h.as('admin', 'delete', `/v1/tokens/${admin.id}`);
      expect(last.status).toBe(409);
    });

    it('leases: usage reported through the API matches what the upstream counted', async () => {
      const key = await addKey(h, 'a');
      const before = h.mock.counts.tokens('a');
      const beforeRequests = h.mock.counts.requests('a');
      const from = Date.now() - 1;
      for (let i = 0; i < 3; i++) {
        const lease = await h
          .as('service', 'post', '/v1/leases')
          .send({ provider: 'openai', model: 'gpt-4o-mini', estimatedTokens: 50 });
        expect(lease.status).toBe(201);
        expect(lease.body).toMatchObject({ keyAlias: 'a', secret: SECRETS.a });
        const call = await callUpstream(h, lease.body.secret);
        const report = await h.as('service', 'post', `/v1/leases/${lease.body.leaseId}/report`).send({
          ok: true,
          status: call.status,
          usage: { inputTokens: call.usage!.prompt_tokens, outputTokens: call.usage!.completion_tokens },
          latencyMs: 12,
          headers: call.headers,
        });
        expect(report.status).toBe(200);
        expect(report.body).toMatchObject({ recorded: true, expired: false });
      }
      const counted = h.mock.counts.tokens('a');
      const usage = await h.as('viewer', 'get', `/v1/usage?from=${from}&groupBy=key&keyId=${key.id}`);
      expect(usage.status).toBe(200);
      expect(usage.body.rows).toEqual([
        expect.objectContaining({
          keyId: key.id,
          keyAlias: 'a',
          requests: h.mock.counts.requests('a') - beforeRequests,
          inputTokens: counted.input - before.input,
          outputTokens: counted.output - before.output,
        }),
      ]);
      const byDay = await h.as(
        'viewer',
        'get',
        `/v1/usage?from=${new Date().toISOString().slice(0, 10)}&groupBy=day,model`,
      );
      expect(byDay.body.rows[0]).toMatchObject({ model: 'gpt-4o-mini' });
      await h.as('admin', 'delete', `/v1/keys/${key.id}`);
    });

    it('leases: reported Anthropic prompt-cache writes are priced at their own rates', async () => {
      const created = await h.as('admin', 'post', '/v1/keys').send({
        provider: 'anthropic',
        secret: 'sk-ant-api03-cachecachecachecache0001',
        alias: 'claude',
        baseURL: h.mock.url,
      });
      expect(created.status).toBe(201);
      const from = Date.now() - 1;
      const lease = await h
        .as('service', 'post', '/v1/leases')
        .send({ provider: 'anthropic', model: 'claude-haiku-4-5', estimatedTokens: 50 });
      expect(lease.status).toBe(201);
      const report = await h.as('service', 'post', `/v1/leases/${lease.body.leaseId}/report`).send({
        ok: true,
        usage: {
          inputTokens: 1000,
          outputTokens: 100,
          cachedInputTokens: 0,
          cacheWriteInputTokens: 800,
          cacheWrite1hInputTokens: 200,
        },
      });
      expect(report.status).toBe(200);
      const usage = await h.as('viewer', 'get', `/v1/usage?from=${from}&keyId=${created.body.id}`);
      // claude-haiku-4-5 per MTok: 200 plain input at $1, 600 5-minute writes at $1.25, 200 1-hour writes at $2, 100 output at $5.
      expect(usage.body.rows[0]).toMatchObject({ requests: 1, inputTokens: 1000, outputTokens: 100 });
      expect(usage.body.rows[0].costUsd).toBeCloseTo((200 + 600 * 1.25 + 200 * 2 + 100 * 5) / 1_000_000, 12);
      await h.as('admin', 'delete', `/v1/keys/${created.body.id}`);
    });

    it('leases: scoped service tokens only lease from their pools; other roles may not lease', async () => {
      const key = await addKey(h, 'b');
      await h.as('admin', 'patch', '/v1/pools/tenant-a').send({ keyIds: [key.id] });
      const noPool = await h.as('scoped', 'post', '/v1/leases').send({ provider: 'openai' });
      expect(noPool.status).toBe(403);
      expect(noPool.body.error.field).toBe('body.pool');
      expect(
        (await h.as('scoped', 'post', '/v1/leases').send({ provider: 'openai', pool: 'other' })).status,
      ).toBe(403);
      const ok = await h.as('scoped', 'post', '/v1/leases').send({ provider: 'openai', pool: 'tenant-a' });
      expect(ok.status).toBe(201);
      const foreign = await h
        .as('service', 'post', `/v1/leases/${ok.body.leaseId}/report`)
        .send({ ok: true });
      expect(foreign.status).toBe(403);
      const failed = await h
        .as('scoped', 'post', `/v1/leases/${ok.body.leaseId}/report`)
        .send({ ok: false, status: 500 });
      expect(failed.body).toMatchObject({ recorded: true, failure: 'server' });
      const twice = await h.as('scoped', 'post', `/v1/leases/${ok.body.leaseId}/report`).send({ ok: true });
      expect(twice.status).toBe(404);
      expect(twice.body.error.code).toBe('KEYPOOL_UNKNOWN_LEASE');
      expect((await h.as('admin', 'post', '/v1/leases').send({ provider: 'openai' })).status).toBe(403);
      const unknownPool = await h
        .as('service', 'post', '/v1/leases')
        .send({ provider: 'openai', pool: 'nope' });
      expect(unknownPool.status).toBe(404);
      await h.as('admin', 'patch', '/v1/pools/tenant-a').send({ keyIds: [] });
      await h.as('admin', 'delete', `/v1/keys/${key.id}`);
    });

    it('leases: no key available is a 429 naming why, not a 5xx', async () => {
      const res = await h.as('service', 'post', '/v1/leases').send({ provider: 'anthropic' });
      expect(res.status).toBe(429);
      expect(res.body.error.code).toBe('KEYPOOL_NO_KEY_AVAILABLE');
    });

    it('health, metrics (by alias, never secret), audit (actor, never secret) and server-sent events', async () => {
      const key = await addKey(h, 'c');
      const health = await h.as('viewer', 'get', '/v1/health');
      expect(health.body.keys.find((k: { alias: string }) => k.alias === 'c')).toMatchObject({
        status: 'active',
      });
      const metrics = await h.as('viewer', 'get', '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.text).toContain('keypool_http_requests_total');
      expect(metrics.text).toContain('keypool_key_status{key="c",status="active"} 1');
      expect(metrics.text).toContain('keypool_key_breaker_state{key="c"} 0');
      noSecretIn(metrics.text);

      const audit = await h.as('viewer', 'get', `/v1/audit?target=${key.id}`);
      expect(audit.body.entries[0]).toMatchObject({ action: 'key.create', target: key.id });
      expect(audit.body.entries[0].actor).toContain('admin-test');
      const all = await h.as('viewer', 'get', '/v1/audit?limit=1000');
      expect(all.body.entries.length).toBeGreaterThan(5);
      noSecretIn(all.text);

      const controller = new AbortController();
      const address = h.server.address() as { port: number };
      const stream = await fetch(`http://127.0.0.1:${address.port}/v1/events`, {
        headers: { authorization: `Bearer ${h.tokens.viewer}` },
        signal: controller.signal,
      });
      expect(stream.headers.get('content-type')).toContain('text/event-stream');
      const reader = stream.body!.getReader();
      let text = '';
      await h.as('operator', 'post', `/v1/keys/${key.id}/disable`).send({ reason: 'sse' });
      while (!(text.includes('event: health') && text.includes('event: key:updated'))) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      controller.abort();
      expect(text).toContain('event: key:updated');
      noSecretIn(text);
      await h.as('admin', 'delete', `/v1/keys/${key.id}`);
    });

    it('every protected route: 401 without or with a wrong token, 403 for the wrong role', async () => {
      for (const route of h.app.routes) {
        if (route.roles === 'public') continue;
        const path = route.path.replace(':id', 'does-not-exist');
        const call = (token?: string) => {
          const req = h.http[route.method](path);
          return token === undefined ? req : req.set('authorization', `Bearer ${token}`);
        };
        const missing = await call();
        expect(missing.status, `${route.method} ${route.path} without token`).toBe(401);
        expect(missing.headers['www-authenticate']).toContain('Bearer');
        expect((await call('kp_wrong')).status).toBe(401);
        expect((await call('kp_wrong').set('authorization', 'Basic abc')).status).toBe(401);
        for (const role of ROLES) {
          if (route.path === '/v1/events' && route.roles.includes(role)) continue;
          const res = await call(h.tokens[role]);
          const allowed = route.roles.includes(role);
          if (allowed) expect([401, 403], `${role} ${route.method} ${route.path}`).not.toContain(res.status);
          else {
            expect(res.status, `${role} ${route.method} ${route.path}`).toBe(403);
            expect(res.body.error.code).toBe('KEYPOOL_FORBIDDEN');
          }
          expect(res.status).toBeLessThan(500);
        }
      }
    });

    it('bad input: each class answers 4xx JSON naming the field', async () => {
      const malformed = await h
        .as('admin', 'post', '/v1/keys')
        .set('content-type', 'application/json')
        .send('{"provider": "openai",');
      expect(malformed.status).toBe(400);
      expect(malformed.body.error).toMatchObject({ code: 'KEYPOOL_MALFORMED_JSON', field: 'body' });

      const wrongType = await h
        .as('admin', 'post', '/v1/keys')
        .send({ provider: 'openai', secret: 'sk-x', priority: 'high' });
      expect(wrongType.status).toBe(400);
      expect(wrongType.body.error).toMatchObject({ code: 'KEYPOOL_VALIDATION', field: 'body.priority' });
      noSecretIn(wrongType.text);

      const unknown = await h
        .as('admin', 'post', '/v1/keys')
        .send({ provider: 'openai', secret: 'sk-x', colour: 'red' });
      expect(unknown.body.error).toMatchObject({ code: 'KEYPOOL_VALIDATION', field: 'body.colour' });
      const nested = await h
        .as('admin', 'post', '/v1/keys')
        .send({ provider: 'openai', secret: 'sk-x', limits: { rpn: 1 } });
      expect(nested.body.error.field).toBe('body.limits.rpn');
      const missing = await h.as('admin', 'post', '/v1/keys').send({ provider: 'openai' });
      expect(missing.body.error.field).toBe('body.secret');
      const array = await h.as('admin', 'post', '/v1/keys').send([1, 2]);
      expect(array.status).toBe(400);

      const oversized = await h.as('admin', 'post', '/v1/keys/import').send({ env: 'x'.repeat(1_100_000) });
      expect(oversized.status).toBe(413);
      expect(oversized.body.error.code).toBe('KEYPOOL_PAYLOAD_TOO_LARGE');

      const badId = await h.as('viewer', 'get', '/v1/keys/bad%20id!');
      expect(badId.status).toBe(400);
      expect(badId.body.error.field).toBe('params.id');

      const badDate = await h.as('viewer', 'get', '/v1/usage?from=yesterday');
      expect(badDate.status).toBe(400);
      expect(badDate.body.error.field).toBe('query.from');
      const reversed = await h.as('viewer', 'get', '/v1/usage?from=2026-11-02&to=2026-11-01');
      expect(reversed.body.error.field).toBe('query.from');
      const badGroup = await h.as('viewer', 'get', '/v1/usage?groupBy=key,colour');
      expect(badGroup.body.error.field).toBe('query.groupBy');
      const unknownQuery = await h.as('viewer', 'get', '/v1/keys?colour=red');
      expect(unknownQuery.body.error.field).toBe('query.colour');
      const repeated = await h.as('viewer', 'get', '/v1/audit?limit=1&limit=2');
      expect(repeated.body.error.field).toBe('query.limit');

      const text = await h
        .as('admin', 'post', '/v1/keys')
        .set('content-type', 'text/plain')
        .send('provider=openai');
      expect(text.status).toBe(415);
      const failedReport = await h.as('service', 'post', '/v1/leases/l_x/report').send({ ok: false });
      expect(failedReport.body.error.field).toBe('body.status');
      const noRoute = await h.as('admin', 'get', '/v1/nothing');
      expect(noRoute.status).toBe(404);
      expect(noRoute.body.error.code).toBe('KEYPOOL_NOT_FOUND');
    });

    it('OpenAPI document lists exactly the routes, with schemas from the validators', async () => {
      const doc = (await h.http.get('/v1/openapi.json')).body;
      expect(doc.openapi).toBe('3.1.0');
      const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(
        ([path, ops]) => Object.keys(ops).map((method) => `${method} ${path}`),
      );
      const served = h.app.routes.map((r) => `${r.method} ${r.path.replace(/:([a-z]+)/g, '{$1}')}`);
      expect(documented.sort()).toEqual(served.sort());
      const create = doc.paths['/v1/keys'].post;
      expect(create.requestBody.content['application/json'].schema.$ref).toBe(
        '#/components/schemas/KeyCreate',
      );
      expect(doc.components.schemas.KeyCreate.additionalProperties).toBe(false);
      expect(doc.components.schemas.KeyCreate.required).toEqual(
        expect.arrayContaining(['provider', 'secret']),
      );
      expect(doc.paths['/v1/keys/{id}'].get.parameters[0]).toMatchObject({
        name: 'id',
        in: 'path',
        required: true,
      });
      expect(doc.paths['/v1/usage'].get.parameters.map((p: { name: string }) => p.name)).toEqual(
        expect.arrayContaining(['from', 'to', 'groupBy']),
      );
      for (const ops of Object.values(doc.paths as Record<string, Record<string, { responses: object }>>)) {
        for (const op of Object.values(ops)) expect(Object.keys(op.responses).length).toBeGreaterThan(0);
      }
    });

    it('rate-limits failed authentications per address', async () => {
      const app = createAdminApp({
        pool: h.pool,
        logger: createLogger({ level: 'silent' }),
        auth: { maxFailures: 3, windowMs: 60_000 },
      });
      const http = supertest(app);
      for (let i = 0; i < 3; i++)
        expect((await http.get('/v1/health').set('authorization', 'Bearer kp_guess')).status).toBe(401);
      const limited = await http.get('/v1/health').set('authorization', `Bearer ${h.tokens.viewer}`);
      expect(limited.status).toBe(429);
      expect(limited.headers['retry-after']).toBeDefined();
      await app.close({ graceMs: 0 });
    });

    it('never writes a secret or a token to the log', () => {
      const text = h.logs.join('');
      expect(h.logs.length).toBeGreaterThan(20);
      noSecretIn(text);
      for (const token of Object.values(h.tokens)) expect(text).not.toContain(token);
    });
  });
}
