import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromEnv, parseEnvFile } from './env.js';
import { EnvError } from './errors.js';

const OA = (n: number) => `sk-proj-openai${String(n).padStart(4, '0')}abcdefghijklmnopqrstuvwx`;
const AN = (n: number) => `sk-ant-api03-anthropic${String(n).padStart(4, '0')}abcdefghijklmnopq`;

function envError(fn: () => unknown): EnvError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(EnvError);
    return error as EnvError;
  }
  throw new Error('expected an EnvError');
}

describe('fromEnv: provider variables', () => {
  it('reads a single OPENAI_API_KEY', () => {
    expect(fromEnv({ OPENAI_API_KEY: OA(1), PATH: '/usr/bin', HOME: '/root' })).toEqual([
      { provider: 'openai', secret: OA(1), alias: 'openai-1', priority: 0 },
    ]);
  });

  it('reads OPENAI_API_KEYS / ANTHROPIC_API_KEYS lists with any separator', () => {
    const keys = fromEnv({
      OPENAI_API_KEYS: ` ${OA(1)},${OA(2)};\n${OA(3)}  "${OA(4)}"\t`,
      ANTHROPIC_API_KEYS: `"${AN(1)},${AN(2)}"`,
    });
    expect(keys.map((k) => [k.provider, k.secret, k.alias])).toEqual([
      ['openai', OA(1), 'openai-1'],
      ['openai', OA(2), 'openai-2'],
      ['openai', OA(3), 'openai-3'],
      ['openai', OA(4), 'openai-4'],
      ['anthropic', AN(1), 'anthropic-1'],
      ['anthropic', AN(2), 'anthropic-2'],
    ]);
  });

  it('reads OPENAI_API_KEY and numbered variables, sorted numerically with gaps', () => {
    const keys = fromEnv({
      OPENAI_API_KEY_10: OA(10),
      OPENAI_API_KEY_2: OA(2),
      OPENAI_API_KEY: OA(0),
      OPENAI_API_KEY_1: `'${OA(1)}'`,
      OPENAI_API_KEY_7: '   ',
    });
    expect(keys.map((k) => [k.secret, k.alias])).toEqual([
      [OA(0), 'openai-1'],
      [OA(1), 'openai-2'],
      [OA(2), 'openai-3'],
      [OA(10), 'openai-4'],
    ]);
  });

  it('puts fallback variables in tier 1 after the primaries', () => {
    const keys = fromEnv({
      ANTHROPIC_API_KEY_FALLBACK_2: AN(12),
      ANTHROPIC_API_KEY_FALLBACK: AN(10),
      ANTHROPIC_API_KEY: AN(1),
      OPENAI_API_KEY_FALLBACK_1: OA(11),
    });
    expect(keys.map((k) => [k.provider, k.alias, k.priority, k.secret])).toEqual([
      ['openai', 'openai-fallback-1', 1, OA(11)],
      ['anthropic', 'anthropic-1', 0, AN(1)],
      ['anthropic', 'anthropic-fallback-1', 1, AN(10)],
      ['anthropic', 'anthropic-fallback-2', 1, AN(12)],
    ]);
  });

  it('applies OPENAI_RPM / OPENAI_TPM to that provider only, without overriding per-key limits', () => {
    const keys = fromEnv({
      OPENAI_API_KEYS: `${OA(1)},${OA(2)}`,
      ANTHROPIC_API_KEY: AN(1),
      OPENAI_RPM: '500',
      OPENAI_TPM: '30000',
      KEY_1: OA(3),
      KEY_1_PROVIDER: 'openai',
      KEY_1_RPM: '50',
    });
    expect(keys.map((k) => [k.alias, k.limits])).toEqual([
      ['openai-1', { rpm: 500, tpm: 30_000 }],
      ['openai-2', { rpm: 500, tpm: 30_000 }],
      ['anthropic-1', undefined],
      ['key-1', { rpm: 50, tpm: 30_000 }],
    ]);
  });
});

