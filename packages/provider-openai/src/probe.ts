import type { ProbeResult } from '@keypool/spec';
import { describeOpenAIError } from './describe-error.js';

const DEFAULT_BASE_URL = 'https://api.openai.com/v1';

/** The cheapest authenticated call OpenAI offers: list models. */
export async function probeOpenAIKey(
  secret: string,
  options: { baseURL?: string; signal?: AbortSignal } = {},
): Promise<ProbeResult> {
  const startedAt = performance.now();
  const url = `${(options.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '')}/models`;
  try {
    const response = await fetch(url, {
      headers: { authorization: `Bearer ${secret}` },
      ...(options.signal !== undefined && { signal: options.signal }),
    });
    const latencyMs = performance.now() - startedAt;
    const text = await response.text().catch(() => '');
    if (response.ok) return { ok: true, latencyMs };
    const code = readErrorCode(text);
    return {
      ok: false,
      latencyMs,
      outcome: { kind: 'http', status: response.status, headers: response.headers, ...(code && { code }) },
    };
  } catch (error) {
    return { ok: false, latencyMs: performance.now() - startedAt, outcome: describeOpenAIError(error) };
  }
}

function readErrorCode(text: string): string | undefined {
  try {
    const error = (JSON.parse(text) as { error?: { code?: unknown; type?: unknown } }).error;
    const code = error?.code ?? error?.type;
    return typeof code === 'string' && code !== '' ? code : undefined;
  } catch {
    return undefined;
  }
}
