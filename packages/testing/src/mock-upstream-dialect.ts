/**
 * What the mock server needs from each API dialect (OpenAI, Anthropic): how a
 * request is authenticated and answered, how errors and rate-limit headers look.
 * Token counts are deterministic so tests can assert exact numbers.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { FaultSpec } from './mock-upstream-faults.js';
import type { LimitView } from './mock-upstream-limits.js';
import type { PromptCache } from './mock-upstream-prompt-cache.js';

/** The mock's token count for a text: one token per started 4 characters. */
export function mockTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

export interface ReplyRequest {
  provider: 'openai' | 'anthropic';
  path: string;
  body: Record<string, unknown>;
}

export interface RouteContext {
  now: number;
  /** The assistant's answer for this request. */
  reply: string;
  /** The key the request carries. */
  secret: string;
  /** The server's prompt cache (Anthropic dialect). */
  promptCache: PromptCache;
}

export type Answer =
  | { kind: 'json'; body: unknown }
  /** Server-sent events, each one fully framed (`event: …\ndata: …\n\n`). */
  | { kind: 'sse'; frames: string[] };

export type RoutePlan =
  | {
      ok: true;
      answer: Answer;
      inputTokens: number;
      outputTokens: number;
      stream: boolean;
      model?: string;
      /** Side effects of answering (prompt-cache writes), run only when the answer is sent. */
      commit?: () => void;
    }
  | { ok: false; status: number; code?: string; message: string };

export interface DialectError {
  status: number;
  body: unknown;
}

export interface Dialect {
  readonly provider: 'openai' | 'anthropic';
  /** The API key the request carries, '' when none. */
  secretOf(headers: IncomingHttpHeaders): string;
  /** A problem with the request's headers (missing key or version), answered before anything else. */
  checkHeaders(headers: IncomingHttpHeaders, secret: string): DialectError | undefined;
  /** Undefined when the dialect has no such route (404). */
  route(
    method: string,
    path: string,
    body: Record<string, unknown>,
    ctx: RouteContext,
  ): RoutePlan | undefined;
  /** Error answer for a scripted fault. */
  faultError(step: FaultSpec, model: string | undefined): DialectError;
  /** Error answer for a request the route rejected (bad body, unknown path). */
  requestError(status: number, message: string, code?: string): DialectError;
  /** 429 for a key over its enforced rpm/tpm. */
  limitError(exceeded: 'requests' | 'tokens', view: LimitView, model: string | undefined): DialectError;
  /** An error inside a 200 stream, framed the way the API sends it. */
  streamErrorFrame(error: DialectError): string;
  /** Rate-limit headers; `overrides` come from a scripted 429. */
  rateLimitHeaders(view: LimitView, now: number, overrides?: RateLimitOverrides): Record<string, string>;
  /** Request id headers the real API sends on every response. */
  requestIdHeaders(): Record<string, string>;
}

export interface RateLimitOverrides {
  requestsResetMs?: number;
  tokensResetMs?: number;
}

export function randomId(prefix: string, bytes = 12): string {
  return `${prefix}${randomBytes(bytes).toString('hex')}`;
}

/** Every piece of text in a message `content` (a string or an array of parts with `text`). */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (part && typeof part === 'object' && 'text' in part ? String(part.text) : textOf(part)))
      .join('');
  }
  if (content && typeof content === 'object' && 'content' in content) return textOf(content.content);
  return '';
}

/** Splits a reply into stream deltas, one word (with its trailing space) each. */
export function replyDeltas(reply: string): string[] {
  return reply.match(/\S+\s*|\s+/g) ?? [];
}

export function sseFrame(data: unknown, event?: string): string {
  const payload = typeof data === 'string' ? data : JSON.stringify(data);
  return `${event ? `event: ${event}\n` : ''}data: ${payload}\n\n`;
}
