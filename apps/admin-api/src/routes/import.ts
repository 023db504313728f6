import { EnvError, fingerprintSecret, fromEnv, KeypoolError, maskSecret, parseEnvFile } from '@keypool/core';
import type { KeySpec } from '@keypool/spec';
import type { AppContext } from '../context.js';
import { defineRoute } from '../route.js';
import { ErrorSchema, ImportBody, ImportResult } from '../schemas.js';
import { ADMIN } from './roles.js';

interface Report {
  added: Array<{ id: string; alias: string; provider: string; maskedSecret: string }>;
  duplicates: Array<{ source: string; provider: string; maskedSecret: string; existingAlias?: string }>;
  invalid: Array<{ source: string; problem: string }>;
}

/**
 * Reads keys from env text. A variable `fromEnv` refuses is reported and left
 * out, and the rest is read again, so one bad line does not sink the import.
 */
function readSpecs(text: string, invalid: Report['invalid']): KeySpec[] {
  const env: Record<string, string | undefined> = { ...parseEnvFile(text) };
  for (let attempt = 0; attempt <= Object.keys(env).length; attempt++) {
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

async function importSpecs(specs: readonly KeySpec[], context: AppContext, report: Report): Promise<void> {
  for (const [index, spec] of specs.entries()) {
    const source = spec.alias ?? `${spec.provider} key ${index + 1}`;
    try {
      const info = await context.pool.addKey(spec);
      report.added.push({
        id: info.id,
        alias: info.alias,
        provider: info.provider,
        maskedSecret: info.maskedSecret,
      });
    } catch (error) {
      if (KeypoolError.isInstance(error) && error.code === 'KEYPOOL_DUPLICATE_KEY') {
        const master = context.masterKeys[0];
        const existing =
          master !== undefined
            ? await context.store.getKeyByFingerprint(fingerprintSecret(spec.secret, master))
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
}

export const importRoutes = [
  defineRoute({
    method: 'post',
    path: '/v1/keys/import',
    summary:
      'Import keys from env-file text; reports added, duplicate and invalid entries (never the secrets)',
    tag: 'keys',
    roles: ADMIN,
    body: ImportBody,
    responses: {
      200: { description: 'What happened to each entry', schema: ImportResult },
      400: { description: 'Invalid input', schema: ErrorSchema },
    },
    async handle({ body, caller }, context) {
      const report: Report = { added: [], duplicates: [], invalid: [] };
      const specs = readSpecs(body.env, report.invalid);
      await importSpecs(specs, context, report);
      await context.audit(caller, 'key.import', undefined, {
        added: report.added.map((k) => k.alias),
        duplicates: report.duplicates.length,
        invalid: report.invalid.map((i) => i.source),
      });
      return { body: report };
    },
  }),
];
