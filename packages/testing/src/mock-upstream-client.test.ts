import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockUpstream, startMockUpstream } from './mock-upstream.js';
import { callMockUpstream } from './mock-upstream-client.js';

describe('callMockUpstream', () => {
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await startMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });

  it('reports the usage the mock counted, for both APIs', async () => {
    for (const provider of ['openai', 'anthropic'] as const) {
      const secret = `sk-${provider}-client-test-0001`;
      const outcome = await callMockUpstream(mock.url, { provider, model: 'm', secret, text: 'hello there' });
      expect(outcome.ok).toBe(true);
      expect(outcome.usage).toEqual({
        inputTokens: mock.counts.tokens(secret).input,
        outputTokens: mock.counts.tokens(secret).output,
      });
      expect(outcome.respondedAt).toBeTypeOf('number');
    }
  });

  it('reports a scripted 429 with its status, code and headers', async () => {
    const secret = 'sk-openai-client-test-0002';
    mock.setScript(secret, [{ status: 429, retryAfterS: 3 }]);
    const outcome = await callMockUpstream(mock.url, { provider: 'openai', model: 'm', secret, text: 'x' });
    expect(outcome).toMatchObject({ ok: false, status: 429 });
    expect(new Headers(outcome.headers as Headers).get('retry-after')).toBe('3');
  });

  it('reports a refused connection as a connection failure', async () => {
    const outcome = await callMockUpstream('http://127.0.0.1:9', {
      provider: 'openai',
      model: 'm',
      secret: 's',
      text: 'x',
    });
    expect(outcome).toMatchObject({ ok: false, kind: 'connection' });
  });
});
