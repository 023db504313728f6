import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
} from '@anthropic-ai/sdk';
import { describeUpstreamError } from '@keypool/core';
import type { HeaderBag, UpstreamOutcome } from '@keypool/spec';

/** Error `type`s that only come inside a 200 stream (`event: error`), mapped to the status the API uses for them. */
const STATUS_OF_TYPE: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

/**
 * Outcome of an Anthropic error answer, from its status and parsed body
 * (`{ type: 'error', error: { type, message } }`): the body's `type` becomes the
 * code. Core's failure table reads credit exhaustion from it (402 or
 * `billing_error`, or the live API's 400 "credit balance is too low" message).
 * An `event: error` inside a 200 stream has no status: the one the API uses for
 * its type stands in.
 */
export function describeAnthropicResponse(
  status: number | undefined,
  body: unknown,
  headers?: HeaderBag,
): UpstreamOutcome {
  const detail = errorDetail(body);
  const outcome: UpstreamOutcome = { kind: 'http' };
  const effectiveStatus = status ?? (detail.type !== undefined ? STATUS_OF_TYPE[detail.type] : undefined);
  if (effectiveStatus !== undefined) outcome.status = effectiveStatus;
  if (detail.type !== undefined) outcome.code = detail.type;
  // Core scrubs anything key-like from messages.
  const message = detail.message !== undefined ? describeUpstreamError(detail.message).message : undefined;
  if (message !== undefined) outcome.message = message;
  if (headers !== undefined) outcome.headers = headers;
  return outcome;
}

/**
 * Turns what an Anthropic call threw into an outcome for the failure table. The
 * SDK's classes say more than a generic error: `APIConnectionTimeoutError` is a
 * timeout, `APIConnectionError` a connection failure, `APIUserAbortError` the
 * caller's abort, and an `APIError` carries status, headers and the body's
 * `error.type` (`rate_limit_error`, `overloaded_error`, `authentication_error`,
 * `permission_error`, `billing_error` …). Everything else (fetch errors,
 * keypool's own) goes to core's generic reading, which also scrubs secrets.
 */
export function describeAnthropicError(error: unknown): UpstreamOutcome {
  const generic = describeUpstreamError(error);
  if (!isAnthropicError(error)) return generic;
  if (isNamed(error, APIUserAbortError)) return { ...generic, kind: 'abort' };
  if (isNamed(error, APIConnectionTimeoutError)) return { ...generic, kind: 'timeout' };
  if (isNamed(error, APIConnectionError)) return { ...generic, kind: 'connection' };
  const status = typeof error.status === 'number' ? error.status : undefined;
  const headers = error.headers ?? undefined;
  const outcome = describeAnthropicResponse(status, error.error, headers);
  // Keep core's scrubbed message when the body had none.
  if (outcome.message === undefined && generic.message !== undefined) outcome.message = generic.message;
  if (outcome.status === undefined && outcome.code === undefined)
    return { ...generic, ...outcome, kind: generic.kind };
  return outcome;
}

function errorDetail(body: unknown): { type?: string; message?: string } {
  if (typeof body !== 'object' || body === null) return {};
  // The SDK keeps the whole body on `error.error`; the inner `error` holds type and message.
  const inner = (body as { error?: unknown }).error;
  const source = typeof inner === 'object' && inner !== null ? inner : body;
  const { type, message } = source as { type?: unknown; message?: unknown };
  return {
    ...(typeof type === 'string' && type !== 'error' && { type }),
    ...(typeof message === 'string' && { message }),
  };
}

function isAnthropicError(error: unknown): error is APIError {
  if (error instanceof APIError) return true;
  // Another copy of the SDK (two versions installed): recognise it by shape.
  return error instanceof Error && 'status' in error && 'headers' in error && 'error' in error;
}

function isNamed(error: Error, type: abstract new (...args: never[]) => Error): boolean {
  return error instanceof type || (error as Error).constructor?.name === type.name;
}
