/**
 * One way to open the store under test from a plain, serialisable description, shared by the
 * test files and the child processes they fork (which run this file as is, without a build step).
 */
import { redisStore } from '@keypool/store-redis';
import { sqlStore } from '@keypool/store-sql';
import { redisClusterNodes, serviceUrls } from '@keypool/testing';
import { Cluster } from 'ioredis';

/** @param {import('./open-store.mjs').StoreTarget} target */
export function openStore(target, extra = {}) {
  if (target.backend === 'redis') {
    return redisStore({ url: target.url, prefix: target.namespace, ...extra });
  }
  if (target.backend === 'redis-cluster') {
    // The user's Cluster client, as a Cluster deployment would pass it; the store never closes
    // a user's client, so close() here does.
    const client = new Cluster(redisClusterNodes(target.url), { redisOptions: { commandTimeout: 1_000 } });
    const store = redisStore({ client, prefix: target.namespace, ...extra });
    const close = store.close.bind(store);
    store.close = async () => {
      await close();
      client.disconnect();
    };
    return store;
  }
  if (target.backend === 'postgres+redis') {
    // Records in PostgreSQL, hot state in Redis; the SQL store leaves its hotState open, so close() here closes it.
    const hotState = redisStore({ url: serviceUrls.redis, prefix: target.namespace });
    const store = sqlStore({ url: target.url, schema: target.namespace, hotState, ...extra });
    const close = store.close.bind(store);
    store.close = async () => {
      await close();
      await hotState.close();
    };
    return store;
  }
  if (target.backend === 'postgres') return sqlStore({ url: target.url, schema: target.namespace, ...extra });
  if (target.backend === 'mysql') {
    return sqlStore({ url: target.url, tablePrefix: `${target.namespace}_`, ...extra });
  }
  return sqlStore({ url: target.url, ...extra });
}
