export { DuplicateKeyError } from './errors.js';
export type { MemoryStore, MemoryStoreOptions, MemoryStoreSizes } from './memory-store.js';
export { memoryStore } from './memory-store.js';
