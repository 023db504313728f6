import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, SECRETS, startHarness } from './test-fixture.js';

// A pool with background probes behind the API, on the OpenAI adapter's own probe (GET /models)
// against the mock upstream: what an operator sees when a key comes back by itself.
describe('background probes through the admin API', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness('sqlite', { probes: { intervalMs: 100 } });
  });
  afterAll(() => h?.close());

  it('a key rejected with 401 comes back by itself: SSE event, audit entry by "probe", status active', async () => {
    const key = await h.pool.addKey({
      provider: 'openai',
      secret: SECRETS.a,
      alias: 'probed',
      baseURL: `${h.mock.url}/v1`,
    });
    // The upstream refuses the key twice more, then takes it again.
    h.mock.setScript('a', [401, 401]);

    const controller = new AbortController();
    const address = h.server.address() as { port: number };
    const stream = await fetch(`http://127.0.0.1:${address.port}/v1/events`, {
      headers: { authorization: `Bearer ${h.tokens.viewer}` },
      signal: controller.signal,
    });
    const reader = stream.body!.getReader();
    let text = '';

    try {
      // The 401 makes the key invalid. Its status is not read here: probes run every 100 ms and
      // may bring it back before a request could look; the passed event's reasons say it was.
      const lease = await h.pool.acquire({ provider: 'openai' });
      await lease.release({ ok: false, status: 401 });
      while (!text.includes('event: probe:passed')) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    } finally {
      // An open event stream would keep the server from closing.
      controller.abort();
    }
    expect(text).toContain('event: probe:failed');
    expect(text).toMatch(/event: probe:passed\ndata: \{[^\n]*"alias":"probed"[^\n]*"reasons":\["invalid"\]/);
    expect(text).not.toContain(SECRETS.a);

    expect((await h.as('viewer', 'get', `/v1/keys/${key.id}`)).body.status).toBe('active');
    const audit = await h.as('viewer', 'get', `/v1/audit?target=${key.id}&action=key.probe`);
    expect(audit.body.entries).toEqual([
      expect.objectContaining({
        actor: 'probe',
        action: 'key.probe',
        target: key.id,
        details: expect.objectContaining({ alias: 'probed', ok: true, reasons: ['invalid'] }),
      }),
    ]);
    expect(audit.text).not.toContain(SECRETS.a);
    // Two refused probes and the one that passed, each a models listing with the key.
    expect(h.mock.counts.byStatus('a')).toEqual({ 200: 1, 401: 2 });
  });
});
