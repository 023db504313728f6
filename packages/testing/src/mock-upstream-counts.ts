/**
 * What the mock upstream saw, per key, for assertions ("the upstream never got
 * more than 5 requests in any minute on key A"). Entries keep the secret for
 * lookups but show only its masked label when printed or serialised.
 */
import { inspect } from 'node:util';

export interface MockLogEntry {
  /** Epoch ms when the request arrived. */
  readonly time: number;
  /** Masked form of the key the request carried, e.g. `sk-…abcd`; `(none)` without a key. */
  readonly key: string;
  /** The full key. Not enumerable: it never shows up in printed or serialised entries. */
  readonly secret: string;
  readonly provider: 'openai' | 'anthropic';
  readonly path: string;
  /** HTTP status sent; 0 when the connection was dropped before any response. */
  readonly status: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly stream: boolean;
  /** True when a 200 answer started but did not complete (cut, or an in-stream error event). */
  readonly cut: boolean;
  /** Request-id and rate-limit headers sent with the response (lower-case names); empty when dropped. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface WindowPeak {
  requests: number;
  tokens: number;
}

export interface MockCounts {
  /** Every request in arrival order. */
  readonly log: readonly MockLogEntry[];
  /** Requests that carried the key (secret, alias or masked label); all requests without an argument. */
  requests(secretOrLabel?: string): number;
  /** Requests per HTTP status (0 = dropped). */
  byStatus(secretOrLabel?: string): Record<number, number>;
  /** Tokens the mock reported as used (successful responses only). */
  tokens(secretOrLabel?: string): { input: number; output: number };
  /**
   * The most requests and the most tokens (input + output) the key saw in any
   * sliding window of `windowMs` (default: the mock's window), over every
   * request it received whatever the outcome. Each maximum is taken on its own.
   */
  maxInAnyWindow(secretOrLabel: string, windowMs?: number): WindowPeak;
  /** The same over the requests of several keys together (an organization's keys, say). */
  maxInAnyWindow(secretsOrLabels: readonly string[], windowMs?: number): WindowPeak;
  /** Masked labels of every key seen, in first-seen order. */
  keys(): string[];
}

/** Display form of a key: first 3 and last 4 characters, like `sk-…abcd`. Short keys show less. */
export function maskSecret(secret: string): string {
  if (secret === '') return '(none)';
  if (secret.length <= 8) return `…${secret.slice(-2)}`;
  return `${secret.slice(0, 3)}…${secret.slice(-4)}`;
}

export type NewLogEntry = Omit<MockLogEntry, 'key' | 'secret'> & { secret: string };

export class MockCountsRecorder implements MockCounts {
  readonly log: MockLogEntry[] = [];

  constructor(
    private readonly defaultWindowMs: number,
    /** Turns an alias into its secret; anything else comes back unchanged. */
    private readonly resolve: (name: string) => string = (name) => name,
  ) {}

  record(entry: NewLogEntry): void {
    const { secret, ...rest } = entry;
    const printable = { ...rest, key: maskSecret(secret) };
    const stored = Object.defineProperty({ ...printable }, 'secret', { value: secret, enumerable: false });
    // util.inspect shows non-enumerable fields with showHidden; make printing always masked.
    Object.defineProperty(stored, inspect.custom, { value: () => printable, enumerable: false });
    this.log.push(stored as MockLogEntry);
  }

  reset(): void {
    this.log.length = 0;
  }

  private entries(secretOrLabel?: string): MockLogEntry[] {
    if (secretOrLabel === undefined) return this.log;
    const secret = this.resolve(secretOrLabel);
    return this.log.filter((e) => e.secret === secret || e.key === secretOrLabel);
  }

  requests(secretOrLabel?: string): number {
    return this.entries(secretOrLabel).length;
  }

  byStatus(secretOrLabel?: string): Record<number, number> {
    const out: Record<number, number> = {};
    for (const e of this.entries(secretOrLabel)) out[e.status] = (out[e.status] ?? 0) + 1;
    return out;
  }

  tokens(secretOrLabel?: string): { input: number; output: number } {
    let input = 0;
    let output = 0;
    for (const e of this.entries(secretOrLabel)) {
      input += e.inputTokens;
      output += e.outputTokens;
    }
    return { input, output };
  }

  maxInAnyWindow(secretOrLabels: string | readonly string[], windowMs = this.defaultWindowMs): WindowPeak {
    const names = typeof secretOrLabels === 'string' ? [secretOrLabels] : secretOrLabels;
    const entries = names
      .flatMap((name) => this.entries(name))
      .map((e) => ({ time: e.time, tokens: e.inputTokens + e.outputTokens }))
      .sort((a, b) => a.time - b.time);
    // Any window's content is dominated by one that starts at a request, so two pointers suffice.
    let peak: WindowPeak = { requests: 0, tokens: 0 };
    let end = 0;
    let tokens = 0;
    for (let start = 0; start < entries.length; start++) {
      while (end < entries.length && entries[end]!.time < entries[start]!.time + windowMs) {
        tokens += entries[end]!.tokens;
        end++;
      }
      peak = { requests: Math.max(peak.requests, end - start), tokens: Math.max(peak.tokens, tokens) };
      tokens -= entries[start]!.tokens;
    }
    return peak;
  }

  keys(): string[] {
    return [...new Set(this.log.map((e) => e.key))];
  }
}
