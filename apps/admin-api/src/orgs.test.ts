import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addKey, type Harness, SECRETS, startHarness } from './test-fixture.js';

// Built at run time so nothing committed looks like a real key.
const importedSecret = (i: number) => ['sk', 'import', String(i).repeat(24)].join('-');

interface OrgBody {
  id: string;
  provider: string;
  organization: string;
  keyIds: string[];
  limits: Record<string, number>;
  headroom: Record<string, number>;
}

// On the memory store, the reference implementation of the shared counters the leases below are held to.
describe('organization limits through the admin API', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness('memory');
  });
  afterAll(async () => {
    await h?.close();
  });

  const orgsOf = async (): Promise<OrgBody[]> => (await h.as('viewer', 'get', '/v1/health')).body.orgs;

  it('two keys of one organization share its rpm: leases stop when the organization has none left', async () => {
    const a = await addKey(h, 'a', { organization: 'org-a', orgLimits: { rpm: 3 } });
    const b = await addKey(h, 'b', { organization: 'org-a' });
    const read = await h.as('viewer', 'get', `/v1/keys/${a.id}`);
    expect(read.body).toMatchObject({ organization: 'org-a', orgLimits: { rpm: 3 } });
    const listed = (await h.as('viewer', 'get', '/v1/keys')).body.keys;
    expect(listed.find((k: { id: string }) => k.id === b.id)).toMatchObject({ organization: 'org-a' });

    const served: string[] = [];
    for (let i = 0; i < 3; i++) {
      const lease = await h.as('service', 'post', '/v1/leases').send({ provider: 'openai' });
      expect(lease.status).toBe(201);
      served.push(lease.body.keyAlias);
    }
    // Neither key has a limit of its own: only the organization's stops the fourth.
    expect(new Set(served)).toStrictEqual(new Set(['a', 'b']));
    const refused = await h.as('service', 'post', '/v1/leases').send({ provider: 'openai' });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('KEYPOOL_NO_KEY_AVAILABLE');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);

    // Headroom follows the store's counters, read on the pool's refresh.
    await expect.poll(async () => (await orgsOf())[0]?.headroom, { timeout: 3000 }).toStrictEqual({ rpm: 0 });
    const [org] = await orgsOf();
    expect(org).toMatchObject({
      id: 'org:openai:org-a',
      provider: 'openai',
      organization: 'org-a',
      limits: { rpm: 3 },
    });
    expect(org?.keyIds.sort()).toStrictEqual([a.id, b.id].sort());
    const bHealth = (await h.as('viewer', 'get', '/v1/health')).body.keys.find(
      (k: { id: string }) => k.id === b.id,
    );
    // The key itself has no limits, so no headroom of its own.
    expect(bHealth.headroom).toStrictEqual({});
  });

  it('updates orgLimits on a key of an organization; the strictest value of each field applies', async () => {
    const b = (await h.as('viewer', 'get', '/v1/keys')).body.keys.find(
      (k: { alias: string }) => k.alias === 'b',
    );
    const updated = await h
      .as('admin', 'patch', `/v1/keys/${b.id}`)
      .send({ orgLimits: { rpm: 10, tokensPerDay: 50_000 } });
    expect(updated.status).toBe(200);
    expect(updated.body.orgLimits).toStrictEqual({ rpm: 10, tokensPerDay: 50_000 });
    const [org] = await orgsOf();
    expect(org?.limits).toStrictEqual({ rpm: 3, tokensPerDay: 50_000 });
    expect(org?.headroom).toMatchObject({ rpm: 0 });
    expect(org?.headroom.tokensPerDay).toBeGreaterThan(0);
    const audit = await h.as('viewer', 'get', `/v1/audit?target=${b.id}&action=key.update`);
    expect(audit.body.entries[0].details.fields).toStrictEqual(['orgLimits']);
  });

  it('refuses orgLimits on a key without an organization with a 400 that says why', async () => {
    const c = await addKey(h, 'c');
    const patched = await h.as('admin', 'patch', `/v1/keys/${c.id}`).send({ orgLimits: { rpm: 5 } });
    expect(patched.status).toBe(400);
    expect(patched.body.error.code).toBe('KEYPOOL_INVALID_CONFIG');
    expect(patched.body.error.message).toContain('orgLimits needs organization');
    expect((await h.as('viewer', 'get', `/v1/keys/${c.id}`)).body).not.toHaveProperty('orgLimits');

    const created = await h.as('admin', 'post', '/v1/keys').send({
      provider: 'anthropic',
      secret: importedSecret(9),
      orgLimits: { rpm: 5 },
    });
    expect(created.status).toBe(400);
    expect(created.body.error.message).toContain('orgLimits needs organization');
    expect(created.text).not.toContain(importedSecret(9));

    const negative = await h
      .as('admin', 'patch', `/v1/keys/${c.id}`)
      .send({ organization: 'org-c', orgLimits: { rpm: -1 } });
    expect(negative.status).toBe(400);
    expect(negative.body.error).toMatchObject({ code: 'KEYPOOL_VALIDATION', field: 'body.orgLimits.rpm' });
    const unknown = await h
      .as('admin', 'patch', `/v1/keys/${c.id}`)
      .send({ organization: 'org-c', orgLimits: { rps: 1 } });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.field).toBe('body.orgLimits.rps');
    await h.as('admin', 'delete', `/v1/keys/${c.id}`).expect(204);
    expect(patched.text).not.toContain(SECRETS.c);
  });

  it('imports KEY_N_ORG_* limits from env text, and reports them as invalid without KEY_N_ORG', async () => {
    const env = [
      `KEY_1=${importedSecret(1)}`,
      'KEY_1_PROVIDER=openai',
      'KEY_1_ALIAS=imported-1',
      'KEY_1_ORG=org-i',
      'KEY_1_ORG_RPM=500',
      'KEY_1_ORG_TPM=90000',
      'KEY_1_ORG_RPD=10000',
      'KEY_1_ORG_TPD=2000000',
      'KEY_1_ORG_BUDGET_USD=25.5',
      `KEY_2=${importedSecret(2)}`,
      'KEY_2_PROVIDER=openai',
      'KEY_2_ALIAS=imported-2',
      'KEY_2_ORG_RPM=500',
    ].join('\n');
    const res = await h.as('admin', 'post', '/v1/keys/import').send({ env });
    expect(res.status).toBe(200);
    expect(res.body.added.map((k: { alias: string }) => k.alias)).toStrictEqual(['imported-1', 'imported-2']);
    // One bad entry does not sink the import: the key comes in without the limits it could not have.
    expect(res.body.invalid).toStrictEqual([
      { source: 'KEY_2_ORG_RPM', problem: expect.stringContaining('KEY_2_ORG is not set') },
    ]);
    expect(res.text).not.toContain(importedSecret(1));
    expect(res.text).not.toContain(importedSecret(2));

    const keys = (await h.as('viewer', 'get', '/v1/keys')).body.keys as Array<Record<string, unknown>>;
    expect(keys.find((k) => k.alias === 'imported-1')).toMatchObject({
      organization: 'org-i',
      orgLimits: {
        rpm: 500,
        tpm: 90_000,
        requestsPerDay: 10_000,
        tokensPerDay: 2_000_000,
        monthlyBudgetUsd: 25.5,
      },
    });
    expect(keys.find((k) => k.alias === 'imported-2')).not.toHaveProperty('orgLimits');
    const org = (await orgsOf()).find((o) => o.organization === 'org-i');
    expect(org?.headroom).toStrictEqual({
      rpm: 1,
      tpm: 1,
      requestsPerDay: 1,
      tokensPerDay: 1,
      monthlyBudgetUsd: 1,
    });
    for (const k of res.body.added) await h.as('admin', 'delete', `/v1/keys/${k.id}`).expect(204);
  });

  it('documents orgLimits on keys and the organizations of /v1/health in the OpenAPI document', async () => {
    const doc = (await h.http.get('/v1/openapi.json')).body;
    const { schemas } = doc.components;
    for (const name of ['KeyCreate', 'KeyUpdate', 'Key']) {
      expect(JSON.stringify(schemas[name].properties.orgLimits)).toContain('#/components/schemas/KeyLimits');
    }
    expect(schemas.KeyCreate.properties.orgLimits.description).toContain('organization');
    expect(schemas.Health.properties.orgs.items.$ref).toBe('#/components/schemas/OrgHealth');
    expect(schemas.Health.required).toContain('orgs');
    expect(schemas.OrgHealth.required).toEqual(
      expect.arrayContaining(['id', 'provider', 'organization', 'keyIds', 'limits', 'headroom']),
    );
    expect(Object.keys(schemas.OrgHealth.properties.headroom.properties).sort()).toStrictEqual(
      ['monthlyBudgetUsd', 'requestsPerDay', 'rpm', 'tokensPerDay', 'tpm'].sort(),
    );
  });
});
