import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fingerprintSecret, generateMasterKey, maskSecret, parseMasterKey, sealSecret } from '@keypool/core';
import type { KeyRecord, ReserveRequest } from '@keypool/spec';
import { redisStore } from '@keypool/store-redis';
import {
  dropRedisPrefix,
  isRedisAvailable,
  isServiceAvailable,
  serviceUrls,
  uniqueName,
} from '@keypool/testing';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { migrate, sqlStore } from './index.js';
import { DIALECTS, postgresKysely, target } from './test-fixture.js';

const T0 = Date.UTC(2026, 0, 15, 12);

function reserveRequest(keyId: string, leaseId: string): ReserveRequest {
  return {
    leaseId,
    candidates: [{ keyId, limits: { rpm: 5 } }],
    estimatedTokens: 10,
    estimatedCostUsd: 0.01,
    now: T0,
    windowMs: 60_000,
    day: '2026-01-15',
    month: '2026-01',
    dayEndsAt: Date.UTC(2026, 0, 16),
    monthEndsAt: Date.UTC(2026, 1, 1),
    leaseTtlMs: 30_000,
  };
}

for (const dialect of DIALECTS) {
  const run = target(dialect);
  // Not migrated up front: these tests start from an empty namespace.
  const isUp =
    dialect === 'sqlite' ||
    (await isServiceAvailable(dialect, async () => {
      const probe = sqlStore({ url: run.options.url });
      try {
        await sql`select 1`.execute(probe.db);
      } finally {
        await probe.close();
      }
    }));

  describe.skipIf(!isUp)(`sql:${dialect} migrations`, () => {
    afterAll(async () => {
      await run.setUp(); // opens the admin handle the tear-down drops the namespace with
      await run.tearDown();
    });

    it('init() without migrate on an empty database fails and says how to fix it', async () => {
      const store = run.open();
      const failure = await store.init!().then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failure).toMatchObject({ code: 'KEYPOOL_STORE' });
      expect(String((failure as Error).message)).toMatch(/run `keypool migrate` or pass migrate: true/i);
    });

    it('migrate() creates the schema once; running it again changes nothing', async () => {
      expect(await migrate(run.options)).toEqual([
        '0001_initial',
        '0002_postgres_hot_path',
        '0003_window_stamps',
        '0004_sqlite_window_totals',
        '0005_postgres_fewer_statements',
        '0006_usage_fewer_indexes',
        '0007_probe_claims',
        '0008_leases_fewer_indexes',
        '0009_shared_limits',
        '0010_mysql_window_totals',
      ]);
      expect(await migrate(run.options)).toEqual([]);
      const store = run.open();
      await store.init!();
      expect(store.name).toBe(`sql:${dialect}`);
      expect(store.capabilities).toEqual({ fleet: true, durable: true });
      expect(await store.keysVersion()).toBe(0);
      // migrate: true on a current schema is a no-op too.
      const again = run.open({ migrate: true });
      await again.init!();
      expect(await again.migrate()).toEqual([]);
    });

    it('the dump of a database holding sealed keys contains no plaintext secret', async () => {
      const master = parseMasterKey(generateMasterKey());
      const secret = `sk-proj-${uniqueName('dumpcheck').replace(/_/g, 'x')}`;
      const record: KeyRecord = {
        id: 'k-dump',
        alias: 'dump',
        provider: 'openai',
        sealedSecret: sealSecret(secret, master),
        masterKeyId: master.id,
        fingerprint: fingerprintSecret(secret, master),
        maskedSecret: maskSecret(secret),
        priority: 0,
        weight: 1,
        limits: { rpm: 5 },
        enabled: true,
        createdAt: T0,
        updatedAt: T0,
      };
      const store = run.open({ migrate: true });
      await store.init!();
      await store.putKey(record);
      await store.reserve(reserveRequest('k-dump', 'lease-dump'));
      await store.appendAudit({ id: 'a1', time: T0, actor: 'cli', action: 'key.create', target: 'k-dump' });
      await store.close();
      const dump = dumpOf(dialect, run.options);
      expect(dump).toContain(record.sealedSecret); // the dump does hold the key row…
      expect(dump).not.toContain(secret); // …but never the secret
      expect(dump).not.toContain(secret.slice(8));
    });

    it("keeps a key's organization limits (orgLimits, migration 0009); absent stays absent", async () => {
      const store = run.open({ migrate: true });
      await store.init!();
      const record: KeyRecord = {
        id: 'k-org',
        alias: 'org',
        provider: 'openai',
        sealedSecret: 'sealed',
        masterKeyId: 'm1',
        fingerprint: 'fp-org',
        maskedSecret: 'sk-…org',
        priority: 0,
        weight: 1,
        limits: { rpm: 5 },
        organization: 'org-1',
        orgLimits: { rpm: 50, monthlyBudgetUsd: 100 },
        enabled: true,
        createdAt: T0,
        updatedAt: T0,
      };
      await store.putKey(record);
      expect(await store.getKey('k-org')).toStrictEqual(record);
      const { orgLimits: _, ...without } = record;
      await store.putKey(without);
      expect(await store.getKey('k-org')).toStrictEqual(without);
    });
  });
}

