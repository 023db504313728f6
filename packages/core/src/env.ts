import type { KeyLimits, KeySpec } from '@keypool/spec';
import { maskSecret } from './crypto.js';
import { EnvError } from './errors.js';

type Env = Record<string, string | undefined>;

/** Providers with their own variable families (`OPENAI_API_KEY`, …); others go through `KEY_N`. */
const PROVIDERS = [
  { id: 'openai', prefix: 'OPENAI', name: 'OpenAI' },
  { id: 'anthropic', prefix: 'ANTHROPIC', name: 'Anthropic' },
] as const;

const PROVIDER_ID = /^[a-z0-9][a-z0-9-]*$/;
const ALIAS = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$/;
const LIST_SEPARATOR = /[\s,;]+/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const WHITESPACE_OR_CONTROL = /[\s\u0000-\u001f\u007f-\u009f\u200b-\u200d\u2060\ufeff]/;
const NON_ASCII = /[^\u0020-\u007e]/;
const QUOTE = /["'`]/;
const WHOLE = /^\d+$/;
const DECIMAL = /^\d+(?:\.\d+)?$/;

interface Found {
  spec: KeySpec;
  /** The variable the secret came from, for error messages. */
  variable: string;
  /** Where the alias comes from: generated per provider and tier, or set by `KEY_N_ALIAS` / `key-N`. */
  aliasFrom: 'primary' | 'fallback' | 'generic';
  aliasVariable?: string;
}

/**
 * Reads API keys from environment variables in every format people use today:
 * `OPENAI_API_KEYS` lists, `OPENAI_API_KEY` + `OPENAI_API_KEY_1..N`,
 * `OPENAI_API_KEY_FALLBACK_1..N` (priority 1), the same for ANTHROPIC, and generic
 * `KEY_N` + `KEY_N_PROVIDER` with optional per-key settings. Unrelated variables are
 * ignored; a malformed one throws an EnvError naming it, never showing the secret.
 */
export function fromEnv(env: Env): KeySpec[] {
  const read = (name: string) => cleanValue(env, name);
  const found: Found[] = [];

  for (const provider of PROVIDERS) {
    const p = provider.prefix;
    const primary = (variable: string, secret: string) =>
      found.push({ spec: { provider: provider.id, secret, priority: 0 }, variable, aliasFrom: 'primary' });
    const fallback = (variable: string, secret: string) =>
      found.push({ spec: { provider: provider.id, secret, priority: 1 }, variable, aliasFrom: 'fallback' });

    const single = read(`${p}_API_KEY`);
    if (single !== undefined) primary(`${p}_API_KEY`, checkSingle(`${p}_API_KEY`, single, provider.id));
    const list = read(`${p}_API_KEYS`);
    if (list !== undefined) {
      for (const secret of splitList(`${p}_API_KEYS`, list, provider.id)) primary(`${p}_API_KEYS`, secret);
    }
    for (const variable of numbered(env, new RegExp(`^${p}_API_KEY_(\\d+)$`))) {
      const value = read(variable);
      if (value !== undefined) primary(variable, checkSingle(variable, value, provider.id));
    }
    const fallbackSingle = read(`${p}_API_KEY_FALLBACK`);
    if (fallbackSingle !== undefined) {
      fallback(`${p}_API_KEY_FALLBACK`, checkSingle(`${p}_API_KEY_FALLBACK`, fallbackSingle, provider.id));
    }
    for (const variable of numbered(env, new RegExp(`^${p}_API_KEY_FALLBACK_(\\d+)$`))) {
      const value = read(variable);
      if (value !== undefined) fallback(variable, checkSingle(variable, value, provider.id));
    }
  }

  for (const variable of numbered(env, /^KEY_(\d+)$/)) {
    const secret = read(variable);
    if (secret !== undefined) found.push(readGeneric(env, variable, secret));
  }

  // Provider-wide limits fill in for keys that have none of their own.
  for (const provider of PROVIDERS) {
    const rpm = readNumber(env, `${provider.prefix}_RPM`, 'positive-integer');
    const tpm = readNumber(env, `${provider.prefix}_TPM`, 'positive-integer');
    if (rpm === undefined && tpm === undefined) continue;
    for (const { spec } of found) {
      if (spec.provider !== provider.id) continue;
      const limits: KeyLimits = { ...spec.limits };
      if (rpm !== undefined && limits.rpm === undefined) limits.rpm = rpm;
      if (tpm !== undefined && limits.tpm === undefined) limits.tpm = tpm;
      spec.limits = limits;
    }
  }

  return assignAliases(dedupe(found));
}

/** Same provider + same secret: keep the lowest tier, then the first found. Compared in memory only. */
function dedupe(found: Found[]): Found[] {
  const best = new Map<string, Found>();
  for (const entry of found) {
    const id = `${entry.spec.provider}\u0000${entry.spec.secret}`;
    const current = best.get(id);
    if (current === undefined || (entry.spec.priority ?? 0) < (current.spec.priority ?? 0))
      best.set(id, entry);
  }
  const kept = new Set(best.values());
  return found.filter((entry) => kept.has(entry));
}

function assignAliases(found: Found[]): KeySpec[] {
  const counters = new Map<string, number>();
  const owners = new Map<string, string>();
  for (const entry of found) {
    if (entry.aliasFrom !== 'generic') {
      const series = entry.aliasFrom === 'primary' ? entry.spec.provider : `${entry.spec.provider}-fallback`;
      const next = (counters.get(series) ?? 0) + 1;
      counters.set(series, next);
      entry.spec.alias = `${series}-${next}`;
    }
  }
  // Generated aliases first, so an explicit KEY_N_ALIAS that collides is the one reported.
  const ordered = [
    ...found.filter((e) => e.aliasFrom !== 'generic'),
    ...found.filter((e) => e.aliasFrom === 'generic'),
  ];
  for (const entry of ordered) {
    const alias = entry.spec.alias!;
    const owner = owners.get(alias);
    if (owner !== undefined) {
      throw new EnvError(
        entry.aliasVariable ?? entry.variable,
        `gives an alias already used by the key from ${owner}; aliases must be unique, set a different one`,
      );
    }
    owners.set(alias, entry.variable);
  }
  return found.map((entry) => entry.spec);
}

function readGeneric(env: Env, variable: string, rawSecret: string): Found {
  const name = (suffix: string) => `${variable}_${suffix}`;
  const read = (suffix: string) => cleanValue(env, name(suffix));

  const providerValue = read('PROVIDER');
  if (providerValue === undefined) {
    throw new EnvError(
      name('PROVIDER'),
      `is required when ${variable} is set: name the key's provider, e.g. ${name('PROVIDER')}=openai`,
    );
  }
  const provider = providerValue.toLowerCase();
  if (!PROVIDER_ID.test(provider)) {
    throw new EnvError(
      name('PROVIDER'),
      'must be a provider id of letters, digits and dashes, such as openai or anthropic',
    );
  }
  const secret = checkSingle(variable, rawSecret, provider);
  const spec: KeySpec = { provider, secret };
  const found: Found = { spec, variable, aliasFrom: 'generic' };

  const alias = read('ALIAS');
  if (alias !== undefined) {
    if (!ALIAS.test(alias)) {
      throw new EnvError(
        name('ALIAS'),
        'must be 1-100 characters of letters, digits and . _ : @ -, starting with a letter or digit',
      );
    }
    spec.alias = alias;
    found.aliasVariable = name('ALIAS');
  } else {
    spec.alias = `key-${variable.slice('KEY_'.length)}`;
  }

  spec.priority = readNumber(env, name('PRIORITY'), 'integer') ?? 0;
  const weight = readNumber(env, name('WEIGHT'), 'number');
  if (weight !== undefined) spec.weight = weight;

  const limits = readLimits(env, name(''));
  if (limits !== undefined) spec.limits = limits;

  const models = read('MODEL');
  if (models !== undefined) {
    const list = models.split(/[\s,;]+/).filter((model) => model !== '');
    if (list.length > 0) spec.models = list;
  }
  const organization = readPlain(env, name('ORG'));
  if (organization !== undefined) spec.organization = organization;
  const orgLimits = readLimits(env, name('ORG_'));
  if (orgLimits !== undefined) {
    if (organization === undefined) {
      const culprit = LIMIT_SUFFIXES.map((suffix) => name(`ORG_${suffix}`)).find((v) =>
        Object.hasOwn(env, v),
      );
      throw new EnvError(
        culprit ?? name('ORG'),
        `is a limit the keys of one organization share, but ${name('ORG')} is not set; add the organization id`,
      );
    }
    spec.orgLimits = orgLimits;
  }
  const project = readPlain(env, name('PROJECT'));
  if (project !== undefined) spec.project = project;
  const baseURL = readPlain(env, name('BASE_URL'));
  if (baseURL !== undefined) {
    if (!isHttpUrl(baseURL))
      throw new EnvError(name('BASE_URL'), 'must be an http(s) URL, e.g. https://api.openai.com/v1');
    spec.baseURL = baseURL;
  }
  return found;
}

const LIMIT_SUFFIXES = ['RPM', 'TPM', 'RPD', 'TPD', 'BUDGET_USD'] as const;

/** The limits set by `<prefix>RPM`, `TPM`, `RPD`, `TPD` and `BUDGET_USD`; undefined when none is. */
function readLimits(env: Env, prefix: string): KeyLimits | undefined {
  const limits: KeyLimits = {};
  const rpm = readNumber(env, `${prefix}RPM`, 'positive-integer');
  const tpm = readNumber(env, `${prefix}TPM`, 'positive-integer');
  const requestsPerDay = readNumber(env, `${prefix}RPD`, 'positive-integer');
  const tokensPerDay = readNumber(env, `${prefix}TPD`, 'positive-integer');
  const monthlyBudgetUsd = readNumber(env, `${prefix}BUDGET_USD`, 'positive-number');
  if (rpm !== undefined) limits.rpm = rpm;
  if (tpm !== undefined) limits.tpm = tpm;
  if (requestsPerDay !== undefined) limits.requestsPerDay = requestsPerDay;
  if (tokensPerDay !== undefined) limits.tokensPerDay = tokensPerDay;
  if (monthlyBudgetUsd !== undefined) limits.monthlyBudgetUsd = monthlyBudgetUsd;
  return Object.keys(limits).length > 0 ? limits : undefined;
}

/** The variable's value trimmed and unquoted; undefined when absent or empty. */
function cleanValue(env: Env, variable: string): string | undefined {
  const raw = Object.hasOwn(env, variable) ? env[variable] : undefined;
  if (typeof raw !== 'string') return undefined;
  const value = unquote(variable, raw.trim());
  return value === '' ? undefined : value;
}

function unquote(variable: string, value: string): string {
  const first = value[0];
  if (first === '"' || first === "'" || first === '`') {
    if (value.length < 2 || value[value.length - 1] !== first) {
      throw new EnvError(variable, 'opens a quote it never closes; remove the quote or close it');
    }
    return value.slice(1, -1).trim();
  }
  return value;
}

function splitList(variable: string, value: string, provider: string): string[] {
  const parts = value.split(LIST_SEPARATOR).filter((part) => part !== '');
  return parts
    .map((part, index) => checkSecret(variable, unquote(variable, part), provider, `entry ${index + 1}`))
    .filter((secret) => secret !== '');
}

function checkSingle(variable: string, secret: string, provider: string): string {
  if (/[,;]/.test(secret)) {
    const family = PROVIDERS.find((p) => p.id === provider);
    const hint = family
      ? `put several keys in ${family.prefix}_API_KEYS or ${family.prefix}_API_KEY_1, ${family.prefix}_API_KEY_2, …`
      : 'put each key in its own KEY_N variable';
    throw new EnvError(variable, `holds a comma or semicolon; one variable holds one key: ${hint}`);
  }
  return checkSecret(variable, secret, provider);
}

/** Rejects values that cannot be a working key; messages show at most the masked form. */
function checkSecret(variable: string, secret: string, provider: string, where?: string): string {
  const fail = (problem: string): never => {
    throw new EnvError(variable, where ? `${where} ${problem}` : problem);
  };
  if (WHITESPACE_OR_CONTROL.test(secret)) {
    fail('contains whitespace, control or invisible characters inside the key; a key is one unbroken token');
  }
  if (QUOTE.test(secret))
    fail('contains a quote character inside the key; quote the whole value or none of it');
  if (NON_ASCII.test(secret))
    fail('contains non-ASCII characters, which no API key has (a copy-paste artifact?)');
  if (provider === 'openai' && secret.startsWith('sk-ant-')) {
    fail(
      `holds an Anthropic key (${maskSecret(secret)}); move it to ANTHROPIC_API_KEY or ANTHROPIC_API_KEYS`,
    );
  }
  if (provider === 'anthropic' && /^sk-(?:proj|svcacct|admin)-/.test(secret)) {
    fail(`holds an OpenAI key (${maskSecret(secret)}); move it to OPENAI_API_KEY or OPENAI_API_KEYS`);
  }
  return secret;
}

type NumberKind = 'integer' | 'positive-integer' | 'number' | 'positive-number';

const NUMBER_PROBLEM: Record<NumberKind, string> = {
  integer: 'must be a whole number >= 0 (0 = primary, higher = fallback)',
  'positive-integer': 'must be a whole number above 0',
  number: 'must be a number >= 0',
  'positive-number': 'must be a number above 0, e.g. 25 or 12.50',
};

function readNumber(env: Env, variable: string, kind: NumberKind): number | undefined {
  const value = cleanValue(env, variable);
  if (value === undefined) return undefined;
  const isWhole = kind === 'integer' || kind === 'positive-integer';
  const text = isWhole ? value : value.replace(/^\$/, '');
  const number = (isWhole ? WHOLE : DECIMAL).test(text) ? Number(text) : Number.NaN;
  const isValid =
    Number.isFinite(number) &&
    (!isWhole || Number.isSafeInteger(number)) &&
    (kind.startsWith('positive') ? number > 0 : number >= 0);
  if (!isValid) throw new EnvError(variable, NUMBER_PROBLEM[kind]);
  return number;
}

/** A non-secret setting (org, project, URL): one token, no spaces. */
function readPlain(env: Env, variable: string): string | undefined {
  const value = cleanValue(env, variable);
  if (value !== undefined && WHITESPACE_OR_CONTROL.test(value)) {
    throw new EnvError(variable, 'contains whitespace or control characters');
  }
  return value;
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** Names matching `pattern` (whose group 1 is a number), sorted numerically; gaps are fine. */
function numbered(env: Env, pattern: RegExp): string[] {
  const names: Array<{ name: string; digits: string }> = [];
  for (const name of Object.keys(env)) {
    const match = pattern.exec(name);
    if (match) names.push({ name, digits: match[1]! });
  }
  return names
    .sort((a, b) => compareDigits(a.digits, b.digits) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((entry) => entry.name);
}

function compareDigits(a: string, b: string): number {
  const x = a.replace(/^0+(?=\d)/, '');
  const y = b.replace(/^0+(?=\d)/, '');
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

// ---------------------------------------------------------------------------
// dotenv text
// ---------------------------------------------------------------------------

const ASSIGNMENT = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=[ \t]*(.*)$/;
const DOUBLE_QUOTED_ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\' };

/**
 * Parses dotenv-style text (`KEY=value`, `export KEY=value`, single/double/backtick
 * quotes with multi-line values, `#` comments, blank lines, CRLF), later lines winning.
 * Invalid lines are reported by number, never by content.
 */
export function parseEnvFile(text: string): Record<string, string> {
  const lines = String(text)
    .replace(/^\uFEFF/, '')
    .split(/\r\n|\r|\n/);
  const values = new Map<string, string>();
  const invalid: number[] = [];
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const match = ASSIGNMENT.exec(line);
    if (match === null) {
      invalid.push(index + 1);
      continue;
    }
    const name = match[1]!;
    const rest = match[2]!;
    const quote = rest[0];
    if (quote !== '"' && quote !== "'" && quote !== '`') {
      // Unquoted: a '#' after whitespace starts a comment (a '#' inside a value stays).
      values.set(name, rest.replace(/(?:^|\s)#.*$/, '').trim());
      continue;
    }
    const start = index;
    let body = rest.slice(1);
    let close = closingQuote(body, quote);
    while (close === -1 && index + 1 < lines.length) {
      index++;
      body += `\n${lines[index]}`;
      close = closingQuote(body, quote);
    }
    const after = close === -1 ? '' : body.slice(close + 1).trim();
    if (close === -1 || (after !== '' && !after.startsWith('#'))) {
      invalid.push(start + 1);
      continue;
    }
    const value = body.slice(0, close);
    values.set(
      name,
      quote === '"'
        ? value.replace(/\\(.)/g, (all, char: string) => DOUBLE_QUOTED_ESCAPES[char] ?? all)
        : value,
    );
  }
  if (invalid.length > 0) {
    const shown = invalid.slice(0, 20).join(', ') + (invalid.length > 20 ? ', …' : '');
    throw new EnvError(
      'env file',
      `line${invalid.length > 1 ? 's' : ''} ${shown} ${invalid.length > 1 ? 'are' : 'is'} not a KEY=value ` +
        'assignment or leave a quote unclosed; fix them or comment them out with #',
    );
  }
  // fromEntries defines own properties, so a line like `__proto__=x` cannot touch the prototype.
  return Object.fromEntries(values);
}

function closingQuote(body: string, quote: string): number {
  for (let i = 0; i < body.length; i++) {
    const char = body[i];
    if (quote === '"' && char === '\\') i++;
    else if (char === quote) return i;
  }
  return -1;
}
