import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { type AdminApp, type AdminAppOptions, createAdminApp } from './app.js';
import { ensureAdminToken } from './auth.js';
import { createLogger } from './logger.js';

export interface StartServerOptions extends AdminAppOptions {
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1: reachable from this machine only until you choose otherwise. */
  host?: string;
  /** Create an admin token when the store has none (first start). Default true. */
  bootstrapAdmin?: boolean;
  /** How long shutdown waits for open leases to be reported. Default 5000 ms. */
  shutdownGraceMs?: number;
}

export interface RunningServer {
  url: string;
  server: Server;
  app: AdminApp;
  logger: Logger;
  /** The admin token created on first start; shown once, only its hash is stored. */
  adminToken: string | undefined;
  /**
   * Graceful stop: /readyz turns 503 and new leases are refused, SSE streams end,
   * open leases get `shutdownGraceMs` to be reported, then the server stops
   * accepting connections, in-flight requests finish, and the pool closes
   * (flushing usage and closing the store).
   */
  close(): Promise<void>;
}

export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const logger = options.logger ?? createLogger();
  const store = options.store ?? options.pool.store;
  const adminToken = options.bootstrapAdmin === false ? undefined : await ensureAdminToken(store);
  const app = createAdminApp({ ...options, logger, store });
  const server = createServer(app);
  // Idle keep-alive sockets must not hold shutdown open.
  server.keepAliveTimeout = 5000;
  server.listen(options.port ?? 8080, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url, store: store.name }, 'keypool admin API listening');

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      logger.info('shutting down: waiting for open leases, then finishing in-flight requests');
      // Still listening while leases drain, so their holders can report them.
      await app.close({ graceMs: options.shutdownGraceMs ?? 5000 });
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await stopped;
      await options.pool.close();
      logger.info('stopped');
    })();
    return closing;
  };
  return { url, server, app, logger, adminToken, close };
}
