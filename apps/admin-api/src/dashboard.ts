import { existsSync } from 'node:fs';
import { join } from 'node:path';
import express, { type Express } from 'express';
import type { Logger } from 'pino';

const API_PATHS = /^\/(v1\/|v1$|metrics$|healthz$|readyz$)/;

/**
 * Serves the built dashboard at `/`: hashed assets cached for a year, every other
 * non-API GET answered with index.html so client-side routes survive a reload.
 */
export function mountDashboard(app: Express, dir: string, logger: Logger): void {
  const index = join(dir, 'index.html');
  if (!existsSync(index)) {
    logger.warn({ dir }, 'dashboard not built: `npm run build -w @keypool/dashboard` to serve it at /');
    return;
  }
  app.use('/assets', express.static(join(dir, 'assets'), { immutable: true, maxAge: '1y', index: false }));
  app.use(express.static(dir, { index: false, maxAge: 0 }));
  app.use((req, res, next) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || API_PATHS.test(req.path)) {
      next();
      return;
    }
    res.setHeader('cache-control', 'no-cache');
    res.sendFile(index);
  });
}
