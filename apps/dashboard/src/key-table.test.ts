import { describe, expect, it } from 'vitest';
import { DEFAULT_QUERY, joinKeys, type KeyRow, minHeadroom, providersOf, selectKeys } from './key-table.js';
import type { KeyHealth } from './types.js';

function health(alias: string, extra: Partial<KeyHealth> = {}): KeyHealth {
  return {
    id: `key_${alias}`,
    alias,
    provider: 'openai',
    priority: 0,
    maskedSecret: `sk-…${alias.slice(-4)}`,
    status: 'active',
    breaker: 'closed',
    successRate: 1,
    requests: 10,
    errors: 0,
    inFlight: 0,
    headroom: {},
    ...extra,
  };
}

const rows: KeyRow[] = joinKeys(
  [
    health('alpha', { latencyEwmaMs: 300, headroom: { rpm: 0.9, tpm: 0.4 } }),
    health('bravo', { status: 'cooling', until: 5000, reason: 'rate limited (429)', latencyEwmaMs: 100 }),
    health('charlie', { provider: 'anthropic', status: 'invalid', reason: 'upstream said 401' }),
    health('delta', { status: 'disabled', breaker: 'closed', requests: 0, successRate: 1 }),
    health('echo', {
      breaker: 'open',
      priority: 1,
      usage: {
        keyId: 'key_echo',
        requestsInWindow: 1,
        tokensInWindow: 1,
        requestsToday: 1,
        tokensToday: 1,
        costThisMonthUsd: 4.2,
        inFlight: 0,
      },
    }),
  ],
  [
    {
      id: 'key_delta',
      alias: 'delta',
      provider: 'openai',
      maskedSecret: 'sk-…elta',
      priority: 0,
      weight: 1,
      limits: { rpm: 60 },
      organization: 'org-delta',
      enabled: false,
      disabledReason: 'rotating upstream',
      createdAt: 1,
      updatedAt: 1,
    },
  ],
);

const aliases = (list: KeyRow[]) => list.map((r) => r.alias);

describe('keys table model', () => {
  it('joins limits, the disabled reason, the organization and spend onto health rows', () => {
    const delta = rows.find((r) => r.alias === 'delta')!;
    expect(delta.limits).toEqual({ rpm: 60 });
    expect(delta.disabledReason).toBe('rotating upstream');
    expect(delta.organization).toBe('org-delta');
    expect(rows.find((r) => r.alias === 'alpha')).not.toHaveProperty('organization');
    expect(rows.find((r) => r.alias === 'echo')!.spendUsd).toBe(4.2);
    expect(rows.find((r) => r.alias === 'alpha')!.spendUsd).toBe(0);
  });

  it('puts the keys in worst shape first by default', () => {
    expect(aliases(selectKeys(rows, DEFAULT_QUERY))).toEqual(['charlie', 'bravo', 'delta', 'alpha', 'echo']);
  });

  it('sorts by any column both ways, with missing values last either way', () => {
    const byLatency = { ...DEFAULT_QUERY, sort: 'latency' as const, direction: 'asc' as const };
    expect(aliases(selectKeys(rows, byLatency)).slice(0, 2)).toEqual(['bravo', 'alpha']);
    expect(aliases(selectKeys(rows, { ...byLatency, direction: 'desc' })).slice(0, 2)).toEqual([
      'alpha',
      'bravo',
    ]);
    expect(aliases(selectKeys(rows, { ...byLatency, direction: 'desc' })).at(-1)).not.toBe('alpha');
    expect(aliases(selectKeys(rows, { ...DEFAULT_QUERY, sort: 'alias', direction: 'asc' }))).toEqual([
      'alpha',
      'bravo',
      'charlie',
      'delta',
      'echo',
    ]);
    expect(aliases(selectKeys(rows, { ...DEFAULT_QUERY, sort: 'spend', direction: 'desc' }))[0]).toBe('echo');
    expect(aliases(selectKeys(rows, { ...DEFAULT_QUERY, sort: 'tier', direction: 'desc' }))[0]).toBe('echo');
  });

  it('filters by status, provider, and "needs attention" (not active or breaker not closed)', () => {
    expect(aliases(selectKeys(rows, { ...DEFAULT_QUERY, status: 'cooling' }))).toEqual(['bravo']);
    expect(aliases(selectKeys(rows, { ...DEFAULT_QUERY, provider: 'anthropic' }))).toEqual(['charlie']);
    expect(
      aliases(selectKeys(rows, { ...DEFAULT_QUERY, status: 'attention', sort: 'alias', direction: 'asc' })),
    ).toEqual(['bravo', 'charlie', 'delta', 'echo']);
  });

  it('searches alias, id, organization, masked secret, reasons and last error, case-insensitively', () => {
    expect(aliases(selectKeys(rows, { ...DEFAULT_QUERY, search: 'ORG-DEL' }))).toEqual(['delta']);
    expect(aliases(selectKeys(rows, { ...DEFAULT_QUERY, search: 'BRA' }))).toEqual(['bravo']);
    expect(aliases(selectKeys(rows, { ...DEFAULT_QUERY, search: '401' }))).toEqual(['charlie']);
    expect(aliases(selectKeys(rows, { ...DEFAULT_QUERY, search: 'rotating' }))).toEqual(['delta']);
    expect(aliases(selectKeys(rows, { ...DEFAULT_QUERY, search: 'key_echo' }))).toEqual(['echo']);
    expect(selectKeys(rows, { ...DEFAULT_QUERY, search: 'nothing-like-this' })).toEqual([]);
  });

  it('reports the tightest headroom and the providers present', () => {
    expect(minHeadroom(rows[0]!)).toBe(0.4);
    expect(minHeadroom(rows[1]!)).toBeUndefined();
    expect(providersOf(rows)).toEqual(['anthropic', 'openai']);
  });
});
