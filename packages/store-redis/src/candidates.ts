import type { KeyLimits, ReserveCandidate, SharedLimits } from '@keypool/spec';

const SEP = '\x1f';
/** Marks a group's argument, so the script tells it from a candidate's by its first byte. */
const GROUP = '\x1e';

/**
 * One reserve-script argument per candidate: "rpm␟tpm␟rpd␟tpd␟budget␟keyId" ('' = no
 * limit). The pool passes the same candidate objects on every acquire, so each is
 * encoded once (again only when its limits object is replaced): fewer arguments to
 * build, send and turn into Lua strings, and the script splits only those it reaches.
 */
const encoded = new WeakMap<ReserveCandidate, { limits: KeyLimits; keyId: string; arg: string }>();
/** The same for a group of shared limits: "␞rpm␟tpm␟rpd␟tpd␟budget␟groupId", once per group object. */
const encodedGroups = new WeakMap<SharedLimits, { limits: KeyLimits; id: string; arg: string }>();

function limit(value: number | undefined): string {
  return value === undefined ? '' : String(value);
}

function limitsArg(limits: KeyLimits, id: string): string {
  return `${limit(limits.rpm)}${SEP}${limit(limits.tpm)}${SEP}${limit(limits.requestsPerDay)}${SEP}${limit(limits.tokensPerDay)}${SEP}${limit(limits.monthlyBudgetUsd)}${SEP}${id}`;
}

export function candidateArg(candidate: ReserveCandidate): string {
  const { keyId, limits } = candidate;
  const cached = encoded.get(candidate);
  if (cached !== undefined && cached.limits === limits && cached.keyId === keyId) return cached.arg;
  const arg = limitsArg(limits, keyId);
  encoded.set(candidate, { limits, keyId, arg });
  return arg;
}

/** The argument sent before a candidate with shared limits (the group id last, like the key id). */
export function sharedArg(shared: SharedLimits): string {
  const { id, limits } = shared;
  const cached = encodedGroups.get(shared);
  if (cached !== undefined && cached.limits === limits && cached.id === id) return cached.arg;
  const arg = GROUP + limitsArg(limits, id);
  encodedGroups.set(shared, { limits, id, arg });
  return arg;
}
