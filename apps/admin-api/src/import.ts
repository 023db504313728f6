import {
  EnvError,
  fingerprintSecret,
  fromEnv,
  KeypoolError,
  type MasterKey,
  maskSecret,
  parseEnvFile,
} from '@keypool/core';
import type { KeyPool, KeySpec } from '@keypool/spec';

/** What an import did with each entry. Masked forms only, never a secret. */
export interface ImportReport {
  added: Array<{ id: string; alias: string; provider: string; maskedSecret: string }>;
  duplicates: Array<{ source: string; provider: string; maskedSecret: string; existingAlias?: string }>;
  invalid: Array<{ source: string; problem: string }>;
}

/**
 * Reads keys from env text. A variable `fromEnv` refuses is reported and left
 * out, and the rest is read again, so one bad line does not sink the import.
 */
function readSpecs(text: string, invalid: ImportReport['invalid']): KeySpec[] {
  const env: Record<string, string | undefined> = { ...parseEnvFile(text) };
  const variables = Object.keys(env).length;
  for (let attempt = 0; attempt <= variables; attempt++) {
    try {
      return fromEnv(env);
    } catch (error) {
      if (!(error instanceof EnvError) || !(error.variable in env)) throw error;
      invalid.push({ source: error.variable, problem: error.message });
      delete env[error.variable];
    }
  }
  return [];
}

/**
 * Adds the keys found in env-file text (any format `fromEnv` reads) to the pool.
 * Used by `POST /v1/keys/import` and `keypool import-env`.
 */
export async function importKeys(
  pool: KeyPool,
  text: string,
  options: { masterKeys?: readonly MasterKey[] } = {},
): Promise<ImportReport> {
  const report: ImportReport = { added: [], duplicates: [], invalid: [] };
  const specs = readSpecs(text, report.invalid);
  for (const [index, spec] of specs.entries()) {
    const source = spec.alias ?? `${spec.provider} key ${index + 1}`;
    try {
      const info = await pool.addKey(spec);
      report.added.push({
        id: info.id,
        alias: info.alias,
        provider: info.provider,
        maskedSecret: info.maskedSecret,
      });
    } catch (error) {
      if (KeypoolError.isInstance(error) && error.code === 'KEYPOOL_DUPLICATE_KEY') {
        const master = options.masterKeys?.[0];
        const existing =
          master !== undefined
            ? await pool.store.getKeyByFingerprint(fingerprintSecret(spec.secret, master))
            : undefined;
        report.duplicates.push({
          source,
          provider: spec.provider,
          maskedSecret: maskSecret(spec.secret),
          ...(existing !== undefined && { existingAlias: existing.alias }),
        });
      } else if (KeypoolError.isInstance(error) && error.code === 'KEYPOOL_INVALID_CONFIG') {
        report.invalid.push({ source, problem: error.message });
      } else {
        throw error;
      }
    }
  }
  return report;
}
