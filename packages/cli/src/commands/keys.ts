import { readFileSync } from 'node:fs';
import type { KeyInfo, KeyLimits, KeyPool } from '@keypool/spec';
import { type GlobalOptions, type OpenedPool, openPool } from '../open-pool.js';
import { printJson, printTable } from '../output.js';

export async function withPool<T>(
  options: GlobalOptions,
  fn: (opened: OpenedPool) => Promise<T>,
): Promise<T> {
  // A long refresh: one-shot commands read the store once and need no background work.
  const opened = await openPool(options, { refreshMs: 3_600_000 });
  try {
    return await fn(opened);
  } finally {
    await opened.pool.close();
  }
}

export function findKey(pool: KeyPool, idOrAlias: string): KeyInfo {
  const key = pool.keys().find((k) => k.id === idOrAlias || k.alias === idOrAlias);
  if (key === undefined) {
    throw Object.assign(new Error(`No key "${idOrAlias}": \`keypool keys list\` shows ids and aliases.`), {
      code: 'KEYPOOL_UNKNOWN_KEY',
    });
  }
  return key;
}

async function audit(opened: OpenedPool, action: string, target: string, details: Record<string, unknown>) {
  await opened.store.appendAudit({
    id: `aud_cli_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
    time: Date.now(),
    actor: 'cli',
    action,
    target,
    details,
  });
}

export async function keysList(options: GlobalOptions): Promise<void> {
  await withPool(options, async ({ pool }) => {
    const health = new Map(pool.health().keys.map((k) => [k.id, k]));
    const keys = pool
      .keys()
      .map((k) => ({ ...k, status: health.get(k.id)?.status ?? (k.enabled ? 'active' : 'disabled') }));
    if (options.json) printJson({ keys });
    else
      printTable(keys, ['id', 'alias', 'provider', 'status', 'maskedSecret', 'priority', 'disabledReason']);
  });
}

export interface AddOptions extends GlobalOptions {
  alias?: string;
  priority?: string;
  weight?: string;
  baseUrl?: string;
  secretEnv?: string;
  rpm?: string;
  tpm?: string;
  models?: string;
  org?: string;
  orgRpm?: string;
  orgTpm?: string;
  orgRpd?: string;
  orgTpd?: string;
  orgBudgetUsd?: string;
}

function number(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed)) throw new Error(`${flag} must be a number, got "${value}".`);
  return parsed;
}

/**
 * The limits the key's organization shares (--org-rpm, …); undefined when no such flag is
 * given. They are the organization's, so they need --org.
 */
function orgLimitsOf(options: AddOptions): KeyLimits | undefined {
  const flags: Array<[keyof KeyLimits, string, string | undefined]> = [
    ['rpm', '--org-rpm', options.orgRpm],
    ['tpm', '--org-tpm', options.orgTpm],
    ['requestsPerDay', '--org-rpd', options.orgRpd],
    ['tokensPerDay', '--org-tpd', options.orgTpd],
    ['monthlyBudgetUsd', '--org-budget-usd', options.orgBudgetUsd],
  ];
  const limits: KeyLimits = {};
  const given: string[] = [];
  for (const [name, flag, value] of flags) {
    const parsed = number(value, flag);
    if (parsed === undefined) continue;
    limits[name] = parsed;
    given.push(flag);
  }
  if (given.length === 0) return undefined;
  if (options.org === undefined) {
    throw Object.assign(
      new Error(
        `${given.join(', ')} ${given.length > 1 ? 'are limits' : 'is a limit'} the keys of one organization share: add --org <organization id>.`,
      ),
      { code: 'KEYPOOL_INVALID_CONFIG' },
    );
  }
  return limits;
}

/** The secret from --secret-env VAR or stdin; never from argv, where `ps` would show it. */
function readSecret(options: AddOptions): string {
  if (options.secretEnv !== undefined) {
    const value = process.env[options.secretEnv];
    if (!value) throw new Error(`--secret-env ${options.secretEnv}: that variable is empty or unset.`);
    return value.trim();
  }
  if (process.stdin.isTTY) {
    throw new Error(
      'Give the secret on stdin (`printf %s "$KEY" | keypool keys add openai`) or with --secret-env VAR.',
    );
  }
  const text = readFileSync(0, 'utf8').trim();
  if (text === '') throw new Error('stdin was empty: pipe the secret in, or use --secret-env VAR.');
  return text;
}

export async function keysAdd(provider: string, options: AddOptions): Promise<void> {
  // Before the secret: a flag mistake should not swallow a piped secret first.
  const orgLimits = orgLimitsOf(options);
  const secret = readSecret(options);
  const limits: KeyLimits = {};
  const rpm = number(options.rpm, '--rpm');
  const tpm = number(options.tpm, '--tpm');
  if (rpm !== undefined) limits.rpm = rpm;
  if (tpm !== undefined) limits.tpm = tpm;
  const priority = number(options.priority, '--priority');
  const weight = number(options.weight, '--weight');
  await withPool(options, async (opened) => {
    const info = await opened.pool.addKey({
      provider,
      secret,
      ...(options.alias !== undefined && { alias: options.alias }),
      ...(priority !== undefined && { priority }),
      ...(weight !== undefined && { weight }),
      ...(options.baseUrl !== undefined && { baseURL: options.baseUrl }),
      ...(options.models !== undefined && { models: options.models.split(',').filter(Boolean) }),
      ...(Object.keys(limits).length > 0 && { limits }),
      ...(options.org !== undefined && { organization: options.org }),
      ...(orgLimits !== undefined && { orgLimits }),
    });
    await audit(opened, 'key.create', info.id, { alias: info.alias, provider: info.provider });
    if (options.json) printJson(info);
    else console.log(`added ${info.alias} (${info.id}, ${info.provider}, ${info.maskedSecret})`);
  });
}

export async function keysSetEnabled(
  idOrAlias: string,
  enabled: boolean,
  options: GlobalOptions & { reason?: string },
): Promise<void> {
  await withPool(options, async (opened) => {
    const key = findKey(opened.pool, idOrAlias);
    const info = enabled
      ? await opened.pool.enableKey(key.id)
      : await opened.pool.disableKey(key.id, options.reason);
    await audit(opened, enabled ? 'key.enable' : 'key.disable', key.id, {
      alias: key.alias,
      ...(options.reason !== undefined && { reason: options.reason }),
    });
    if (options.json) printJson(info);
    else
      console.log(
        `${enabled ? 'enabled' : 'disabled'} ${info.alias}${options.reason ? ` (${options.reason})` : ''}`,
      );
  });
}

export async function keysTest(idOrAlias: string, options: GlobalOptions): Promise<boolean> {
  return withPool(options, async (opened) => {
    const key = findKey(opened.pool, idOrAlias);
    // A pass brings an invalid, exhausted or breaker-open key back, as the API's test and the
    // background probes do.
    const result = await opened.pool.testKey(key.id, { actor: 'cli' });
    const { recovered } = result;
    const out = {
      alias: key.alias,
      ok: result.ok,
      recovered,
      latencyMs: result.latencyMs,
      ...(result.status !== undefined && { status: result.status }),
      ...(result.code !== undefined && { code: result.code }),
    };
    if (options.json) printJson(out);
    else
      console.log(
        result.ok
          ? `${key.alias}: ok (${out.latencyMs} ms)${recovered.length > 0 ? `; no longer ${recovered.join(', ')}` : ''}`
          : `${key.alias}: FAILED${out.status !== undefined ? ` (HTTP ${out.status}${out.code ? ` ${out.code}` : ''})` : ''}`,
      );
    return result.ok;
  });
}
