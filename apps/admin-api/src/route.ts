import type { Role } from '@keypool/spec';
import type { Request, Response, Router } from 'express';
import { z } from 'zod';
import type { Caller } from './auth.js';
import type { AppContext } from './context.js';
import { ApiError, validationError } from './errors.js';

type Schema = z.ZodType;
type Out<S> = S extends Schema ? z.output<S> : undefined;

export interface Call<B, Q, P> {
  body: Out<B>;
  query: Out<Q>;
  params: Out<P>;
  /** Undefined only on public routes. */
  caller: Caller;
  req: Request;
  res: Response;
}

/** What a handler answers; `undefined` when it wrote the response itself (SSE, metrics text). */
export type Reply = { status?: number; body?: unknown } | undefined;

export interface ResponseSpec {
  description: string;
  schema?: Schema;
  contentType?: string;
}

/**
 * One route: its contract (schemas, roles, responses) and its handler. The same
 * record mounts the Express route and writes its part of /v1/openapi.json.
 */
export interface RouteDef<
  B extends Schema | undefined = Schema | undefined,
  Q = Schema | undefined,
  P = Schema | undefined,
> {
  method: 'get' | 'post' | 'patch' | 'delete';
  /** Express syntax (`/v1/keys/:id`). */
  path: string;
  summary: string;
  tag: string;
  /** Roles allowed; 'public' needs no token. */
  roles: readonly Role[] | 'public';
  body?: B;
  query?: Q;
  params?: P;
  responses: Record<number, ResponseSpec>;
  handle(call: Call<B, Q, P>, context: AppContext): Promise<Reply> | Reply;
}

export function defineRoute<
  B extends Schema | undefined = undefined,
  Q extends Schema | undefined = undefined,
  P extends Schema | undefined = undefined,
>(route: RouteDef<B, Q, P>): RouteDef<B, Q, P> {
  return route;
}

const emptyQuery = z.strictObject({});

function parse<S extends Schema>(schema: S, value: unknown, where: 'body' | 'query' | 'params'): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationError(result.error, where);
  return result.data;
}

function hasBody(req: Request): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

export function mountRoute(router: Router, route: RouteDef, context: AppContext): void {
  router[route.method](route.path, async (req, res, next) => {
    try {
      res.locals.route = route.path;
      const caller = route.roles === 'public' ? undefined : await context.auth.authorize(req, route.roles);
      if (route.body !== undefined && hasBody(req) && !req.is('application/json')) {
        throw new ApiError(
          415,
          'KEYPOOL_UNSUPPORTED_MEDIA_TYPE',
          'Send the body as JSON with content-type: application/json.',
          {
            field: 'body',
          },
        );
      }
      const params = route.params !== undefined ? parse(route.params, req.params, 'params') : undefined;
      const query =
        route.query !== undefined
          ? parse(route.query, req.query, 'query')
          : Object.keys(req.query ?? {}).length > 0
            ? parse(emptyQuery, req.query, 'query')
            : undefined;
      // A missing body on a route with only optional fields reads as `{}`.
      const body = route.body !== undefined ? parse(route.body, req.body ?? {}, 'body') : undefined;
      if (route.body === undefined && hasBody(req) && req.body !== undefined && !isEmptyObject(req.body)) {
        throw new ApiError(
          400,
          'KEYPOOL_VALIDATION',
          `${route.method.toUpperCase()} ${route.path} takes no body.`,
          {
            field: 'body',
          },
        );
      }
      const reply = await route.handle(
        { body, query, params, caller: caller as Caller, req, res } as Call<unknown, unknown, unknown>,
        context,
      );
      if (reply === undefined) return;
      const status = reply.status ?? 200;
      if (reply.body === undefined) res.status(status).end();
      else res.status(status).json(reply.body);
    } catch (error) {
      next(error);
    }
  });
}

function isEmptyObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && Object.keys(value).length === 0;
}
