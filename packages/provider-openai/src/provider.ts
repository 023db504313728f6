import { definePlugin, parseRateLimitHeaders } from '@keypool/core';
import { type Plugin, type Provider, specificationVersion } from '@keypool/spec';
import { describeOpenAIError } from './describe-error.js';
import { openaiPrices } from './prices.js';
import { probeOpenAIKey } from './probe.js';
import { estimateOpenAITokens } from './tokens.js';
import { extractOpenAIUsage } from './usage.js';

/** The OpenAI adapter as the pool sees it. */
export const openaiAdapter: Provider = {
  specificationVersion,
  id: 'openai',
  describeError: describeOpenAIError,
  // OpenAI's x-ratelimit-* (Go-duration resets) and retry-after(-ms) are read by core's shared parser.
  readRateLimits: parseRateLimitHeaders,
  estimateTokens: estimateOpenAITokens,
  extractUsage: extractOpenAIUsage,
  prices: openaiPrices,
  probe: probeOpenAIKey,
};

/** Plugin contributing the `openai` provider and its price table to a pool. */
export function openaiProvider(): Plugin {
  return definePlugin({
    id: 'provider-openai',
    activate(context) {
      context.subscriptions.push(context.providers.register(openaiAdapter));
      context.subscriptions.push(context.prices.register(openaiPrices));
    },
  });
}
