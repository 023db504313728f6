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
