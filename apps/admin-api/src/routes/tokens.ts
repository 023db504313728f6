import type { TokenRecord } from '@keypool/spec';
import { createToken } from '../auth.js';
import { ApiError } from '../errors.js';
import { defineRoute } from '../route.js';
import { ErrorSchema, IdParams, Me, TokenCreate, TokenCreated, TokenList } from '../schemas.js';
import { ADMIN, ANY } from './roles.js';

const tag = 'tokens';

/** A token as the API shows it: never the token, never its hash. */
function present(record: TokenRecord) {
  const { tokenHash: _hash, ...info } = record;
  return info;
}

export const tokenRoutes = [
  defineRoute({
    method: 'get',
    path: '/v1/me',
    summary: 'Who this token is: id, name, role and (service tokens) pools; never the token',
    tag,
    roles: ANY,
    responses: { 200: { description: 'The calling token', schema: Me } },
    // The caller comes from the auth check: no store lookup beyond it.
    handle: ({ caller }) => ({
      body: {
        tokenId: caller.tokenId,
        name: caller.name,
        role: caller.role,
        ...(caller.pools !== undefined && { pools: caller.pools }),
      },
    }),
  }),
  defineRoute({
    method: 'get',
    path: '/v1/tokens',
    summary: 'List API tokens (no token values, no hashes)',
    tag,
    roles: ADMIN,
    responses: { 200: { description: 'Tokens', schema: TokenList } },
    async handle(_call, context) {
      return { body: { tokens: (await context.store.listTokens()).map(present) } };
    },
  }),
  defineRoute({
    method: 'post',
    path: '/v1/tokens',
    summary: 'Create an API token; the value is shown once',
    tag,
    roles: ADMIN,
    body: TokenCreate,
    responses: {
      201: { description: 'Created; keep `token`, it is not stored', schema: TokenCreated },
      400: { description: 'Invalid input', schema: ErrorSchema },
    },
    async handle({ body, caller }, context) {
      if (body.pools !== undefined && body.role !== 'service') {
        throw new ApiError(
          400,
          'KEYPOOL_VALIDATION',
          'pools: only service tokens are scoped to pools; drop it or use role service.',
          {
            field: 'body.pools',
          },
        );
      }
      if (body.pools !== undefined) {
        const known = new Set((await context.store.listPools()).map((p) => p.id));
        const index = body.pools.findIndex((id) => !known.has(id));
        if (index >= 0) {
          throw new ApiError(
            400,
            'KEYPOOL_VALIDATION',
            `pools[${index}]: no pool with id "${body.pools[index]}".`,
            {
              field: `body.pools.${index}`,
            },
          );
        }
      }
      const { record, token } = await createToken(
        context.store,
        { name: body.name, role: body.role, ...(body.pools !== undefined && { pools: body.pools }) },
        context.now(),
      );
      await context.audit(caller, 'token.create', record.id, {
        name: record.name,
        role: record.role,
        ...(record.pools !== undefined && { pools: record.pools }),
      });
      return { status: 201, body: { ...present(record), token } };
    },
  }),
  defineRoute({
    method: 'delete',
    path: '/v1/tokens/:id',
    summary: 'Revoke (delete) a token',
    tag,
    roles: ADMIN,
    params: IdParams,
    responses: {
      204: { description: 'Deleted' },
      404: { description: 'No such token', schema: ErrorSchema },
      409: { description: 'It is the last admin token', schema: ErrorSchema },
    },
    async handle({ params, caller }, context) {
      const tokens = await context.store.listTokens();
      const record = tokens.find((t) => t.id === params.id);
      if (record === undefined) {
        throw new ApiError(
          404,
          'KEYPOOL_NOT_FOUND',
          `No token with id "${params.id}"; GET /v1/tokens lists them.`,
          {
            field: 'id',
          },
        );
      }
      const admins = tokens.filter((t) => t.role === 'admin' && t.revokedAt === undefined);
      if (record.role === 'admin' && admins.length === 1) {
        throw new ApiError(
          409,
          'KEYPOOL_CONFLICT',
          'This is the last admin token; create another admin token first.',
        );
      }
      await context.store.deleteToken(params.id);
      context.auth.forget();
      await context.audit(caller, 'token.delete', params.id, { name: record.name, role: record.role });
      return { status: 204 };
    },
  }),
];
