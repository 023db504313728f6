import type { KeyState, ProbeReason, ProbeResult, Provider, Store } from '@keypool/spec';
import { ConfigError } from './errors.js';

const maxTimerMs = 2 ** 31 - 1;

export interface ProbeOptions {
  /**
   * How often a key that is invalid, exhausted or breaker-open is probed, fleet-wide: each
   * probe claims the key in the store for this long, so processes sharing a store take turns.
   */
  intervalMs: number;
  /** A probe still running after this is aborted and counts as failed. Default min(10000, intervalMs). */
  timeoutMs?: number;
}

/** Keys probed at once by one process; the rest of a round waits its turn. */
const CONCURRENCY = 4;

export function resolveProbeOptions(
  options: ProbeOptions | undefined,
  store: Store,
): Required<ProbeOptions> | undefined {
  if (options === undefined) return undefined;
  const { intervalMs, timeoutMs } = options;
  // Node runs a timer longer than 2^31 - 1 ms after 1 ms instead: that would probe nonstop.
  if (
    !(
      typeof intervalMs === 'number' &&
      Number.isFinite(intervalMs) &&
      intervalMs > 0 &&
      intervalMs <= maxTimerMs
    )
  ) {
    throw new ConfigError(
      `probes.intervalMs must be a positive number of ms up to ${maxTimerMs} (about 24.8 days), e.g. 300000 for 5 minutes (got ${String(intervalMs)})`,
    );
  }
  const timeout = timeoutMs ?? Math.min(10_000, intervalMs);
  // The store claim lasts one interval: a probe that outlived it could overlap the next one.
  if (!(typeof timeout === 'number' && Number.isFinite(timeout) && timeout > 0 && timeout <= intervalMs)) {
    throw new ConfigError(
      `probes.timeoutMs must be a positive number of ms no larger than probes.intervalMs (got ${String(timeoutMs)})`,
    );
  }
  if (typeof store.claimProbe !== 'function') {
    throw new ConfigError(
      `probes need a store that claims probe slots fleet-wide (Store.claimProbe); the ${store.name} store has none. ` +
        'Upgrade the store adapter or leave probes off.',
    );
  }
  return { intervalMs, timeoutMs: timeout };
}

/** What a key is out for that a passing probe clears; empty when there is nothing to probe. */
export function probeReasons(state: KeyState, now: number): ProbeReason[] {
  const reasons: ProbeReason[] = [];
  if (state.invalidSince !== undefined) reasons.push('invalid');
  if (state.exhaustedUntil !== undefined && state.exhaustedUntil > now) reasons.push('exhausted');
  // Past breakerOpenUntil the breaker is half-open and live traffic takes its probe.
  if (state.breaker === 'open' && state.breakerOpenUntil !== undefined && state.breakerOpenUntil > now) {
    reasons.push('breaker-open');
  }
  return reasons;
}

export interface ProbeTarget {
  keyId: string;
  secret: string;
  baseURL: string | undefined;
  provider: Provider;
  reasons: ProbeReason[];
}

export interface ProbeHost {
  store: Store;
  now(): number;
  /** Keys due for a probe now (as this process last saw them), with a provider that can probe. */
  due(now: number): ProbeTarget[];
  /** The key's reasons in the store's current state: another process may have brought it back. */
  confirm(target: ProbeTarget): Promise<ProbeReason[]>;
  passed(target: ProbeTarget, result: ProbeResult): Promise<void>;
  failed(target: ProbeTarget, result: ProbeResult): void;
  reportError(error: unknown, during: string): void;
}

/**
 * Background probes: every `intervalMs`, each due key is claimed in the store (one prober per
 * key fleet-wide, for one interval) and probed with the provider's cheapest call. The timer is
 * unref'd, and `close` aborts probes in flight and waits for the round to end.
 */
export class BackgroundProber {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private round: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private isClosed = false;

  constructor(
    private readonly options: Required<ProbeOptions>,
    private readonly host: ProbeHost,
  ) {}

  start(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.isClosed) return;
    this.timer = setTimeout(() => {
      this.round = this.runRound()
        .catch((error) => this.host.reportError(error, 'background probes'))
        .finally(() => {
          this.round = undefined;
          this.schedule();
        });
    }, this.options.intervalMs);
    this.timer.unref?.();
  }

  private async runRound(): Promise<void> {
    const queue = this.host.due(this.host.now());
    const worker = async () => {
      for (let target = queue.shift(); target !== undefined && !this.isClosed; target = queue.shift()) {
        try {
          await this.probe(target);
        } catch (error) {
          this.host.reportError(error, `background probe of key ${target.keyId}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, queue.length) }, worker));
  }

  private async probe(due: ProbeTarget): Promise<void> {
    const claimProbe = this.host.store.claimProbe;
    if (claimProbe === undefined) return;
    const isClaimed = await claimProbe.call(this.host.store, due.keyId, {
      now: this.host.now(),
      ttlMs: this.options.intervalMs,
    });
    if (!isClaimed || this.isClosed) return;
    const reasons = await this.host.confirm(due);
    if (reasons.length === 0 || this.isClosed) return;
    const target = { ...due, reasons };
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.options.timeoutMs)]);
    const result = await runProbe(target.provider, target.secret, target.baseURL, signal);
    if (this.isClosed) return;
    if (result.ok) await this.host.passed(target, result);
    else this.host.failed(target, result);
  }

  async close(): Promise<void> {
    this.isClosed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.abort.abort();
    await this.round;
  }
}

/** One probe call; an adapter that throws (rather than answering a failure) still only fails it. */
export async function runProbe(
  provider: Provider,
  secret: string,
  baseURL: string | undefined,
  signal: AbortSignal,
): Promise<ProbeResult> {
  const startedAt = performance.now();
  try {
    return await (provider.probe as NonNullable<Provider['probe']>)(secret, {
      ...(baseURL !== undefined && { baseURL }),
      signal,
    });
  } catch (error) {
    return { ok: false, latencyMs: performance.now() - startedAt, outcome: provider.describeError(error) };
  }
}