describe('fromEnv: generic KEY_N', () => {
  it('reads every per-key setting', () => {
    const keys = fromEnv({
      KEY_3: 'gsk_groq0123456789abcdef',
      KEY_3_PROVIDER: 'Groq',
      KEY_3_MODEL: 'llama-3.1-8b-instant, llama-3.3-70b',
      KEY_3_ALIAS: 'groq-main',
      KEY_3_PRIORITY: '2',
      KEY_3_WEIGHT: '0.5',
      KEY_3_RPM: '30',
      KEY_3_TPM: '6000',
      KEY_3_RPD: '14400',
      KEY_3_TPD: '500000',
      KEY_3_BUDGET_USD: '$12.50',
      KEY_3_ORG: 'org-abc',
      KEY_3_PROJECT: 'proj_123',
      KEY_3_BASE_URL: 'https://api.groq.com/openai/v1',
    });
    expect(keys).toEqual([
      {
        provider: 'groq',
        secret: 'gsk_groq0123456789abcdef',
        alias: 'groq-main',
        priority: 2,
        weight: 0.5,
        limits: { rpm: 30, tpm: 6000, requestsPerDay: 14_400, tokensPerDay: 500_000, monthlyBudgetUsd: 12.5 },
        models: ['llama-3.1-8b-instant', 'llama-3.3-70b'],
        organization: 'org-abc',
        project: 'proj_123',
        baseURL: 'https://api.groq.com/openai/v1',
      },
    ]);
  });

  it('names keys key-N by default, in numeric order, and ignores settings without a key', () => {
    const keys = fromEnv({
      KEY_12: AN(12),
      KEY_12_PROVIDER: 'anthropic',
      KEY_2: OA(2),
      KEY_2_PROVIDER: 'openai',
      KEY_5_PROVIDER: 'openai',
      KEY_5_RPM: 'not checked: KEY_5 is absent',
    });
    expect(keys.map((k) => [k.alias, k.provider, k.priority])).toEqual([
      ['key-2', 'openai', 0],
      ['key-12', 'anthropic', 0],
    ]);
  });
});

describe('fromEnv: mixing and duplicates', () => {
  it('mixes every format, primaries first', () => {
    const keys = fromEnv({
      OPENAI_API_KEY: OA(1),
      OPENAI_API_KEYS: `${OA(2)},${OA(3)}`,
      OPENAI_API_KEY_4: OA(4),
      OPENAI_API_KEY_FALLBACK_1: OA(5),
      ANTHROPIC_API_KEY_1: AN(1),
      KEY_1: 'xai-0123456789abcdef',
      KEY_1_PROVIDER: 'xai',
    });
    expect(keys.map((k) => k.alias)).toEqual([
      'openai-1',
      'openai-2',
      'openai-3',
      'openai-4',
      'openai-fallback-1',
      'anthropic-1',
      'key-1',
    ]);
  });

  it('collapses the same secret of one provider to its first, lowest-tier occurrence', () => {
    const keys = fromEnv({
      OPENAI_API_KEY_FALLBACK: OA(1),
      OPENAI_API_KEYS: `${OA(1)},${OA(2)},${OA(1)}`,
      OPENAI_API_KEY_3: OA(2),
      KEY_1: OA(1),
      KEY_1_PROVIDER: 'openai',
      KEY_2: OA(9),
      KEY_2_PROVIDER: 'openai',
      KEY_2_PRIORITY: '3',
      OPENAI_API_KEY_FALLBACK_1: OA(9),
      KEY_3: OA(1),
      KEY_3_PROVIDER: 'azure',
    });
    expect(keys.map((k) => [k.alias, k.secret, k.priority])).toEqual([
      ['openai-1', OA(1), 0],
      ['openai-2', OA(2), 0],
      ['openai-fallback-1', OA(9), 1],
      ['key-3', OA(1), 0],
    ]);
  });

  it('rejects an alias used twice', () => {
    const error = envError(() =>
      fromEnv({ OPENAI_API_KEY: OA(1), KEY_1: OA(2), KEY_1_PROVIDER: 'openai', KEY_1_ALIAS: 'openai-1' }),
    );
    expect(error.variable).toBe('KEY_1_ALIAS');
    expect(error.message).toContain('OPENAI_API_KEY');
  });

  it('returns nothing for an environment without keys', () => {
    expect(fromEnv({})).toEqual([]);
    expect(
      fromEnv({
        OPENAI_API_KEY: '',
        ANTHROPIC_API_KEYS: ' , ; ',
        OPENAI_BASE_URL: 'http://x',
        NODE_ENV: 'test',
      }),
    ).toEqual([]);
  });
});

