import type {
  AuditEntry,
  KeyRecord,
  KeyState,
  LeaseRecord,
  PoolRecord,
  TokenRecord,
  UsageRecord,
} from '@keypool/spec';
import { num } from './context.js';

/** Rows as the drivers return them; every mapping below turns SQL nulls into absent fields. */
export type Row = Record<string, unknown>;

// Optional fields come back absent, never null (the contract's round-trip rule).
export function setIf<T extends object, K extends keyof T>(
  target: T,
  key: K,
  value: T[K] | null | undefined,
): void {
  if (value !== null && value !== undefined) target[key] = value;
}
export const json = (value: unknown) => (value === undefined ? null : JSON.stringify(value));
export const parse = <T>(value: unknown): T | undefined =>
  value === null || value === undefined ? undefined : (JSON.parse(String(value)) as T);
export const str = (value: unknown) => (value === null || value === undefined ? undefined : String(value));
export const optNum = (value: unknown) => (value === null || value === undefined ? undefined : Number(value));

export function keyToRow(k: KeyRecord): Row {
  return {
    id: k.id,
    alias: k.alias,
    provider: k.provider,
    sealed_secret: k.sealedSecret,
    master_key_id: k.masterKeyId,
    fingerprint: k.fingerprint,
    masked_secret: k.maskedSecret,
    priority: k.priority,
    weight: k.weight,
    limits: JSON.stringify(k.limits ?? {}),
    org_limits: json(k.orgLimits),
    models: json(k.models),
    organization: k.organization ?? null,
    project: k.project ?? null,
    account: k.account ?? null,
    base_url: k.baseURL ?? null,
    metadata: json(k.metadata),
    enabled: k.enabled ? 1 : 0,
    disabled_reason: k.disabledReason ?? null,
    created_at: k.createdAt,
    updated_at: k.updatedAt,
  };
}

