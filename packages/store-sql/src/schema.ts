import { type ExpressionBuilder, sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import type { AnyKysely, SqlDialectName } from './connection.js';
import { SqlStoreError } from './errors.js';
import { installPostgresSharedLimits } from './postgres-hot-path.js';
import { installPostgresHotPath0002 } from './postgres-hot-path-0002.js';
import { installPostgresWindowStamps } from './postgres-hot-path-0003.js';
import { installPostgresFewerStatements } from './postgres-hot-path-0005.js';

export const tableNames = [
  'keys',
  'pools',
  'tokens',
  'usage',
  'audit',
  'meta',
  'key_state',
  'window_entries',
  'counters',
  'leases',
] as const;
/** The running window totals' table (PostgreSQL since 0002, SQLite since 0004, MySQL since 0010). */
export const totalsTableNames = ['window_totals'] as const;
export type TableName = (typeof tableNames)[number] | (typeof totalsTableNames)[number];

/** The floor of a totals row that counts every stamped entry (a safe JS integer, unlike bigint's minimum). */
export const sqliteMinFloor = Number.MIN_SAFE_INTEGER;

/** Where the store's tables live: an optional schema (PostgreSQL schema / MySQL database) and a name prefix. */
export interface Layout {
  dialect: SqlDialectName;
  schema: string | undefined;
  prefix: string;
  /** PostgreSQL: commit hot state with a WAL flush too (slower; see `SqlContext.transaction`). */
  isHotStateDurable: boolean;
}

/** Meta row holding the fleet-wide key-records version (see `keysVersion`). */
export const keysVersionMeta = 'keypool:keys-version';

/** Migrations in order; never edit a shipped one, add the next. */
function migrations(layout: Layout): Record<string, Migration> {
  const { dialect, prefix } = layout;
  const id = 'varchar(255)';
  const ms = 'bigint';
  const float = 'double precision';
  const t = (name: TableName) => `${prefix}${name}`;
  // MySQL compares strings case-insensitively by default; ids, models and
  // fingerprints must compare (and sort) byte for byte as on the other dialects.
  const tableOptions =
    dialect === 'mysql' ? sql`engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin` : sql``;
  return {
    '0001_initial': {
      async up(db: AnyKysely) {
        const s = layout.schema ? db.schema.withSchema(layout.schema) : db.schema;
        const create = (name: TableName) => s.createTable(t(name)).modifyEnd(tableOptions);
        const index = (name: TableName, suffix: string, columns: string[]) =>
          s.createIndex(`${prefix}${name}_${suffix}`).on(t(name)).columns(columns).execute();

        await create('keys')
          .addColumn('id', id, (c) => c.primaryKey())
          .addColumn('alias', id, (c) => c.notNull())
          .addColumn('provider', id, (c) => c.notNull())
          .addColumn('sealed_secret', 'text', (c) => c.notNull())
          .addColumn('master_key_id', id, (c) => c.notNull())
          .addColumn('fingerprint', id, (c) => c.notNull().unique())
          .addColumn('masked_secret', id, (c) => c.notNull())
          .addColumn('priority', 'integer', (c) => c.notNull())
          .addColumn('weight', float, (c) => c.notNull())
          .addColumn('limits', 'text', (c) => c.notNull())
          .addColumn('models', 'text')
          .addColumn('organization', id)
          .addColumn('project', id)
          .addColumn('account', id)
          .addColumn('base_url', 'text')
          .addColumn('metadata', 'text')
          .addColumn('enabled', 'integer', (c) => c.notNull())
          .addColumn('disabled_reason', 'text')
          .addColumn('created_at', ms, (c) => c.notNull())
          .addColumn('updated_at', ms, (c) => c.notNull())
          .execute();
        await index('keys', 'created', ['created_at', 'id']);

        await create('pools')
          .addColumn('id', id, (c) => c.primaryKey())
          .addColumn('name', id, (c) => c.notNull())
          .addColumn('description', 'text')
          .addColumn('strategy', id)
          .addColumn('key_ids', 'text', (c) => c.notNull())
          .addColumn('created_at', ms, (c) => c.notNull())
          .addColumn('updated_at', ms, (c) => c.notNull())
          .execute();

        await create('tokens')
          .addColumn('id', id, (c) => c.primaryKey())
          .addColumn('name', id, (c) => c.notNull())
          .addColumn('role', id, (c) => c.notNull())
          .addColumn('pools', 'text')
          .addColumn('token_hash', id, (c) => c.notNull().unique())
          .addColumn('created_at', ms, (c) => c.notNull())
          .addColumn('last_used_at', ms)
          .addColumn('revoked_at', ms)
          .execute();

        await create('usage')
          .addColumn('id', id, (c) => c.primaryKey())
          .addColumn('time', ms, (c) => c.notNull())
          .addColumn('day', id, (c) => c.notNull())
          .addColumn('month', id, (c) => c.notNull())
          .addColumn('key_id', id, (c) => c.notNull())
          .addColumn('key_alias', id, (c) => c.notNull())
          .addColumn('provider', id, (c) => c.notNull())
          .addColumn('model', id)
          .addColumn('pool', id)
          .addColumn('caller', id)
          .addColumn('input_tokens', ms, (c) => c.notNull())
          .addColumn('output_tokens', ms, (c) => c.notNull())
          .addColumn('cost_usd', float, (c) => c.notNull())
          .addColumn('status', id, (c) => c.notNull())
          .addColumn('http_status', 'integer')
          .addColumn('failure', id)
          .addColumn('error_code', id)
          .addColumn('latency_ms', float)
          .addColumn('lease_id', id)
          .execute();
        await index('usage', 'time', ['time']);
        await index('usage', 'key_time', ['key_id', 'time']);
        await index('usage', 'model_time', ['model', 'time']);
        await index('usage', 'day', ['day']);
        await index('usage', 'month', ['month']);

        const audit = create('audit');
        const withSeq =
          dialect === 'postgres'
            ? audit.addColumn('seq', 'bigserial', (c) => c.primaryKey())
            : audit.addColumn('seq', dialect === 'mysql' ? 'bigint' : 'integer', (c) =>
                c.primaryKey().autoIncrement(),
              );
        await withSeq
          .addColumn('id', id, (c) => c.notNull().unique())
          .addColumn('time', ms, (c) => c.notNull())
          .addColumn('actor', id, (c) => c.notNull())
          .addColumn('action', id, (c) => c.notNull())
          .addColumn('target', id)
          .addColumn('details', 'text')
          .execute();
        await index('audit', 'time', ['time']);
        await index('audit', 'target_time', ['target', 'time']);

        await create('meta')
          .addColumn('name', id, (c) => c.primaryKey())
          .addColumn('value', 'text', (c) => c.notNull())
          .execute();
        const metaTable = layout.schema ? db.withSchema(layout.schema) : db;
        await metaTable.insertInto(t('meta')).values({ name: keysVersionMeta, value: '0' }).execute();

        await create('key_state')
          .addColumn('key_id', id, (c) => c.primaryKey())
          .addColumn('cooling_until', ms)
          .addColumn('exhausted_until', ms)
          .addColumn('invalid_since', ms)
          .addColumn('blocked_models', 'text')
          .addColumn('breaker', 'varchar(16)', (c) => c.notNull())
          .addColumn('breaker_open_until', ms)
          .addColumn('probe_lease_id', id)
          .addColumn('consecutive_failures', 'integer', (c) => c.notNull())
          .addColumn('last_error', 'text')
          .addColumn('upstream', 'text')
          .addColumn('updated_at', ms, (c) => c.notNull())
          .execute();

        await create('window_entries')
          .addColumn('lease_id', id, (c) => c.primaryKey())
          .addColumn('key_id', id, (c) => c.notNull())
          .addColumn('reserved_at', ms, (c) => c.notNull())
          .addColumn('tokens', ms, (c) => c.notNull())
          .execute();
        await index('window_entries', 'key_time', ['key_id', 'reserved_at']);
        await index('window_entries', 'time', ['reserved_at']);

        await create('counters')
          .addColumn('key_id', id, (c) => c.notNull())
          .addColumn('window_id', id, (c) => c.notNull())
          .addColumn('requests', ms, (c) => c.notNull())
          .addColumn('tokens', ms, (c) => c.notNull())
          .addColumn('cost_usd', float, (c) => c.notNull())
          .addPrimaryKeyConstraint(`${prefix}counters_pk`, ['key_id', 'window_id'])
          .execute();

        await create('leases')
          .addColumn('id', id, (c) => c.primaryKey())
          .addColumn('key_id', id, (c) => c.notNull())
          .addColumn('model', id)
          .addColumn('estimated_tokens', ms, (c) => c.notNull())
          .addColumn('estimated_cost_usd', float, (c) => c.notNull())
          .addColumn('reserved_at', ms, (c) => c.notNull())
          .addColumn('expires_at', ms, (c) => c.notNull())
          .addColumn('day', id, (c) => c.notNull())
          .addColumn('month', id, (c) => c.notNull())
          .addColumn('is_probe', 'integer', (c) => c.notNull())
          .addColumn('meta', 'text')
          // active → settled (released) or expired (swept; becomes settled once reported)
          .addColumn('status', 'varchar(16)', (c) => c.notNull())
          .execute();
        await index('leases', 'status_expires', ['status', 'expires_at']);
        await index('leases', 'key_status', ['key_id', 'status']);
      },
    },
    // PostgreSQL: reserve and settle as server-side functions (one round trip each) over running
    // window totals. MySQL and SQLite keep the TypeScript path: nothing to do there.
    '0002_postgres_hot_path': {
      async up(db: AnyKysely) {
        if (dialect === 'postgres') await installPostgresHotPath0002(db, layout);
      },
    },
    // Window entries get a stamp (see "Window entries" in @keypool/spec's README): NULL while the
    // lease is in flight (the entry always counts), then when the upstream responded, or expiresAt.
    '0003_window_stamps': {
      async up(db: AnyKysely) {
        const s = layout.schema ? db.schema.withSchema(layout.schema) : db.schema;
        const scoped = layout.schema ? db.withSchema(layout.schema) : db;
        const entries = t('window_entries');
        const leases = t('leases');
        await s.alterTable(entries).addColumn('stamp', ms).execute();
        // Existing entries: settled leases (or purged ones) counted from reserved_at until now and
        // keep that; leases swept unreported are stamped at expires_at; active ones stay in flight.
        const leaseOf = (eb: ExpressionBuilder<Record<string, Record<string, unknown>>, string>) =>
          eb.selectFrom(leases).whereRef(`${leases}.id`, '=', `${entries}.lease_id`);
        await scoped
          .updateTable(entries)
          .set({ stamp: sql.ref('reserved_at') })
          .where((eb) =>
            eb.not(eb.exists(leaseOf(eb).select('id').where('status', 'in', ['active', 'expired']))),
          )
          .execute();
        await scoped
          .updateTable(entries)
          .set((eb) => ({ stamp: leaseOf(eb).select('expires_at') }))
          .where((eb) => eb.exists(leaseOf(eb).select('id').where('status', '=', 'expired')))
          .execute();
        const index = s.createIndex(`${prefix}window_entries_key_stamp`).on(entries);
        await index.columns(['key_id', 'stamp']).execute();
        await s.createIndex(`${prefix}window_entries_stamp`).on(entries).column('stamp').execute();
        // Nothing reads entries by reserved_at any more: fewer indexes to write on every reserve.
        for (const name of ['key_time', 'time']) {
          const drop = s.dropIndex(`${prefix}window_entries_${name}`);
          await (dialect === 'mysql' ? drop.on(entries) : drop).execute();
        }
        if (dialect === 'postgres') await installPostgresWindowStamps(db, layout);
      },
    },
    // SQLite's hot path (sqlite-hot-path.ts) keeps running window totals as PostgreSQL's does:
    // built from the entries here, every stamped entry counting until the first reservation
    // moves the floor up. MySQL keeps counting entries: nothing to do there.
    '0004_sqlite_window_totals': {
      async up(db: AnyKysely) {
        if (dialect !== 'sqlite') return;
        const totals = sql.table(t('window_totals'));
        const entries = sql.table(t('window_entries'));
        await sql`create table ${totals} (key_id varchar(255) primary key, floor_at bigint not null,
          requests bigint not null, tokens bigint not null,
          inflight_requests bigint not null, inflight_tokens bigint not null) without rowid`.execute(db);
        await sql`insert into ${totals} (key_id, floor_at, requests, tokens, inflight_requests, inflight_tokens)
          select key_id, ${sql.lit(sqliteMinFloor)}, count(stamp),
            coalesce(sum(case when stamp is not null then tokens end), 0),
            sum(case when stamp is null then 1 else 0 end),
            coalesce(sum(case when stamp is null then tokens end), 0)
          from ${entries} group by key_id`.execute(db);
      },
    },
    // PostgreSQL: reserve and settle in fewer statements (lazy window floor, one read for state
    // and counters, a settle in two writes); the reserve takes `ignoreCooldown` (lastResort).
    '0005_postgres_fewer_statements': {
      async up(db: AnyKysely) {
        if (dialect === 'postgres') await installPostgresFewerStatements(db, layout);
      },
    },
    // No query filters usage by day or month (they are only grouped on; ranges go by time), so
    // their indexes were two more writes on every usage row, i.e. on every settle.
    '0006_usage_fewer_indexes': {
      async up(db: AnyKysely) {
        const s = layout.schema ? db.schema.withSchema(layout.schema) : db.schema;
        for (const name of ['day', 'month']) {
          const drop = s.dropIndex(`${prefix}usage_${name}`);
          await (dialect === 'mysql' ? drop.on(t('usage')) : drop).execute();
        }
      },
    },
    // Background probes claim a key's probe slot fleet-wide until a time (Store.claimProbe): kept
    // on the key's state row, whose lock every hot-state write already takes.
    '0007_probe_claims': {
      async up(db: AnyKysely) {
        const s = layout.schema ? db.schema.withSchema(layout.schema) : db.schema;
        await s.alterTable(t('key_state')).addColumn('probe_claimed_until', ms).execute();
      },
    },
    // Settles delete their lease now, so the table holds only live and swept leases and the
    // (status, expires_at) index serves the in-flight count per key too: one index fewer to
    // write on every reserve and settle.
    '0008_leases_fewer_indexes': {
      async up(db: AnyKysely) {
        const s = layout.schema ? db.schema.withSchema(layout.schema) : db.schema;
        const drop = s.dropIndex(`${prefix}leases_key_status`);
        await (dialect === 'mysql' ? drop.on(t('leases')) : drop).execute();
      },
    },
    // Shared limits (ReserveCandidate.shared: an upstream organization's limits, kept as hot state
    // under the group's id beside its keys'): a lease records the group it also charged, and a
    // window entry is per lease and charged id, so a lease may hold one for its key and one for
    // its group. Keys keep their organization's limits (KeyRecord.orgLimits).
    '0009_shared_limits': {
      async up(db: AnyKysely) {
        const s = layout.schema ? db.schema.withSchema(layout.schema) : db.schema;
        await s.alterTable(t('leases')).addColumn('shared_id', id).execute();
        await s.alterTable(t('keys')).addColumn('org_limits', 'text').execute();
        await widenEntriesKey(db, layout);
        if (dialect === 'postgres') await installPostgresSharedLimits(db, layout);
      },
    },
    // MySQL keeps running window totals too (hot-state.ts), so a reservation no longer counts every
    // entry in its key's window: built from the entries here (in flight, and every stamped one, as
    // SQLite's 0004), the first reservation of a key moving the floor up to its window's start.
    '0010_mysql_window_totals': {
      async up(db: AnyKysely) {
        if (dialect !== 'mysql') return;
        const qualified = (name: TableName) =>
          sql.table(layout.schema ? `${layout.schema}.${t(name)}` : t(name));
        const totals = qualified('window_totals');
        await sql`create table ${totals} (key_id varchar(255) primary key, floor_at bigint not null,
          requests bigint not null, tokens bigint not null,
          inflight_requests bigint not null, inflight_tokens bigint not null) ${tableOptions}`.execute(db);
        await sql`insert into ${totals} (key_id, floor_at, requests, tokens, inflight_requests, inflight_tokens)
          select key_id, ${sql.lit(sqliteMinFloor)}, count(stamp),
            coalesce(sum(case when stamp is not null then tokens end), 0),
            sum(case when stamp is null then 1 else 0 end),
            coalesce(sum(case when stamp is null then tokens end), 0)
          from ${qualified('window_entries')} group by key_id`.execute(db);
      },
    },
  };
}

/** Migration 0009: window_entries' primary key becomes (lease_id, key_id), in each dialect's words. */
async function widenEntriesKey(db: AnyKysely, layout: Layout): Promise<void> {
  const { dialect, prefix } = layout;
  const name = `${prefix}window_entries`;
  const entries = sql.table(layout.schema ? `${layout.schema}.${name}` : name);
  if (dialect === 'mysql') {
    await sql`alter table ${entries} drop primary key, add primary key (lease_id, key_id)`.execute(db);
  } else if (dialect === 'postgres') {
    // The constraint was named by PostgreSQL (truncated for long prefixes): ask for the name, keep it.
    const quoted = (part: string) => `"${part.replace(/"/g, '""')}"`;
    const table = layout.schema ? `${quoted(layout.schema)}.${quoted(name)}` : quoted(name);
    const { rows } = await sql<{ name: string }>`select conname as name from pg_constraint
      where conrelid = to_regclass(${table}) and contype = 'p'`.execute(db);
    const pk = sql.id(rows[0]!.name);
    await sql`alter table ${entries} drop constraint ${pk}, add constraint ${pk} primary key (lease_id, key_id)`.execute(
      db,
    );
  } else {
    // SQLite cannot change a primary key: the table is rebuilt (its indexes with it), as one
    // transaction so a failure leaves the old table whole. Without rowid, the key is the table
    // itself: one b-tree fewer to write per entry.
    const built = sql.table(`${name}_0009`);
    await sql`savepoint keypool_0009`.execute(db);
    try {
      await sql`create table ${built} (lease_id varchar(255) not null, key_id varchar(255) not null,
        reserved_at bigint not null, tokens bigint not null, stamp bigint,
        primary key (lease_id, key_id)) without rowid`.execute(db);
      await sql`insert into ${built} (lease_id, key_id, reserved_at, tokens, stamp)
        select lease_id, key_id, reserved_at, tokens, stamp from ${entries}`.execute(db);
      await sql`drop table ${entries}`.execute(db);
      await sql`alter table ${built} rename to ${sql.id(name)}`.execute(db);
      await sql`create index ${sql.id(`${name}_key_stamp`)} on ${entries} (key_id, stamp)`.execute(db);
      await sql`create index ${sql.id(`${name}_stamp`)} on ${entries} (stamp)`.execute(db);
      await sql`release keypool_0009`.execute(db);
    } catch (error) {
      await sql`rollback to keypool_0009`.execute(db);
      await sql`release keypool_0009`.execute(db);
      throw error;
    }
  }
}

function migrator(db: AnyKysely, layout: Layout): Migrator {
  const provider: MigrationProvider = { getMigrations: async () => migrations(layout) };
  return new Migrator({
    db,
    provider,
    migrationTableName: `${layout.prefix}kysely_migration`,
    migrationLockTableName: `${layout.prefix}kysely_migration_lock`,
    ...(layout.schema ? { migrationTableSchema: layout.schema } : {}),
  });
}

/**
 * Brings the schema up to date (or up to migration `upTo`, for tests of a later
 * migration's conversion). Safe to run again and from several processes at once.
 */
export async function runMigrations(db: AnyKysely, layout: Layout, upTo?: string): Promise<string[]> {
  if (layout.schema && layout.dialect === 'postgres') {
    await db.schema.createSchema(layout.schema).ifNotExists().execute();
  }
  const m = migrator(db, layout);
  const { error, results } = await (upTo === undefined ? m.migrateToLatest() : m.migrateTo(upTo));
  if (error) {
    throw new SqlStoreError(
      'KEYPOOL_STORE',
      `sqlStore: migration failed (${describe(error)}). Check the database user may create tables, then run \`keypool migrate\` again.`,
      { cause: error },
    );
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** Throws unless every migration has run: a production database is never migrated silently. */
export async function assertSchemaCurrent(db: AnyKysely, layout: Layout): Promise<void> {
  const infos = await migrator(db, layout).getMigrations();
  const pending = infos.filter((m) => m.executedAt === undefined).map((m) => m.name);
  if (pending.length > 0) {
    const where = `${layout.schema ? `schema "${layout.schema}", ` : ''}table prefix "${layout.prefix}"`;
    throw new SqlStoreError(
      'KEYPOOL_STORE',
      `sqlStore: the database schema is not current (${where}; pending migrations: ${pending.join(', ')}). ` +
        'Run `keypool migrate` or pass migrate: true to sqlStore().',
    );
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
