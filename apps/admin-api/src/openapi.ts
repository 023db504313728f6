import {
  createDocument,
  type ZodOpenApiOperationObject,
  type ZodOpenApiPathsObject,
  type ZodOpenApiResponseObject,
} from 'zod-openapi';
import type { RouteDef } from './route.js';
import { ErrorSchema } from './schemas.js';

/** Express `/v1/keys/:id` → OpenAPI `/v1/keys/{id}`. */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/** The OpenAPI 3.1 document of the routes, generated from the zod schemas that validate them. */
export function buildOpenApi(
  routes: readonly RouteDef[],
  version = '0.1.0',
): ReturnType<typeof createDocument> {
  const paths: ZodOpenApiPathsObject = {};
  for (const route of routes) {
    const responses: Record<string, ZodOpenApiResponseObject> = {};
    for (const [status, spec] of Object.entries(route.responses)) {
      responses[status] = {
        description: spec.description,
        ...(spec.schema !== undefined && {
          content: { [spec.contentType ?? 'application/json']: { schema: spec.schema } },
        }),
        ...(spec.schema === undefined &&
          spec.contentType !== undefined && {
            content: { [spec.contentType]: { schema: { type: 'string' } } },
          }),
      };
    }
    if (route.roles !== 'public') {
      responses['401'] ??= {
        description: 'Missing or unknown token',
        content: { 'application/json': { schema: ErrorSchema } },
      };
      responses['403'] ??= {
        description: `Token lacks the role (${route.roles.join(', ')})`,
        content: { 'application/json': { schema: ErrorSchema } },
      };
    }
    const operation: ZodOpenApiOperationObject = {
      operationId: `${route.method}${openApiPath(route.path).replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ?? '').toUpperCase())}`,
      summary: route.summary,
      tags: [route.tag],
      ...(route.roles === 'public'
        ? { security: [] }
        : { security: [{ bearer: [] }], 'x-roles': [...route.roles] }),
      ...((route.params !== undefined || route.query !== undefined) && {
        requestParams: {
          ...(route.params !== undefined && { path: route.params as never }),
          ...(route.query !== undefined && { query: route.query as never }),
        },
      }),
      ...(route.body !== undefined && {
        requestBody: { required: true, content: { 'application/json': { schema: route.body } } },
      }),
      responses,
    };
    const path = openApiPath(route.path);
    paths[path] = { ...paths[path], [route.method]: operation };
  }
  return createDocument({
    openapi: '3.1.0',
    info: {
      title: 'keypool admin API',
      version,
      description:
        'Keys, pools, tokens, usage, audit, health, events and leases of a keypool. Authenticate with `Authorization: Bearer <token>`.',
    },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths,
  });
}
