import { describe, expect, it } from 'vitest';
import { openaiPrices } from './prices.js';

describe('openaiPrices', () => {
  it('prices current chat, reasoning and embedding models in USD per million tokens', () => {
    expect(openaiPrices['gpt-4o-mini']).toEqual({
      inputPerMTok: 0.15,
      outputPerMTok: 0.6,
      cachedInputPerMTok: 0.075,
    });
    for (const model of ['gpt-5', 'gpt-4.1', 'gpt-4o', 'o3', 'o4-mini', 'text-embedding-3-small']) {
      expect(openaiPrices[model]?.inputPerMTok, model).toBeGreaterThan(0);
    }
  });

  it('never prices cached input above fresh input, nor embeddings output', () => {
    for (const [model, price] of Object.entries(openaiPrices)) {
      expect(price.cachedInputPerMTok ?? 0, model).toBeLessThanOrEqual(price.inputPerMTok);
      if (model.startsWith('text-embedding')) expect(price.outputPerMTok).toBe(0);
    }
  });
});
