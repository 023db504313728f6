import type { BreakerState, KeyState, KeyStateUpdate } from '@keypool/spec';

const numberFields = ['coolingUntil', 'exhaustedUntil', 'invalidSince', 'breakerOpenUntil'] as const;
const jsonFields = ['lastError', 'upstream'] as const;
const blockedPrefix = 'bm:';

/** The state of a key nobody touched yet. */
export function defaultKeyState(keyId: string): KeyState {
  return { keyId, breaker: 'closed', consecutiveFailures: 0, updatedAt: 0 };
}

/** Builds a KeyState from a state hash, given as an object or as HGETALL's flat array. */
export function decodeKeyState(keyId: string, raw: Record<string, string> | string[]): KeyState {
  const hash: Record<string, string> = {};
  if (Array.isArray(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2) hash[raw[i]!] = raw[i + 1]!;
  } else {
    Object.assign(hash, raw);
  }
  const state: KeyState = {
    keyId,
    breaker: (hash.breaker as BreakerState | undefined) ?? 'closed',
    consecutiveFailures: Number(hash.consecutiveFailures ?? 0),
    updatedAt: Number(hash.updatedAt ?? 0),
  };
  for (const field of numberFields) {
    if (hash[field] !== undefined) state[field] = Number(hash[field]);
  }
  for (const field of jsonFields) {
    if (hash[field] !== undefined) state[field] = JSON.parse(hash[field]);
  }
  if (hash.probeLeaseId !== undefined) state.probeLeaseId = hash.probeLeaseId;
  for (const [field, value] of Object.entries(hash)) {
    if (field.startsWith(blockedPrefix)) {
      state.blockedModels ??= {};
      state.blockedModels[field.slice(blockedPrefix.length)] = Number(value);
    }
  }
  return state;
}

/** ARGV tail of the update script: nSet, field/value pairs, fields to clear. */
export function encodeStateUpdate(update: KeyStateUpdate): string[] {
  const pairs: string[] = [];
  const set = update.set ?? {};
  for (const [field, value] of Object.entries(set)) {
    if (value === undefined) continue;
    if (field === 'blockedModels') {
      for (const [model, until] of Object.entries(value as Record<string, number>)) {
        pairs.push(blockedPrefix + model, String(until));
      }
    } else if (typeof value === 'object') {
      pairs.push(field, JSON.stringify(value));
    } else {
      pairs.push(field, String(value));
    }
  }
  return [String(pairs.length / 2), ...pairs, ...(update.clear ?? [])];
}
