export type * from '@keypool/spec';
export { Calendar, type CalendarWindow } from './calendar.js';
export {
  classifyOutcome,
  cooldownFromHeaders,
  DEFAULT_RATE_LIMIT_COOLDOWN_MS,
  describeUpstreamError,
  parseGoDuration,
  parseRateLimitHeaders,
  readHeader,
} from './classify.js';
export {
  checkCanary,
  createCanary,
  fingerprintSecret,
  generateMasterKey,
  hashToken,
  type MasterKey,
  maskSecret,
  openSecret,
  parseMasterKey,
  sealedKeyId,
  sealSecret,
  tokensEqual,
} from './crypto.js';
export { fromEnv, parseEnvFile } from './env.js';
export { ConfigError, EnvError, KeypoolError, NoKeyAvailableError, UpstreamError } from './errors.js';
export { deriveStatus, toKeyInfo } from './keys.js';
export { definePlugin } from './plugins.js';
export { type BreakerOptions, createKeyPool, type KeyPoolOptions } from './pool.js';
export { PriceBook } from './prices.js';
export type { ProbeOptions } from './probes.js';
export { builtInStrategyNames, createStrategy } from './strategies.js';
