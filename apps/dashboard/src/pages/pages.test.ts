import { describe, expect, it } from 'vitest';
import { dailySeries } from '../daily-series.js';
import { describeEvent } from '../live.js';
import { keyBodyFromForm } from './admin.js';
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
});

describe('event feed', () => {
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
});
