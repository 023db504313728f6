import { defineRoute } from '../route.js';
import { Health, Liveness, Readiness } from '../schemas.js';
import { READ } from './roles.js';

export const systemRoutes = [
  defineRoute({
    method: 'get',
    path: '/healthz',
    summary: 'Liveness: the process answers',
    tag: 'system',
    roles: 'public',
    responses: { 200: { description: 'Alive', schema: Liveness } },
    handle: () => ({ body: { status: 'ok' } }),
  }),
  defineRoute({
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: the store answers and the pool is open',
    tag: 'system',
    roles: 'public',
    responses: {
      200: { description: 'Ready', schema: Readiness },
      503: { description: 'Not ready; `reasons` says why', schema: Readiness },
    },
    async handle(_call, context) {
      const reasons: string[] = [];
      if (context.closing) reasons.push('shutting down');
      try {
        await context.store.keysVersion();
      } catch (error) {
        reasons.push(`store ${context.store.name} unreachable: ${(error as Error).message}`);
      }
      if (context.pool.health().store.degraded) reasons.push(`store ${context.store.name} degraded`);
      return {
        status: reasons.length === 0 ? 200 : 503,
        body: { status: reasons.length === 0 ? 'ready' : 'not-ready', reasons },
      };
    },
  }),
  defineRoute({
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics (labelled by key alias, never by secret)',
    tag: 'system',
    roles: READ,
    responses: { 200: { description: 'Prometheus text format', contentType: 'text/plain' } },
    async handle({ res }, context) {
      const text = await context.metrics.registry.metrics();
      res.setHeader('content-type', context.metrics.registry.contentType);
      res.status(200).send(text);
      return undefined;
    },
  }),
  defineRoute({
    method: 'get',
    path: '/v1/health',
    summary:
      'Pool health: overall status, reasons, and per key status, success rate, latency, headroom, last error',
    tag: 'health',
    roles: READ,
    responses: { 200: { description: 'Health', schema: Health } },
    handle: (_call, context) => ({ body: context.pool.health() }),
  }),
];
