import type { KeyLimits, ReserveCandidate } from '@keypool/spec';

const SEP = '\x1f';

/**
 * One reserve-script argument per candidate: "rpm␟tpm␟rpd␟tpd␟budget␟keyId" ('' = no
 * limit). The pool passes the same candidate objects on every acquire, so each is
 * encoded once (again only when its limits object is replaced): fewer arguments to
 * build, send and turn into Lua strings, and the script splits only those it reaches.
 */
const encoded = new WeakMap<ReserveCandidate, { limits: KeyLimits; keyId: string; arg: string }>();

function limit(value: number | undefined): string {
  return value === undefined ? '' : String(value);
}

export function candidateArg(candidate: ReserveCandidate): string {
  const { keyId, limits } = candidate;
  const cached = encoded.get(candidate);
  if (cached !== undefined && cached.limits === limits && cached.keyId === keyId) return cached.arg;
  const arg = `${limit(limits.rpm)}${SEP}${limit(limits.tpm)}${SEP}${limit(limits.requestsPerDay)}${SEP}${limit(limits.tokensPerDay)}${SEP}${limit(limits.monthlyBudgetUsd)}${SEP}${keyId}`;
  encoded.set(candidate, { limits, keyId, arg });
  return arg;
}
