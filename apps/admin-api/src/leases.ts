import type { Lease } from '@keypool/spec';

interface HeldLease {
  lease: Lease;
  tokenId: string;
  pool: string | undefined;
}

export interface LeaseBookOptions {
  /** How long after expiry a report is still accepted (and recorded as usage). Default 1 h. */
  lateReportMs?: number;
  now?: () => number;
}

/**
 * Leases handed out over HTTP, kept server-side so a report can call
 * `lease.release` — which settles the reservation, or records usage when the
 * lease already expired.
 */
export class LeaseBook {
  private readonly held = new Map<string, HeldLease>();
  private readonly lateReportMs: number;
  private readonly now: () => number;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(options: LeaseBookOptions = {}) {
    this.lateReportMs = options.lateReportMs ?? 3_600_000;
    this.now = options.now ?? Date.now;
    this.timer = setInterval(() => this.sweep(), 30_000);
    this.timer.unref();
  }

  add(lease: Lease, tokenId: string, pool: string | undefined): void {
    this.held.set(lease.id, { lease, tokenId, pool });
  }

  get(id: string): HeldLease | undefined {
    return this.held.get(id);
  }

  take(id: string): HeldLease | undefined {
    const held = this.held.get(id);
    this.held.delete(id);
    return held;
  }

  /** Leases not reported yet and not expired. */
  active(): number {
    const now = this.now();
    let count = 0;
    for (const { lease } of this.held.values()) if (lease.expiresAt > now) count++;
    return count;
  }

  /** Forget leases whose late-report grace is over; the store already kept their estimate. */
  sweep(): void {
    const cutoff = this.now() - this.lateReportMs;
    for (const [id, { lease }] of this.held) if (lease.expiresAt <= cutoff) this.held.delete(id);
  }

  /** On shutdown: wait (up to `graceMs`) for clients to report the leases still active. */
  async drain(graceMs: number): Promise<number> {
    const deadline = Date.now() + graceMs;
    while (this.active() > 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    return this.active();
  }

  close(): void {
    clearInterval(this.timer);
  }
}
