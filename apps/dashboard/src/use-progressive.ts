import { startTransition, useEffect, useState } from 'react';

/**
 * How many of `total` rows to render: a screenful at once, the rest a chunk per frame as a
 * low-priority update, so a 500-key table paints its first rows quickly and typing never waits.
 */
export function useProgressiveCount(total: number, first = 30, chunk = 120): number {
  const [count, setCount] = useState(first);
  useEffect(() => {
    if (count >= total) return;
    const frame = requestAnimationFrame(() => startTransition(() => setCount((c) => c + chunk)));
    return () => cancelAnimationFrame(frame);
  }, [count, total, chunk]);
  return Math.min(count, total);
}
