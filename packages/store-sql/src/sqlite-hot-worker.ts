import { parentPort, workerData } from 'node:worker_threads';
import { openSqlite } from './sqlite.js';
import { type HotCall, sqliteHotCore } from './sqlite-hot-path.js';
import { toWire } from './sqlite-hot-wire.js';

/**
 * The worker thread of a SQLite file's hot path: its own connection (WAL,
 * busy timeout, synchronous=NORMAL, as the store's), one batch per message,
 * one reply per batch. Errors travel as plain data (see sqlite-hot-wire.ts).
 */
const { path, prefix } = workerData as { path: string; prefix: string };
const db = openSqlite(path).native;
const core = sqliteHotCore(db, prefix);

parentPort!.on('message', (message: { id: number; calls: HotCall[] }) => {
  try {
    const outcomes = core
      .runBatch(message.calls)
      .map((o) => (o.ok ? o : { ok: false, error: toWire(o.error) }));
    parentPort!.postMessage({ id: message.id, outcomes });
  } catch (error) {
    parentPort!.postMessage({ id: message.id, error: toWire(error) });
  }
});
