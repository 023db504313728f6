import type { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import type { LeaseRecord, ReserveRequest, ReserveResult, Settlement, SettleResult } from '@keypool/spec';
import type { SqlContext } from './context.js';
import { SqlStoreError } from './errors.js';
import { type HotCall, type Outcome, sqliteHotCore } from './sqlite-hot-path.js';
import { fromWire, type WireError } from './sqlite-hot-wire.js';

// Taken at load: fake timers in a user's tests must not stall the store.
const deferred = setImmediate;

interface QueuedCall {
  call: HotCall;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** Where the hot path's SQL runs: a file on a worker thread, `sqlite::memory:` on the store's own connection. */
export type SqliteHotSource = { path: string } | { native: () => Promise<DatabaseSync> };

/**
 * SQLite's hot path as the store calls it. Calls made in one event-loop turn
 * share one transaction (group commit, see `runBatch` in sqlite-hot-path.ts);
 * every caller hears back only after the COMMIT. A batch holds the in-process
 * writer queue while it runs, so the Kysely transactions of this process on
 * the same file wait there rather than on the file lock; other processes
 * queue on the file lock (busy timeout), and a batch that still finds the
 * file busy runs again as a whole.
 *
 * A file's batches run on a worker thread with its own connection: the SQL
 * (and the WAL checkpoints it triggers) then use another core instead of the
 * thread that serves HTTP. An in-memory database cannot be shared with another
 * thread, so it runs here.
 */
export function sqliteHotPath(ctx: SqlContext, source: SqliteHotSource) {
  const queue: QueuedCall[] = [];
  let isScheduled = false;
  let isClosed = false;
  const execute = 'path' in source ? onWorker(source.path, ctx.layout.prefix) : inThread(source.native, ctx);

  function enqueue<T>(call: HotCall): Promise<T> {
    if (isClosed) return Promise.reject(closedError());
    return new Promise<T>((resolve, reject) => {
      queue.push({ call, resolve: resolve as (value: unknown) => void, reject });
      if (!isScheduled) schedule();
    });
  }

  function schedule(): void {
    isScheduled = true;
    // The batch starts on the next check phase, not in a microtask: callers that
    // arrive in separate I/O callbacks (one per HTTP request) then still share it.
    deferred(
      () =>
        void ctx.exclusive(async () => {
          isScheduled = false;
          const batch = queue.splice(0);
          try {
            const outcomes = await ctx.retrying(() => execute.run(batch.map((op) => op.call)));
            outcomes.forEach((outcome, i) => {
              if (outcome.ok) batch[i]!.resolve(outcome.value);
              else batch[i]!.reject(outcome.error);
            });
          } catch (error) {
            for (const op of batch) op.reject(error);
          }
        }),
    );
  }

  return {
    reserve(request: ReserveRequest): Promise<ReserveResult> {
      if (request.candidates.length === 0) {
        return Promise.resolve({ ok: false, retryAfterMs: null, reasons: {} });
      }
      return enqueue({ op: 'reserve', request });
    },
    settle: (leaseId: string, settlement: Settlement) =>
      enqueue<SettleResult>({ op: 'settle', leaseId, settlement }),
    /** Claims the active leases that expired (each returned once: the write lock excludes other sweepers). */
    expire: (now: number) => enqueue<LeaseRecord[]>({ op: 'expire', now }),
    /** Stops the worker thread (calls still queued are refused). */
    async close(): Promise<void> {
      isClosed = true;
      await execute.close();
    },
  };
}

interface Executor {
  run(calls: HotCall[]): Promise<Outcome[]>;
  close(): Promise<void>;
}

function inThread(open: () => Promise<DatabaseSync>, ctx: SqlContext): Executor {
  let core: ReturnType<typeof sqliteHotCore> | undefined;
  return {
    async run(calls) {
      core ??= sqliteHotCore(await open(), ctx.layout.prefix);
      return core.runBatch(calls);
    },
    close: async () => undefined,
  };
}

type Reply =
  | { id: number; outcomes: ({ ok: true; value: unknown } | { ok: false; error: WireError })[] }
  | { id: number; error: WireError };

/**
 * One worker per store, started on the first call (after `init()` has migrated
 * the file). It keeps the process alive only while a batch is out.
 */
function onWorker(path: string, prefix: string): Executor {
  let worker: Worker | undefined;
  let nextId = 0;
  const pending = new Map<number, { resolve: (o: Outcome[]) => void; reject: (e: unknown) => void }>();

  function failAll(error: unknown): void {
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  }

  function start(): Worker {
    // From source (the package's own tests) the worker runs the .ts files through Node's type stripping.
    const isSource = import.meta.url.endsWith('.ts');
    const entry = new URL(isSource ? './sqlite-hot-worker.ts' : './sqlite-hot-worker.js', import.meta.url);
    const w = isSource
      ? new Worker(sourceBootstrap(entry), { eval: true, workerData: { path, prefix } })
      : new Worker(entry, { workerData: { path, prefix } });
    w.unref();
    w.on('message', (reply: Reply) => {
      const p = pending.get(reply.id);
      if (!p) return;
      pending.delete(reply.id);
      if (pending.size === 0) w.unref();
      if ('error' in reply) p.reject(fromWire(reply.error));
      else p.resolve(reply.outcomes.map((o) => (o.ok ? o : { ok: false, error: fromWire(o.error) })));
    });
    w.on('error', (error) => {
      if (worker === w) worker = undefined;
      failAll(error);
    });
    w.on('exit', (code) => {
      if (worker === w) worker = undefined;
      failAll(
        new SqlStoreError(
          'KEYPOOL_STORE',
          `sqlStore: the SQLite hot-path worker thread stopped (exit code ${code}); the next call starts a new one.`,
        ),
      );
    });
    return w;
  }

  return {
    run(calls) {
      worker ??= start();
      const w = worker;
      const id = nextId++;
      return new Promise<Outcome[]>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        w.ref();
        w.postMessage({ id, calls });
      });
    },
    async close() {
      const w = worker;
      worker = undefined;
      if (w) await w.terminate();
      failAll(closedError());
    },
  };
}

/** Resolves the `.js` specifiers of the sources to their `.ts` files, then loads the worker. */
function sourceBootstrap(entry: URL): string {
  return `
    const { registerHooks } = require('node:module');
    registerHooks({
      resolve(specifier, context, next) {
        try {
          return next(specifier, context);
        } catch (error) {
          if (!/^\\.\\.?\\//.test(specifier) || !specifier.endsWith('.js')) throw error;
          return next(specifier.slice(0, -3) + '.ts', context);
        }
      },
    });
    import(${JSON.stringify(entry.href)});
  `;
}

function closedError(): SqlStoreError {
  return new SqlStoreError('KEYPOOL_STORE', 'sqlStore: the store is closed; open a new one with sqlStore().');
}
