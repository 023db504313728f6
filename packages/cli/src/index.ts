export { type LoadedMasterKeys, loadMasterKeys, masterKeyPaths } from './master-key-file.js';
export { type GlobalOptions, type OpenedPool, openPool } from './open-pool.js';
export { createProgram } from './program.js';
export { defaultStoreUrl, displayUrl, openStore } from './store-url.js';
