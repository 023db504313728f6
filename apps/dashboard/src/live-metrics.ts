// Request rate, error rate and latency percentiles from the `lease:released` events the page has
// seen. The API reports latency only as a per-key average, so percentiles are the page's own.

export interface Sample {
  at: number;
  keyId: string;
  ok: boolean;
  latencyMs?: number;
  failure?: string;
}

export interface LiveSummary {
  /** Requests finished in the window. */
  count: number;
  requestsPerSecond: number;
  errorRate: number | undefined;
  p50Ms: number | undefined;
  p95Ms: number | undefined;
  errorsByFailure: Record<string, number>;
}

export interface LiveSeries {
  /** Bucket start times, epoch seconds (uPlot's x unit). */
  t: number[];
  requests: Array<number | null>;
  errors: Array<number | null>;
  p50Ms: Array<number | null>;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export class LiveMetrics {
  private samples: Sample[] = [];
  private head = 0;
  /** When the page started counting: rates over a window the page has not yet seen would read low. */
  private readonly since: number;

  constructor(
    readonly windowMs = 60_000,
    readonly historyMs = 15 * 60_000,
    readonly maxSamples = 50_000,
    now = Date.now(),
  ) {
    this.since = now;
  }

  add(sample: Sample): void {
    this.samples.push(sample);
    if (this.samples.length - this.head > this.maxSamples) this.head++;
    // Compact now and then instead of shifting on every add.
    if (this.head > 4096 && this.head > this.samples.length / 2) {
      this.samples = this.samples.slice(this.head);
      this.head = 0;
    }
  }

  private *recent(from: number, keyId?: string): Generator<Sample> {
    for (let i = this.samples.length - 1; i >= this.head; i--) {
      const s = this.samples[i] as Sample;
      if (s.at < from) break;
      if (keyId === undefined || s.keyId === keyId) yield s;
    }
  }

  summary(now: number, keyId?: string): LiveSummary {
    const from = now - this.windowMs;
    const latencies: number[] = [];
    const errorsByFailure: Record<string, number> = {};
    let count = 0;
    let errors = 0;
    for (const s of this.recent(from, keyId)) {
      count++;
      if (!s.ok) {
        errors++;
        const failure = s.failure ?? 'error';
        errorsByFailure[failure] = (errorsByFailure[failure] ?? 0) + 1;
      }
      if (s.latencyMs !== undefined) latencies.push(s.latencyMs);
    }
    latencies.sort((a, b) => a - b);
    const seconds = Math.max(1, Math.min(this.windowMs, now - this.since) / 1000);
    return {
      count,
      requestsPerSecond: count / seconds,
      errorRate: count === 0 ? undefined : errors / count,
      p50Ms: percentile(latencies, 50),
      p95Ms: percentile(latencies, 95),
      errorsByFailure,
    };
  }

  /**
   * Per-bucket counts and median latency over the whole retained history, oldest first, so the
   * chart's time axis is stable; buckets before the page started watching are null (unknown, not 0).
   */
  series(now: number, keyId?: string, bucketMs = 10_000): LiveSeries {
    const end = Math.floor(now / bucketMs) * bucketMs;
    const start = end - this.historyMs + bucketMs;
    const watchedFrom = Math.floor(this.since / bucketMs) * bucketMs;
    const n = Math.round((end - start) / bucketMs) + 1;
    const requests = new Array<number | null>(n).fill(0);
    const errors = new Array<number | null>(n).fill(0);
    const latencies: number[][] = Array.from({ length: n }, () => []);
    for (const s of this.recent(start, keyId)) {
      const i = Math.floor((s.at - start) / bucketMs);
      if (i < 0 || i >= n) continue;
      requests[i] = (requests[i] ?? 0) + 1;
      if (!s.ok) errors[i] = (errors[i] ?? 0) + 1;
      if (s.latencyMs !== undefined) latencies[i]!.push(s.latencyMs);
    }
    const t = requests.map((_, i) => (start + i * bucketMs) / 1000);
    for (let i = 0; i < n; i++) {
      if (start + i * bucketMs < watchedFrom) {
        requests[i] = null;
        errors[i] = null;
      }
    }
    return {
      t,
      requests,
      errors,
      p50Ms: latencies.map(
        (l) =>
          percentile(
            l.sort((a, b) => a - b),
            50,
          ) ?? null,
      ),
    };
  }
}
