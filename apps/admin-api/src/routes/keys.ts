import type { KeyHealth, KeyInfo, KeySpec } from '@keypool/spec';
import { actorOf } from '../auth.js';
import type { AppContext } from '../context.js';
import { ApiError } from '../errors.js';
import { defineRoute } from '../route.js';
import {
  DisableBody,
  ErrorSchema,
  IdParams,
  KeyCreate,
  KeyList,
  KeyInfo as KeySchema,
  KeyUpdate,
  ProbeResult,
  ResetBody,
} from '../schemas.js';
import { OPERATE, READ } from './roles.js';

const tag = 'keys';
const notFound = { description: 'No such key', schema: ErrorSchema };
const invalid = { description: 'Invalid input; `field` names it', schema: ErrorSchema };

/**
 * Live status by key id. `pool.health()` computes every key's health, so a request
 * computes it once, not once per key (a list of 500 keys was quadratic).
 */
function liveStatuses(context: AppContext): Map<string, KeyHealth['status']> {
  return new Map(context.pool.health().keys.map((k) => [k.id, k.status]));
}

/** A key as the API shows it: metadata, masked secret and live status. Never the secret, sealed or not. */
function present(info: KeyInfo, statuses: Map<string, KeyHealth['status']>) {
  const status = statuses.get(info.id);
  return { ...info, ...(status !== undefined && { status }) };
}

function presentOne(info: KeyInfo, context: AppContext) {
  return present(info, liveStatuses(context));
}

async function findKey(context: AppContext, id: string): Promise<KeyInfo> {
  const live = context.pool.keys().find((k) => k.id === id);
  if (live !== undefined) return live;
  const record = await context.store.getKey(id);
  if (record === undefined) {
    throw new ApiError(404, 'KEYPOOL_NOT_FOUND', `No key with id "${id}"; GET /v1/keys lists them.`, {
      field: 'id',
    });
  }
  const { sealedSecret: _sealed, masterKeyId: _mk, ...info } = record;
  return info;
}

export const keyRoutes = [
  defineRoute({
    method: 'get',
    path: '/v1/keys',
    summary: 'List keys (masked, with live status)',
    tag,
    roles: READ,
    responses: { 200: { description: 'Keys', schema: KeyList } },
    handle: (_call, context) => {
      const statuses = liveStatuses(context);
      return { body: { keys: context.pool.keys().map((k) => present(k, statuses)) } };
    },
  }),
  defineRoute({
    method: 'post',
    path: '/v1/keys',
    summary: 'Add a key (the secret is write-only)',
    tag,
    roles: ['admin'],
    body: KeyCreate,
    responses: {
      201: { description: 'Created', schema: KeySchema },
      400: invalid,
      409: { description: 'The secret or alias is already in the pool', schema: ErrorSchema },
    },
    async handle({ body, caller }, context) {
      const info = await context.pool.addKey(body as KeySpec);
      await context.audit(caller, 'key.create', info.id, { alias: info.alias, provider: info.provider });
      return { status: 201, body: presentOne(info, context) };
    },
  }),
  defineRoute({
    method: 'get',
    path: '/v1/keys/:id',
    summary: 'Read one key',
    tag,
    roles: READ,
    params: IdParams,
    responses: { 200: { description: 'The key', schema: KeySchema }, 404: notFound },
    async handle({ params }, context) {
      return { body: presentOne(await findKey(context, params.id), context) };
    },
  }),
  defineRoute({
    method: 'patch',
    path: '/v1/keys/:id',
    summary: 'Change a key; without `secret` it keeps its secret',
    tag,
    roles: ['admin'],
    params: IdParams,
    body: KeyUpdate,
    responses: { 200: { description: 'Updated', schema: KeySchema }, 400: invalid, 404: notFound },
    async handle({ params, body, caller }, context) {
      await findKey(context, params.id);
      const info = await context.pool.updateKey(params.id, body as Partial<Omit<KeySpec, 'provider'>>);
      const fields = Object.keys(body).map((f) => (f === 'secret' ? 'secret (rotated)' : f));
      await context.audit(caller, 'key.update', info.id, { alias: info.alias, fields });
      return { body: presentOne(info, context) };
    },
  }),
  defineRoute({
    method: 'delete',
    path: '/v1/keys/:id',
    summary: 'Delete a key',
    tag,
    roles: ['admin'],
    params: IdParams,
    responses: { 204: { description: 'Deleted' }, 404: notFound },
    async handle({ params, caller }, context) {
      const info = await findKey(context, params.id);
      await context.pool.removeKey(params.id);
      await context.audit(caller, 'key.delete', params.id, { alias: info.alias });
      return { status: 204 };
    },
  }),
  defineRoute({
    method: 'post',
    path: '/v1/keys/:id/enable',
    summary: 'Enable a key (also clears "invalid")',
    tag,
    roles: OPERATE,
    params: IdParams,
    responses: { 200: { description: 'Enabled', schema: KeySchema }, 404: notFound },
    async handle({ params, caller }, context) {
      await findKey(context, params.id);
      const info = await context.pool.enableKey(params.id);
      await context.audit(caller, 'key.enable', info.id, { alias: info.alias });
      return { body: presentOne(info, context) };
    },
  }),
  defineRoute({
    method: 'post',
    path: '/v1/keys/:id/disable',
    summary: 'Disable a key, with a reason',
    tag,
    roles: OPERATE,
    params: IdParams,
    body: DisableBody,
    responses: { 200: { description: 'Disabled', schema: KeySchema }, 400: invalid, 404: notFound },
    async handle({ params, body, caller }, context) {
      await findKey(context, params.id);
      const info = await context.pool.disableKey(params.id, body.reason);
      await context.audit(caller, 'key.disable', info.id, {
        alias: info.alias,
        ...(body.reason !== undefined && { reason: body.reason }),
      });
      return { body: presentOne(info, context) };
    },
  }),
  defineRoute({
    method: 'post',
    path: '/v1/keys/:id/reset',
    summary: 'Clear cooldown, exhaustion, invalidity and breaker (and counters with `counters: true`)',
    tag,
    roles: OPERATE,
    params: IdParams,
    body: ResetBody,
    responses: { 200: { description: 'Reset', schema: KeySchema }, 404: notFound },
    async handle({ params, body, caller }, context) {
      const info = await findKey(context, params.id);
      await context.pool.resetKey(params.id, { counters: body.counters ?? false });
      await context.audit(caller, 'key.reset', params.id, {
        alias: info.alias,
        counters: body.counters ?? false,
      });
      return { body: presentOne(info, context) };
    },
  }),
  defineRoute({
    method: 'post',
    path: '/v1/keys/:id/test',
    summary: "Test a key with the provider's cheapest real call; a pass brings it back",
    tag,
    roles: OPERATE,
    params: IdParams,
    responses: {
      200: {
        description:
          'Probe result (ok false when upstream refused the key); a pass brings an invalid, exhausted or breaker-open key back (`recovered`)',
        schema: ProbeResult,
      },
      404: notFound,
      409: { description: 'The provider cannot probe, or the server has no master key', schema: ErrorSchema },
    },
    async handle({ params, caller }, context) {
      await findKey(context, params.id);
      if (context.masterKeys.length === 0) {
        throw new ApiError(
          409,
          'KEYPOOL_CONFLICT',
          'This server was started without the master key, so it cannot open secrets to test them; pass masterKey to createAdminApp.',
        );
      }
      // A pass brings the key back as a background probe's would, audited by the caller.
      const body = await context.pool.testKey(params.id, { actor: actorOf(caller) });
      return { body };
    },
  }),
];
