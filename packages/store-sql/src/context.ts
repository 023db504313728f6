import { type RawBuilder, sql } from 'kysely';
import type { AnyKysely, SqlDialectName } from './connection.js';
import type { Layout, TableName } from './schema.js';

/** Everything a query needs: the Kysely instance, the dialect and where the tables live. */
export class SqlContext {
  readonly dialect: SqlDialectName;
  readonly layout: Layout;
  /** Queries go through this (schema applied). */
  readonly db: AnyKysely;
  readonly #root: AnyKysely;
  readonly #writeLock: WriteLock;

  constructor(root: AnyKysely, layout: Layout, writeLock: WriteLock) {
    this.#root = root;
    this.layout = layout;
    this.dialect = layout.dialect;
    this.db = this.#scoped(root);
    this.#writeLock = writeLock;
  }

  /** Prefixed table name, for the query builder (the schema comes from `db`). */
  t(name: TableName): string {
    return `${this.layout.prefix}${name}`;
  }

  /** Schema-qualified table reference, for raw SQL. */
  ref(name: TableName): RawBuilder<unknown> {
    const table = this.t(name);
    return sql.table(this.layout.schema ? `${this.layout.schema}.${table}` : table) as RawBuilder<unknown>;
  }

  /**
   * Runs `fn` in one transaction on one connection, retried on deadlocks and
   * serialization failures. SQLite takes the write lock up front (BEGIN
   * IMMEDIATE) so two writers never both read then fail to upgrade, and writers
   * in this process queue on an in-process lock first: node:sqlite is
   * synchronous, so waiting on the file lock would block the event loop that
   * the lock holder needs to finish.
   */
  async transaction<T>(
    fn: (tx: AnyKysely) => Promise<T>,
    options: { isHotState?: boolean } = {},
  ): Promise<T> {
    const begin = this.#beginSql(options.isHotState === true);
    return this.retrying(() =>
      this.#writeLock.run(() =>
        this.#root.connection().execute(async (conn) => {
          await sql.raw(begin).execute(conn);
          try {
            const result = await fn(this.#scoped(conn));
            await sql.raw('commit').execute(conn);
            return result;
          } catch (error) {
            await rollbackQuietly(conn);
            throw error;
          }
        }),
      ),
    );
  }

  /**
   * Runs `fn` holding the in-process writer queue of this database (SQLite: the
   * hot path's synchronous transactions queue with the Kysely ones).
   */
  exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.#writeLock.run(async () => fn());
  }

  /** Runs `fn` again on deadlocks, serialization failures and busy files (bounded, jittered). */
  async retrying<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (error) {
        if (attempt >= maxAttempts || !isTransient(error)) throw error;
        // Jittered backoff so the transactions that collided do not collide again.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
      }
    }
  }

  /** Schema-qualified reference to one of the store's PostgreSQL functions (named with the table prefix). */
  fn(name: string): RawBuilder<unknown> {
    const qualified = `${this.layout.prefix}${name}`;
    return (
      this.layout.schema ? sql.id(this.layout.schema, qualified) : sql.id(qualified)
    ) as RawBuilder<unknown>;
  }

  /** The root instance (no schema applied), for raw statements that qualify names themselves. */
  get root(): AnyKysely {
    return this.#root;
  }

  /**
   * Hot state on PostgreSQL commits without waiting for the WAL flush
   * (`synchronous_commit = off`, this transaction only): a database crash may
   * forget the last fraction of a second of reservations, never corrupt them,
   * and the fsync would otherwise dominate every acquire. Records (keys, usage,
   * audit) always commit durably. Sent with BEGIN in one round trip.
   */
  #beginSql(isHotState: boolean): string {
    if (this.dialect === 'sqlite') return 'begin immediate';
    if (this.dialect === 'postgres' && isHotState && !this.layout.isHotStateDurable) {
      return 'begin; set local synchronous_commit = off';
    }
    return 'begin';
  }

  /** `SELECT … FOR UPDATE` where the dialect has row locks (SQLite's write transaction already excludes others). */
  get hasRowLocks(): boolean {
    return this.dialect !== 'sqlite';
  }

  #scoped(db: AnyKysely): AnyKysely {
    return this.layout.schema ? db.withSchema(this.layout.schema) : db;
  }
}

const maxAttempts = 10;

/** Deadlocks, serialization failures, lock timeouts and SQLite's busy database: safe to run again. */
export function isTransient(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown; errno?: unknown; errcode?: unknown; message?: unknown };
  if (e.code === '40001' || e.code === '40P01' || e.code === '55P03') return true;
  if (e.errno === 1213 || e.errno === 1205) return true;
  if (e.code === 'ERR_SQLITE_ERROR' && (e.errcode === 5 || e.errcode === 6)) return true;
  return typeof e.message === 'string' && /database is locked|SQLITE_BUSY/.test(e.message);
}

/** A unique constraint refused the row. */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown; errno?: unknown; errcode?: unknown; message?: unknown };
  if (e.code === '23505' || e.errno === 1062) return true;
  return typeof e.message === 'string' && e.message.includes('UNIQUE constraint failed');
}

/** Serialises work per lock id; a no-op lock for servers with real row locks. */
export interface WriteLock {
  run<T>(fn: () => Promise<T>): Promise<T>;
}

const noLock: WriteLock = { run: (fn) => fn() };
const sqliteLocks = new Map<unknown, { tail: Promise<unknown>; users: number }>();

/** The in-process writer queue for one SQLite database, shared by every store that opens it. */
export function writeLockFor(dialect: SqlDialectName, lockId: unknown): WriteLock & { release(): void } {
  if (dialect !== 'sqlite') return { ...noLock, release: () => undefined };
  let entry = sqliteLocks.get(lockId);
  if (!entry) {
    entry = { tail: Promise.resolve(), users: 0 };
    sqliteLocks.set(lockId, entry);
  }
  entry.users++;
  const shared = entry;
  return {
    run<T>(fn: () => Promise<T>): Promise<T> {
      const result = shared.tail.then(fn, fn);
      shared.tail = result.catch(() => undefined);
      return result;
    },
    release() {
      if (--shared.users === 0) sqliteLocks.delete(lockId);
    },
  };
}

/** SQL values (pg returns bigint and numeric as strings) as JS numbers. */
export function num(value: unknown): number {
  return value === null || value === undefined ? 0 : Number(value);
}

/** Rolls back the connection's transaction, if one is open; the error that led here is the one to report. */
export async function rollbackQuietly(conn: AnyKysely): Promise<void> {
  await sql
    .raw('rollback')
    .execute(conn)
    .catch(() => undefined);
}