function dumpOf(dialect: string, options: { url: string; schema?: string; tablePrefix?: string }): string {
  if (dialect === 'postgres') {
    return execFileSync('pg_dump', ['--dbname', options.url, '--schema', options.schema!], {
      encoding: 'utf8',
    });
  }
  if (dialect === 'mysql') {
    const url = new URL(options.url);
    const tables = execFileSync(
      'mysql',
      [
        '-h',
        url.hostname,
        '-P',
        url.port || '3306',
        '-u',
        url.username,
        '-N',
        '-e',
        `show tables like '${options.tablePrefix}%'`,
        url.pathname.slice(1),
      ],
      { encoding: 'utf8' },
    )
      .split('\n')
      .filter(Boolean);
    return execFileSync(
      'mysqldump',
      ['-h', url.hostname, '-P', url.port || '3306', '-u', url.username, url.pathname.slice(1), ...tables],
      { encoding: 'utf8' },
    );
  }
  const file = options.url.slice('sqlite:'.length);
  return ['', '-wal']
    .filter((suffix) => existsSync(file + suffix))
    .map((suffix) => readFileSync(file + suffix).toString('latin1'))
    .join('\n');
}

describe('sqlStore options', () => {
  it('refuses an unknown url scheme without echoing the url (it may hold a password)', () => {
    expect(() => sqlStore({ url: 'oracle://admin:hunter2@db/x' })).toThrow(
      expect.objectContaining({
        code: 'KEYPOOL_INVALID_CONFIG',
        message: expect.not.stringContaining('hunter2'),
      }),
    );
  });

  it('refuses a table prefix that is not a plain identifier', () => {
    expect(() => sqlStore({ url: 'sqlite::memory:', tablePrefix: 'x; drop table' })).toThrow(
      expect.objectContaining({ code: 'KEYPOOL_INVALID_CONFIG' }),
    );
  });

  it('sqlite::memory: works in one process and says it is not fleet-wide', async () => {
    const store = sqlStore({ url: 'sqlite::memory:', migrate: true });
    await store.init!();
    expect(store.capabilities).toEqual({ fleet: false, durable: true });
    expect(await store.reserve(reserveRequest('k', 'l1'))).toMatchObject({ ok: true });
    expect(await store.getLease('l1')).toMatchObject({ keyId: 'k' });
    await store.close();
  });

  it('a SQLite file survives a restart', async () => {
    const file = join(tmpdir(), `${uniqueName('kp')}.db`);
    try {
      const first = sqlStore({ url: `sqlite:${file}`, migrate: true });
      await first.init!();
      await first.setMeta('canary', 'v1');
      await first.close();
      const second = sqlStore({ url: `sqlite:${file}` });
      await second.init!();
      expect(await second.getMeta('canary')).toBe('v1');
      await second.close();
    } finally {
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
    }
  });
});

