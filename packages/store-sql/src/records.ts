import type { AuditEntry, AuditQuery, KeyRecord, PoolRecord, TokenRecord, UsageRecord } from '@keypool/spec';
import { sql } from 'kysely';
import type { AnyKysely } from './connection.js';
import { isUniqueViolation, num, type SqlContext } from './context.js';
import { SqlStoreError } from './errors.js';
import {
  auditFromRow,
  json,
  keyFromRow,
  keyToRow,
  poolFromRow,
  poolToRow,
  type Row,
  tokenFromRow,
  tokenToRow,
  usageToRow,
} from './rows.js';
import { keysVersionMeta, type TableName } from './schema.js';

/** Insert or replace a row by its primary key, in each dialect's words. */
export async function upsert(ctx: SqlContext, db: AnyKysely, table: TableName, row: Row, key: string) {
  const { [key]: _, ...rest } = row;
  const insert = db.insertInto(ctx.t(table)).values(row);
  if (ctx.dialect === 'mysql') await insert.onDuplicateKeyUpdate(rest).execute();
  else await insert.onConflict((oc) => oc.column(key).doUpdateSet(rest)).execute();
}

async function bumpKeysVersion(ctx: SqlContext, tx: AnyKysely): Promise<void> {
  let read = tx.selectFrom(ctx.t('meta')).select('value').where('name', '=', keysVersionMeta);
  if (ctx.hasRowLocks) read = read.forUpdate();
  const row = await read.executeTakeFirst();
  const next = String(num(row?.value) + 1);
  if (row)
    await tx.updateTable(ctx.t('meta')).set({ value: next }).where('name', '=', keysVersionMeta).execute();
  else await tx.insertInto(ctx.t('meta')).values({ name: keysVersionMeta, value: next }).execute();
}

function duplicateKey(): SqlStoreError {
  return new SqlStoreError(
    'KEYPOOL_DUPLICATE_KEY',
    'This secret is already stored under another key id (same fingerprint). Update that key instead of adding it again.',
  );
}

