import type { ProbeResult } from '@keypool/spec';
import { describeAnthropicError, describeAnthropicResponse } from './describe-error.js';

export const DEFAULT_BASE_URL = 'https://api.anthropic.com';
export const ANTHROPIC_VERSION = '2023-06-01';

/** The cheapest call Anthropic offers: list one model. Costs no tokens. */
export async function probeAnthropic(
  secret: string,
  options: { baseURL?: string; signal?: AbortSignal; fetch?: typeof fetch } = {},
): Promise<ProbeResult> {
  const started = performance.now();
  const base = (options.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
  try {
    const response = await (options.fetch ?? fetch)(`${base}/v1/models?limit=1`, {
      headers: { 'x-api-key': secret, 'anthropic-version': ANTHROPIC_VERSION, accept: 'application/json' },
      ...(options.signal !== undefined && { signal: options.signal }),
    });
    const latencyMs = performance.now() - started;
    if (response.ok) {
      await response.body?.cancel();
      return { ok: true, latencyMs };
    }
    const text = await response.text().catch(() => '');
    return {
      ok: false,
      outcome: describeAnthropicResponse(response.status, parseJson(text), response.headers),
      latencyMs,
    };
  } catch (error) {
    return { ok: false, outcome: describeAnthropicError(error), latencyMs: performance.now() - started };
  }
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
