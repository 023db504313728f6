import type { DatabaseSync } from 'node:sqlite';
import { Kysely, MysqlDialect, PostgresDialect, SqliteDialect } from 'kysely';
import { SqlStoreError } from './errors.js';
import { openSqlite } from './sqlite.js';

export type SqlDialectName = 'postgres' | 'mysql' | 'sqlite';

// biome-ignore lint/suspicious/noExplicitAny: table names carry a runtime prefix, so rows are untyped.
export type AnyKysely = Kysely<any>;

export interface Connection {
  db: AnyKysely;
  dialect: SqlDialectName;
  /** Whether we opened the connection (and so close it). */
  isOwned: boolean;
  /** Shared by every store that opens the same SQLite file in this process (see `writeLockFor`). */
  lockId: unknown;
  isMemory: boolean;
  /**
   * SQLite opened from a URL: the `node:sqlite` handle under Kysely's single
   * connection (opened on first use), for the synchronous hot path.
   */
  sqliteNative?: () => Promise<DatabaseSync>;
  /**
   * PostgreSQL opened from a URL: the `pg` pool under Kysely, so the hot path can
   * send named (server-side prepared) statements, which Kysely does not.
   */
  pgPool?: () => Promise<PgQueryable>;
  /**
   * MySQL opened from a URL: the pool allows multi-statement queries, so the hot path sends a
   * transaction's statements in one or two round trips instead of one each.
   */
  hasMultiStatements?: boolean;
}

/** The part of a `pg` Pool the hot path uses: a query with a statement name. */
export interface PgQueryable {
  query(config: {
    name: string;
    text: string;
    values: unknown[];
  }): Promise<{ rows: Record<string, unknown>[] }>;
}

/**
 * Opens a Kysely instance from a URL. Drivers are imported lazily so a user of
 * one dialect never loads another's driver (they are optional peers).
 */
export function connect(url: string): Connection {
  if (/^postgres(ql)?:\/\//.test(url)) {
    let pool: Promise<import('pg').Pool> | undefined;
    const openPool = () => {
      pool ??= import('pg')
        .catch(missingDriver('pg', 'PostgreSQL'))
        .then(({ default: pg }) => new pg.Pool({ connectionString: url }));
      return pool;
    };
    const db = new Kysely({ dialect: new PostgresDialect({ pool: openPool }) });
    return { db, dialect: 'postgres', isOwned: true, lockId: db, isMemory: false, pgPool: openPool };
  }
  if (/^(mysql|mariadb):\/\//.test(url)) {
    const uri = url.replace(/^mariadb:/, 'mysql:');
    const db = new Kysely({
      dialect: new MysqlDialect({
        pool: async () => {
          const mysql = await import('mysql2').catch(missingDriver('mysql2', 'MySQL/MariaDB'));
          // Safe here: every statement the store sends binds its values as parameters.
          return mysql.createPool({ uri, connectionLimit: 10, multipleStatements: true });
        },
      }),
    });
    return { db, dialect: 'mysql', isOwned: true, lockId: db, isMemory: false, hasMultiStatements: true };
  }
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path) throw invalidUrl(url);
    const isMemory = path === ':memory:';
    let native: DatabaseSync | undefined;
    const database = async () => {
      const opened = openSqlite(path);
      native = opened.native;
      return opened;
    };
    const db = new Kysely({ dialect: new SqliteDialect({ database }) });
    return {
      async sqliteNative() {
        // Kysely opens its one connection lazily: borrowing it once opens the file.
        if (!native) await db.connection().execute(async () => undefined);
        return native!;
      },
      db,
      dialect: 'sqlite',
      isOwned: true,
      lockId: isMemory ? db : `sqlite:${resolvePath(path)}`,
      isMemory,
    };
  }
  throw invalidUrl(url);
}

function resolvePath(path: string): string {
  return new URL(path, `file://${process.cwd()}/`).pathname;
}

function invalidUrl(url: string): SqlStoreError {
  // Only the scheme is echoed: a URL may carry a password.
  const scheme = url.split(':')[0] ?? '';
  return new SqlStoreError(
    'KEYPOOL_INVALID_CONFIG',
    `sqlStore: unsupported url scheme "${scheme}:". Use postgres://…, mysql://…, sqlite:./file.db or sqlite::memory:.`,
  );
}

function missingDriver(pkg: string, what: string) {
  return (cause: unknown): never => {
    throw new SqlStoreError(
      'KEYPOOL_INVALID_CONFIG',
      `sqlStore: ${what} needs the "${pkg}" package. Install it: npm i ${pkg}`,
      { cause },
    );
  };
}
