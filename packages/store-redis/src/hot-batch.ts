type Arg = string | number;

interface Waiter {
  resolve(reply: unknown): void;
  reject(error: unknown): void;
}

/** Operations per script call: bounds how long one batch holds Redis (about 20 µs each). */
const maxBatch = 16;

/**
 * Coalesces the reserve/settle calls made in one tick into one call of the hot
 * script. A fire-and-forget release followed by the next acquire, or many
 * concurrent callers, then cost one EVALSHA (one command to encode, parse and
 * answer) instead of one each. The batch goes out on setImmediate, after the
 * event loop's I/O phase: concurrent HTTP requests each arrive in their own I/O
 * callback, and nextTick would send one batch per request.
 */
export class HotBatch {
  private args: Arg[];
  private waiters: Waiter[] = [];
  private isScheduled = false;

  constructor(
    private readonly base: string,
    private readonly send: (args: Arg[]) => Promise<unknown>,
  ) {
    this.args = [base];
  }

  /** Queues one operation ('r' reserve, 's' settle); resolves with its own reply. */
  run(kind: 'r' | 's', opArgs: readonly Arg[]): Promise<unknown> {
    const args = this.args;
    args.push(kind, opArgs.length);
    for (const arg of opArgs) args.push(arg);
    const reply = new Promise<unknown>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.waiters.length >= maxBatch) this.flush();
    else if (!this.isScheduled) {
      this.isScheduled = true;
      setImmediate(this.flush);
    }
    return reply;
  }

  private readonly flush = (): void => {
    this.isScheduled = false;
    const waiters = this.waiters;
    if (waiters.length === 0) return;
    const args = this.args;
    this.args = [this.base];
    this.waiters = [];
    const rejectAll = (error: unknown) => {
      for (const waiter of waiters) waiter.reject(error);
    };
    let sent: Promise<unknown>;
    try {
      sent = this.send(args);
    } catch (error) {
      // Runs on setImmediate: a synchronous throw here would be an uncaught exception.
      rejectAll(error);
      return;
    }
    sent.then((replies) => {
      const list = replies as unknown[];
      for (let i = 0; i < waiters.length; i++) waiters[i]!.resolve(list[i]);
    }, rejectAll);
  };
}