describe('fromEnv: errors name the variable and never the secret', () => {
  const secret = 'sk-proj-TOPSECRETabcdefghijklmnop1234';
  it.each([
    [
      'whitespace inside a key',
      { OPENAI_API_KEY: 'sk-proj-TOPSECRET abcdefghijklmnop1234' },
      'OPENAI_API_KEY',
      'whitespace',
    ],
    ['a control character', { OPENAI_API_KEY_2: `${secret}\u0007` }, 'OPENAI_API_KEY_2', 'control'],
    ['a zero-width space', { OPENAI_API_KEY: `${secret}\u200b` }, 'OPENAI_API_KEY', 'invisible'],
    ['non-ASCII', { OPENAI_API_KEY: `${secret}é` }, 'OPENAI_API_KEY', 'non-ASCII'],
    ['an unclosed quote', { OPENAI_API_KEY: `"${secret}` }, 'OPENAI_API_KEY', 'quote'],
    ['a stray quote', { OPENAI_API_KEY: `${secret}"` }, 'OPENAI_API_KEY', 'quote'],
    [
      'a list in a single variable',
      { OPENAI_API_KEY: `${secret},${OA(2)}` },
      'OPENAI_API_KEY',
      'OPENAI_API_KEYS',
    ],
    [
      'an Anthropic key under OPENAI_*',
      { OPENAI_API_KEYS: `${OA(1)},sk-ant-api03-TOPSECRETabcdefghijklmnopWXYZ` },
      'OPENAI_API_KEYS',
      'entry 2 holds an Anthropic key (sk-ant-…WXYZ)',
    ],
    [
      'an OpenAI key under ANTHROPIC_*',
      { ANTHROPIC_API_KEY_FALLBACK_1: secret },
      'ANTHROPIC_API_KEY_FALLBACK_1',
      'OpenAI key (sk-proj-…1234)',
    ],
    ['KEY_N without a provider', { KEY_4: secret }, 'KEY_4_PROVIDER', 'KEY_4_PROVIDER=openai'],
    ['a bad provider id', { KEY_4: secret, KEY_4_PROVIDER: 'open ai' }, 'KEY_4_PROVIDER', 'provider id'],
    [
      'a non-numeric RPM',
      { KEY_1: secret, KEY_1_PROVIDER: 'openai', KEY_1_RPM: 'lots' },
      'KEY_1_RPM',
      'whole number',
    ],
    ['a zero TPM', { KEY_1: secret, KEY_1_PROVIDER: 'openai', KEY_1_TPM: '0' }, 'KEY_1_TPM', 'above 0'],
    [
      'a fractional RPD',
      { KEY_1: secret, KEY_1_PROVIDER: 'openai', KEY_1_RPD: '1.5' },
      'KEY_1_RPD',
      'whole number',
    ],
    [
      'a negative priority',
      { KEY_1: secret, KEY_1_PROVIDER: 'openai', KEY_1_PRIORITY: '-1' },
      'KEY_1_PRIORITY',
      '>= 0',
    ],
    [
      'a bad budget',
      { KEY_1: secret, KEY_1_PROVIDER: 'openai', KEY_1_BUDGET_USD: '12,50' },
      'KEY_1_BUDGET_USD',
      'number',
    ],
    [
      'a bad weight',
      { KEY_1: secret, KEY_1_PROVIDER: 'openai', KEY_1_WEIGHT: 'heavy' },
      'KEY_1_WEIGHT',
      'number',
    ],
    [
      'a bad alias',
      { KEY_1: secret, KEY_1_PROVIDER: 'openai', KEY_1_ALIAS: 'my key' },
      'KEY_1_ALIAS',
      'letters',
    ],
    [
      'a bad base URL',
      { KEY_1: secret, KEY_1_PROVIDER: 'openai', KEY_1_BASE_URL: 'ftp://x' },
      'KEY_1_BASE_URL',
      'http',
    ],
    ['a bad provider RPM', { OPENAI_API_KEY: secret, OPENAI_RPM: '10k' }, 'OPENAI_RPM', 'whole number'],
  ])('%s', (_, env, variable, hint) => {
    const error = envError(() => fromEnv(env));
    expect(error.code).toBe('KEYPOOL_INVALID_ENV');
    expect(error.variable).toBe(variable);
    expect(error.message.startsWith(`${variable}: `)).toBe(true);
    expect(error.message).toContain(hint);
    expect(error.message).not.toContain('TOPSECRET');
  });
});

