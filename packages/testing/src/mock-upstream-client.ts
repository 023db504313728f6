import type { ReleaseOutcome } from '@keypool/spec';

export interface MockCall {
  provider: 'openai' | 'anthropic';
  model: string;
  /** The leased key. */
  secret: string;
  /** The user message. */
  text: string;
}

/**
 * One call to the mock upstream the way a client without an SDK makes it (chat
 * completions or messages over fetch), turned into the outcome to report for its
 * lease: usage, status, error code, latency and when the response began.
 */
export async function callMockUpstream(url: string, call: MockCall): Promise<ReleaseOutcome> {
  const started = Date.now();
  const messages = [{ role: 'user', content: call.text }];
  try {
    const response =
      call.provider === 'openai'
        ? await fetch(`${url}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${call.secret}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: call.model, messages }),
          })
        : await fetch(`${url}/v1/messages`, {
            method: 'POST',
            headers: {
              'x-api-key': call.secret,
              'anthropic-version': '2023-06-01',
              'content-type': 'application/json',
            },
            body: JSON.stringify({ model: call.model, max_tokens: 64, messages }),
          });
    const respondedAt = Date.now();
    const body = (await response.json().catch(() => ({}))) as {
      usage?: {
        prompt_tokens?: number;
        completion_tokens?: number;
        input_tokens?: number;
        output_tokens?: number;
      };
      error?: { code?: string; type?: string };
    };
    const latencyMs = Date.now() - started;
    if (response.ok) {
      const usage = {
        inputTokens: body.usage?.prompt_tokens ?? body.usage?.input_tokens ?? 0,
        outputTokens: body.usage?.completion_tokens ?? body.usage?.output_tokens ?? 0,
      };
      return { ok: true, usage, latencyMs, respondedAt, headers: response.headers };
    }
    const code = body.error?.code ?? body.error?.type;
    return {
      ok: false,
      status: response.status,
      headers: response.headers,
      latencyMs,
      respondedAt,
      ...(code !== undefined && { code }),
    };
  } catch (error) {
    return { ok: false, kind: 'connection', error, latencyMs: Date.now() - started };
  }
}
