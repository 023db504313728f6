import type { ReleaseOutcome } from '@keypool/spec';
import { ApiError } from '../errors.js';
import { defineRoute } from '../route.js';
import {
  ErrorSchema,
  IdParams,
  LeaseCreate,
  LeaseCreated,
  LeaseReport,
  LeaseReportResult,
} from '../schemas.js';
import { SERVICE } from './roles.js';

const tag = 'leases';

export const leaseRoutes = [
  defineRoute({
    method: 'post',
    path: '/v1/leases',
    summary: 'Lease a key for one upstream call (service tokens)',
    tag,
    roles: SERVICE,
    body: LeaseCreate,
    responses: {
      201: { description: 'Leased; report the outcome before `expiresAt`', schema: LeaseCreated },
      400: { description: 'Invalid input', schema: ErrorSchema },
      403: { description: 'The token may not use this pool', schema: ErrorSchema },
      404: { description: 'No such pool', schema: ErrorSchema },
      503: { description: 'Shutting down', schema: ErrorSchema },
      429: { description: 'No key available now; see Retry-After and `retryAfterMs`', schema: ErrorSchema },
    },
    async handle({ body, caller }, context) {
      if (context.closing) {
        throw new ApiError(
          503,
          'KEYPOOL_UNAVAILABLE',
          'The server is shutting down; lease from another instance or retry shortly.',
          {
            headers: { 'retry-after': '5' },
          },
        );
      }
      if (caller.pools !== undefined) {
        if (body.pool === undefined) {
          throw new ApiError(
            403,
            'KEYPOOL_FORBIDDEN',
            `Token "${caller.name}" is scoped to pools ${caller.pools.join(', ')}: name one in \`pool\`.`,
            {
              field: 'body.pool',
            },
          );
        }
        if (!caller.pools.includes(body.pool)) {
          throw new ApiError(
            403,
            'KEYPOOL_FORBIDDEN',
            `Token "${caller.name}" may not use pool "${body.pool}".`,
            {
              field: 'body.pool',
            },
          );
        }
      }
      if (body.pool !== undefined && (await context.store.getPool(body.pool)) === undefined) {
        throw new ApiError(
          404,
          'KEYPOOL_NOT_FOUND',
          `No pool with id "${body.pool}"; GET /v1/pools lists them.`,
          {
            field: 'body.pool',
          },
        );
      }
      const lease = await context.pool.acquire({
        provider: body.provider,
        ...(body.model !== undefined && { model: body.model }),
        ...(body.estimatedTokens !== undefined && { estimatedTokens: body.estimatedTokens }),
        ...(body.affinity !== undefined && { affinity: body.affinity }),
        ...(body.pool !== undefined && { pool: body.pool }),
        maxWaitMs: body.maxWaitMs ?? 0,
        caller: caller.name,
      });
      context.leases.add(lease, caller.tokenId, body.pool);
      return {
        status: 201,
        body: {
          leaseId: lease.id,
          secret: lease.secret,
          keyAlias: lease.alias,
          provider: lease.provider,
          ...(lease.model !== undefined && { model: lease.model }),
          ...(lease.baseURL !== undefined && { baseURL: lease.baseURL }),
          ...(lease.organization !== undefined && { organization: lease.organization }),
          ...(lease.project !== undefined && { project: lease.project }),
          expiresAt: lease.expiresAt,
        },
      };
    },
  }),
  defineRoute({
    method: 'post',
    path: '/v1/leases/:id/report',
    summary: 'Report how the call went; settles the reservation (after expiry, still recorded as usage)',
    tag,
    roles: SERVICE,
    params: IdParams,
    body: LeaseReport,
    responses: {
      200: { description: 'Recorded', schema: LeaseReportResult },
      400: { description: 'Invalid input', schema: ErrorSchema },
      403: { description: 'Another token holds this lease', schema: ErrorSchema },
      404: { description: 'Unknown lease, already reported, or reported too late', schema: ErrorSchema },
    },
    async handle({ params, body, caller }, context) {
      const held = context.leases.get(params.id);
      if (held === undefined) {
        throw new ApiError(
          404,
          'KEYPOOL_UNKNOWN_LEASE',
          `No open lease "${params.id}": it was already reported, never existed, or expired over an hour ago.`,
          { field: 'id' },
        );
      }
      if (held.tokenId !== caller.tokenId) {
        throw new ApiError(
          403,
          'KEYPOOL_FORBIDDEN',
          'This lease was taken with another token; report it with that one.',
          {
            field: 'id',
          },
        );
      }
      context.leases.take(params.id);
      const expired = held.lease.expiresAt <= context.now();
      const outcome: ReleaseOutcome = body.ok
        ? {
            ok: true,
            ...(body.usage !== undefined && { usage: body.usage }),
            ...(body.latencyMs !== undefined && { latencyMs: body.latencyMs }),
            ...(body.respondedAt !== undefined && { respondedAt: body.respondedAt }),
            ...(body.headers !== undefined && { headers: body.headers }),
            ...(body.model !== undefined && { model: body.model }),
          }
        : {
            ok: false,
            ...(body.status !== undefined && { status: body.status }),
            ...(body.kind !== undefined && { kind: body.kind }),
            ...(body.code !== undefined && { code: body.code }),
            ...(body.usage !== undefined && { usage: body.usage }),
            ...(body.latencyMs !== undefined && { latencyMs: body.latencyMs }),
            ...(body.respondedAt !== undefined && { respondedAt: body.respondedAt }),
            ...(body.headers !== undefined && { headers: body.headers }),
            ...(body.model !== undefined && { model: body.model }),
          };
      const classification = await held.lease.release(outcome);
      return {
        body: {
          leaseId: params.id,
          recorded: true,
          expired,
          ...(classification !== undefined && { failure: classification.failure }),
        },
      };
    },
  }),
];
