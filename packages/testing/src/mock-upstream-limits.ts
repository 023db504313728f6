/**
 * Per-key rpm/tpm enforced over a sliding window, the way the real APIs answer
 * 429 when a key goes over, plus the numbers both dialects turn into
 * rate-limit headers.
 */

export interface MockLimits {
  rpm?: number;
  tpm?: number;
}

/** What a key's rate-limit headers say after (or instead of) a request. */
export interface LimitView {
  requestsLimit: number;
  requestsRemaining: number;
  /** Ms until a request slot frees (the oldest request leaves the window); 0 when the window is empty. */
  requestsResetMs: number;
  tokensLimit: number;
  tokensRemaining: number;
  tokensResetMs: number;
  inputTokensRemaining: number;
  outputTokensRemaining: number;
}

export type LimitCheck =
  | { ok: true; view: LimitView }
  | { ok: false; exceeded: 'requests' | 'tokens'; view: LimitView };

/** Limits reported for keys nobody configured: roomy, like a paid tier. */
export const DEFAULT_LIMITS = { rpm: 10_000, tpm: 2_000_000 } as const;

interface Admitted {
  time: number;
  input: number;
  output: number;
}

export class SlidingLimiter {
  private readonly limits = new Map<string, MockLimits>();
  private readonly windows = new Map<string, Admitted[]>();

  constructor(private readonly windowMs: number) {}

  set(secret: string, limits: MockLimits): void {
    this.limits.set(secret, limits);
  }

  clear(): void {
    this.limits.clear();
    this.windows.clear();
  }

  /**
   * Admits the request when the key and every group it belongs to (an organization) have room,
   * counting it in all of their windows; else answers for the first that has none.
   */
  admit(
    secret: string,
    input: number,
    output: number,
    now: number,
    groups: readonly string[] = [],
  ): LimitCheck {
    for (const id of [secret, ...groups]) {
      const { rpm, tpm } = this.limits.get(id) ?? {};
      const window = this.prune(id, now);
      const used = window.reduce((sum, a) => sum + a.input + a.output, 0);
      if (rpm !== undefined && window.length + 1 > rpm) {
        return { ok: false, exceeded: 'requests', view: this.view(id, now) };
      }
      if (tpm !== undefined && used + input + output > tpm) {
        return { ok: false, exceeded: 'tokens', view: this.view(id, now) };
      }
    }
    for (const id of [secret, ...groups]) this.prune(id, now).push({ time: now, input, output });
    return { ok: true, view: this.view(secret, now) };
  }

  view(secret: string, now: number): LimitView {
    const limits = this.limits.get(secret) ?? {};
    const requestsLimit = limits.rpm ?? DEFAULT_LIMITS.rpm;
    const tokensLimit = limits.tpm ?? DEFAULT_LIMITS.tpm;
    const window = this.prune(secret, now);
    let input = 0;
    let output = 0;
    for (const a of window) {
      input += a.input;
      output += a.output;
    }
    const oldest = window[0];
    const resetMs = oldest ? Math.max(0, oldest.time + this.windowMs - now) : 0;
    // Time until enough of the window leaves for the tokens in use to be free again.
    let tokensResetMs = 0;
    if (input + output > 0) {
      const last = window.findLast((a) => a.input + a.output > 0)!;
      tokensResetMs = Math.max(0, last.time + this.windowMs - now);
    }
    return {
      requestsLimit,
      requestsRemaining: Math.max(0, requestsLimit - window.length),
      requestsResetMs: resetMs,
      tokensLimit,
      tokensRemaining: Math.max(0, tokensLimit - input - output),
      tokensResetMs,
      inputTokensRemaining: Math.max(0, tokensLimit - input),
      outputTokensRemaining: Math.max(0, tokensLimit - output),
    };
  }

  private prune(secret: string, now: number): Admitted[] {
    let window = this.windows.get(secret);
    if (!window) {
      window = [];
      this.windows.set(secret, window);
    }
    while (window.length > 0 && window[0]!.time + this.windowMs <= now) window.shift();
    return window;
  }
}

/** Formats ms the way Go's `time.Duration.String()` does, as OpenAI's reset headers do: `20ms`, `1.5s`, `6m0s`. */
export function formatGoDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms));
  if (total === 0) return '0s';
  if (total < 1000) return `${total}ms`;
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const seconds = (total % 60_000) / 1000;
  const s = `${Number(seconds.toFixed(3))}s`;
  if (hours > 0) return `${hours}h${minutes}m${s}`;
  if (minutes > 0) return `${minutes}m${s}`;
  return s;
}

/** Parses a Go duration (`6m0s`, `1h2m3.5s`, `20ms`) to ms; throws on anything else. */
export function parseGoDuration(text: string): number {
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/gy;
  const unitMs: Record<string, number> = {
    h: 3_600_000,
    m: 60_000,
    s: 1000,
    ms: 1,
    us: 1e-3,
    µs: 1e-3,
    ns: 1e-6,
  };
  let ms = 0;
  let matched = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    ms += Number(m[1]) * unitMs[m[2]!]!;
    matched = re.lastIndex;
  }
  if (text === '' || matched !== text.length) {
    throw new Error(`"${text}" is not a Go duration; write it like "6m0s", "1.5s" or "20ms".`);
  }
  return ms;
}
