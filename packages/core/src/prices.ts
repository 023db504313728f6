import type { ModelPrice, PriceTable, Usage } from '@keypool/spec';

/**
 * Price lookup by model. Exact match first, then the longest table entry that
 * the model id starts with, so dated snapshots ('gpt-4o-mini-2024-07-18')
 * price like their family ('gpt-4o-mini').
 */
export class PriceBook {
  private readonly layers: PriceTable[] = [];
  private readonly cache = new Map<string, ModelPrice | null>();

  /** Later layers win; user prices are added last. */
  add(table: PriceTable): () => void {
    this.layers.push(table);
    this.cache.clear();
    return () => {
      const index = this.layers.indexOf(table);
      if (index >= 0) this.layers.splice(index, 1);
      this.cache.clear();
    };
  }

  priceOf(model: string | undefined): ModelPrice | undefined {
    if (model === undefined) return undefined;
    const cached = this.cache.get(model);
    if (cached !== undefined) return cached ?? undefined;
    let found: ModelPrice | undefined;
    let foundLength = -1;
    for (const table of this.layers) {
      const exact = table[model];
      if (exact !== undefined) {
        found = exact;
        foundLength = Number.POSITIVE_INFINITY;
        continue;
      }
      for (const name in table) {
        if (name.length >= foundLength && model.startsWith(name)) {
          found = table[name];
          foundLength = name.length;
        }
      }
    }
    this.cache.set(model, found ?? null);
    return found;
  }

  /**
   * Cost of actual usage in USD; 0 for unpriced models. Cache reads and writes
   * are parts of `inputTokens`, clamped so no token is charged twice.
   */
  cost(model: string | undefined, usage: Usage): number {
    const price = this.priceOf(model);
    if (price === undefined) return 0;
    const cached = Math.min(usage.cachedInputTokens ?? 0, usage.inputTokens);
    const written = Math.min(usage.cacheWriteInputTokens ?? 0, usage.inputTokens - cached);
    const written1h = Math.min(usage.cacheWrite1hInputTokens ?? 0, written);
    const cachedPrice = price.cachedInputPerMTok ?? price.inputPerMTok;
    const writePrice = price.cacheWriteInputPerMTok ?? price.inputPerMTok;
    const write1hPrice = price.cacheWrite1hInputPerMTok ?? writePrice;
    return (
      ((usage.inputTokens - cached - written) * price.inputPerMTok +
        cached * cachedPrice +
        (written - written1h) * writePrice +
        written1h * write1hPrice +
        usage.outputTokens * price.outputPerMTok) /
      1_000_000
    );
  }

  /**
   * Budget reservation for a request before it runs: priced as if every token
   * were an output token, the dearer side, so a budget is never overrun by a
   * low estimate. Reconciled with actual usage at release.
   */
  estimate(model: string | undefined, tokens: number): number {
    const price = this.priceOf(model);
    if (price === undefined || tokens <= 0) return 0;
    return (tokens * Math.max(price.inputPerMTok, price.outputPerMTok)) / 1_000_000;
  }
}
