import type { ReactNode } from 'react';

/**
 * A wide table scrolls inside this region on narrow screens. A scrollable region must be
 * reachable by keyboard (axe: scrollable-region-focusable), hence the tab stop.
 */
export function ScrollRegion({ label, children }: { label: string; children: ReactNode }) {
  return (
    // biome-ignore lint/a11y/noNoninteractiveTabindex: keyboard users must be able to scroll it
    <section className="table-wrap" aria-label={label} tabIndex={0}>
      {children}
    </section>
  );
}
