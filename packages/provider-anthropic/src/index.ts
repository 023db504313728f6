export { createPooledAnthropic } from './client.js';
export { describeAnthropicError, describeAnthropicResponse } from './describe-error.js';
export type { PoolCallOptions } from './pooled-fetch.js';
export { anthropicPrices } from './prices.js';
export { probeAnthropic } from './probe.js';
export {
  ANTHROPIC_PROVIDER_ID,
  type AnthropicProviderOptions,
  anthropicProvider,
  createAnthropicProvider,
} from './provider.js';
export { estimateAnthropicTokens } from './tokens.js';
export { extractAnthropicUsage } from './usage.js';
