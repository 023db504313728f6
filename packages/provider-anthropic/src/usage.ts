import type { Usage } from '@keypool/spec';

interface AnthropicUsage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
}

/**
 * Usage out of a `Message` (non-stream answer) or a stream event
 * (`message_start` carries the message's usage, `message_delta` the running
 * totals). Anthropic's `input_tokens` excludes cached tokens, so input here is
 * `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`, with
 * cache reads as `cachedInputTokens` (priced at the cached rate). Cache writes
 * are priced at the base input rate: `Usage` has no field for their 1.25×
 * surcharge.
 */
export function extractAnthropicUsage(response: unknown): Usage | undefined {
  if (typeof response !== 'object' || response === null) return undefined;
  const value = response as { type?: unknown; usage?: unknown; message?: { usage?: unknown } };
  const raw = value.type === 'message_start' ? value.message?.usage : value.usage;
  if (typeof raw !== 'object' || raw === null) return undefined;
  return toUsage(raw as AnthropicUsage);
}

export function toUsage(raw: AnthropicUsage): Usage {
  const cacheRead = count(raw.cache_read_input_tokens);
  const usage: Usage = {
    inputTokens: count(raw.input_tokens) + cacheRead + count(raw.cache_creation_input_tokens),
    outputTokens: count(raw.output_tokens),
  };
  if (cacheRead > 0) usage.cachedInputTokens = cacheRead;
  return usage;
}

/**
 * Running usage of a stream: `message_start` gives the input side, each
 * `message_delta` the cumulative output (and, on newer API versions, final
 * input counts, which win when present).
 */
export class StreamUsage {
  private readonly raw: Required<{ [K in keyof AnthropicUsage]: number }> = {
    input_tokens: 0,
    output_tokens: 0,
    cache_read_input_tokens: 0,
    cache_creation_input_tokens: 0,
  };
  seen = false;

  add(raw: AnthropicUsage | undefined): void {
    if (typeof raw !== 'object' || raw === null) return;
    this.seen = true;
    for (const field of Object.keys(this.raw) as Array<keyof AnthropicUsage>) {
      const value = raw[field];
      if (typeof value === 'number' && Number.isFinite(value)) this.raw[field] = value;
    }
  }

  get usage(): Usage | undefined {
    return this.seen ? toUsage(this.raw) : undefined;
  }
}

function count(value: number | null | undefined): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}
