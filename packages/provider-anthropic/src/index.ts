export { describeAnthropicError, describeAnthropicResponse } from './describe-error.js';
export { createPooledAnthropic, type PooledAnthropicOptions } from './pooled-client.js';
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
