import type { ModelPrice, PriceTable } from '@keypool/spec';

/** Anthropic prices prompt-cache writes from the input price: 1.25x for the 5-minute TTL, 2x for 1 hour. */
function claude(inputPerMTok: number, outputPerMTok: number, cachedInputPerMTok: number): ModelPrice {
  return {
    inputPerMTok,
    outputPerMTok,
    cachedInputPerMTok,
    cacheWriteInputPerMTok: inputPerMTok * 1.25,
    cacheWrite1hInputPerMTok: inputPerMTok * 2,
  };
}

/**
 * Claude list prices in USD per million tokens, from Anthropic's pricing page
 * (platform.claude.com/docs/en/about-claude/pricing, checked 2026-11). The pool
 * matches exact ids first, then the longest prefix, so dated snapshots
 * (`claude-sonnet-4-5-20250929`) price like their family. Users override or add
 * entries through the pool's `prices` option. Cache reads are listed per
 * model; cache writes follow from the input price (see `claude`). Long-context
 * and Haiku 5.5 long-prompt surcharges are not modelled.
 */
export const anthropicPrices: PriceTable = {
  'claude-fable-5': claude(10, 50, 1),
  'claude-fable-5-1': claude(10, 50, 0.25),
  'claude-mythos-5': claude(10, 50, 1),
  'claude-mythos-5-1': claude(10, 50, 0.25),
  'claude-opus-5-5': claude(4, 20, 0.2),
  'claude-opus-5': claude(5, 25, 0.5),
  'claude-opus-4-8': claude(5, 25, 0.5),
  'claude-opus-4-7': claude(5, 25, 0.5),
  'claude-opus-4-6': claude(5, 25, 0.5),
  'claude-opus-4-5': claude(5, 25, 0.5),
  'claude-opus-4-1': claude(15, 75, 1.5),
  'claude-opus-4': claude(15, 75, 1.5),
  'claude-sonnet-5-5': claude(2, 10, 0.1),
  'claude-sonnet-5': claude(2, 10, 0.2),
  'claude-sonnet-4-6': claude(3, 15, 0.3),
  'claude-sonnet-4-5': claude(3, 15, 0.3),
  'claude-sonnet-4': claude(3, 15, 0.3),
  'claude-3-7-sonnet': claude(3, 15, 0.3),
  'claude-haiku-5-5': claude(0.1, 0.5, 0.01),
  'claude-haiku-4-5': claude(1, 5, 0.1),
  'claude-3-5-haiku': claude(0.8, 4, 0.08),
  'claude-3-haiku': claude(0.25, 1.25, 0.03),
};
