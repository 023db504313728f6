import { afterEach, describe, expect, it, vi } from 'vitest';
import { dailySeries } from '../daily-series.js';
import { describeEvent } from '../live.js';
import { keyBodyFromForm, keyFormErrors, orgLimitField } from './admin.js';
import { groupLabel, usageCsv } from './usage.js';

describe('usage export', () => {
  it('writes one CSV row per group, with key ids beside aliases', () => {
    const csv = usageCsv(
      [
        {
          keyId: 'key_1',
          keyAlias: 'alpha',
          requests: 3,
          errors: 1,
          inputTokens: 30,
          outputTokens: 12,
          costUsd: 0.0012345678,
        },
        { keyId: 'key_2', requests: 1, errors: 0, inputTokens: 5, outputTokens: 2, costUsd: 0 },
      ],
      'key',
    );
    expect(csv).toBe(
      'key,key_id,requests,errors,input_tokens,output_tokens,cost_usd\r\nalpha,key_1,3,1,30,12,0.001235\r\nkey_2,key_2,1,0,5,2,0\r\n',
    );
  });

  it('names rows without a model or pool', () => {
    const row = {
      model: null,
      pool: null,
      requests: 0,
      errors: 0,
      inputTokens: 0,
      outputTokens: 0,
      costUsd: 0,
    };
    expect(groupLabel(row, 'model')).toBe('(no model)');
    expect(groupLabel(row, 'pool')).toBe('(no pool)');
  });
});

describe('key history', () => {
  it('fills days without usage with zero, oldest first', () => {
    const now = new Date(2026, 10, 25, 12).getTime();
    const series = dailySeries(
      [
        { day: '2026-11-25', requests: 5, errors: 1, inputTokens: 50, outputTokens: 20, costUsd: 0.5 },
        { day: '2026-11-23', requests: 2, errors: 0, inputTokens: 10, outputTokens: 4, costUsd: 0.1 },
      ],
      now,
      3,
    );
    expect(series.requests).toEqual([2, 0, 5]);
    expect(series.costUsd).toEqual([0.1, 0, 0.5]);
    expect(series.t[2]).toBe(new Date(2026, 10, 25).getTime() / 1000);
  });
});

describe('add key form', () => {
  it('sends only the fields filled in, limits as numbers', () => {
    const form = new FormData();
    form.set('provider', 'openai');
    form.set('secret', 'sk-x');
    form.set('alias', ' team-a ');
    form.set('priority', '');
    form.set('rpm', '500');
    form.set('monthlyBudgetUsd', '25.5');
    form.set('tpm', '');
    expect(keyBodyFromForm(form)).toEqual({
      provider: 'openai',
      secret: 'sk-x',
      alias: 'team-a',
      limits: { rpm: 500, monthlyBudgetUsd: 25.5 },
    });
  });

  const keyForm = (fields: Record<string, string>) => {
    const form = new FormData();
    form.set('provider', 'openai');
    form.set('secret', 'sk-x');
    for (const [name, value] of Object.entries(fields)) form.set(name, value);
    return form;
  };

  it("sends the organization and its shared limits apart from the key's own", () => {
    const form = keyForm({
      organization: ' org-a ',
      rpm: '100',
      [orgLimitField('rpm')]: '500',
      [orgLimitField('tpm')]: '',
      [orgLimitField('monthlyBudgetUsd')]: '40',
    });
    expect(keyFormErrors(form)).toEqual({});
    expect(keyBodyFromForm(form)).toEqual({
      provider: 'openai',
      secret: 'sk-x',
      limits: { rpm: 100 },
      organization: 'org-a',
      orgLimits: { rpm: 500, monthlyBudgetUsd: 40 },
    });
    // An organization alone groups the key without shared limits.
    expect(keyFormErrors(keyForm({ organization: 'org-a' }))).toEqual({});
    expect(keyBodyFromForm(keyForm({ organization: 'org-a' }))).not.toHaveProperty('orgLimits');
  });

  it('refuses org limits without an organization, as the API does, on the organization field', () => {
    const errors = keyFormErrors(keyForm({ organization: '  ', [orgLimitField('tpm')]: '9000' }));
    expect(Object.keys(errors)).toEqual(['organization']);
    expect(errors.organization).toMatch(/need an organization/);
  });

  it("refuses limits that are not above 0, the key's and the organization's", () => {
    const errors = keyFormErrors(
      keyForm({
        organization: 'org-a',
        rpm: '0',
        tokensPerDay: '-5',
        [orgLimitField('requestsPerDay')]: '0',
        [orgLimitField('rpm')]: 'many',
        [orgLimitField('tpm')]: '0.5',
      }),
    );
    expect(Object.keys(errors).sort()).toEqual(
      ['rpm', 'tokensPerDay', orgLimitField('requestsPerDay'), orgLimitField('rpm')].sort(),
    );
    expect(errors.rpm).toBe('Must be a number above 0, or empty for no limit.');
  });
});

