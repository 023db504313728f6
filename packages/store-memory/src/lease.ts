import type { LeaseRecord, ReserveRequest } from '@keypool/spec';

/**
 * The lease a reservation grants on `keyId`: the fields every store records, from the request
 * (charged to the group `sharedId` too, when given). Model and meta stay absent when the
 * request has none; meta is copied, so the caller's object never changes the lease.
 */
export function grantedLease(
  request: ReserveRequest,
  keyId: string,
  isProbe: boolean,
  sharedId?: string,
): LeaseRecord {
  const lease: LeaseRecord = {
    id: request.leaseId,
    keyId,
    estimatedTokens: request.estimatedTokens,
    estimatedCostUsd: request.estimatedCostUsd,
    reservedAt: request.now,
    expiresAt: request.now + request.leaseTtlMs,
    day: request.day,
    month: request.month,
    isProbe,
  };
  if (request.model !== undefined) lease.model = request.model;
  if (request.meta !== undefined) lease.meta = { ...request.meta };
  if (sharedId !== undefined) lease.sharedId = sharedId;
  return lease;
}
