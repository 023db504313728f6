import type { KeyInfo, KeyLimits, KeyRecord, KeySpec, KeyState, KeyStatus } from '@keypool/spec';
import { fingerprintSecret, type MasterKey, maskSecret, sealSecret } from './crypto.js';
import { ConfigError } from './errors.js';

const LIMIT_FIELDS: ReadonlyArray<keyof KeyLimits> = [
  'rpm',
  'tpm',
  'requestsPerDay',
  'tokensPerDay',
  'monthlyBudgetUsd',
];
const ALIAS = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$/;

/** Validates a key spec at the edge; messages name the field and the key, never the secret. */
export function validateKeySpec(spec: KeySpec, where: string): void {
  const fail = (problem: string): never => {
    throw new ConfigError(`${where}: ${problem}`);
  };
  if (typeof spec !== 'object' || spec === null) fail('must be an object');
  if (typeof spec.provider !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(spec.provider)) {
    fail('provider must be a lower-case id such as "openai" or "anthropic"');
  }
  if (typeof spec.secret !== 'string' || spec.secret.length === 0) fail('secret must be a non-empty string');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\s\u0000-\u001f]/.test(spec.secret)) fail('secret contains whitespace or control characters');
  if (spec.alias !== undefined && (typeof spec.alias !== 'string' || !ALIAS.test(spec.alias))) {
    fail('alias must be 1-100 characters of letters, digits and . _ : @ -, starting with a letter or digit');
  }
  if (spec.priority !== undefined && !(Number.isInteger(spec.priority) && spec.priority >= 0)) {
    fail('priority must be a whole number >= 0 (0 = primary, higher = fallback)');
  }
  if (spec.weight !== undefined && !(Number.isFinite(spec.weight) && spec.weight >= 0)) {
    fail('weight must be a finite number >= 0');
  }
  for (const field of ['limits', 'orgLimits'] as const) {
    const limits = spec[field];
    if (limits === undefined) continue;
    if (typeof limits !== 'object' || limits === null) fail(`${field} must be an object`);
    for (const [name, value] of Object.entries(limits)) {
      if (!LIMIT_FIELDS.includes(name as keyof KeyLimits)) {
        fail(`${field}.${name} is not a known limit (use ${LIMIT_FIELDS.join(', ')})`);
      }
      if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value > 0)) {
        fail(`${field}.${name} must be a positive number`);
      }
    }
  }
  if (spec.orgLimits !== undefined && spec.organization === undefined) {
    fail('orgLimits needs organization: they are the limits the keys of one organization share');
  }
  if (
    spec.models !== undefined &&
    !(Array.isArray(spec.models) && spec.models.every((m) => typeof m === 'string' && m.length > 0))
  ) {
    fail('models must be an array of model ids');
  }
  for (const field of ['organization', 'project', 'account', 'baseURL'] as const) {
    const value = spec[field];
    if (value !== undefined && typeof value !== 'string') fail(`${field} must be a string`);
  }
  if (spec.baseURL !== undefined && !URL.canParse(spec.baseURL)) fail('baseURL must be an absolute URL');
}

