import { existsSync, readFileSync } from 'node:fs';
import { createToken, importKeys } from '@keypool/admin-api';
import {
  checkCanary,
  createCanary,
  fingerprintSecret,
  openSecret,
  parseMasterKey,
  sealedKeyId,
  sealSecret,
} from '@keypool/core';
import type { Role, UsageGroupBy } from '@keypool/spec';
import { finishRotationFiles, masterKeyPaths, writeNewKeyFile } from '../master-key-file.js';
import { type GlobalOptions, openPool, storeUrlOf } from '../open-pool.js';
import { printJson, printTable } from '../output.js';
import { displayUrl, openStore } from '../store-url.js';
import { withPool } from './keys.js';

export async function importEnv(file: string, options: GlobalOptions): Promise<void> {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (error) {
    throw new Error(
      `Cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`,
    );
  }
  await withPool(options, async (opened) => {
    const report = await importKeys(opened.pool, text, { masterKeys: opened.masterKeys });
    await opened.store.appendAudit({
      id: `aud_cli_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
      time: Date.now(),
      actor: 'cli',
      action: 'key.import',
      details: {
        added: report.added.map((k) => k.alias),
        duplicates: report.duplicates.length,
        invalid: report.invalid.map((i) => i.source),
      },
    });
    if (options.json) {
      printJson(report);
      return;
    }
    for (const k of report.added) console.log(`added      ${k.alias} (${k.provider}, ${k.maskedSecret})`);
    for (const k of report.duplicates) {
      console.log(
        `duplicate  ${k.source} (${k.maskedSecret})${k.existingAlias ? ` = existing ${k.existingAlias}` : ''}`,
      );
    }
    for (const k of report.invalid) console.log(`invalid    ${k.source}: ${k.problem}`);
    console.log(
      `${report.added.length} added, ${report.duplicates.length} duplicate, ${report.invalid.length} invalid`,
    );
  });
}

/** `2026-11-01`, an ISO date-time, or epoch ms. */
function parseTime(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = /^\d+$/.test(value)
    ? Number(value)
    : Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(value) ? `${value}T00:00:00Z` : value);
  if (!Number.isFinite(ms))
    throw new Error(`${flag} "${value}" is not a date: use 2026-11-01, an ISO date-time, or epoch ms.`);
  return ms;
}

const GROUPS: UsageGroupBy[] = ['key', 'model', 'pool', 'provider', 'day', 'month'];

export async function usage(
  options: GlobalOptions & { from?: string; to?: string; groupBy?: string; key?: string; model?: string },
): Promise<void> {
  const groupBy = (options.groupBy ?? 'key').split(',').filter(Boolean) as UsageGroupBy[];
  const bad = groupBy.find((g) => !GROUPS.includes(g));
  if (bad !== undefined) throw new Error(`--group-by "${bad}" is not one of ${GROUPS.join(', ')}.`);
  const from = parseTime(options.from, '--from');
  const to = parseTime(options.to, '--to');
  await withPool(options, async ({ pool, store }) => {
    const aliases = new Map(pool.keys().map((k) => [k.id, k.alias]));
    const keyId =
      options.key !== undefined
        ? (pool.keys().find((k) => k.alias === options.key)?.id ?? options.key)
        : undefined;
    const rows = (
      await store.queryUsage({
        ...(from !== undefined && { from }),
        ...(to !== undefined && { to }),
        ...(keyId !== undefined && { keyId }),
        ...(options.model !== undefined && { model: options.model }),
        groupBy,
      })
    ).map((row) => ({
      ...row,
      ...(row.keyId !== undefined && { key: aliases.get(row.keyId) ?? row.keyId }),
    }));
    if (options.json) printJson({ rows });
    else
      printTable(
        rows.map((r) => ({ ...r, costUsd: r.costUsd.toFixed(4) })),
        [
          ...groupBy.map((g) => (g === 'key' ? 'key' : g)),
          'requests',
          'errors',
          'inputTokens',
          'outputTokens',
          'costUsd',
        ],
      );
  });
}

const ROLES: Role[] = ['admin', 'operator', 'viewer', 'service'];

export async function tokensCreate(
  options: GlobalOptions & { name: string; role: string; pools?: string },
): Promise<void> {
  if (!ROLES.includes(options.role as Role)) throw new Error(`--role must be one of ${ROLES.join(', ')}.`);
  const pools = options.pools?.split(',').filter(Boolean);
  if (pools !== undefined && options.role !== 'service')
    throw new Error('--pools is only for --role service.');
  const store = await openStore(storeUrlOf(options));
  try {
    await store.init?.();
    if (pools !== undefined) {
      const known = new Set((await store.listPools()).map((p) => p.id));
      const missing = pools.find((p) => !known.has(p));
      if (missing !== undefined)
        throw new Error(`--pools: no pool "${missing}" (create it with POST /v1/pools).`);
    }
    const { record, token } = await createToken(store, {
      name: options.name,
      role: options.role as Role,
      ...(pools !== undefined && { pools }),
    });
    await store.appendAudit({
      id: `aud_cli_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
      time: Date.now(),
      actor: 'cli',
      action: 'token.create',
      target: record.id,
      details: { name: record.name, role: record.role, ...(pools !== undefined && { pools }) },
    });
    if (options.json) printJson({ id: record.id, name: record.name, role: record.role, pools, token });
    else {
      console.log(
        `created ${record.role} token "${record.name}" (${record.id}). Shown once; only its hash is stored:`,
      );
      console.log(token);
    }
  } finally {
    await store.close();
  }
}

export async function migrate(options: GlobalOptions): Promise<void> {
  const url = storeUrlOf(options);
  const store = await openStore(url);
  try {
    await store.init?.();
    if (options.json) printJson({ store: displayUrl(url), migrated: true });
    else console.log(`${displayUrl(url)}: schema is up to date`);
  } finally {
    await store.close();
  }
}

/**
 * Re-seals every secret under a new master key, record by record. Resumable:
 * the new key is written to master.key.next first, records already sealed by it
 * are skipped, and only when all are done does it become master.key.
 */
export async function rotateMasterKey(options: GlobalOptions): Promise<void> {
  const say = (line: string) => {
    if (!options.json) console.log(line);
  };
  const paths = masterKeyPaths(options.dataDir);
  const fromEnv = Boolean(process.env.KEYPOOL_MASTER_KEY);
  if (fromEnv && !process.env.KEYPOOL_NEW_MASTER_KEY) {
    throw new Error(
      'KEYPOOL_MASTER_KEY is set, so this command cannot replace a key file: set KEYPOOL_NEW_MASTER_KEY to the new key ' +
        '(`openssl rand -base64 32`), run again, then move the new key into KEYPOOL_MASTER_KEY.',
    );
  }
  if (!fromEnv && !existsSync(paths.current)) {
    throw new Error(`No master key at ${paths.current} and KEYPOOL_MASTER_KEY is unset: nothing to rotate.`);
  }
  const resumed = existsSync(paths.next);
  const next = fromEnv
    ? parseMasterKey(process.env.KEYPOOL_NEW_MASTER_KEY, 'KEYPOOL_NEW_MASTER_KEY')
    : resumed
      ? parseMasterKey(readFileSync(paths.next, 'utf8'), paths.next)
      : writeNewKeyFile(paths.next);
  say(
    resumed
      ? `resuming rotation to ${next.id}`
      : `new master key ${next.id}${fromEnv ? '' : ` written to ${paths.next}`}`,
  );
  const opened = await openPool(options, { refreshMs: 3_600_000 });
  const masters = [next, ...opened.masterKeys.filter((k) => k.id !== next.id)];
  let resealed = 0;
  let skipped = 0;
  try {
    const records = await opened.store.listKeys();
    for (const record of records) {
      if (sealedKeyId(record.sealedSecret) === next.id) {
        skipped++;
        continue;
      }
      const secret = openSecret(record.sealedSecret, masters);
      // Fingerprints are keyed by the master key too, so they move with it.
      await opened.store.putKey({
        ...record,
        sealedSecret: sealSecret(secret, next),
        masterKeyId: next.id,
        fingerprint: fingerprintSecret(secret, next),
        updatedAt: Date.now(),
      });
      resealed++;
      say(`  re-sealed ${record.alias}`);
    }
    const canary = createCanary(next);
    checkCanary(canary, next);
    await opened.store.setMeta('keypool:master-key-canary', canary);
    await opened.store.appendAudit({
      id: `aud_cli_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
      time: Date.now(),
      actor: 'cli',
      action: 'master-key.rotate',
      details: { to: next.id, resealed, skipped },
    });
  } finally {
    await opened.pool.close();
  }
  const backup = fromEnv ? undefined : finishRotationFiles(options.dataDir);
  if (options.json)
    printJson({ masterKeyId: next.id, resealed, skipped, ...(backup && { oldKeyFile: backup }) });
  else {
    say(`done: ${resealed} re-sealed, ${skipped} already done.`);
    if (backup)
      say(`The old key is kept at ${backup} (0600); delete it once every server runs on the new one.`);
    else say('Now set KEYPOOL_MASTER_KEY to the new key and restart the servers.');
    say('Restart running servers so they seal with the new key.');
  }
}
