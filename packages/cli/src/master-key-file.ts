import {
  chmodSync,
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { generateMasterKey, type MasterKey, parseMasterKey } from '@keypool/core';

/** Where the CLI keeps the master key when KEYPOOL_MASTER_KEY is not set. */
export function masterKeyPaths(dataDir: string) {
  const dir = resolve(dataDir);
  return {
    current: join(dir, 'master.key'),
    /** Written by `rotate-master-key` before re-sealing; its presence means a rotation is under way. */
    next: join(dir, 'master.key.next'),
  };
}

export interface LoadedMasterKeys {
  /** Newest first: during a rotation the new key, then the old one. */
  keys: MasterKey[];
  /** `ephemeral`: made in memory for a store that keeps nothing (memory), never written. */
  source: 'env' | 'file' | 'generated' | 'ephemeral';
  /** The file it came from (or was written to). */
  file?: string;
}

function readKeyFile(path: string, label: string): MasterKey {
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    // Others could read it; tighten instead of refusing, and keep going.
    chmodSync(path, 0o600);
  }
  return parseMasterKey(readFileSync(path, 'utf8'), label);
}

/** Writes a fresh master key readable by its owner only; fails if the file exists. */
export function writeNewKeyFile(path: string): MasterKey {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const value = generateMasterKey();
  writeFileSync(path, `${value}\n`, { mode: 0o600, flag: 'wx' });
  return parseMasterKey(value, path);
}

/**
 * The master key(s): KEYPOOL_MASTER_KEY when set, else `<dataDir>/master.key`,
 * generated on first use when `create` says the store is new.
 */
export function loadMasterKeys(
  dataDir: string,
  options: { env?: NodeJS.ProcessEnv; create: boolean },
): LoadedMasterKeys | undefined {
  const env = options.env ?? process.env;
  const paths = masterKeyPaths(dataDir);
  const next = existsSync(paths.next) ? [readKeyFile(paths.next, paths.next)] : [];
  if (env.KEYPOOL_MASTER_KEY !== undefined && env.KEYPOOL_MASTER_KEY !== '') {
    const keys = [parseMasterKey(env.KEYPOOL_MASTER_KEY)];
    if (env.KEYPOOL_MASTER_KEY_PREVIOUS)
      keys.push(parseMasterKey(env.KEYPOOL_MASTER_KEY_PREVIOUS, 'KEYPOOL_MASTER_KEY_PREVIOUS'));
    return { keys: [...next, ...keys], source: 'env' };
  }
  if (existsSync(paths.current)) {
    return {
      keys: [...next, readKeyFile(paths.current, paths.current)],
      source: 'file',
      file: paths.current,
    };
  }
  if (!options.create) return undefined;
  return { keys: [writeNewKeyFile(paths.current)], source: 'generated', file: paths.current };
}

/**
 * Ends a rotation: the new key becomes master.key; the old one is kept beside it (0600) until you
 * delete it. The backup is a copy and the swap one rename over master.key, so a crash at any
 * point leaves master.key in place (old with master.key.next beside it: run the rotation again).
 */
export function finishRotationFiles(dataDir: string): string {
  const paths = masterKeyPaths(dataDir);
  const backup = `${paths.current}.old-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  if (existsSync(paths.current)) copyFileSync(paths.current, backup, constants.COPYFILE_EXCL);
  renameSync(paths.next, paths.current);
  return backup;
}
