import { describeUpstreamError } from '@keypool/core';
import type { UpstreamOutcome } from '@keypool/spec';
import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';

/**
 * Turns what an OpenAI call threw into an outcome for the failure table. The
 * SDK's own classes say more than a generic error: `APIConnectionTimeoutError`
 * is a timeout, `APIConnectionError` a connection failure, `APIUserAbortError`
 * the caller's abort, and an `APIError` carries the status, headers and the
 * body's `code`/`type` (so `insufficient_quota` is told apart from a plain 429).
 * Everything else (fetch errors, keypool's own) goes to core's generic reading,
 * which also scrubs secrets from messages.
 */
export function describeOpenAIError(error: unknown): UpstreamOutcome {
  const generic = describeUpstreamError(error);
  if (!isOpenAIError(error)) return generic;
  const outcome: UpstreamOutcome = { ...generic };
  if (isNamed(error, APIUserAbortError)) outcome.kind = 'abort';
  else if (isNamed(error, APIConnectionTimeoutError)) outcome.kind = 'timeout';
  else if (isNamed(error, APIConnectionError)) outcome.kind = 'connection';
  else if (typeof error.status === 'number') {
    outcome.kind = 'http';
    outcome.status = error.status;
  }
  const code = openAICode(error);
  if (code !== undefined) outcome.code = code;
  if (error.headers !== undefined && error.headers !== null) outcome.headers = error.headers;
  return outcome;
}

/** `insufficient_quota` arrives as `code` and `type`; rate limits as code `rate_limit_exceeded`, type `requests`/`tokens`. */
function openAICode(error: APIError): string | undefined {
  if (typeof error.code === 'string' && error.code !== '') return error.code;
  if (typeof error.type === 'string' && error.type !== '') return error.type;
  return undefined;
}

function isOpenAIError(error: unknown): error is APIError {
  if (error instanceof APIError) return true;
  // Another copy of the SDK (two versions installed): recognise it by shape and name.
  return error instanceof Error && 'status' in error && 'headers' in error && 'error' in error;
}

function isNamed(error: Error, type: abstract new (...args: never[]) => Error): boolean {
  if (error instanceof type) return true;
  // Another copy of the SDK: same class name, different constructor.
  return (error as { constructor?: { name?: string } }).constructor?.name === type.name;
}
