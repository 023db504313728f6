import type { Usage } from '@keypool/spec';

interface AnthropicUsage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  /** Cache writes by TTL; in `Message.usage` (and `message_start`), not in `message_delta`. */
  cache_creation?: {
    ephemeral_5m_input_tokens?: number | null;
    ephemeral_1h_input_tokens?: number | null;
  } | null;
}

/**
 * Usage out of a `Message` (non-stream answer) or a stream event
 * (`message_start` carries the message's usage, `message_delta` the running
 * totals). Anthropic's `input_tokens` excludes cached tokens, so input here is
 * `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`, with
 * cache reads as `cachedInputTokens` and cache writes as
 * `cacheWriteInputTokens` (`cacheWrite1hInputTokens` for the 1-hour TTL part
 * of them), so each is priced at its own rate.
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
  const byTtl = raw.cache_creation;
  const written1h = count(byTtl?.ephemeral_1h_input_tokens);
  // The total is authoritative; the breakdown stands in only when the total is missing.
  const written =
    typeof raw.cache_creation_input_tokens === 'number'
      ? count(raw.cache_creation_input_tokens)
      : count(byTtl?.ephemeral_5m_input_tokens) + written1h;
  const usage: Usage = {
    inputTokens: count(raw.input_tokens) + cacheRead + written,
    outputTokens: count(raw.output_tokens),
  };
  if (cacheRead > 0) usage.cachedInputTokens = cacheRead;
  if (written > 0) usage.cacheWriteInputTokens = written;
  if (written > 0 && written1h > 0) usage.cacheWrite1hInputTokens = Math.min(written1h, written);
  return usage;
}

/**
 * Running usage of a stream: `message_start` gives the input side, each
 * `message_delta` the cumulative output (and, on newer API versions, final
 * input counts, which win when present).
 */
export class StreamUsage {
  private readonly raw: AnthropicUsage = {};
  seen = false;

  add(raw: AnthropicUsage | undefined): void {
    if (typeof raw !== 'object' || raw === null) return;
    this.seen = true;
    for (const field of COUNTS) {
      const value = raw[field];
      if (typeof value === 'number' && Number.isFinite(value)) this.raw[field] = value;
    }
    // Only message_start has the TTL breakdown; later totals keep it.
    if (typeof raw.cache_creation === 'object' && raw.cache_creation !== null) {
      this.raw.cache_creation = { ...raw.cache_creation };
    }
  }

  get usage(): Usage | undefined {
    return this.seen ? toUsage(this.raw) : undefined;
  }
}

const COUNTS = [
  'input_tokens',
  'output_tokens',
  'cache_read_input_tokens',
  'cache_creation_input_tokens',
] as const;

function count(value: number | null | undefined): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}