describe('event feed', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('says what a pool event means, and ignores the chatty ones', () => {
    expect(
      describeEvent('key:status', {
        alias: 'a',
        from: 'active',
        to: 'cooling',
        reason: 'rate limited (429)',
      }),
    ).toBe('a: active → cooling (rate limited (429))');
    expect(describeEvent('breaker:open', { alias: 'b', failures: 3 })).toBe(
      'b: breaker opened after 3 failures',
    );
    expect(describeEvent('pool:no-key', { provider: 'openai', model: 'gpt-4o' })).toBe(
      'No openai key available for gpt-4o',
    );
    expect(describeEvent('lease:acquired', { alias: 'a' })).toBeUndefined();
  });

  // Payloads as the admin API forwards them (ids and aliases, never secrets).
  const key = { keyId: 'key_1', alias: 'team-a', provider: 'openai' };

  it('says a key was used as a last resort, why, and for how much longer', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    expect(
      describeEvent('key:last-resort', {
        ...key,
        leaseId: 'l_1',
        reason: 'cooling',
        until: 1_042_000,
        model: 'gpt-4o-mini',
      }),
    ).toBe(
      'team-a used as a last resort for gpt-4o-mini while cooling down after a rate limit (42 s left): no other key was available',
    );
    expect(
      describeEvent('key:last-resort', { ...key, leaseId: 'l_2', reason: 'breaker-open', until: 1_300_000 }),
    ).toBe('team-a used as a last resort while its breaker is open (300 s left): no other key was available');
  });

  it('says when a key cooled or ran out with another key of its organization', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    expect(describeEvent('key:cooldown', { ...key, until: 1_030_000, cooldownMs: 30_000 })).toBe(
      'team-a cooling down for 30 s after a rate limit',
    );
    expect(
      describeEvent('key:cooldown', { ...key, until: 1_030_000, cooldownMs: 30_000, via: 'team-b' }),
    ).toBe('team-a cooling down for 30 s: cooled with team-b (same organization)');
    expect(describeEvent('key:exhausted', { ...key, until: 2_000_000 })).toBe('team-a exhausted its quota');
    expect(describeEvent('key:exhausted', { ...key, until: 2_000_000, via: 'team-b' })).toBe(
      'team-a exhausted with team-b (same organization)',
    );
  });

  it('says what a passing probe brought a key back from', () => {
    expect(describeEvent('probe:passed', { ...key, reasons: ['invalid'], latencyMs: 120 })).toBe(
      'team-a passed a probe and is no longer invalid',
    );
    expect(
      describeEvent('probe:passed', { ...key, reasons: ['exhausted', 'breaker-open'], latencyMs: 80 }),
    ).toBe('team-a passed a probe and is no longer exhausted or behind an open breaker');
  });

  it('says a failed probe left a key as it was, with the upstream status or what went wrong', () => {
    expect(
      describeEvent('probe:failed', {
        ...key,
        reasons: ['invalid'],
        latencyMs: 90,
        status: 401,
        failure: 'auth',
      }),
    ).toBe('team-a failed a probe (401): still invalid');
    expect(
      describeEvent('probe:failed', {
        ...key,
        reasons: ['breaker-open'],
        latencyMs: 10_000,
        failure: 'timeout',
      }),
    ).toBe('team-a failed a probe (timed out): still behind an open breaker');
    expect(describeEvent('probe:failed', { keyId: 'key_2', reasons: [], latencyMs: 5 })).toBe(
      'a key failed a probe: still out of service',
    );
  });
});
