/**
 * One process of a fleet, forked by the fleet tests: builds a pool on the shared store, waits
 * for the common start time, then calls the mock upstream through leases until the end time
 * and reports what it observed. Run by Node as is (no build), so plain JavaScript.
 *
 * Parent → child: { type: 'config', ...WorkerConfig }; the child answers { type: 'ready' } once its
 * pool is up; parent → child: { type: 'go', startAt, endAt } (epoch ms, the same for the whole
 * fleet); the child answers { type: 'report', report } (or { type: 'failed', error }) and exits.
 */
import { createKeyPool } from '@keypool/core';
import { openStore } from './open-store.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const nextMessage = () => new Promise((resolve) => process.once('message', resolve));

process.once('message', (message) => {
  run(message).then(
    (report) => process.send({ type: 'report', report }, () => process.exit(0)),
    (error) => process.send({ type: 'failed', error: String(error?.stack ?? error) }, () => process.exit(1)),
  );
});

async function run(config) {
  const pool = await createKeyPool({
    store: openStore(config.target, config.storeOptions ?? {}),
    masterKey: process.env.KEYPOOL_MASTER_KEY,
    windowMs: config.windowMs,
    maxWaitMs: config.maxWaitMs,
    leaseTtlMs: config.leaseTtlMs,
    ...(config.refreshMs !== undefined && { refreshMs: config.refreshMs }),
  });
  const report = {
    pid: process.pid,
    ok: 0,
    failed: 0,
    failures: {},
    maxAcquireMs: 0,
    /** Longest fetch + release (what a store outage could stall once a key is leased). */
    maxCallMs: 0,
    /** Longest whole cycle, acquire to release. */
    maxCycleMs: 0,
    degradedAt: [],
    recoveredAt: [],
    flushedUsage: 0,
    /** Samples of health() taken every 50 ms; how many saw the store degraded. */
    samples: 0,
    degradedSamples: 0,
    /** Requests completed while health() said the store was degraded. */
    okWhileDegraded: 0,
    calls: [],
  };
  pool.on('store:degraded', () => report.degradedAt.push(Date.now()));
  pool.on('store:recovered', (event) => {
    report.recoveredAt.push(Date.now());
    report.flushedUsage += event.flushedUsage ?? 0;
  });
  // Refresh failures during an outage are expected; they must not crash the process.
  pool.on('error', () => {});
  process.send({ type: 'ready' });
  const { startAt, endAt } = await nextMessage();

  await sleep(Math.max(0, startAt - Date.now()));
  const sampler = setInterval(() => {
    report.samples++;
    if (pool.health().store.degraded) report.degradedSamples++;
  }, 50);
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: config.content }],
  });

  async function loop() {
    while (Date.now() < endAt) {
      const began = Date.now();
      let lease;
      try {
        lease = await pool.acquire({
          provider: 'openai',
          model: 'gpt-4o-mini',
          estimatedTokens: config.estimatedTokens,
          maxWaitMs: Math.max(0, Math.min(config.maxWaitMs, endAt - Date.now())),
        });
      } catch (error) {
        const code = error?.code ?? error?.name ?? 'unknown';
        report.failures[code] = (report.failures[code] ?? 0) + 1;
        report.failed++;
        // No key within the wait left before the end: wait as told (never a busy loop); else back off.
        const pause = code === 'KEYPOOL_NO_KEY_AVAILABLE' ? (error.retryAfterMs ?? 20) : 20;
        await sleep(Math.min(pause, Math.max(0, endAt - Date.now())));
        continue;
      }
      const leased = Date.now();
      report.maxAcquireMs = Math.max(report.maxAcquireMs, leased - began);
      try {
        const response = await fetch(`${config.mockUrl}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${lease.secret}`, 'content-type': 'application/json' },
          body,
        });
        // The upstream had the call by the time it answered: the pool's window counts it from here.
        const respondedAt = Date.now();
        const json = await response.json();
        if (response.ok) {
          // What the pool reserved and when (a lease expires leaseTtlMs after it was reserved), and
          // the upstream's id for the call, so the test can line both up with the upstream's log.
          report.calls.push({
            alias: lease.alias,
            reservedAt: lease.expiresAt - config.leaseTtlMs,
            requestId: response.headers.get('x-request-id'),
            tokens: json.usage.prompt_tokens + json.usage.completion_tokens,
          });
          await lease.release({
            ok: true,
            usage: { inputTokens: json.usage.prompt_tokens, outputTokens: json.usage.completion_tokens },
            latencyMs: Date.now() - leased,
            respondedAt,
          });
          report.ok++;
          if (pool.health().store.degraded) report.okWhileDegraded++;
        } else {
          await lease.release({
            ok: false,
            status: response.status,
            latencyMs: Date.now() - leased,
            respondedAt,
          });
          report.failures[`http ${response.status}`] = (report.failures[`http ${response.status}`] ?? 0) + 1;
          report.failed++;
        }
      } catch (error) {
        await lease.release({ ok: false, error, latencyMs: Date.now() - leased });
        const code = error?.code ?? error?.name ?? 'unknown';
        report.failures[code] = (report.failures[code] ?? 0) + 1;
        report.failed++;
      }
      const done = Date.now();
      report.maxCallMs = Math.max(report.maxCallMs, done - leased);
      report.maxCycleMs = Math.max(report.maxCycleMs, done - began);
    }
  }

  await Promise.all(Array.from({ length: config.concurrency }, loop));
  clearInterval(sampler);
  // Buffered usage is written back on recovery; closing before that would drop it with the process.
  const settleBy = Date.now() + (config.recoverWaitMs ?? 0);
  while (pool.health().store.degraded && Date.now() < settleBy) await sleep(50);
  report.degradedAtEnd = pool.health().store.degraded;
  await pool.close();
  return report;
}
