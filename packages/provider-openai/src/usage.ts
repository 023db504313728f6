import type { Usage } from '@keypool/spec';

type Body = Record<string, unknown>;

/**
 * Pulls usage out of any OpenAI response body or stream event that reports it:
 * chat completions and legacy completions (`prompt_tokens`/`completion_tokens`),
 * embeddings (`prompt_tokens` only), the Responses API (`input_tokens`/
 * `output_tokens`, also inside a `response.completed` event), with cached input
 * tokens where reported.
 */
export function extractOpenAIUsage(response: unknown): Usage | undefined {
  if (response === null || typeof response !== 'object') return undefined;
  const body = response as Body;
  // Responses API stream events carry the response object.
  const usage = readObject(body.usage) ?? readObject(readObject(body.response)?.usage);
  if (usage === undefined) return undefined;

  if (typeof usage.input_tokens === 'number') {
    return withCached(
      { inputTokens: usage.input_tokens, outputTokens: numberOr0(usage.output_tokens) },
      readObject(usage.input_tokens_details)?.cached_tokens,
    );
  }
  if (typeof usage.prompt_tokens === 'number') {
    return withCached(
      { inputTokens: usage.prompt_tokens, outputTokens: numberOr0(usage.completion_tokens) },
      readObject(usage.prompt_tokens_details)?.cached_tokens,
    );
  }
  return undefined;
}

function withCached(usage: Usage, cached: unknown): Usage {
  if (typeof cached === 'number' && cached > 0) usage.cachedInputTokens = cached;
  return usage;
}

function readObject(value: unknown): Body | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Body) : undefined;
}

function numberOr0(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}
