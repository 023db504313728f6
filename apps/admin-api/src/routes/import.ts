import { importKeys } from '../import.js';
import { defineRoute } from '../route.js';
import { ErrorSchema, ImportBody, ImportResult } from '../schemas.js';
import { ADMIN } from './roles.js';

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
      const report = await importKeys(context.pool, body.env, { masterKeys: context.masterKeys });
      await context.audit(caller, 'key.import', undefined, {
        added: report.added.map((k) => k.alias),
        duplicates: report.duplicates.length,
        invalid: report.invalid.map((i) => i.source),
      });
      return { body: report };
    },
  }),
];
