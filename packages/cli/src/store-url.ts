import { mkdirSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Store } from '@keypool/spec';

/** The default store: SQLite in the data directory, no server needed. */
export function defaultStoreUrl(dataDir: string): string {
  return `sqlite:${resolve(dataDir, 'keypool.db')}`;
}

/** A URL fit to print: the password, if any, replaced. */
export function displayUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]+)@/, '//$1:***@');
}

export class StoreUrlError extends Error {
  readonly code = 'KEYPOOL_INVALID_CONFIG';
}

/**
 * Opens a store from a URL: `sqlite:<file>`, `postgres://…`, `mysql://…`,
 * `redis://…`, or `memory:` (nothing survives the process). Adapters load on
 * demand so a SQLite user needs no Redis or PostgreSQL client.
 */
export async function openStore(url: string): Promise<Store> {
  const scheme = /^([a-z0-9+]+):/i.exec(url)?.[1]?.toLowerCase();
  switch (scheme) {
    case 'sqlite': {
      const file = url.slice('sqlite:'.length).replace(/^\/\//, '');
      if (file !== ':memory:' && file !== '') {
        const path = isAbsolute(file) ? file : resolve(file);
        mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
        const { sqlStore } = await import('@keypool/store-sql');
        return sqlStore({ url: `sqlite:${path}`, migrate: true });
      }
      const { sqlStore } = await import('@keypool/store-sql');
      return sqlStore({ url: 'sqlite::memory:', migrate: true });
    }
    case 'postgres':
    case 'postgresql':
    case 'mysql':
    case 'mariadb': {
      const { sqlStore } = await import('@keypool/store-sql');
      return sqlStore({ url, migrate: true });
    }
    case 'redis':
    case 'rediss': {
      const { redisStore } = await import('@keypool/store-redis');
      // A Redis that may evict any key is refused at start-up unless the operator accepts it.
      return redisStore({ url, allowEviction: process.env.KEYPOOL_REDIS_ALLOW_EVICTION === '1' });
    }
    case 'memory': {
      const { memoryStore } = await import('@keypool/store-memory');
      return memoryStore();
    }
    default:
      throw new StoreUrlError(
        `--store "${displayUrl(url)}" is not a store URL I know: use sqlite:./.keypool/keypool.db, ` +
          'postgres://user@host/db, mysql://user@host/db, redis://host:6379 or memory:.',
      );
  }
}
