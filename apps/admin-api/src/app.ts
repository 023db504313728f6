import { type MasterKey, parseMasterKey } from '@keypool/core';
import type { KeyPool, Store } from '@keypool/spec';
import express, { type Express } from 'express';
import type { Logger } from 'pino';
import { type AuthOptions, createAuth } from './auth.js';
import { type AppContext, auditWriter } from './context.js';
import { mountDashboard } from './dashboard.js';
import { errorMiddleware, notFound } from './errors.js';
import { LeaseBook } from './leases.js';
import { createLogger } from './logger.js';
import { createMetrics } from './metrics.js';
import { buildOpenApi } from './openapi.js';
import { defineRoute, mountRoute, type RouteDef } from './route.js';
import { eventRoutes } from './routes/events.js';
import { importRoutes } from './routes/import.js';
import { keyRoutes } from './routes/keys.js';
import { leaseRoutes } from './routes/leases.js';
import { poolRoutes } from './routes/pools.js';
import { systemRoutes } from './routes/system.js';
import { tokenRoutes } from './routes/tokens.js';
import { usageRoutes } from './routes/usage.js';

export interface AdminAppOptions {
  pool: KeyPool;
  /** Default: the pool's store. */
  store?: Store;
  /** Default: a pino logger on stdout with secrets redacted. */
  logger?: Logger;
  /**
   * The pool's master key(s), so `POST /v1/keys/:id/test` can open a secret to
   * probe it. Without it that endpoint answers 409.
   */
  masterKey?: string | MasterKey | ReadonlyArray<string | MasterKey>;
  /** Largest JSON body accepted; larger ones get 413. Default '1mb'. */
  bodyLimit?: string | number;
  /** Auth failure limits and token cache. */
  auth?: AuthOptions;
  /** How often /v1/events sends a `health` event. Default 5000 ms. */
  healthIntervalMs?: number;
  /** How long after expiry a lease report is still accepted. Default 1 h. */
  lateReportMs?: number;
  /** Express `trust proxy`, so auth rate limits see client addresses behind a proxy. Default false. */
  trustProxy?: boolean | number | string;
  now?: () => number;
  /** Folder of the built dashboard (`dashboardDir` from @keypool/dashboard), served at `/`. */
  dashboardDir?: string;
}

export interface AdminApp extends Express {
  /** Every route the app serves, with its schemas (also the OpenAPI source). */
  readonly routes: readonly RouteDef[];
  /**
   * Stop: /readyz turns 503, SSE streams end, then waits up to `graceMs` (default
   * 5000) for open leases to be reported. Does not close the pool (its owner does).
   */
  close(options?: { graceMs?: number }): Promise<void>;
}

function toMasters(value: AdminAppOptions['masterKey']): MasterKey[] {
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((item) => (typeof item === 'string' ? parseMasterKey(item) : (item as MasterKey)));
}

/** The admin API as an Express app: mount it in your own server or run it with `startServer`. */
export function createAdminApp(options: AdminAppOptions): AdminApp {
  const { pool } = options;
  const store = options.store ?? pool.store;
  const now = options.now ?? Date.now;
  const logger = options.logger ?? createLogger();
  const context: AppContext = {
    pool,
    store,
    logger,
    auth: createAuth(store, options.auth, now, logger),
    leases: new LeaseBook({
      ...(options.lateReportMs !== undefined && { lateReportMs: options.lateReportMs }),
      now,
    }),
    metrics: createMetrics(pool),
    masterKeys: toMasters(options.masterKey),
    healthIntervalMs: options.healthIntervalMs ?? 5000,
    closing: false,
    now,
    streams: new Set(),
    audit: auditWriter(store, now),
  };

  const routes: RouteDef[] = [
    ...(systemRoutes as RouteDef[]),
    ...(keyRoutes as RouteDef[]),
    ...(importRoutes as RouteDef[]),
    ...(poolRoutes as RouteDef[]),
    ...(tokenRoutes as RouteDef[]),
    ...(usageRoutes as RouteDef[]),
    ...(eventRoutes as RouteDef[]),
    ...(leaseRoutes as RouteDef[]),
  ];
  let document: unknown;
  routes.push(
    defineRoute({
      method: 'get',
      path: '/v1/openapi.json',
      summary: 'This OpenAPI document, generated from the schemas that validate requests',
      tag: 'system',
      roles: 'public',
      responses: { 200: { description: 'OpenAPI 3.1 document' } },
      handle: () => {
        document ??= buildOpenApi(routes);
        return { body: document };
      },
    }) as RouteDef,
  );

  const app = express() as unknown as AdminApp;
  app.disable('x-powered-by');
  app.set('trust proxy', options.trustProxy ?? false);
  // JSON answers change with every call (status, usage, leases): ETags only cost a hash per response.
  app.set('etag', false);
  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const route = (res.locals.route as string | undefined) ?? 'unmatched';
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const status = res.statusCode;
      context.metrics.requests.inc({ method: req.method, route, status: String(status) });
      context.metrics.latency.observe({ method: req.method, route }, seconds);
      if (status >= 400) {
        context.metrics.errors.inc({
          class: status >= 500 ? '5xx' : '4xx',
          code: (res.locals.errorCode as string | undefined) ?? String(status),
        });
      }
      // Path only: query strings and bodies are never logged.
      const line = { method: req.method, path: req.path, status, ms: Math.round(seconds * 1e4) / 10 };
      if (status >= 500) logger.error(line, 'request');
      else logger.info(line, 'request');
    });
    next();
  });
  app.use(express.json({ limit: options.bodyLimit ?? '1mb', strict: true }));
  const router = express.Router();
  // The router tries routes in order: the lease hot path first saves it ~30 path matches.
  const hotFirst = [...routes].sort((a, b) => Number(b.tag === 'leases') - Number(a.tag === 'leases'));
  for (const route of hotFirst) mountRoute(router, route, context);
  app.use(router);
  if (options.dashboardDir !== undefined) mountDashboard(app, options.dashboardDir, logger);
  app.use(notFound);
  app.use(errorMiddleware(logger));

  Object.defineProperty(app, 'routes', { value: routes, enumerable: false });
  app.close = async ({ graceMs = 5000 } = {}) => {
    context.closing = true;
    for (const end of [...context.streams]) end();
    const unreported = await context.leases.drain(graceMs);
    if (unreported > 0) {
      logger.warn(
        { unreported },
        'leases still open at shutdown: their reservations stay at the estimate until they expire',
      );
    }
    context.leases.close();
    // Last-use writes still in flight land before the pool's owner closes the store.
    await context.auth.flush();
  };
  return app;
}
