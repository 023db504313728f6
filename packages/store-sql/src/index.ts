export type { AnyKysely, SqlDialectName } from './connection.js';
export { SqlStoreError } from './errors.js';
export { migrate, type SqlStore, type SqlStoreOptions, sqlStore } from './store.js';
