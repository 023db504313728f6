import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';

/** Paths pino blanks in every log line: bearer tokens and anything called secret or token. */
export const REDACT_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.headers.authorization',
  'secret',
  '*.secret',
  '*.*.secret',
  'token',
  '*.token',
  '*.*.token',
  'masterKey',
  '*.masterKey',
];

/** The API's logger: JSON lines, secrets redacted. Pass a destination to capture lines (tests). */
export function createLogger(options: LoggerOptions = {}, destination?: DestinationStream): Logger {
  const settings: LoggerOptions = {
    name: 'keypool-admin-api',
    level: process.env.LOG_LEVEL ?? 'info',
    ...options,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  // stdout written asynchronously: under load, lines queued while a write is in flight go out
  // in one write instead of one blocking write per request (flushed on exit).
  return pino(settings, destination ?? pino.destination({ dest: 1, sync: false }));
}
