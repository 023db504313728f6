import { createKeyPool } from '@keypool/core';
import { memoryStore } from '@keypool/store-memory';
import { type MockUpstream, startMockUpstream } from '@keypool/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { anthropicProvider, createAnthropicProvider } from './provider.js';

const SECRET = 'sk-ant-api03-probeprobeprobeprobe';
let upstream: MockUpstream;
beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterAll(() => upstream.close());

describe('anthropicProvider', () => {
  const provider = createAnthropicProvider();

  it('reads anthropic-ratelimit-* (RFC 3339 resets) and retry-after', () => {
    const now = Date.parse('2026-11-25T12:00:00Z');
    const snapshot = provider.readRateLimits(
      new Headers({
        'anthropic-ratelimit-requests-limit': '50',
        'anthropic-ratelimit-requests-remaining': '0',
        'anthropic-ratelimit-requests-reset': '2026-11-25T12:00:30Z',
        'anthropic-ratelimit-input-tokens-limit': '40000',
        'anthropic-ratelimit-input-tokens-remaining': '39000',
        'anthropic-ratelimit-input-tokens-reset': '2026-11-25T12:00:01Z',
        'anthropic-ratelimit-output-tokens-remaining': '8000',
        'anthropic-ratelimit-tokens-remaining': '47000',
        'retry-after': '30',
      }),
      now,
    );
    expect(snapshot).toMatchObject({
      requests: { limit: 50, remaining: 0, resetAt: now + 30_000 },
      inputTokens: { limit: 40000, remaining: 39000, resetAt: now + 1000 },
      outputTokens: { remaining: 8000 },
      tokens: { remaining: 47000 },
      retryAfterMs: 30_000,
    });
  });

  it('probes a key with GET /v1/models and says why one fails', async () => {
    expect(await provider.probe?.(SECRET, { baseURL: upstream.url })).toMatchObject({ ok: true });
    upstream.setScript(SECRET, [401]);
    const failed = await provider.probe?.(SECRET, { baseURL: upstream.url });
    expect(failed).toMatchObject({ ok: false, outcome: { status: 401, code: 'authentication_error' } });
    expect(upstream.counts.log.map((entry) => entry.path)).toEqual(['/v1/models', '/v1/models']);
    const unreachable = await provider.probe?.(SECRET, { baseURL: 'http://127.0.0.1:9' });
    expect(unreachable).toMatchObject({ ok: false, outcome: { kind: 'connection' } });
  });

  it('registers the provider and Claude prices in a pool, user prices winning', async () => {
    const pool = await createKeyPool({
      store: memoryStore(),
      plugins: [anthropicProvider({ prices: { 'claude-custom': { inputPerMTok: 1, outputPerMTok: 2 } } })],
      keys: [{ provider: 'anthropic', secret: SECRET, alias: 'a' }],
    });
    try {
      const registered = pool.provider('anthropic');
      expect(registered?.id).toBe('anthropic');
      expect(registered?.prices?.['claude-custom']).toEqual({ inputPerMTok: 1, outputPerMTok: 2 });
      expect(registered?.prices?.['claude-sonnet-4-5']).toMatchObject({ inputPerMTok: 3, outputPerMTok: 15 });
    } finally {
      await pool.close();
    }
  });
});