/** Durable records: keys, pools, tokens, usage, audit, meta. */
export function recordMethods(ctx: SqlContext) {
  const { db } = ctx;
  return {
    async listKeys(): Promise<KeyRecord[]> {
      const rows = await db
        .selectFrom(ctx.t('keys'))
        .selectAll()
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(keyFromRow);
    },
    async getKey(id: string): Promise<KeyRecord | undefined> {
      const row = await db.selectFrom(ctx.t('keys')).selectAll().where('id', '=', id).executeTakeFirst();
      return row ? keyFromRow(row) : undefined;
    },
    async getKeyByFingerprint(fingerprint: string): Promise<KeyRecord | undefined> {
      const row = await db
        .selectFrom(ctx.t('keys'))
        .selectAll()
        .where('fingerprint', '=', fingerprint)
        .executeTakeFirst();
      return row ? keyFromRow(row) : undefined;
    },
    async putKey(record: KeyRecord): Promise<void> {
      try {
        await ctx.transaction(async (tx) => {
          const clash = await tx
            .selectFrom(ctx.t('keys'))
            .select('id')
            .where('fingerprint', '=', record.fingerprint)
            .where('id', '<>', record.id)
            .executeTakeFirst();
          if (clash) throw duplicateKey();
          await upsert(ctx, tx, 'keys', keyToRow(record), 'id');
          await bumpKeysVersion(ctx, tx);
        });
      } catch (error) {
        // Two processes adding the same secret at once: the unique index decides.
        if (isUniqueViolation(error)) throw duplicateKey();
        throw error;
      }
    },
    /** Deletes the record; the caller drops hot state. */
    async deleteKeyRecord(id: string): Promise<boolean> {
      return ctx.transaction(async (tx) => {
        const result = await tx.deleteFrom(ctx.t('keys')).where('id', '=', id).executeTakeFirst();
        if (num(result.numDeletedRows) === 0) return false;
        await bumpKeysVersion(ctx, tx);
        return true;
      });
    },
    async keysVersion(): Promise<number> {
      const row = await db
        .selectFrom(ctx.t('meta'))
        .select('value')
        .where('name', '=', keysVersionMeta)
        .executeTakeFirst();
      return num(row?.value);
    },

    async listPools(): Promise<PoolRecord[]> {
      const rows = await db
        .selectFrom(ctx.t('pools'))
        .selectAll()
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(poolFromRow);
    },
    async getPool(id: string): Promise<PoolRecord | undefined> {
      const row = await db.selectFrom(ctx.t('pools')).selectAll().where('id', '=', id).executeTakeFirst();
      return row ? poolFromRow(row) : undefined;
    },
    async putPool(record: PoolRecord): Promise<void> {
      await ctx.transaction((tx) => upsert(ctx, tx, 'pools', poolToRow(record), 'id'));
    },
    async deletePool(id: string): Promise<boolean> {
      const result = await ctx.transaction((tx) =>
        tx.deleteFrom(ctx.t('pools')).where('id', '=', id).executeTakeFirst(),
      );
      return num(result.numDeletedRows) > 0;
    },

    async listTokens(): Promise<TokenRecord[]> {
      const rows = await db
        .selectFrom(ctx.t('tokens'))
        .selectAll()
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(tokenFromRow);
    },
    async getTokenByHash(tokenHash: string): Promise<TokenRecord | undefined> {
      const row = await db
        .selectFrom(ctx.t('tokens'))
        .selectAll()
        .where('token_hash', '=', tokenHash)
        .executeTakeFirst();
      return row ? tokenFromRow(row) : undefined;
    },
    async putToken(record: TokenRecord): Promise<void> {
      await ctx.transaction((tx) => upsert(ctx, tx, 'tokens', tokenToRow(record), 'id'));
    },
    async deleteToken(id: string): Promise<boolean> {
      const result = await ctx.transaction((tx) =>
        tx.deleteFrom(ctx.t('tokens')).where('id', '=', id).executeTakeFirst(),
      );
      return num(result.numDeletedRows) > 0;
    },
    async touchToken(id: string, lastUsedAt: number): Promise<void> {
      // An UPDATE: a deleted token has no row to update, so it cannot come back.
      await ctx.transaction((tx) =>
        tx
          .updateTable(ctx.t('tokens'))
          .set({ last_used_at: lastUsedAt })
          .where('id', '=', id)
          .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', lastUsedAt)]))
          .execute(),
      );
    },

    async appendUsage(records: readonly UsageRecord[]): Promise<void> {
      if (records.length === 0) return;
      // Chunks stay far below every driver's bound-parameter limit.
      await ctx.transaction(async (tx) => {
        for (let i = 0; i < records.length; i += 500) {
          await tx
            .insertInto(ctx.t('usage'))
            .values(records.slice(i, i + 500).map(usageToRow))
            .execute();
        }
      });
    },

    /**
     * Appends one record unless a record with its id is already there, so
     * running it again after an unclear failure never logs the usage twice.
     */
    async appendUsageOnce(record: UsageRecord): Promise<void> {
      await ctx.transaction((tx) =>
        ctx.dialect === 'mysql'
          ? tx
              .insertInto(ctx.t('usage'))
              .values(usageToRow(record))
              .onDuplicateKeyUpdate({ id: sql.ref('id') })
              .execute()
          : tx
              .insertInto(ctx.t('usage'))
              .values(usageToRow(record))
              .onConflict((oc) => oc.column('id').doNothing())
              .execute(),
      );
    },

    async appendAudit(entry: AuditEntry): Promise<void> {
      await ctx.transaction((tx) =>
        tx
          .insertInto(ctx.t('audit'))
          .values({
            id: entry.id,
            time: entry.time,
            actor: entry.actor,
            action: entry.action,
            target: entry.target ?? null,
            details: json(entry.details),
          })
          .execute(),
      );
    },
    async listAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
      let q = db.selectFrom(ctx.t('audit')).selectAll();
      if (query.from !== undefined) q = q.where('time', '>=', query.from);
      if (query.to !== undefined) q = q.where('time', '<', query.to);
      if (query.target !== undefined) q = q.where('target', '=', query.target);
      if (query.action !== undefined) q = q.where('action', '=', query.action);
      const rows = await q
        .orderBy('time', 'desc')
        .orderBy('seq', 'desc')
        .limit(query.limit ?? 100)
        .execute();
      return rows.map(auditFromRow);
    },

    async getMeta(name: string): Promise<string | undefined> {
      const row = await db
        .selectFrom(ctx.t('meta'))
        .select('value')
        .where('name', '=', name)
        .executeTakeFirst();
      return row ? String(row.value) : undefined;
    },
    async setMeta(name: string, value: string): Promise<void> {
      await ctx.transaction((tx) => upsert(ctx, tx, 'meta', { name, value }, 'name'));
    },
  };
}