export function cleanLimits(limits: KeyLimits | undefined): KeyLimits {
  const out: KeyLimits = {};
  if (limits === undefined) return out;
  for (const name of LIMIT_FIELDS) {
    const value = limits[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** Copies the optional descriptive fields of a spec onto a record, leaving absent ones absent. */
function applyOptional(record: KeyRecord, spec: Partial<KeySpec>): void {
  if (spec.models !== undefined) record.models = [...spec.models];
  if (spec.organization !== undefined) record.organization = spec.organization;
  if (spec.orgLimits !== undefined) record.orgLimits = cleanLimits(spec.orgLimits);
  if (spec.project !== undefined) record.project = spec.project;
  if (spec.account !== undefined) record.account = spec.account;
  if (spec.baseURL !== undefined) record.baseURL = spec.baseURL;
  if (spec.metadata !== undefined) record.metadata = { ...spec.metadata };
}

export function createKeyRecord(spec: KeySpec, master: MasterKey, id: string, now: number): KeyRecord {
  const fingerprint = fingerprintSecret(spec.secret, master);
  const record: KeyRecord = {
    id,
    alias: spec.alias ?? `${spec.provider}-${fingerprint.slice(0, 8)}`,
    provider: spec.provider,
    sealedSecret: sealSecret(spec.secret, master),
    masterKeyId: master.id,
    fingerprint,
    maskedSecret: maskSecret(spec.secret),
    priority: spec.priority ?? 0,
    weight: spec.weight ?? 1,
    limits: cleanLimits(spec.limits),
    enabled: true,
    createdAt: now,
    updatedAt: now,
  };
  applyOptional(record, spec);
  return record;
}

/** A record with the patch applied; a new secret is sealed, absent fields are kept. */
export function patchKeyRecord(
  record: KeyRecord,
  patch: Partial<Omit<KeySpec, 'provider'>>,
  master: MasterKey,
  now: number,
): KeyRecord {
  const next: KeyRecord = { ...record, updatedAt: now };
  if (patch.secret !== undefined) {
    next.sealedSecret = sealSecret(patch.secret, master);
    next.masterKeyId = master.id;
    next.fingerprint = fingerprintSecret(patch.secret, master);
    next.maskedSecret = maskSecret(patch.secret);
  }
  if (patch.alias !== undefined) next.alias = patch.alias;
  if (patch.priority !== undefined) next.priority = patch.priority;
  if (patch.weight !== undefined) next.weight = patch.weight;
  if (patch.limits !== undefined) next.limits = cleanLimits(patch.limits);
  applyOptional(next, patch);
  return next;
}

/** True when the declared spec would change the stored record's configuration. */
export function specDiffers(record: KeyRecord, spec: KeySpec): boolean {
  const { secret: _secret, provider: _provider, ...fields } = spec;
  const declared = patchKeyRecord(record, fields, dummyMaster, 0);
  return (
    declared.alias !== record.alias ||
    declared.priority !== record.priority ||
    declared.weight !== record.weight ||
    JSON.stringify(declared.limits) !== JSON.stringify(record.limits) ||
    JSON.stringify(declared.orgLimits) !== JSON.stringify(record.orgLimits) ||
    JSON.stringify(declared.models) !== JSON.stringify(record.models) ||
    declared.organization !== record.organization ||
    declared.project !== record.project ||
    declared.account !== record.account ||
    declared.baseURL !== record.baseURL
  );
}

// patchKeyRecord only touches the master when a secret is given; specDiffers never gives one.
const dummyMaster = { id: 'unused', key: Buffer.alloc(32) } as MasterKey;

export function toKeyInfo(record: KeyRecord): KeyInfo {
  const { sealedSecret: _sealed, masterKeyId: _master, ...info } = record;
  return info;
}

export function modelAllowed(record: KeyRecord, model: string | undefined): boolean {
  if (model === undefined || record.models === undefined || record.models.length === 0) return true;
  for (const allowed of record.models) {
    if (allowed === model) return true;
    if (allowed.endsWith('*') && model.startsWith(allowed.slice(0, -1))) return true;
  }
  return false;
}

export interface DerivedStatus {
  status: KeyStatus;
  reason?: string;
  until?: number;
}

/** The one place that turns a record and its hot state into a status people read. */
export function deriveStatus(record: KeyRecord, state: KeyState | undefined, now: number): DerivedStatus {
  if (!record.enabled) {
    return { status: 'disabled', reason: record.disabledReason ?? 'disabled by an operator' };
  }
  if (state === undefined) return { status: 'active' };
  if (state.invalidSince !== undefined) {
    return { status: 'invalid', reason: 'upstream rejected the key (401); re-enable it after fixing' };
  }
  if (state.exhaustedUntil !== undefined && state.exhaustedUntil > now) {
    return { status: 'exhausted', reason: 'quota or billing exhausted', until: state.exhaustedUntil };
  }
  if (state.coolingUntil !== undefined && state.coolingUntil > now) {
    return { status: 'cooling', reason: 'rate limited (429)', until: state.coolingUntil };
  }
  if (state.breaker === 'open' && state.breakerOpenUntil !== undefined && state.breakerOpenUntil > now) {
    return {
      status: 'cooling',
      reason: `breaker open after ${state.consecutiveFailures} consecutive failures`,
      until: state.breakerOpenUntil,
    };
  }
  return { status: 'active' };
}
