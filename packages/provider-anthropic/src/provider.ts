import { definePlugin, parseRateLimitHeaders } from '@keypool/core';
import type { Plugin, PriceTable, Provider } from '@keypool/spec';
import { specificationVersion } from '@keypool/spec';
import { describeAnthropicError } from './describe-error.js';
import { anthropicPrices } from './prices.js';
import { probeAnthropic } from './probe.js';
import { estimateAnthropicTokens } from './tokens.js';
import { extractAnthropicUsage } from './usage.js';

export const ANTHROPIC_PROVIDER_ID = 'anthropic';

export interface AnthropicProviderOptions {
  /** Extra or corrected prices (USD per MTok), layered over the built-in table. The pool's own `prices` still win. */
  prices?: PriceTable;
}

/** The Anthropic adapter as a `Provider`, for pools and tools that take one directly. */
export function createAnthropicProvider(options: AnthropicProviderOptions = {}): Provider {
  return {
    specificationVersion,
    id: ANTHROPIC_PROVIDER_ID,
    describeError: describeAnthropicError,
    // Core's parser reads `anthropic-ratelimit-*` (RFC 3339 resets) and `retry-after`.
    readRateLimits: (headers, now) => parseRateLimitHeaders(headers, now),
    estimateTokens: (request) => estimateAnthropicTokens(request),
    extractUsage: extractAnthropicUsage,
    prices: { ...anthropicPrices, ...options.prices },
    probe: (secret, probeOptions) => probeAnthropic(secret, probeOptions),
  };
}

/**
 * Plugin contributing the `anthropic` provider and Claude prices to a pool:
 * `createKeyPool({ plugins: [anthropicProvider()] })`.
 */
export function anthropicProvider(options: AnthropicProviderOptions = {}): Plugin {
  return definePlugin({
    id: 'provider-anthropic',
    activate(context) {
      const provider = createAnthropicProvider(options);
      context.subscriptions.push(context.providers.register(provider));
      if (provider.prices !== undefined) context.subscriptions.push(context.prices.register(provider.prices));
    },
  });
}
