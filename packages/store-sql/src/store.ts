import type { Settlement, SettleResult, Store, StoreCapabilities } from '@keypool/spec';
import { type AnyKysely, type Connection, connect, type SqlDialectName } from './connection.js';
import { SqlContext, writeLockFor } from './context.js';
import { SqlStoreError } from './errors.js';
import { hotStateMethods } from './hot-state.js';
import { recordMethods } from './records.js';
import { assertSchemaCurrent, type Layout, runMigrations } from './schema.js';
import { queryUsage } from './usage.js';

interface CommonOptions {
  /** Run pending migrations in `init()`. Off by default: production schemas change only on purpose. */
  migrate?: boolean;
  /** Prefix for every table (and index) name, e.g. `keypool_`. Default none. */
  tablePrefix?: string;
  /** PostgreSQL schema or MySQL database holding the tables. Default: the connection's. */
  schema?: string;
  /**
   * Keep hot state (reservations, windows, key states, leases) in another store,
   * e.g. a `redisStore`, while records stay in SQL. Not closed by this store.
   */
  hotState?: Store;
  /**
   * PostgreSQL: make every reservation wait for the WAL flush. Off by default:
   * hot state commits with `synchronous_commit = off` (a database crash may lose
   * the last moments of reservations, never records), which is what keeps an
   * acquire near a plain round trip.
   */
  durableHotState?: boolean;
}

export type SqlStoreOptions =
  | (CommonOptions & {
      /** `postgres://…`, `mysql://…` (or `mariadb://…`), `sqlite:./path.db`, `sqlite::memory:`. */
      url: string;
    })
  | (CommonOptions & {
      /** Your Kysely instance; the store never destroys it. */
      db: AnyKysely;
      dialect: SqlDialectName;
    });

export interface SqlStore extends Store {
  /** Applies pending migrations; returns the names of those that ran. */
  migrate(): Promise<string[]>;
  /** The Kysely instance the store uses. */
  readonly db: AnyKysely;
}

/** A keypool `Store` on PostgreSQL, MySQL/MariaDB or SQLite through Kysely. */
export function sqlStore(options: SqlStoreOptions): SqlStore {
  const connection: Connection =
    'url' in options
      ? connect(options.url)
      : { db: options.db, dialect: options.dialect, isOwned: false, lockId: options.db, isMemory: false };
  const layout: Layout = {
    dialect: connection.dialect,
    schema: options.schema,
    prefix: validPrefix(options.tablePrefix ?? ''),
    isHotStateDurable: options.durableHotState === true,
  };
  const writeLock = writeLockFor(connection.dialect, connection.lockId);
  const ctx = new SqlContext(connection.db, layout, writeLock);
  const records = recordMethods(ctx);
  const sqlHot = hotStateMethods(ctx, connection);
  const hot = options.hotState;
  let isClosed = false;

  const capabilities: StoreCapabilities = {
    fleet: !connection.isMemory && (hot ? hot.capabilities.fleet : true),
    durable: true,
  };

  const store: SqlStore = {
    name: `sql:${connection.dialect}`,
    capabilities,
    db: connection.db,

    async init() {
      if (options.migrate) await runMigrations(connection.db, layout);
      else await assertSchemaCurrent(connection.db, layout);
      await hot?.init?.();
    },
    migrate: () => runMigrations(connection.db, layout),

    ...records,
    async deleteKey(id) {
      const existed = await records.deleteKeyRecord(id);
      if (hot) await hot.deleteKey(id);
      else await sqlHot.dropKeyState(id);
      return existed;
    },
    queryUsage: (query) => queryUsage(ctx, query),

    reserve: (request) => (hot ? hot.reserve(request) : sqlHot.reserve(request)),
    settle: (leaseId, settlement) =>
      hot ? settleDelegated(hot, records, leaseId, settlement) : sqlHot.settle(leaseId, settlement),
    getLease: (leaseId) => (hot ? hot.getLease(leaseId) : sqlHot.getLease(leaseId)),
    expireLeases: (now) => (hot ? hot.expireLeases(now) : sqlHot.expireLeases(now)),
    getKeyStates: (ids) => (hot ? hot.getKeyStates(ids) : sqlHot.getKeyStates(ids)),
    updateKeyState: (keyId, update) =>
      hot ? hot.updateKeyState(keyId, update) : sqlHot.updateKeyState(keyId, update),
    resetKeyState: (keyId, opts) =>
      hot ? hot.resetKeyState(keyId, opts) : sqlHot.resetKeyState(keyId, opts),
    usageSnapshot: (ids, query) => (hot ? hot.usageSnapshot(ids, query) : sqlHot.usageSnapshot(ids, query)),
    // Hot state: with a hot-state store that can claim, there; otherwise on the SQL key_state row.
    claimProbe: (keyId, opts) =>
      hot?.claimProbe ? hot.claimProbe(keyId, opts) : sqlHot.claimProbe(keyId, opts),

    async close() {
      if (isClosed) return;
      isClosed = true;
      writeLock.release();
      if (connection.isOwned) await connection.db.destroy();
    },
  };
  if (hot?.subscribe) {
    const subscribe = hot.subscribe.bind(hot);
    store.subscribe = (listener) => subscribe(listener);
  }
  return store;
}

/** Runs the store's migrations against a database (what `keypool migrate` calls). */
export async function migrate(options: SqlStoreOptions): Promise<string[]> {
  const store = sqlStore(options);
  try {
    return await store.migrate();
  } finally {
    await store.close();
  }
}

function validPrefix(prefix: string): string {
  if (!/^[A-Za-z0-9_]*$/.test(prefix)) {
    throw new SqlStoreError(
      'KEYPOOL_INVALID_CONFIG',
      `sqlStore: tablePrefix may hold only letters, digits and "_" (got ${JSON.stringify(prefix)}).`,
    );
  }
  return prefix;
}

/**
 * Settles in the hot-state store, then logs the usage in SQL. The two cannot
 * commit atomically (no two-phase commit between Redis and SQL), so the hot
 * store decides first (only 'settled' or 'expired' log anything, never twice:
 * a second settle is 'already-settled') and the record follows, written
 * idempotently by its id (the SQL write retries transient failures itself).
 * If SQL still refuses, the settlement stands without its record and the
 * error says so; logging first instead would leave a record for a settle
 * that then turned out to be a repeat.
 */
async function settleDelegated(
  hot: Store,
  records: ReturnType<typeof recordMethods>,
  leaseId: string,
  settlement: Settlement,
): Promise<SettleResult> {
  const { usage, ...reconcile } = settlement;
  const result = await hot.settle(leaseId, reconcile);
  if (usage === undefined || result.status === 'already-settled') return result;
  try {
    await records.appendUsageOnce(usage);
  } catch (error) {
    throw new SqlStoreError(
      'KEYPOOL_STORE',
      `sqlStore: lease ${leaseId} was settled in the hot-state store (${hot.name}) but its usage record ${usage.id} could not be written to the SQL usage log. Check the SQL database is reachable; the record is not retried later.`,
      { cause: error },
    );
  }
  return result;
}
