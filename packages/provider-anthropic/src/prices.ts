import type { PriceTable } from '@keypool/spec';

/**
 * Claude list prices in USD per million tokens, from Anthropic's pricing page
 * (platform.claude.com/docs/en/about-claude/pricing, checked 2026-11). The pool
 * matches exact ids first, then the longest prefix, so dated snapshots
 * (`claude-sonnet-4-5-20250929`) price like their family. Users override or add
 * entries through the pool's `prices` option. Long-context and Haiku 5.5
 * long-prompt surcharges are not modelled.
 */
export const anthropicPrices: PriceTable = {
  'claude-fable-5': { inputPerMTok: 10, outputPerMTok: 50, cachedInputPerMTok: 1 },
  'claude-fable-5-1': { inputPerMTok: 10, outputPerMTok: 50, cachedInputPerMTok: 0.25 },
  'claude-mythos-5': { inputPerMTok: 10, outputPerMTok: 50, cachedInputPerMTok: 1 },
  'claude-mythos-5-1': { inputPerMTok: 10, outputPerMTok: 50, cachedInputPerMTok: 0.25 },
  'claude-opus-5-5': { inputPerMTok: 4, outputPerMTok: 20, cachedInputPerMTok: 0.2 },
  'claude-opus-5': { inputPerMTok: 5, outputPerMTok: 25, cachedInputPerMTok: 0.5 },
  'claude-opus-4-8': { inputPerMTok: 5, outputPerMTok: 25, cachedInputPerMTok: 0.5 },
  'claude-opus-4-7': { inputPerMTok: 5, outputPerMTok: 25, cachedInputPerMTok: 0.5 },
  'claude-opus-4-6': { inputPerMTok: 5, outputPerMTok: 25, cachedInputPerMTok: 0.5 },
  'claude-opus-4-5': { inputPerMTok: 5, outputPerMTok: 25, cachedInputPerMTok: 0.5 },
  'claude-opus-4-1': { inputPerMTok: 15, outputPerMTok: 75, cachedInputPerMTok: 1.5 },
  'claude-opus-4': { inputPerMTok: 15, outputPerMTok: 75, cachedInputPerMTok: 1.5 },
  'claude-sonnet-5-5': { inputPerMTok: 2, outputPerMTok: 10, cachedInputPerMTok: 0.1 },
  'claude-sonnet-5': { inputPerMTok: 2, outputPerMTok: 10, cachedInputPerMTok: 0.2 },
  'claude-sonnet-4-6': { inputPerMTok: 3, outputPerMTok: 15, cachedInputPerMTok: 0.3 },
  'claude-sonnet-4-5': { inputPerMTok: 3, outputPerMTok: 15, cachedInputPerMTok: 0.3 },
  'claude-sonnet-4': { inputPerMTok: 3, outputPerMTok: 15, cachedInputPerMTok: 0.3 },
  'claude-3-7-sonnet': { inputPerMTok: 3, outputPerMTok: 15, cachedInputPerMTok: 0.3 },
  'claude-haiku-5-5': { inputPerMTok: 0.1, outputPerMTok: 0.5, cachedInputPerMTok: 0.01 },
  'claude-haiku-4-5': { inputPerMTok: 1, outputPerMTok: 5, cachedInputPerMTok: 0.1 },
  'claude-3-5-haiku': { inputPerMTok: 0.8, outputPerMTok: 4, cachedInputPerMTok: 0.08 },
  'claude-3-haiku': { inputPerMTok: 0.25, outputPerMTok: 1.25, cachedInputPerMTok: 0.03 },
};
