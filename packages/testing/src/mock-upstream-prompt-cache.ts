/**
 * Anthropic's prompt caching as the mock plays it. A content block with
 * `cache_control` is a breakpoint: the prompt up to and including it is cached
 * per key and model for its TTL (`5m` by default, or `1h`), refreshed on every
 * hit. A request reads the longest cached breakpoint prefix and writes the
 * rest of the prompt up to its last breakpoint; each written stretch takes the
 * TTL of the breakpoint that ends it. Unlike the API there is no minimum
 * cacheable length and no 20-block look-back, so tests can use short prompts.
 */
import { createHash } from 'node:crypto';
import { mockTokens } from './mock-upstream-dialect.js';

export interface PromptPiece {
  text: string;
  /** Set on a breakpoint (a block with `cache_control`): how long its prefix stays cached. */
  ttlMs?: number;
}

export interface PromptCacheUse {
  /** Tokens neither read from nor written to the cache (Anthropic's `input_tokens`). */
  uncachedTokens: number;
  readTokens: number;
  write5mTokens: number;
  write1hTokens: number;
  /** Stores the written prefixes and refreshes the read ones; call only when the answer is sent. */
  commit(): void;
}

export const FIVE_MINUTES_MS = 5 * 60_000;
export const ONE_HOUR_MS = 60 * 60_000;

export class PromptCache {
  /** Hash of key, model and prefix → expiry (epoch ms). Hashes keep long prompts out of memory. */
  private readonly expiries = new Map<string, number>();

  use(scope: string, pieces: readonly PromptPiece[], now: number): PromptCacheUse {
    const breakpoints: Array<{ id: string; tokens: number; ttlMs: number }> = [];
    const hash = createHash('sha256').update(scope).update('\0');
    let text = '';
    for (const piece of pieces) {
      text += piece.text;
      hash.update(piece.text);
      if (piece.ttlMs !== undefined) {
        breakpoints.push({ id: hash.copy().digest('hex'), tokens: mockTokens(text), ttlMs: piece.ttlMs });
      }
    }
    let hit = -1;
    for (let i = breakpoints.length - 1; i >= 0 && hit < 0; i--) {
      if ((this.expiries.get(breakpoints[i]!.id) ?? 0) > now) hit = i;
    }
    const readTokens = hit >= 0 ? breakpoints[hit]!.tokens : 0;
    let write5mTokens = 0;
    let write1hTokens = 0;
    let covered = readTokens;
    for (const point of breakpoints.slice(hit + 1)) {
      if (point.ttlMs >= ONE_HOUR_MS) write1hTokens += point.tokens - covered;
      else write5mTokens += point.tokens - covered;
      covered = point.tokens;
    }
    return {
      uncachedTokens: mockTokens(text) - covered,
      readTokens,
      write5mTokens,
      write1hTokens,
      commit: () => {
        for (const point of breakpoints) this.expiries.set(point.id, now + point.ttlMs);
      },
    };
  }

  clear(): void {
    this.expiries.clear();
  }
}
