import type { Store } from '@keypool/spec';
import type { RedisStoreOptions } from '@keypool/store-redis';
import type { SqlStoreOptions } from '@keypool/store-sql';

export type Backend = 'redis' | 'redis-cluster' | 'postgres' | 'postgres+redis' | 'mysql' | 'sqlite';

/** Where a fleet's store lives; plain data, so it crosses to child processes as JSON. */
export interface StoreTarget {
  backend: Backend;
  /** Redis: redis://…; Redis Cluster: redis-cluster://host:port,…; PostgreSQL (also with hot state in Redis, at KEYPOOL_TEST_REDIS_URL, for 'postgres+redis'): postgres://…; MariaDB: mysql://…; SQLite: sqlite:<file>. */
  url: string;
  /** Redis prefix, PostgreSQL schema (and Redis prefix for 'postgres+redis'), or MariaDB table prefix (without the trailing `_`). */
  namespace: string;
}

export function openStore(
  target: StoreTarget,
  extra?: Partial<RedisStoreOptions> & Partial<SqlStoreOptions>,
): Store;
