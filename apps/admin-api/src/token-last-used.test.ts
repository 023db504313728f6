import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LAST_USED_INTERVAL_MS } from './auth.js';
import { type Harness, startHarness } from './test-fixture.js';

describe('token lastUsedAt on SQLite', () => {
  let h: Harness;
  let clock = Date.parse('2026-11-25T10:00:00Z');
  beforeAll(async () => {
    h = await startHarness('sqlite', { now: () => clock });
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await h?.close();
  });

  /** What GET /v1/tokens shows for the token named `name`. */
  async function listed(name: string) {
    const res = await h.as('admin', 'get', '/v1/tokens');
    expect(res.status).toBe(200);
    return (res.body.tokens as Array<{ id: string; name: string; lastUsedAt?: number }>).find(
      (t) => t.name === name,
    );
  }

  it('is written when a token authenticates, at most once a minute per token', async () => {
    const writes = vi.spyOn(h.store, 'touchToken');
    const viewer = await listed('viewer-test');
    expect(viewer?.lastUsedAt).toBeUndefined();
    const first = clock;
    expect((await h.as('viewer', 'get', '/v1/me')).status).toBe(200);
    await vi.waitFor(async () => expect((await listed('viewer-test'))?.lastUsedAt).toBe(first));

    // Within the minute: more requests, no more writes for this token.
    const viewerWrites = () => writes.mock.calls.filter(([id]) => id === viewer?.id).length;
    clock += LAST_USED_INTERVAL_MS - 1;
    for (let i = 0; i < 3; i++) expect((await h.as('viewer', 'get', '/v1/me')).status).toBe(200);
    expect(viewerWrites()).toBe(1);
    expect((await listed('viewer-test'))?.lastUsedAt).toBe(first);

    // A minute on, the next request records its time.
    clock += 1;
    expect((await h.as('viewer', 'get', '/v1/me')).status).toBe(200);
    await vi.waitFor(async () => expect((await listed('viewer-test'))?.lastUsedAt).toBe(clock));
    expect(viewerWrites()).toBe(2);
    writes.mockRestore();
  });

  it('never holds a request up, and a store error is logged, not answered', async () => {
    clock += 10 * LAST_USED_INTERVAL_MS;
    let finish: () => void = () => {};
    const writes = vi
      .spyOn(h.store, 'touchToken')
      .mockImplementationOnce(() => new Promise<void>((resolve) => (finish = resolve)));
    // The write has not finished (nothing resolves it yet), and the request is answered anyway.
    expect((await h.as('operator', 'get', '/v1/me')).status).toBe(200);
    expect(writes).toHaveBeenCalledTimes(1);
    finish();

    writes.mockRejectedValueOnce(new Error('disk I/O error'));
    const me = await h.as('service', 'get', '/v1/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ role: 'service' });
    await vi.waitFor(() =>
      expect(h.logs.some((line) => line.includes('last use') && line.includes('disk I/O error'))).toBe(true),
    );
    writes.mockRestore();
  });
});
