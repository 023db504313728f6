import type { KeyPool } from '@keypool/spec';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface AdminMetrics {
  registry: Registry;
  requests: Counter<'method' | 'route' | 'status'>;
  errors: Counter<'class' | 'code'>;
  latency: Histogram<'method' | 'route'>;
}

const STATUSES = ['active', 'disabled', 'exhausted', 'cooling', 'invalid'] as const;
const BREAKER = { closed: 0, 'half-open': 1, open: 2 } as const;

/**
 * Prometheus metrics of one app (its own registry: no global state). Key
 * metrics are labelled by key alias, never by secret or fingerprint, and read
 * from the pool at scrape time.
 */
export function createMetrics(pool: KeyPool): AdminMetrics {
  const registry = new Registry();
  const requests = new Counter({
    name: 'keypool_http_requests_total',
    help: 'HTTP requests by method, route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const errors = new Counter({
    name: 'keypool_http_errors_total',
    help: 'HTTP error answers by class (4xx, 5xx) and error code.',
    labelNames: ['class', 'code'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'keypool_http_request_duration_seconds',
    help: 'HTTP request latency.',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const byKey = (
    name: string,
    help: string,
    pick: (s: ReturnType<KeyPool['stats']>['byKey'][string]) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['key'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [alias, stats] of Object.entries(pool.stats().byKey))
          this.set({ key: alias }, pick(stats));
      },
    });
  byKey('keypool_key_requests', 'Requests through each key since this process started.', (s) => s.requests);
  byKey(
    'keypool_key_errors',
    'Failed requests through each key since this process started.',
    (s) => s.errors,
  );
  byKey('keypool_key_cost_usd', 'Spend through each key since this process started, USD.', (s) => s.costUsd);
  new Gauge({
    name: 'keypool_key_tokens',
    help: 'Tokens through each key since this process started, by direction.',
    labelNames: ['key', 'direction'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [alias, stats] of Object.entries(pool.stats().byKey)) {
        this.set({ key: alias, direction: 'input' }, stats.inputTokens);
        this.set({ key: alias, direction: 'output' }, stats.outputTokens);
      }
    },
  });
  new Gauge({
    name: 'keypool_key_status',
    help: '1 for the status each key is in now.',
    labelNames: ['key', 'status'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const key of pool.health().keys) {
        for (const status of STATUSES) this.set({ key: key.alias, status }, key.status === status ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'keypool_key_breaker_state',
    help: 'Breaker state of each key: 0 closed, 1 half-open, 2 open.',
    labelNames: ['key'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const key of pool.health().keys) this.set({ key: key.alias }, BREAKER[key.breaker]);
    },
  });
  new Gauge({
    name: 'keypool_leases_in_flight',
    help: 'Leases held by callers of this process now.',
    registers: [registry],
    collect() {
      this.set(pool.stats().inFlight);
    },
  });
  return { registry, requests, errors, latency };
}
