import { describe, expect, it } from 'vitest';
import { LiveMetrics, percentile } from './live-metrics.js';

describe('live metrics', () => {
  it('takes nearest-rank percentiles', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 95)).toBe(95);
    expect(percentile([7], 95)).toBe(7);
    expect(percentile([], 50)).toBeUndefined();
  });

  it('summarises the last minute: rate, error rate, p50/p95, errors by class', () => {
    const t0 = 1_000_000;
    const metrics = new LiveMetrics(60_000, 15 * 60_000, 50_000, t0 - 120_000);
    // An old sample outside the window must not count.
    metrics.add({ at: t0 - 90_000, keyId: 'a', ok: false, failure: 'server', latencyMs: 9999 });
    for (let i = 0; i < 60; i++) {
      metrics.add({
        at: t0 - 60_000 + i * 1000 + 1,
        keyId: i % 2 === 0 ? 'a' : 'b',
        ok: i % 10 !== 0,
        latencyMs: (i % 20) * 10,
        ...(i % 10 === 0 && { failure: 'rate-limit' }),
      });
    }
    const all = metrics.summary(t0);
    expect(all.count).toBe(60);
    expect(all.requestsPerSecond).toBe(1);
    expect(all.errorRate).toBeCloseTo(0.1);
    expect(all.errorsByFailure).toEqual({ 'rate-limit': 6 });
    expect(all.p50Ms).toBe(90);
    expect(all.p95Ms).toBe(180);
    const b = metrics.summary(t0, 'b');
    expect(b.count).toBe(30);
    expect(b.errorRate).toBe(0);
  });

  it('does not under-report the rate while the page has watched for less than the window', () => {
    const t0 = 5_000_000;
    const metrics = new LiveMetrics(60_000, 15 * 60_000, 50_000, t0 - 10_000);
    for (let i = 0; i < 50; i++) metrics.add({ at: t0 - 10_000 + i * 200, keyId: 'a', ok: true });
    expect(metrics.summary(t0).requestsPerSecond).toBe(5);
    expect(metrics.summary(t0, 'nobody').errorRate).toBeUndefined();
  });

  it('buckets history for charts and keeps memory bounded', () => {
    const t0 = 10_000_000;
    const metrics = new LiveMetrics(60_000, 60_000, 100, t0 - 60_000);
    for (let i = 0; i < 500; i++)
      metrics.add({ at: t0 - 30_000 + i * 10, keyId: 'a', ok: i % 5 !== 0, latencyMs: 40 });
    const series = metrics.series(t0, 'a', 10_000);
    const total = series.requests.reduce<number>((a, b) => a + (b ?? 0), 0);
    expect(total).toBe(100);
    expect(series.t.length).toBe(6);
    expect(series.p50Ms.filter((v) => v !== null)).toContain(40);
  });

  it('marks the time before the page started watching as unknown, not zero', () => {
    const t0 = 20_000_000;
    const metrics = new LiveMetrics(60_000, 60_000, 100, t0 - 20_000);
    const series = metrics.series(t0, undefined, 10_000);
    expect(series.requests).toEqual([null, null, null, 0, 0, 0]);
  });
});
