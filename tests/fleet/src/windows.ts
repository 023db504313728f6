/** Sliding-window peaks over the pool's own reservation times (the mock counts arrivals). */
export interface Point {
  time: number;
  tokens: number;
}

/**
 * Most points and most tokens in any window [t, t + windowMs), each maximum taken on its own.
 * A window's content is dominated by one starting at a point, so two pointers suffice.
 */
export function peakInAnyWindow(
  points: readonly Point[],
  windowMs: number,
): { requests: number; tokens: number } {
  const sorted = [...points].sort((a, b) => a.time - b.time);
  let requests = 0;
  let tokens = 0;
  let inWindow = 0;
  let end = 0;
  for (let start = 0; start < sorted.length; start++) {
    while (end < sorted.length && sorted[end]!.time < sorted[start]!.time + windowMs) {
      inWindow += sorted[end]!.tokens;
      end++;
    }
    requests = Math.max(requests, end - start);
    tokens = Math.max(tokens, inWindow);
    inWindow -= sorted[start]!.tokens;
  }
  return { requests, tokens };
}
