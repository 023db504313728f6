export { type AdminApp, type AdminAppOptions, createAdminApp } from './app.js';
export {
  type Auth,
  type AuthOptions,
  type Caller,
  createAuth,
  createToken,
  ensureAdminToken,
  generateToken,
} from './auth.js';
export { ApiError, type ApiErrorCode, type ErrorBody } from './errors.js';
export { type ImportReport, importKeys } from './import.js';
export { createLogger, REDACT_PATHS } from './logger.js';
export { buildOpenApi } from './openapi.js';
export type { RouteDef } from './route.js';
export { type RunningServer, type StartServerOptions, startServer } from './server.js';
