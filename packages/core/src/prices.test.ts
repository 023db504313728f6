import { describe, expect, it } from 'vitest';
import { PriceBook } from './prices.js';

describe('PriceBook', () => {
  const book = new PriceBook();
  book.add({
    'gpt-4o': { inputPerMTok: 2.5, outputPerMTok: 10 },
    'gpt-4o-mini': { inputPerMTok: 0.15, outputPerMTok: 0.6, cachedInputPerMTok: 0.075 },
  });

  it('prices dated snapshots like their family, preferring the longest prefix', () => {
    expect(book.priceOf('gpt-4o-mini-2024-07-18')?.inputPerMTok).toBe(0.15);
    expect(book.priceOf('gpt-4o-2024-08-06')?.inputPerMTok).toBe(2.5);
    expect(book.priceOf('unknown-model')).toBeUndefined();
  });

  it('charges cached input at its own price', () => {
    const cost = book.cost('gpt-4o-mini', {
      inputTokens: 1_000_000,
      outputTokens: 1_000_000,
      cachedInputTokens: 500_000,
    });
    expect(cost).toBeCloseTo(0.5 * 0.15 + 0.5 * 0.075 + 0.6, 10);
  });

  it('charges cache writes at their own prices, 1-hour writes apart, and never a token twice', () => {
    const claude = new PriceBook();
    claude.add({
      'claude-sonnet-4-5': {
        inputPerMTok: 3,
        outputPerMTok: 15,
        cachedInputPerMTok: 0.3,
        cacheWriteInputPerMTok: 3.75,
        cacheWrite1hInputPerMTok: 6,
      },
      'plain-model': { inputPerMTok: 2, outputPerMTok: 8 },
    });
    const usage = {
      inputTokens: 1_000_000,
      outputTokens: 100_000,
      cachedInputTokens: 400_000,
      cacheWriteInputTokens: 500_000,
      cacheWrite1hInputTokens: 200_000,
    };
    // 100k base + 400k read + 300k 5-minute writes + 200k 1-hour writes, then output.
    expect(claude.cost('claude-sonnet-4-5', usage)).toBeCloseTo(
      0.1 * 3 + 0.4 * 0.3 + 0.3 * 3.75 + 0.2 * 6 + 0.1 * 15,
      10,
    );
    // Without write prices, writes cost plain input.
    expect(claude.cost('plain-model', usage)).toBeCloseTo(0.6 * 2 + 0.4 * 2 + 0.1 * 8, 10);
    // Counts beyond the input total are clamped: reads first, then writes.
    expect(
      claude.cost('claude-sonnet-4-5', {
        inputTokens: 1_000_000,
        outputTokens: 0,
        cachedInputTokens: 800_000,
        cacheWriteInputTokens: 900_000,
        cacheWrite1hInputTokens: 900_000,
      }),
    ).toBeCloseTo(0.8 * 0.3 + 0.2 * 6, 10);
  });

  it('lets later layers (the user) override earlier ones (providers), and undo them', () => {
    const remove = book.add({ 'gpt-4o': { inputPerMTok: 1, outputPerMTok: 1 } });
    expect(book.cost('gpt-4o', { inputTokens: 1_000_000, outputTokens: 0 })).toBe(1);
    remove();
    expect(book.cost('gpt-4o', { inputTokens: 1_000_000, outputTokens: 0 })).toBe(2.5);
  });

  it('estimates budget reservations at the dearer side', () => {
    expect(book.estimate('gpt-4o', 1_000_000)).toBe(10);
    expect(book.estimate('unknown', 1_000_000)).toBe(0);
  });
});
