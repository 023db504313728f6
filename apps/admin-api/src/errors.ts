import { KeypoolError } from '@keypool/core';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { ZodError } from 'zod';

/** Codes the API adds to core's `KeypoolErrorCode`s; stable, like theirs. */
export type ApiErrorCode =
  | 'KEYPOOL_VALIDATION'
  | 'KEYPOOL_MALFORMED_JSON'
  | 'KEYPOOL_PAYLOAD_TOO_LARGE'
  | 'KEYPOOL_UNSUPPORTED_MEDIA_TYPE'
  | 'KEYPOOL_UNAUTHORIZED'
  | 'KEYPOOL_FORBIDDEN'
  | 'KEYPOOL_NOT_FOUND'
  | 'KEYPOOL_CONFLICT'
  | 'KEYPOOL_RATE_LIMITED'
  | 'KEYPOOL_UNKNOWN_LEASE'
  | 'KEYPOOL_UNAVAILABLE'
  | 'KEYPOOL_INTERNAL';

export interface ErrorBody {
  error: { code: string; message: string; field?: string; retryAfterMs?: number | null };
}

/** An error with an HTTP status that the error middleware turns into `{ error: { code, message, field? } }`. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: ApiErrorCode;
  readonly field: string | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(
    status: number,
    code: ApiErrorCode,
    message: string,
    options: { field?: string; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = options.field;
    this.headers = options.headers;
  }
}

/** HTTP status for each core error code; anything a client can cause is a 4xx. */
const KEYPOOL_STATUS: Record<string, number> = {
  KEYPOOL_NO_KEY_AVAILABLE: 429,
  KEYPOOL_INVALID_CONFIG: 400,
  KEYPOOL_INVALID_ENV: 400,
  KEYPOOL_DUPLICATE_KEY: 409,
  KEYPOOL_NO_PROBE: 409,
  KEYPOOL_UNKNOWN_PROVIDER: 400,
  KEYPOOL_UNKNOWN_KEY: 404,
  KEYPOOL_ABORTED: 499,
  KEYPOOL_DEADLINE: 504,
  KEYPOOL_CLOSED: 503,
  KEYPOOL_STORE: 503,
  KEYPOOL_UPSTREAM: 502,
  KEYPOOL_MASTER_KEY: 500,
  KEYPOOL_DECRYPT: 500,
};

/** Field named by a zod issue: its path, plus the first unknown key for strict objects. */
function zodField(error: ZodError, where: string): { field: string; message: string } {
  const issue = error.issues[0];
  if (issue === undefined) return { field: where, message: 'invalid input' };
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    return {
      field: [where, ...path, key].filter(Boolean).join('.'),
      message: `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}: remove ${issue.keys.length > 1 ? 'them' : 'it'} (see /v1/openapi.json)`,
    };
  }
  const field = [where, ...path].filter(Boolean).join('.');
  return { field, message: `${field}: ${issue.message}` };
}

export function validationError(error: ZodError, where: 'body' | 'query' | 'params'): ApiError {
  const { field, message } = zodField(error, where);
  return new ApiError(400, 'KEYPOOL_VALIDATION', message, { field });
}

interface BodyParserError {
  type?: string;
  status?: number;
  limit?: number;
}

function fromBodyParser(error: BodyParserError): ApiError | undefined {
  switch (error.type) {
    case 'entity.parse.failed':
      return new ApiError(
        400,
        'KEYPOOL_MALFORMED_JSON',
        'The request body is not valid JSON; send a JSON object.',
        {
          field: 'body',
        },
      );
    case 'entity.too.large':
      return new ApiError(
        413,
        'KEYPOOL_PAYLOAD_TOO_LARGE',
        `The request body is larger than the ${error.limit ?? ''} byte limit; send less (import large env files in parts).`,
        { field: 'body' },
      );
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new ApiError(415, 'KEYPOOL_UNSUPPORTED_MEDIA_TYPE', 'Send the body as UTF-8 JSON.', {
        field: 'body',
      });
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
    case 'parameters.too.many':
      return new ApiError(400, 'KEYPOOL_VALIDATION', 'The request body could not be read; send it again.', {
        field: 'body',
      });
    default:
      return undefined;
  }
}

/** Turns anything thrown into `{ error: { code, message, field? } }`; only server faults are 5xx. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof ZodError) return validationError(error, 'body');
  if (KeypoolError.isInstance(error)) {
    const status = KEYPOOL_STATUS[error.code] ?? 500;
    const retryAfterMs = (error as { retryAfterMs?: number | null }).retryAfterMs;
    const headers =
      typeof retryAfterMs === 'number'
        ? { 'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) }
        : undefined;
    return new ApiError(
      status,
      error.code as ApiErrorCode,
      status >= 500 && status !== 502 && status !== 503 && status !== 504
        ? 'The server failed; see its log.'
        : error.message,
      headers !== undefined ? { headers } : {},
    );
  }
  if (typeof error === 'object' && error !== null) {
    const parsed = fromBodyParser(error as BodyParserError);
    if (parsed !== undefined) return parsed;
    // Node's errors for requests the parser refused (bad URI encoding and the like).
    const status = (error as BodyParserError).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return new ApiError(
        status,
        'KEYPOOL_VALIDATION',
        'The request could not be read; check its URL and body.',
      );
    }
  }
  return new ApiError(500, 'KEYPOOL_INTERNAL', 'The server failed; see its log.');
}

export function errorBody(error: ApiError, extra: Partial<ErrorBody['error']> = {}): ErrorBody {
  return {
    error: {
      code: error.code,
      message: error.message,
      ...(error.field !== undefined && { field: error.field }),
      ...extra,
    },
  };
}

export function errorMiddleware(logger: Logger): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const apiError = toApiError(error);
    res.locals.errorCode = apiError.code;
    if (apiError.status >= 500) {
      // Messages of our own and core errors never carry secrets; stack for the operator.
      logger.error({ err: error, method: req.method, path: req.path }, 'request failed');
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    for (const [name, value] of Object.entries(apiError.headers ?? {})) res.setHeader(name, value);
    const retryAfterMs = (error as { retryAfterMs?: number | null })?.retryAfterMs;
    res
      .status(apiError.status)
      .json(
        errorBody(
          apiError,
          KeypoolError.isInstance(error) && retryAfterMs !== undefined ? { retryAfterMs } : {},
        ),
      );
  };
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(
    new ApiError(
      404,
      'KEYPOOL_NOT_FOUND',
      `No route ${req.method} ${req.path}; the routes are listed in /v1/openapi.json.`,
    ),
  );
};
