/**
 * A real admin API over real HTTP for tests: a pool on a real store (SQLite
 * temp file, PostgreSQL schema, or memory), providers pointed at the mock
 * upstream, one token per role, and every log line captured.
 */
import { rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeyPool, generateMasterKey, type KeyPoolOptions } from '@keypool/core';
import { anthropicProvider } from '@keypool/provider-anthropic';
import { openaiProvider } from '@keypool/provider-openai';
import type { KeyPool, Role, Store } from '@keypool/spec';
import { memoryStore } from '@keypool/store-memory';
import { sqlStore } from '@keypool/store-sql';
import {
  isServiceAvailable,
  type MockUpstream,
  serviceUrls,
  startMockUpstream,
  uniqueName,
} from '@keypool/testing';
import pg from 'pg';
import supertest from 'supertest';
import { type AdminApp, type AdminAppOptions, createAdminApp } from './app.js';
import { createToken } from './auth.js';
import { createLogger } from './logger.js';

export type StoreKind = 'sqlite' | 'postgres' | 'memory';

export interface Harness {
  app: AdminApp;
  pool: KeyPool;
  store: Store;
  server: Server;
  mock: MockUpstream;
  masterKey: string;
  /** Every log line the app wrote. */
  logs: string[];
  tokens: Record<Role, string> & { scoped: string };
  http: ReturnType<typeof supertest>;
  /** A request with the token of `role` set. */
  as(role: Role | 'scoped', method: 'get' | 'post' | 'patch' | 'delete', path: string): supertest.Test;
  close(): Promise<void>;
}

/** Secrets the mock upstream knows, by alias. */
export const SECRETS = {
  a: 'sk-test-aaaaaaaaaaaaaaaaaaaaaaaa1111',
  b: 'sk-test-bbbbbbbbbbbbbbbbbbbbbbbb2222',
  c: 'sk-test-cccccccccccccccccccccccc3333',
};

export async function storeAvailable(kind: StoreKind): Promise<boolean> {
  if (kind !== 'postgres') return true;
  return isServiceAvailable('PostgreSQL', async () => {
    const client = new pg.Client({ connectionString: serviceUrls.postgres });
    await client.connect();
    await client.end();
  });
}

function openStore(kind: StoreKind): { store: Store; cleanup(): Promise<void> } {
  const name = uniqueName('kp_admin');
  if (kind === 'memory') return { store: memoryStore(), cleanup: async () => {} };
  if (kind === 'sqlite') {
    const file = join(tmpdir(), `${name}.db`);
    return {
      store: sqlStore({ url: `sqlite:${file}`, migrate: true }),
      cleanup: async () => {
        for (const suffix of ['', '-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true });
      },
    };
  }
  return {
    store: sqlStore({ url: serviceUrls.postgres, schema: name, migrate: true }),
    cleanup: async () => {
      const client = new pg.Client({ connectionString: serviceUrls.postgres });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
      await client.end();
    },
  };
}

export async function startHarness(
  kind: StoreKind,
  options: Partial<AdminAppOptions> & { leaseTtlMs?: number; probes?: KeyPoolOptions['probes'] } = {},
): Promise<Harness> {
  const mock = await startMockUpstream({ keys: SECRETS });
  const masterKey = generateMasterKey();
  const { store, cleanup } = openStore(kind);
  const pool = await createKeyPool({
    store,
    plugins: [openaiProvider(), anthropicProvider()],
    masterKey,
    refreshMs: 100,
    ...(options.leaseTtlMs !== undefined && { leaseTtlMs: options.leaseTtlMs }),
    ...(options.probes !== undefined && { probes: options.probes }),
  });
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug' }, { write: (line: string) => void logs.push(line) });
  const app = createAdminApp({
    pool,
    masterKey,
    logger,
    auth: { maxFailures: 10_000, cacheMs: 0 },
    healthIntervalMs: 100,
    ...options,
  });
  const tokens = {} as Harness['tokens'];
  for (const role of ['admin', 'operator', 'viewer', 'service'] as const) {
    tokens[role] = (await createToken(store, { name: `${role}-test`, role })).token;
  }
  await store.putPool({ id: 'tenant-a', name: 'Tenant A', keyIds: [], createdAt: 1, updatedAt: 1 });
  tokens.scoped = (
    await createToken(store, { name: 'scoped-test', role: 'service', pools: ['tenant-a'] })
  ).token;
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const http = supertest(server);
  return {
    app,
    pool,
    store,
    server,
    mock,
    masterKey,
    logs,
    tokens,
    http,
    as: (role, method, path) => http[method](path).set('authorization', `Bearer ${tokens[role]}`),
    async close() {
      await new Promise((resolve) => server.close(resolve));
      await app.close({ graceMs: 0 });
      await pool.close();
      await mock.close();
      await cleanup();
    },
  };
}

/** Adds a key through the API, pointed at the mock upstream. */
export async function addKey(h: Harness, alias: keyof typeof SECRETS, extra: Record<string, unknown> = {}) {
  const res = await h
    .as('admin', 'post', '/v1/keys')
    .send({ provider: 'openai', secret: SECRETS[alias], alias, baseURL: `${h.mock.url}/v1`, ...extra });
  if (res.status !== 201) throw new Error(`addKey ${alias}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as { id: string; alias: string };
}
