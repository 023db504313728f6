import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/**
 * Adapts Node's built-in `node:sqlite` to the interface Kysely's SqliteDialect
 * expects (better-sqlite3's), so SQLite needs no native addon. Rows come back
 * with a null prototype; they are spread into plain objects here.
 */
export function openSqlite(path: string): SqliteDatabase & { native: DatabaseSync } {
  const db = new DatabaseSync(path);
  if (path !== ':memory:') {
    // WAL lets readers run beside the single writer; the busy timeout makes a
    // second process wait for the write lock instead of failing at once.
    db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;');
  }
  return {
    // The SQLite hot path (sqlite-hot-path.ts) runs its prepared statements on this directly.
    native: db,
    close: () => db.close(),
    prepare(sqlText: string): SqliteStatement {
      const stmt = db.prepare(sqlText);
      type Param = SQLInputValue;
      const args = (parameters: ReadonlyArray<unknown>) => parameters.map(toSqliteValue) as Param[];
      return {
        reader: stmt.columns().length > 0,
        all: (parameters) => stmt.all(...args(parameters)).map((row) => ({ ...row })),
        run: (parameters) => stmt.run(...args(parameters)),
        *iterate(parameters) {
          for (const row of stmt.iterate(...args(parameters))) yield { ...row };
        },
      };
    },
  };
}

// node:sqlite binds only null, numbers, bigints, strings and bytes.
function toSqliteValue(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  return value;
}
