import type { UsageQuery as StoreUsageQuery } from '@keypool/spec';
import { defineRoute } from '../route.js';
import { AuditList, AuditQuery, ErrorSchema, UsageQuery, UsageResult } from '../schemas.js';
import { READ } from './roles.js';

const invalid = { description: 'Invalid query; `field` names it', schema: ErrorSchema };

export const usageRoutes = [
  defineRoute({
    method: 'get',
    path: '/v1/usage',
    summary:
      'Usage (requests, errors, tokens, cost) over a date range, grouped by key, model, pool, provider, day or month',
    tag: 'usage',
    roles: READ,
    query: UsageQuery,
    responses: { 200: { description: 'Rows sorted by the group fields', schema: UsageResult }, 400: invalid },
    async handle({ query }, context) {
      const q: StoreUsageQuery = {
        ...(query.from !== undefined && { from: query.from }),
        ...(query.to !== undefined && { to: query.to }),
        ...(query.keyId !== undefined && { keyId: query.keyId }),
        ...(query.model !== undefined && { model: query.model }),
        ...(query.pool !== undefined && { pool: query.pool }),
        ...(query.provider !== undefined && { provider: query.provider }),
        ...(query.groupBy !== undefined && { groupBy: query.groupBy }),
      };
      const rows = await context.store.queryUsage(q);
      const aliases = new Map(context.pool.keys().map((k) => [k.id, k.alias]));
      return {
        body: {
          rows: rows.map((row) =>
            row.keyId !== undefined && aliases.has(row.keyId)
              ? { ...row, keyAlias: aliases.get(row.keyId) }
              : row,
          ),
        },
      };
    },
  }),
  defineRoute({
    method: 'get',
    path: '/v1/audit',
    summary: 'Audit log, newest first: who changed what, when (never a secret)',
    tag: 'audit',
    roles: READ,
    query: AuditQuery,
    responses: { 200: { description: 'Entries', schema: AuditList }, 400: invalid },
    async handle({ query }, context) {
      const entries = await context.store.listAudit({
        ...(query.from !== undefined && { from: query.from }),
        ...(query.to !== undefined && { to: query.to }),
        ...(query.target !== undefined && { target: query.target }),
        ...(query.action !== undefined && { action: query.action }),
        limit: query.limit ?? 100,
      });
      return { body: { entries } };
    },
  }),
];
