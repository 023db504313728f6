import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';

/** Above this many characters of text a request is estimated at chars / 4: tokenizing it would cost more than a wrong guess. */
const TOKENIZE_MAX_CHARS = 16_000;
/** Output reserved when the request sets no max tokens: enough for a typical reply, small enough not to starve tpm limits. */
export const DEFAULT_OUTPUT_TOKENS = 1_024;
/** Per-message framing tokens of the chat format (role, separators). */
const MESSAGE_OVERHEAD_TOKENS = 4;
/** Tokens of an image part, "high" detail tile of 512 px plus base (a conservative middle). */
const IMAGE_TOKENS = 765;

type Body = Record<string, unknown>;

/**
 * Estimates the tokens an OpenAI request will consume (input + the output it
 * may produce), for the pool's tpm/day reservations. Works on the JSON bodies
 * of chat completions, responses, embeddings and legacy completions; anything
 * else estimates from its text. Reconciled with actual usage at release.
 */
export function estimateOpenAITokens(request: unknown, _model?: string): number {
  if (request === null || typeof request !== 'object') return 0;
  const body = request as Body;
  const texts: string[] = [];
  let fixed = 0;

  if (Array.isArray(body.messages)) {
    // Chat completions: every message has a small framing cost; the reply is primed with 3 tokens.
    fixed += 3;
    for (const message of body.messages) {
      fixed += MESSAGE_OVERHEAD_TOKENS;
      fixed += collect(message, texts);
    }
  }
  if (body.input !== undefined) fixed += collect(body.input, texts);
  if (typeof body.instructions === 'string') texts.push(body.instructions);
  if (body.prompt !== undefined) fixed += collect(body.prompt, texts);
  if (Array.isArray(body.tools) && body.tools.length > 0) texts.push(JSON.stringify(body.tools));
  if (body.functions !== undefined) texts.push(JSON.stringify(body.functions));

  const input = fixed + countText(texts);
  return input + outputAllowance(body);
}

/** What the request may produce: its own max, else a default; nothing for embeddings. */
function outputAllowance(body: Body): number {
  const max = firstNumber(body.max_completion_tokens, body.max_output_tokens, body.max_tokens);
  const choices = typeof body.n === 'number' && body.n > 1 ? body.n : 1;
  if (max !== undefined) return max * choices;
  if (isEmbeddingsBody(body)) return 0;
  return DEFAULT_OUTPUT_TOKENS * choices;
}

function isEmbeddingsBody(body: Body): boolean {
  if (typeof body.model === 'string' && body.model.includes('embedding')) return true;
  return body.encoding_format !== undefined || body.dimensions !== undefined;
}

function firstNumber(...values: unknown[]): number | undefined {
  for (const value of values)
    if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  return undefined;
}

/**
 * Pushes the text found in a message, content part, input item or prompt onto
 * `texts`; returns tokens known without tokenizing (images, token arrays).
 */
function collect(value: unknown, texts: string[]): number {
  if (typeof value === 'string') {
    texts.push(value);
    return 0;
  }
  if (typeof value === 'number') return 1; // a token id (embeddings or completions input)
  if (Array.isArray(value)) {
    let fixed = 0;
    for (const item of value) fixed += collect(item, texts);
    return fixed;
  }
  if (value === null || typeof value !== 'object') return 0;
  const part = value as Body;
  if (part.type === 'image_url' || part.type === 'input_image') return IMAGE_TOKENS;
  let fixed = 0;
  if (typeof part.text === 'string') texts.push(part.text);
  if (part.content !== undefined) fixed += collect(part.content, texts);
  if (typeof part.name === 'string') texts.push(part.name);
  if (typeof part.arguments === 'string') texts.push(part.arguments);
  if (typeof part.output === 'string') texts.push(part.output);
  if (Array.isArray(part.tool_calls)) texts.push(JSON.stringify(part.tool_calls));
  return fixed;
}

function countText(texts: readonly string[]): number {
  let chars = 0;
  for (const text of texts) chars += text.length;
  if (chars === 0) return 0;
  if (chars > TOKENIZE_MAX_CHARS) return Math.ceil(chars / 4);
  let tokens = 0;
  for (const text of texts) tokens += countTokens(text);
  return tokens;
}