const isPostgresUp = await isServiceAvailable('postgres', async () => {
  const db = postgresKysely();
  try {
    await sql`select 1`.execute(db);
  } finally {
    await db.destroy();
  }
});

describe.skipIf(!isPostgresUp)('sqlStore({ db }) with your own Kysely instance', () => {
  it('uses it and never destroys it', async () => {
    const db = postgresKysely();
    const schema = uniqueName('kp');
    try {
      const store = sqlStore({ db, dialect: 'postgres', schema, migrate: true });
      await store.init!();
      await store.setMeta('x', '1');
      await store.close();
      const { rows } = await sql<{
        value: string;
      }>`select value from ${sql.table(`${schema}.meta`)} where name = 'x'`.execute(db);
      expect(rows).toEqual([{ value: '1' }]);
    } finally {
      await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(db);
      await db.destroy();
    }
  });
});

const isRedisUp = await isRedisAvailable();

describe.skipIf(!isRedisUp)('hotState: records in SQL, hot state in Redis', () => {
  it('reserves and settles through Redis while keys, usage and audit stay in SQL', async () => {
    const prefix = uniqueName('kphot');
    const redis = redisStore({ url: serviceUrls.redis, prefix });
    const file = join(tmpdir(), `${uniqueName('kp')}.db`);
    const store = sqlStore({ url: `sqlite:${file}`, migrate: true, hotState: redis });
    const sqlOnly = sqlStore({ url: `sqlite:${file}` });
    const redisPeer = redisStore({ url: serviceUrls.redis, prefix });
    try {
      await store.init!();
      await redisPeer.init?.();
      expect(store.capabilities).toEqual({ fleet: true, durable: true });
      const lease = await store.reserve(reserveRequest('k', 'lease-hot'));
      expect(lease).toMatchObject({ ok: true });
      // The reservation lives in Redis (another Redis handle sees it), not in SQL.
      expect(await redisPeer.getLease('lease-hot')).toMatchObject({ keyId: 'k' });
      expect(await sqlOnly.getLease('lease-hot')).toBeUndefined();
      await store.updateKeyState('k', { set: { coolingUntil: T0 + 1000 }, now: T0 });
      expect((await redisPeer.getKeyStates(['k']))[0]).toMatchObject({ coolingUntil: T0 + 1000 });
      const usage = (id: string) => ({
        id,
        time: T0 + 1,
        day: '2026-01-15',
        month: '2026-01',
        keyId: 'k',
        keyAlias: 'k',
        provider: 'openai',
        inputTokens: 3,
        outputTokens: 2,
        costUsd: 0,
        status: 'ok' as const,
        leaseId: 'lease-hot',
      });
      expect(
        await store.settle('lease-hot', { tokens: 5, costUsd: 0, now: T0 + 1, usage: usage('u1') }),
      ).toMatchObject({ status: 'settled' });
      expect(
        await store.settle('lease-hot', { tokens: 5, costUsd: 0, now: T0 + 2, usage: usage('u2') }),
      ).toStrictEqual({ status: 'already-settled' });
      // The usage record lands once, in the SQL log (not in Redis's).
      expect(await sqlOnly.queryUsage({})).toMatchObject([{ requests: 1, inputTokens: 3, outputTokens: 2 }]);
      expect(await redisPeer.queryUsage({})).toMatchObject([{ requests: 0 }]);
      await store.setMeta('canary', 'sql');
      expect(await sqlOnly.getMeta('canary')).toBe('sql');
      expect(await redisPeer.getMeta('canary')).toBeUndefined();
    } finally {
      await store.close();
      await sqlOnly.close();
      await redis.close();
      await redisPeer.close();
      await dropRedisPrefix(prefix);
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
    }
  });
});
