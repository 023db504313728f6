import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
} from '@anthropic-ai/sdk';
import { classifyOutcome } from '@keypool/core';
import { describe, expect, it } from 'vitest';
import { describeAnthropicError, describeAnthropicResponse } from './describe-error.js';

function apiError(status: number, type: string, message: string, headers: Record<string, string> = {}) {
  return APIError.generate(
    status,
    { type: 'error', error: { type, message } },
    undefined,
    new Headers(headers),
  );
}

const now = Date.parse('2026-11-25T12:00:00Z');

describe('describeAnthropicError', () => {
  it('reads status, error type and headers of SDK errors', () => {
    const outcome = describeAnthropicError(
      apiError(429, 'rate_limit_error', 'Number of requests has exceeded your rate limit', {
        'retry-after': '7',
      }),
    );
    expect(outcome).toMatchObject({ kind: 'http', status: 429, code: 'rate_limit_error' });
    expect(classifyOutcome(outcome, now)).toMatchObject({ failure: 'rate-limit', cooldownMs: 7000 });
  });

  it.each([
    [529, 'overloaded_error', 'Overloaded', 'server'],
    [500, 'api_error', 'Internal server error', 'server'],
    [401, 'authentication_error', 'invalid x-api-key', 'auth'],
    [
      403,
      'permission_error',
      'Your API key does not have permission to use the specified resource.',
      'forbidden',
    ],
    [402, 'billing_error', 'There is an issue with your billing', 'quota'],
    [400, 'invalid_request_error', 'Your credit balance is too low to access the Anthropic API.', 'quota'],
    [400, 'invalid_request_error', 'max_tokens: field required', 'caller'],
    [404, 'not_found_error', 'model: claude-nope', 'caller'],
    [413, 'request_too_large', 'Request exceeds the maximum allowed number of bytes.', 'caller'],
  ])('%i %s is classified as %s', (status, type, message, failure) => {
    const outcome = describeAnthropicError(apiError(status, type, message));
    expect(outcome.code).toBe(type);
    expect(classifyOutcome(outcome, now).failure).toBe(failure);
  });

  it('tells timeouts, connection failures and aborts apart', () => {
    expect(describeAnthropicError(new APIConnectionTimeoutError()).kind).toBe('timeout');
    expect(
      describeAnthropicError(new APIConnectionError({ cause: new TypeError('fetch failed') })).kind,
    ).toBe('connection');
    expect(describeAnthropicError(new APIUserAbortError()).kind).toBe('abort');
  });

  it('falls back to core for errors that are not the SDK’s', () => {
    expect(describeAnthropicError(Object.assign(new TypeError('fetch failed'), {})).kind).toBe('connection');
    expect(describeAnthropicError(new DOMException('aborted', 'AbortError')).kind).toBe('abort');
  });

  it('keeps secrets out of messages', () => {
    const outcome = describeAnthropicError(
      apiError(401, 'authentication_error', 'bad key sk-ant-api03-abcdefghijklmnop'),
    );
    expect(outcome.message).not.toContain('sk-ant-api03-abcdefghijklmnop');
  });
});

describe('describeAnthropicResponse', () => {
  it('gives a stream error event the status its type stands for', () => {
    const outcome = describeAnthropicResponse(undefined, {
      type: 'error',
      error: { type: 'overloaded_error', message: 'Overloaded' },
    });
    expect(outcome).toMatchObject({ kind: 'http', status: 529, code: 'overloaded_error' });
    expect(classifyOutcome(outcome, now).failure).toBe('server');
  });

  it('survives bodies that are not Anthropic errors', () => {
    expect(describeAnthropicResponse(502, 'Bad Gateway')).toEqual({ kind: 'http', status: 502 });
    expect(describeAnthropicResponse(503, undefined)).toEqual({ kind: 'http', status: 503 });
  });
});
