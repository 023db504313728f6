/**
 * Test targets: one namespace per dialect per test run (a PostgreSQL schema, a
 * MariaDB table prefix, a SQLite temp file), migrated once and dropped after.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReserveRequest } from '@keypool/spec';
import { isServiceAvailable, serviceUrls, uniqueName } from '@keypool/testing';
import { Kysely, PostgresDialect, sql } from 'kysely';
import type { SqlDialectName } from './connection.js';
import { keysVersionMeta, tableNames, totalsTableNames } from './schema.js';
import { type SqlStore, type SqlStoreOptions, sqlStore } from './store.js';

export const DIALECTS: readonly SqlDialectName[] = ['postgres', 'mysql', 'sqlite'];

export interface Target {
  dialect: SqlDialectName;
  /** Options every store of this run opens with (its own namespace). */
  options: SqlStoreOptions & { url: string };
  /** Migrates the namespace; false when the server is absent (tests skip, loudly). */
  setUp(): Promise<boolean>;
  /** Empties every table so the next store starts fresh. */
  empty(): Promise<void>;
  /** Drops the namespace. */
  tearDown(): Promise<void>;
  open(extra?: Partial<SqlStoreOptions>): SqlStore;
}

export function target(dialect: SqlDialectName): Target {
  const name = uniqueName('kp');
  const options: SqlStoreOptions & { url: string } =
    dialect === 'postgres'
      ? { url: serviceUrls.postgres, schema: name }
      : dialect === 'mysql'
        ? { url: serviceUrls.mysql, tablePrefix: `${name}_` }
        : { url: `sqlite:${join(tmpdir(), `${name}.db`)}` };
  let admin: SqlStore | undefined;
  const opened: SqlStore[] = [];
  return {
    dialect,
    options,
    async setUp() {
      const probe = sqlStore({ url: options.url });
      const isUp = await isServiceAvailable(dialect, () => sql`select 1`.execute(probe.db)).finally(() =>
        probe.close(),
      );
      if (!isUp) return false;
      admin = sqlStore(options);
      await admin.migrate();
      return true;
    },
    async empty() {
      const db = admin!.db;
      const scoped = options.schema ? db.withSchema(options.schema) : db;
      const prefix = options.tablePrefix ?? '';
      const tables = [...tableNames, ...totalsTableNames];
      for (const table of tables) await scoped.deleteFrom(`${prefix}${table}`).execute();
      await scoped.insertInto(`${prefix}meta`).values({ name: keysVersionMeta, value: '0' }).execute();
    },
    async tearDown() {
      for (const store of opened.splice(0)) await store.close();
      if (!admin) return;
      const db = admin.db;
      if (dialect === 'postgres') {
        await sql`drop schema if exists ${sql.id(options.schema!)} cascade`.execute(db);
      } else if (dialect === 'mysql') {
        const { rows } = await sql<{ t: string }>`select table_name as t from information_schema.tables
          where table_schema = database() and table_name like ${`${options.tablePrefix}%`}`.execute(db);
        for (const { t } of rows) await sql`drop table ${sql.table(t)}`.execute(db);
      }
      await admin.close();
      if (dialect === 'sqlite') {
        const file = options.url.slice('sqlite:'.length);
        for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
      }
    },
    open(extra = {}) {
      const store = sqlStore({ ...options, ...extra } as SqlStoreOptions);
      opened.push(store);
      return store;
    },
  };
}

/** A bare PostgreSQL Kysely instance, for tests that bring their own `db`. */
export function postgresKysely(): Kysely<unknown> {
  return new Kysely({
    dialect: new PostgresDialect({
      pool: async () => new (await import('pg')).default.Pool({ connectionString: serviceUrls.postgres }),
    }),
  });
}

export const T0 = Date.UTC(2026, 0, 15, 12);
export const WINDOW_MS = 60_000;

/** The reservation the migration tests make: key k, rpm 4, on 2026-01-15. */
export function migrationRequest(leaseId: string, now: number): ReserveRequest {
  return {
    leaseId,
    candidates: [{ keyId: 'k', limits: { rpm: 4 } }],
    estimatedTokens: 10,
    estimatedCostUsd: 0,
    now,
    windowMs: WINDOW_MS,
    day: '2026-01-15',
    month: '2026-01',
    dayEndsAt: Date.UTC(2026, 0, 16),
    monthEndsAt: Date.UTC(2026, 1, 1),
    leaseTtlMs: 60_000,
  };
}
