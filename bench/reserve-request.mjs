// The store-level ReserveRequest the store benches send: a 60 s window, a day and a month that
// end an hour and a day from now, a 60 s lease, 800 estimated tokens. Shared so every bench
// measures the same request.

/** @param {{ leaseId: string, candidates: Array<{ keyId: string, limits: object }>, model?: string, now?: number }} r */
export function reserveRequest({ leaseId, candidates, model, now = Date.now() }) {
  return {
    leaseId,
    candidates,
    ...(model !== undefined && { model }),
    estimatedTokens: 800,
    estimatedCostUsd: 0.0004,
    now,
    windowMs: 60_000,
    day: '2026-11-25',
    month: '2026-11',
    dayEndsAt: now + 3_600_000,
    monthEndsAt: now + 86_400_000,
    leaseTtlMs: 60_000,
  };
}
