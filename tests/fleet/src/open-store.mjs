/**
 * One way to open the store under test from a plain, serialisable description, shared by the
 * test files and the child processes they fork (which run this file as is, without a build step).
 */
import { redisStore } from '@keypool/store-redis';
import { sqlStore } from '@keypool/store-sql';

/** @param {import('./open-store.mjs').StoreTarget} target */
export function openStore(target, extra = {}) {
  if (target.backend === 'redis') {
    return redisStore({ url: target.url, prefix: target.namespace, ...extra });
  }
  if (target.backend === 'postgres') return sqlStore({ url: target.url, schema: target.namespace, ...extra });
  if (target.backend === 'mysql') {
    return sqlStore({ url: target.url, tablePrefix: `${target.namespace}_`, ...extra });
  }
  return sqlStore({ url: target.url, ...extra });
}
