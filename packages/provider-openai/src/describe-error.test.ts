import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { describeOpenAIError } from './describe-error.js';

const headers = (values: Record<string, string>) => new Headers(values);

describe('describeOpenAIError', () => {
  it('tells insufficient_quota from a plain rate limit on 429', () => {
    const quota = OpenAI.APIError.generate(
      429,
      {
        error: {
          message: 'You exceeded your current quota.',
          type: 'insufficient_quota',
          code: 'insufficient_quota',
        },
      },
      undefined,
      headers({}),
    );
    expect(describeOpenAIError(quota)).toMatchObject({
      kind: 'http',
      status: 429,
      code: 'insufficient_quota',
    });

    const limited = OpenAI.APIError.generate(
      429,
      { error: { message: 'Rate limit reached.', type: 'requests', code: 'rate_limit_exceeded' } },
      undefined,
      headers({ 'retry-after-ms': '1500' }),
    );
    const outcome = describeOpenAIError(limited);
    expect(outcome).toMatchObject({ kind: 'http', status: 429, code: 'rate_limit_exceeded' });
    expect(new Headers(outcome.headers as Headers).get('retry-after-ms')).toBe('1500');
  });

  it('keeps status for 401, 403, 5xx and caller errors', () => {
    for (const status of [400, 401, 403, 404, 500, 503]) {
      const error = OpenAI.APIError.generate(
        status,
        { error: { message: 'x', type: 'server_error' } },
        undefined,
        headers({}),
      );
      expect(describeOpenAIError(error)).toMatchObject({ kind: 'http', status });
    }
  });

  it('names timeouts, connection failures and aborts by the SDK class', () => {
    expect(describeOpenAIError(new OpenAI.APIConnectionTimeoutError()).kind).toBe('timeout');
    expect(describeOpenAIError(new OpenAI.APIConnectionError({ message: 'Connection error.' })).kind).toBe(
      'connection',
    );
    expect(describeOpenAIError(new OpenAI.APIUserAbortError()).kind).toBe('abort');
  });

  it('reads plain fetch failures through core', () => {
    const refused = new TypeError('fetch failed', {
      cause: Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }),
    });
    expect(describeOpenAIError(refused).kind).toBe('connection');
    expect(describeOpenAIError(new DOMException('timed out', 'TimeoutError')).kind).toBe('timeout');
  });

  it('never repeats a key from the message', () => {
    const error = OpenAI.APIError.generate(
      401,
      {
        error: {
          message: 'Incorrect API key provided: sk-proj-abcdefghijklmnop1234.',
          type: 'invalid_request_error',
          code: 'invalid_api_key',
        },
      },
      undefined,
      headers({}),
    );
    const outcome = describeOpenAIError(error);
    expect(outcome.code).toBe('invalid_api_key');
    expect(outcome.message ?? '').not.toContain('abcdefghijklmnop1234');
  });
});