export function keyFromRow(r: Row): KeyRecord {
  const k: KeyRecord = {
    id: String(r.id),
    alias: String(r.alias),
    provider: String(r.provider),
    sealedSecret: String(r.sealed_secret),
    masterKeyId: String(r.master_key_id),
    fingerprint: String(r.fingerprint),
    maskedSecret: String(r.masked_secret),
    priority: num(r.priority),
    weight: num(r.weight),
    limits: parse(r.limits) ?? {},
    enabled: num(r.enabled) === 1,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
  setIf(k, 'models', parse<string[]>(r.models));
  setIf(k, 'organization', str(r.organization));
  setIf(k, 'orgLimits', parse<KeyRecord['orgLimits']>(r.org_limits));
  setIf(k, 'project', str(r.project));
  setIf(k, 'account', str(r.account));
  setIf(k, 'baseURL', str(r.base_url));
  setIf(k, 'metadata', parse<Record<string, string>>(r.metadata));
  setIf(k, 'disabledReason', str(r.disabled_reason));
  return k;
}

export function poolToRow(p: PoolRecord): Row {
  return {
    id: p.id,
    name: p.name,
    description: p.description ?? null,
    strategy: p.strategy ?? null,
    key_ids: JSON.stringify(p.keyIds),
    created_at: p.createdAt,
    updated_at: p.updatedAt,
  };
}

export function poolFromRow(r: Row): PoolRecord {
  const p: PoolRecord = {
    id: String(r.id),
    name: String(r.name),
    keyIds: parse<string[]>(r.key_ids) ?? [],
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
  setIf(p, 'description', str(r.description));
  setIf(p, 'strategy', str(r.strategy));
  return p;
}

export function tokenToRow(t: TokenRecord): Row {
  return {
    id: t.id,
    name: t.name,
    role: t.role,
    pools: json(t.pools),
    token_hash: t.tokenHash,
    created_at: t.createdAt,
    last_used_at: t.lastUsedAt ?? null,
    revoked_at: t.revokedAt ?? null,
  };
}

export function tokenFromRow(r: Row): TokenRecord {
  const t: TokenRecord = {
    id: String(r.id),
    name: String(r.name),
    role: String(r.role) as TokenRecord['role'],
    tokenHash: String(r.token_hash),
    createdAt: num(r.created_at),
  };
  setIf(t, 'pools', parse<string[]>(r.pools));
  setIf(t, 'lastUsedAt', optNum(r.last_used_at));
  setIf(t, 'revokedAt', optNum(r.revoked_at));
  return t;
}

export function usageToRow(u: UsageRecord): Row {
  return {
    id: u.id,
    time: u.time,
    day: u.day,
    month: u.month,
    key_id: u.keyId,
    key_alias: u.keyAlias,
    provider: u.provider,
    model: u.model ?? null,
    pool: u.pool ?? null,
    caller: u.caller ?? null,
    input_tokens: u.inputTokens,
    output_tokens: u.outputTokens,
    cost_usd: u.costUsd,
    status: u.status,
    http_status: u.httpStatus ?? null,
    failure: u.failure ?? null,
    error_code: u.errorCode ?? null,
    latency_ms: u.latencyMs ?? null,
    lease_id: u.leaseId ?? null,
  };
}

export function auditFromRow(r: Row): AuditEntry {
  const a: AuditEntry = {
    id: String(r.id),
    time: num(r.time),
    actor: String(r.actor),
    action: String(r.action),
  };
  setIf(a, 'target', str(r.target));
  setIf(a, 'details', parse<Record<string, unknown>>(r.details));
  return a;
}

export function stateFromRow(r: Row): KeyState {
  const s: KeyState = {
    keyId: String(r.key_id),
    breaker: String(r.breaker) as KeyState['breaker'],
    consecutiveFailures: num(r.consecutive_failures),
    updatedAt: num(r.updated_at),
  };
  setIf(s, 'coolingUntil', optNum(r.cooling_until));
  setIf(s, 'exhaustedUntil', optNum(r.exhausted_until));
  setIf(s, 'invalidSince', optNum(r.invalid_since));
  setIf(s, 'blockedModels', parse<Record<string, number>>(r.blocked_models));
  setIf(s, 'breakerOpenUntil', optNum(r.breaker_open_until));
  setIf(s, 'probeLeaseId', str(r.probe_lease_id));
  setIf(s, 'lastError', parse<KeyState['lastError']>(r.last_error));
  setIf(s, 'upstream', parse<KeyState['upstream']>(r.upstream));
  return s;
}

export function stateToRow(s: KeyState): Row {
  return {
    key_id: s.keyId,
    cooling_until: s.coolingUntil ?? null,
    exhausted_until: s.exhaustedUntil ?? null,
    invalid_since: s.invalidSince ?? null,
    blocked_models: json(s.blockedModels),
    breaker: s.breaker,
    breaker_open_until: s.breakerOpenUntil ?? null,
    probe_lease_id: s.probeLeaseId ?? null,
    consecutive_failures: s.consecutiveFailures,
    last_error: json(s.lastError),
    upstream: json(s.upstream),
    updated_at: s.updatedAt,
  };
}

/** What an untouched key reads as. */
export function defaultState(keyId: string): KeyState {
  return { keyId, breaker: 'closed', consecutiveFailures: 0, updatedAt: 0 };
}

export function leaseToRow(l: LeaseRecord): Row {
  return {
    id: l.id,
    key_id: l.keyId,
    model: l.model ?? null,
    estimated_tokens: l.estimatedTokens,
    estimated_cost_usd: l.estimatedCostUsd,
    reserved_at: l.reservedAt,
    expires_at: l.expiresAt,
    day: l.day,
    month: l.month,
    is_probe: l.isProbe ? 1 : 0,
    shared_id: l.sharedId ?? null,
    meta: json(l.meta),
    status: 'active',
  };
}

export function leaseFromRow(r: Row): LeaseRecord {
  const l: LeaseRecord = {
    id: String(r.id),
    keyId: String(r.key_id),
    estimatedTokens: num(r.estimated_tokens),
    estimatedCostUsd: num(r.estimated_cost_usd),
    reservedAt: num(r.reserved_at),
    expiresAt: num(r.expires_at),
    day: String(r.day),
    month: String(r.month),
    isProbe: num(r.is_probe) === 1,
  };
  setIf(l, 'model', str(r.model));
  setIf(l, 'sharedId', str(r.shared_id));
  setIf(l, 'meta', parse<Record<string, string>>(r.meta));
  return l;
}