describe('fromEnv: properties', () => {
  const names = [
    'OPENAI_API_KEY',
    'OPENAI_API_KEYS',
    'OPENAI_API_KEY_1',
    'OPENAI_API_KEY_2',
    'OPENAI_API_KEY_FALLBACK',
    'OPENAI_API_KEY_FALLBACK_1',
    'ANTHROPIC_API_KEY',
    'ANTHROPIC_API_KEYS',
    'ANTHROPIC_API_KEY_3',
    'ANTHROPIC_API_KEY_FALLBACK_2',
    'OPENAI_RPM',
    'ANTHROPIC_TPM',
    ...[1, 2].flatMap((n) =>
      [
        '',
        '_PROVIDER',
        '_MODEL',
        '_ALIAS',
        '_PRIORITY',
        '_WEIGHT',
        '_RPM',
        '_TPM',
        '_RPD',
        '_TPD',
        '_BUDGET_USD',
        '_ORG',
        '_PROJECT',
        '_BASE_URL',
      ].map((suffix) => `KEY_${n}${suffix}`),
    ),
  ];
  const value = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc
      .constantFrom('sk-', 'sk-ant-', 'sk-proj-', '"', "'", 'openai', 'anthropic')
      .chain((prefix) => fc.string({ maxLength: 30 }).map((rest) => prefix + rest)),
    fc.array(fc.string({ minLength: 8, maxLength: 20 }), { maxLength: 4 }).map((parts) => parts.join(',')),
    fc.nat().map(String),
  );
  const env = fc.dictionary(fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 12 })), value, {
    maxKeys: 12,
  });

  const PROVIDER_WORDS = new Set(['openai', 'anthropic']);

  it('returns KeySpec[] or throws an EnvError that contains no value of 8+ characters', () => {
    fc.assert(
      fc.property(env, (vars) => {
        let keys: ReturnType<typeof fromEnv>;
        try {
          keys = fromEnv(vars);
        } catch (error) {
          expect(error).toBeInstanceOf(EnvError);
          const message = (error as EnvError).message;
          for (const raw of Object.values(vars)) {
            for (const candidate of [raw, raw.trim(), ...raw.split(/[\s,;]+/)]) {
              // Provider names appear in the guidance on purpose ("e.g. openai, anthropic").
              if (candidate.length >= 8 && !PROVIDER_WORDS.has(candidate))
                expect(message).not.toContain(candidate);
            }
          }
          return;
        }
        expect(Array.isArray(keys)).toBe(true);
        const aliases = new Set(keys.map((k) => k.alias));
        expect(aliases.size).toBe(keys.length);
        for (const key of keys) {
          expect(key.secret.length).toBeGreaterThan(0);
          expect(key.secret).toBe(key.secret.trim());
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('parseEnvFile', () => {
  it('reads dotenv text', () => {
    const text = [
      '\uFEFF# keys for the pool',
      'OPENAI_API_KEY=sk-one',
      'export ANTHROPIC_API_KEY = "sk-ant-two"   # trailing comment',
      "KEY_1='literal \\n #not a comment'",
      'KEY_1_PROVIDER=groq # comment',
      'KEY_1_MODEL=a#b',
      'EMPTY=',
      '',
      '   # indented comment',
      'ESCAPED="line1\\nline2 \\"q\\""',
      'MULTI="first',
      'second"',
      'BACKTICK=`it\'s "fine"`',
      'OPENAI_API_KEY=sk-later-wins',
    ].join('\r\n');
    expect(parseEnvFile(text)).toEqual({
      OPENAI_API_KEY: 'sk-later-wins',
      ANTHROPIC_API_KEY: 'sk-ant-two',
      KEY_1: 'literal \\n #not a comment',
      KEY_1_PROVIDER: 'groq',
      KEY_1_MODEL: 'a#b',
      EMPTY: '',
      ESCAPED: 'line1\nline2 "q"',
      MULTI: 'first\nsecond',
      BACKTICK: 'it\'s "fine"',
    });
  });

  it('feeds fromEnv', () => {
    const keys = fromEnv(parseEnvFile(`OPENAI_API_KEYS="${OA(1)},${OA(2)}"\nOPENAI_RPM=60\n`));
    expect(keys.map((k) => [k.alias, k.limits?.rpm])).toEqual([
      ['openai-1', 60],
      ['openai-2', 60],
    ]);
  });

  it('never lets a name reach the prototype', () => {
    const parsed = parseEnvFile('__proto__=polluted\nconstructor=x');
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype);
    expect(Object.keys(parsed)).toEqual(['__proto__', 'constructor']);
  });

  it('reports invalid lines by number, never by content', () => {
    const text =
      'GOOD=1\nsk-proj-PASTEDSECRET0123456789\nexport\n=nameless\nQUOTE="sk-UNCLOSEDSECRET0123\nLAST=2';
    const error = envError(() => parseEnvFile(text));
    expect(error.message).toContain('lines 2, 3, 4, 5');
    expect(error.message).not.toContain('PASTEDSECRET');
    expect(error.message).not.toContain('UNCLOSEDSECRET');
    expect(envError(() => parseEnvFile('A="x" trailing')).message).toContain('line 1 is');
  });

  it('returns a record or throws an EnvError without the text (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        try {
          const parsed = parseEnvFile(text);
          for (const value of Object.values(parsed)) expect(typeof value).toBe('string');
        } catch (error) {
          expect(error).toBeInstanceOf(EnvError);
          for (const line of text.split(/\r\n|\r|\n/)) {
            if (line.trim().length >= 8) expect((error as EnvError).message).not.toContain(line.trim());
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
