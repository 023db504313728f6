import { randomBytes } from 'node:crypto';
import type { PoolRecord } from '@keypool/spec';
import type { AppContext } from '../context.js';
import { ApiError } from '../errors.js';
import { defineRoute } from '../route.js';
import { ErrorSchema, IdParams, PoolCreate, PoolInfo, PoolList, PoolUpdate } from '../schemas.js';
import { ADMIN, READ } from './roles.js';

const tag = 'pools';
const notFound = { description: 'No such pool', schema: ErrorSchema };
const invalid = { description: 'Invalid input; `field` names it', schema: ErrorSchema };

function present(record: PoolRecord, context: AppContext) {
  const health = new Map(context.pool.health().keys.map((k) => [k.id, k]));
  const keys = new Map(context.pool.keys().map((k) => [k.id, k]));
  return {
    ...record,
    keys: record.keyIds.flatMap((id) => {
      const key = keys.get(id);
      if (key === undefined) return [];
      return [
        {
          id,
          alias: key.alias,
          provider: key.provider,
          status: health.get(id)?.status ?? 'active',
          limits: key.limits,
        },
      ];
    }),
  };
}

async function requirePool(context: AppContext, id: string): Promise<PoolRecord> {
  const record = await context.store.getPool(id);
  if (record === undefined) {
    throw new ApiError(404, 'KEYPOOL_NOT_FOUND', `No pool with id "${id}"; GET /v1/pools lists them.`, {
      field: 'id',
    });
  }
  return record;
}

async function checkKeyIds(context: AppContext, keyIds: readonly string[]): Promise<void> {
  const known = new Set((await context.store.listKeys()).map((k) => k.id));
  const index = keyIds.findIndex((id) => !known.has(id));
  if (index >= 0) {
    throw new ApiError(400, 'KEYPOOL_VALIDATION', `keyIds[${index}]: no key with id "${keyIds[index]}".`, {
      field: `body.keyIds.${index}`,
    });
  }
}

export const poolRoutes = [
  defineRoute({
    method: 'get',
    path: '/v1/pools',
    summary: 'List pools with their keys',
    tag,
    roles: READ,
    responses: { 200: { description: 'Pools', schema: PoolList } },
    async handle(_call, context) {
      return { body: { pools: (await context.store.listPools()).map((p) => present(p, context)) } };
    },
  }),
  defineRoute({
    method: 'post',
    path: '/v1/pools',
    summary: 'Create a pool (a named set of keys for a tenant or automation)',
    tag,
    roles: ADMIN,
    body: PoolCreate,
    responses: {
      201: { description: 'Created', schema: PoolInfo },
      400: invalid,
      409: { description: 'A pool with this id exists', schema: ErrorSchema },
    },
    async handle({ body, caller }, context) {
      const id = body.id ?? `pool_${randomBytes(6).toString('base64url')}`;
      if ((await context.store.getPool(id)) !== undefined) {
        throw new ApiError(409, 'KEYPOOL_CONFLICT', `Pool "${id}" exists; pick another id or PATCH it.`, {
          field: 'body.id',
        });
      }
      await checkKeyIds(context, body.keyIds);
      const now = context.now();
      const record: PoolRecord = {
        id,
        name: body.name,
        ...(body.description !== undefined && { description: body.description }),
        ...(body.strategy !== undefined && { strategy: body.strategy }),
        keyIds: [...new Set(body.keyIds)],
        createdAt: now,
        updatedAt: now,
      };
      await context.store.putPool(record);
      await context.pool.refresh();
      await context.audit(caller, 'pool.create', id, { name: record.name, keys: record.keyIds.length });
      return { status: 201, body: present(record, context) };
    },
  }),
  defineRoute({
    method: 'get',
    path: '/v1/pools/:id',
    summary: 'Read one pool',
    tag,
    roles: READ,
    params: IdParams,
    responses: { 200: { description: 'The pool', schema: PoolInfo }, 404: notFound },
    async handle({ params }, context) {
      return { body: present(await requirePool(context, params.id), context) };
    },
  }),
  defineRoute({
    method: 'patch',
    path: '/v1/pools/:id',
    summary: 'Change a pool',
    tag,
    roles: ADMIN,
    params: IdParams,
    body: PoolUpdate,
    responses: { 200: { description: 'Updated', schema: PoolInfo }, 400: invalid, 404: notFound },
    async handle({ params, body, caller }, context) {
      const record = await requirePool(context, params.id);
      if (body.keyIds !== undefined) await checkKeyIds(context, body.keyIds);
      const next: PoolRecord = {
        ...record,
        ...(body.name !== undefined && { name: body.name }),
        ...(body.description !== undefined && { description: body.description }),
        ...(body.strategy !== undefined && { strategy: body.strategy }),
        ...(body.keyIds !== undefined && { keyIds: [...new Set(body.keyIds)] }),
        updatedAt: context.now(),
      };
      await context.store.putPool(next);
      await context.pool.refresh();
      await context.audit(caller, 'pool.update', params.id, { fields: Object.keys(body) });
      return { body: present(next, context) };
    },
  }),
  defineRoute({
    method: 'delete',
    path: '/v1/pools/:id',
    summary: 'Delete a pool (its keys stay)',
    tag,
    roles: ADMIN,
    params: IdParams,
    responses: { 204: { description: 'Deleted' }, 404: notFound },
    async handle({ params, caller }, context) {
      await requirePool(context, params.id);
      await context.store.deletePool(params.id);
      await context.pool.refresh();
      await context.audit(caller, 'pool.delete', params.id);
      return { status: 204 };
    },
  }),
];
