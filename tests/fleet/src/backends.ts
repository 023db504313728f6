/**
 * The stores a fleet can share, each in a namespace of its own for this run (Redis prefix,
 * PostgreSQL schema, MariaDB table prefix, SQLite temp file), created migrated and dropped after.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqlStore } from '@keypool/store-sql';
import {
  dropRedisPrefix,
  isRedisAvailable,
  isRedisServerAvailable,
  isServiceAvailable,
  type RedisClusterHandle,
  serviceUrls,
  startRedisCluster,
  uniqueName,
} from '@keypool/testing';
import { sql } from 'kysely';
import { type Backend, openStore, type StoreTarget } from './open-store.mjs';

export type { Backend, StoreTarget };
export { openStore };

export const SERVER_BACKENDS = ['redis', 'postgres', 'mysql'] as const satisfies readonly Backend[];

const available = new Map<Backend, Promise<boolean>>();

/** Whether the backend's server answers; skipped loudly (or failing under KEYPOOL_REQUIRE_SERVICES=1) if not. */
export function isBackendUp(backend: Backend): Promise<boolean> {
  let known = available.get(backend);
  if (known === undefined) {
    known = checkBackend(backend);
    available.set(backend, known);
  }
  return known;
}

async function checkBackend(backend: Backend): Promise<boolean> {
  switch (backend) {
    case 'sqlite':
      return true;
    case 'redis':
      return isRedisAvailable();
    case 'redis-cluster':
      return isRedisServerAvailable();
    case 'postgres+redis':
      return (await isBackendUp('postgres')) && (await isBackendUp('redis'));
    default:
      return isServiceAvailable(backend, () => ping(backend));
  }
}

async function ping(backend: 'postgres' | 'mysql'): Promise<void> {
  const store = sqlStore({ url: serviceUrls[backend] });
  try {
    await sql`select 1`.execute(store.db);
  } finally {
    await store.close();
  }
}

/** Redis Clusters started for targets (each target its own), stopped by dropTarget. */
const clusters = new Map<string, RedisClusterHandle>();

/** A fresh namespace on `backend`, migrated (SQL) and empty; a new local cluster for 'redis-cluster'. */
export async function createTarget(backend: Backend, base = 'kp_fleet'): Promise<StoreTarget> {
  const namespace = uniqueName(base);
  if (backend === 'redis-cluster') {
    const cluster = await startRedisCluster();
    clusters.set(namespace, cluster);
    return { backend, url: cluster.url, namespace };
  }
  const url =
    backend === 'sqlite'
      ? `sqlite:${join(tmpdir(), `${namespace}.db`)}`
      : serviceUrls[backend === 'postgres+redis' ? 'postgres' : backend];
  const target: StoreTarget = { backend, url, namespace };
  if (backend !== 'redis') {
    const store = openStore(target, { migrate: true });
    try {
      await store.init?.();
    } finally {
      await store.close?.();
    }
  }
  return target;
}

/** Removes everything the run wrote under the target's namespace. */
export async function dropTarget(target: StoreTarget): Promise<void> {
  if (target.backend === 'redis-cluster') {
    await clusters.get(target.namespace)?.stop();
    clusters.delete(target.namespace);
    return;
  }
  if (target.backend === 'redis' || target.backend === 'postgres+redis') {
    await dropRedisPrefix(target.namespace, target.backend === 'redis' ? target.url : serviceUrls.redis);
    if (target.backend === 'redis') return;
  }
  if (target.backend === 'sqlite') {
    const file = target.url.slice('sqlite:'.length);
    for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
    return;
  }
  const admin = sqlStore({ url: target.url });
  try {
    if (target.backend === 'postgres' || target.backend === 'postgres+redis') {
      await sql`drop schema if exists ${sql.id(target.namespace)} cascade`.execute(admin.db);
    } else {
      const { rows } = await sql<{ t: string }>`select table_name as t from information_schema.tables
        where table_schema = database() and table_name like ${`${target.namespace}\\_%`}`.execute(admin.db);
      for (const { t } of rows) await sql`drop table ${sql.table(t)}`.execute(admin.db);
    }
  } finally {
    await admin.close();
  }
}
