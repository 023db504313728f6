/**
 * Token estimate for an Anthropic request, used to reserve headroom before the
 * call. Anthropic's tokenizer is not public (the exact count needs a round trip
 * to `/v1/messages/count_tokens`), so this is a heuristic: about 3.5 characters
 * per token over messages, system and tools, a fixed cost per image or
 * document, plus `max_tokens` as the output allowance. Release reconciles the
 * reservation with the usage the API reports, so a rough estimate only shifts
 * headroom for the length of one request.
 */
export const CHARS_PER_TOKEN = 3.5;
/** Roughly what a full-size image costs (width × height / 750, capped near 1.15 MP). */
const TOKENS_PER_IMAGE = 1600;
/** Per-message framing (role markers and separators). */
const TOKENS_PER_MESSAGE = 4;

export function estimateAnthropicTokens(request: unknown): number {
  if (typeof request !== 'object' || request === null) return 0;
  const body = request as {
    messages?: unknown;
    system?: unknown;
    tools?: unknown;
    max_tokens?: unknown;
  };
  const count = { chars: 0, fixed: 0 };
  if (Array.isArray(body.messages)) {
    for (const message of body.messages) {
      count.fixed += TOKENS_PER_MESSAGE;
      addContent((message as { content?: unknown } | null)?.content, count);
    }
  }
  addContent(body.system, count);
  if (Array.isArray(body.tools)) {
    for (const tool of body.tools) count.chars += JSON.stringify(tool)?.length ?? 0;
  }
  const output = typeof body.max_tokens === 'number' && body.max_tokens > 0 ? body.max_tokens : 0;
  return Math.ceil(count.chars / CHARS_PER_TOKEN) + count.fixed + output;
}

function addContent(content: unknown, count: { chars: number; fixed: number }): void {
  if (typeof content === 'string') {
    count.chars += content.length;
    return;
  }
  if (!Array.isArray(content)) return;
  for (const block of content) {
    if (typeof block !== 'object' || block === null) continue;
    const { type, text, input, content: nested, source } = block as Record<string, unknown>;
    if (typeof text === 'string') count.chars += text.length;
    else if (type === 'image' || (type === 'document' && isBinarySource(source)))
      count.fixed += TOKENS_PER_IMAGE;
    else if (type === 'document' && typeof source === 'object' && source !== null) {
      addContent((source as { data?: unknown; content?: unknown }).data, count);
      addContent((source as { content?: unknown }).content, count);
    } else if (input !== undefined) count.chars += JSON.stringify(input)?.length ?? 0;
    if (nested !== undefined) addContent(nested, count);
  }
}

/** Base64 or URL sources (PDF, images) are not text we can measure by length. */
function isBinarySource(source: unknown): boolean {
  if (typeof source !== 'object' || source === null) return false;
  const { type } = source as { type?: unknown };
  return type === 'base64' || type === 'url' || type === 'file';
}
