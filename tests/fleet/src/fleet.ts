/**
 * Forks a fleet of worker processes (`fleet-worker.mjs`) that share one store, starts them at
 * the same instant once every pool is up, and collects what each one observed.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { StoreTarget } from './backends.js';

const workerPath = fileURLToPath(new URL('./fleet-worker.mjs', import.meta.url));

export interface WorkerConfig {
  target: StoreTarget;
  /** Extra store options, e.g. `{ url, commandTimeoutMs }` to reach Redis through a proxy. */
  storeOptions?: Record<string, unknown>;
  mockUrl: string;
  windowMs: number;
  maxWaitMs: number;
  refreshMs?: number;
  leaseTtlMs: number;
  /** Request loops per process. */
  concurrency: number;
  /** The user message; its tokens plus the reply's are what each call uses. */
  content: string;
  estimatedTokens: number;
  /** After the run, how long a degraded process waits for Redis to come back before closing. */
  recoverWaitMs?: number;
}

export interface WorkerReport {
  pid: number;
  ok: number;
  failed: number;
  failures: Record<string, number>;
  maxAcquireMs: number;
  maxCallMs: number;
  maxCycleMs: number;
  degradedAt: number[];
  recoveredAt: number[];
  flushedUsage: number;
  samples: number;
  degradedSamples: number;
  okWhileDegraded: number;
  degradedAtEnd: boolean;
  /** Every successful call: key alias, when the pool reserved it, the upstream's request id, tokens used. */
  calls: Array<{ alias: string; reservedAt: number; requestId: string; tokens: number }>;
}

export interface Fleet {
  /** Epoch ms the run starts and ends, the same in every process. */
  startAt: number;
  endAt: number;
  /** Resolves with every process's report once all have finished. */
  reports: Promise<WorkerReport[]>;
}

/**
 * Starts `size` processes with `config`; the run lasts `runMs` from a start time set once all
 * pools are up. Rejects if a process fails or exits without reporting.
 */
export async function startFleet(size: number, config: WorkerConfig, runMs: number): Promise<Fleet> {
  const children: ChildProcess[] = [];
  const ready: Promise<void>[] = [];
  const reports: Promise<WorkerReport>[] = [];
  for (let i = 0; i < size; i++) {
    // Node 24 (the test runner's own binary); no inherited flags from the runner.
    const child = fork(workerPath, [], {
      execPath: process.execPath,
      execArgv: [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    ready.push(
      new Promise((resolve, reject) => {
        child.on('message', (m: { type: string }) => m.type === 'ready' && resolve());
        child.once('exit', (code) => reject(new Error(`worker ${child.pid} exited (${code}) before ready`)));
      }),
    );
    reports.push(
      new Promise((resolve, reject) => {
        child.on('message', (m: { type: string; report?: WorkerReport; error?: string }) => {
          if (m.type === 'report') resolve(m.report as WorkerReport);
          if (m.type === 'failed') reject(new Error(`worker ${child.pid} failed: ${m.error}`));
        });
        child.once('exit', (code) =>
          reject(new Error(`worker ${child.pid} exited (${code}) without a report`)),
        );
      }),
    );
    child.send({ type: 'config', ...config });
  }
  // Unhandled until awaited by the caller; a failure in one worker must not go unnoticed.
  for (const report of reports) report.catch(() => {});
  try {
    await Promise.all(ready);
  } catch (error) {
    for (const child of children) child.kill();
    throw error;
  }
  const startAt = Date.now() + 100;
  const endAt = startAt + runMs;
  for (const child of children) child.send({ type: 'go', startAt, endAt });
  return {
    startAt,
    endAt,
    reports: Promise.all(reports).finally(() => {
      for (const child of children) if (child.exitCode === null) child.kill();
    }),
  };
}
