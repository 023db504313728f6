export { describeOpenAIError } from './describe-error.js';
export { createPooledOpenAI, type PooledOpenAIOptions } from './pooled-client.js';
export { openaiPrices } from './prices.js';
export { probeOpenAIKey } from './probe.js';
export { openaiAdapter, openaiProvider } from './provider.js';
export { DEFAULT_OUTPUT_TOKENS, estimateOpenAITokens } from './tokens.js';
export { extractOpenAIUsage } from './usage.js';
