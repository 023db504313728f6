export { DuplicateKeyError } from './errors.js';
export { grantedLease } from './lease.js';
export type { MemoryStore, MemoryStoreOptions, MemoryStoreSizes } from './memory-store.js';
export { memoryStore } from './memory-store.js';
