export * from './mock-upstream.js';
export { callMockUpstream, type MockCall } from './mock-upstream-client.js';
export type { MockCounts, MockLogEntry, WindowPeak } from './mock-upstream-counts.js';
export { maskSecret } from './mock-upstream-counts.js';
export type { ReplyRequest } from './mock-upstream-dialect.js';
export { mockTokens } from './mock-upstream-dialect.js';
export type { FaultName, FaultScript, FaultSpec, FaultStep } from './mock-upstream-faults.js';
export type { MockLimits } from './mock-upstream-limits.js';
export { formatGoDuration, parseGoDuration } from './mock-upstream-limits.js';
export type {
  ProviderSuiteCallArgs,
  ProviderSuiteFactory,
  ProviderSuiteFault,
  ProviderSuiteSubject,
} from './provider-suite.js';
export { headerValue, isQuotaOutcome, testProvider } from './provider-suite.js';
export {
  dropRedisPrefix,
  isRedisAvailable,
  isRedisServerAvailable,
  type RedisClusterHandle,
  redisClusterNodes,
  startRedisCluster,
  startRedisServer,
} from './redis.js';
export * from './services.js';
export { type StoreFactory, testStore } from './store-suite.js';
