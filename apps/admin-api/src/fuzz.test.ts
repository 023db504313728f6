import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './test-fixture.js';

const paths = [
  '/v1/keys',
  '/v1/keys/import',
  '/v1/keys/key_x',
  '/v1/keys/key_x/disable',
  '/v1/keys/key_x/reset',
  '/v1/pools',
  '/v1/pools/p',
  '/v1/tokens',
  '/v1/usage',
  '/v1/audit',
  '/v1/leases',
  '/v1/leases/l_x/report',
  '/v1/health',
];

describe('fuzz: generated garbage never gets a 5xx', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness('sqlite');
  });
  afterAll(async () => {
    await h?.close();
  });

  it('bodies, queries and path segments of any shape answer < 500', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...paths),
        fc.constantFrom('get', 'post', 'patch', 'delete' as const),
        fc.constantFrom('admin', 'service', 'viewer' as const),
        fc.oneof(
          fc.json(),
          fc.string(),
          fc.jsonValue().map((v) => JSON.stringify({ provider: 'openai', secret: 'sk-fuzz-0000', alias: v })),
          fc
            .dictionary(
              fc.constantFrom(
                'provider',
                'secret',
                'ok',
                'pool',
                'name',
                'role',
                'env',
                'limits',
                'usage',
                'keyIds',
              ),
              fc.jsonValue(),
            )
            .map((v) => JSON.stringify(v)),
        ),
        fc.string({ maxLength: 30 }),
        fc.string({ maxLength: 20 }),
        async (path, method, role, body, query, segment) => {
          const target = `${path.replace('key_x', encodeURIComponent(segment) || 'k')}?${encodeURIComponent(query)}=${encodeURIComponent(segment)}`;
          const res = await h.as(role, method, target).set('content-type', 'application/json').send(body);
          expect(res.status, `${method} ${target} ${body}`).toBeLessThan(500);
          if (res.status >= 400) expect(res.body.error.code).toMatch(/^KEYPOOL_/);
        },
      ),
      { numRuns: 300 },
    );
  });
});
