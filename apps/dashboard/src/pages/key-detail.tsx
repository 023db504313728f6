import { useMemo } from 'react';
import { TimeChart } from '../components/chart.js';
import { HeadroomBar } from '../components/headroom.js';
import { KeyActions } from '../components/key-actions.js';
import { BreakerBadge, StatusBadge } from '../components/status-badge.js';
import { dailySeries, HISTORY_DAYS } from '../daily-series.js';
import { formatAgo, formatCount, formatDateTime, formatMs, formatPercent, formatUsd } from '../format.js';
import { joinKeys } from '../key-table.js';
import { useLive } from '../live.js';
import { useAudit, useHealth, useKeys, useUsage } from '../queries.js';
import { href } from '../route.js';
import { useNow } from '../use-now.js';
import { AuditTable } from './audit.js';

const DAY_MS = 86_400_000;

const LIMIT_LABELS: Record<string, string> = {
  rpm: 'Requests per minute',
  tpm: 'Tokens per minute',
  requestsPerDay: 'Requests per day',
  tokensPerDay: 'Tokens per day',
  monthlyBudgetUsd: 'Monthly budget (USD)',
};

export function KeyDetail({ id }: { id: string }) {
  const live = useLive();
  const now = useNow();
  const health = useHealth(!live.isStale);
  const keys = useKeys(health.data !== undefined);
  const from = useMemo(() => {
    const d = new Date(Date.now() - (HISTORY_DAYS - 1) * DAY_MS);
    return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  }, []);
  const usage = useUsage({ keyId: id, groupBy: 'day', from }, 60_000);
  const audit = useAudit({ target: id, limit: 50 });
  const row = useMemo(
    () => joinKeys(health.data?.keys.filter((k) => k.id === id) ?? [], keys.data)[0],
    [health.data, keys.data, id],
  );
  const daily = useMemo(() => dailySeries(usage.data ?? [], Date.now()), [usage.data]);
  // biome-ignore lint/correctness/useExhaustiveDependencies: recomputed on each live tick
  const liveSeries = useMemo(() => live.metrics.series(Date.now(), id), [live.tick, live.metrics, id]);
  const liveSummary = live.metrics.summary(now, id);

  if (health.isLoading) return <p>Loading key…</p>;
  if (row === undefined) {
    return (
      <>
        <h1>Key not found</h1>
        <p>
          No key with id <code>{id}</code> is in the pool. <a href={href({ page: 'keys' })}>Back to keys</a>
        </p>
      </>
    );
  }
  const info = keys.data?.find((k) => k.id === id);
  const failureClasses = Object.entries(liveSummary.errorsByFailure).sort((a, b) => b[1] - a[1]);

  return (
    <>
      <p className="crumbs">
        <a href={href({ page: 'keys' })}>Keys</a> / {row.alias}
      </p>
      <h1>
        {row.alias} <StatusBadge status={row.status} until={row.until} />
      </h1>
      <p className="muted">
        {row.provider} · tier {row.priority} · <span className="mono">{row.maskedSecret}</span> · breaker{' '}
        <BreakerBadge breaker={row.breaker} />
        {row.organization !== undefined && ` · organization ${row.organization}`}
        {info?.models !== undefined && ` · models ${info.models.join(', ')}`}
      </p>
      {(row.reason ?? row.disabledReason) !== undefined && (
        <p className="reason-line" data-testid="key-reason">
          {row.reason ?? row.disabledReason}
        </p>
      )}
      <KeyActions keyHealth={row} />

      <section className="section" aria-labelledby="now">
        <h2 id="now">Now</h2>
        <dl className="stats">
          <div>
            <dt>Requests</dt>
            <dd data-testid="key-requests">{formatCount(row.requests)}</dd>
          </div>
          <div>
            <dt>Errors</dt>
            <dd>{formatCount(row.errors)}</dd>
          </div>
          <div>
            <dt>Success rate</dt>
            <dd>{row.requests === 0 ? '—' : formatPercent(row.successRate)}</dd>
          </div>
          <div>
            <dt>Latency (avg)</dt>
            <dd>{formatMs(row.latencyEwmaMs)}</dd>
          </div>
          <div>
            <dt>In flight</dt>
            <dd>{row.inFlight}</dd>
          </div>
          <div>
            <dt>Spend this month</dt>
            <dd>{formatUsd(row.spendUsd)}</dd>
          </div>
        </dl>
        {Object.keys(row.headroom).length > 0 && (
          <div className="limits">
            <h3>Headroom</h3>
            {Object.entries(row.headroom).map(([name, share]) =>
              typeof share === 'number' ? (
                <div key={name} className="limit-row">
                  <HeadroomBar label={LIMIT_LABELS[name] ?? name} share={share} />
                  <span className="muted small">
                    limit {formatCount(row.limits[name as keyof typeof row.limits])}
                  </span>
                </div>
              ) : null,
            )}
          </div>
        )}
        {row.lastError !== undefined && (
          <p>
            <strong>Last error</strong> {formatAgo(row.lastError.at, now)}: {row.lastError.failure}
            {row.lastError.status !== undefined &&
              ` (HTTP ${row.lastError.status}${row.lastError.code !== undefined ? `, ${row.lastError.code}` : ''})`}
            {row.lastError.message !== undefined && ` — ${row.lastError.message}`}
          </p>
        )}
      </section>

      <section className="section" aria-labelledby="live-charts">
        <h2 id="live-charts">Live, since this page opened</h2>
        <div className="chart-grid">
          <TimeChart
            title="Requests and errors per 10 s"
            x={liveSeries.t}
            series={[
              { label: 'requests', values: liveSeries.requests, color: '#1f5fbf' },
              { label: 'errors', values: liveSeries.errors, color: '#b3261e' },
            ]}
            summary={`${liveSummary.count} requests in the last minute`}
          />
          <TimeChart
            title="Median latency per 10 s"
            x={liveSeries.t}
            series={[{ label: 'p50', values: liveSeries.p50Ms, color: '#6a3fb5' }]}
            format={(v) => formatMs(v)}
            summary={`p50 ${formatMs(liveSummary.p50Ms)}, p95 ${formatMs(liveSummary.p95Ms)} over the last minute`}
          />
        </div>
        <h3>Errors by class, last minute</h3>
        {failureClasses.length === 0 ? (
          <p className="muted">No errors.</p>
        ) : (
          <ul className="plain-list">
            {failureClasses.map(([failure, n]) => (
              <li key={failure}>
                {failure}: {n}
              </li>
            ))}
          </ul>
        )}
      </section>

      <section className="section" aria-labelledby="history">
        <h2 id="history">Last {HISTORY_DAYS} days</h2>
        <div className="chart-grid">
          <TimeChart
            title="Requests and errors per day"
            x={daily.t}
            series={[
              { label: 'requests', values: daily.requests, color: '#1f5fbf', bars: true },
              { label: 'errors', values: daily.errors, color: '#b3261e', bars: true },
            ]}
            summary={`${daily.requests.reduce((a, b) => a + b, 0)} requests in ${HISTORY_DAYS} days`}
          />
          <TimeChart
            title="Tokens per day"
            x={daily.t}
            series={[
              { label: 'input', values: daily.inputTokens, color: '#0b7a75', bars: true },
              { label: 'output', values: daily.outputTokens, color: '#a65b00', bars: true },
            ]}
            format={(v) => formatCount(v)}
            summary={`${formatCount(daily.inputTokens.reduce((a, b) => a + b, 0) + daily.outputTokens.reduce((a, b) => a + b, 0))} tokens in ${HISTORY_DAYS} days`}
          />
          <TimeChart
            title="Cost per day"
            x={daily.t}
            series={[{ label: 'cost', values: daily.costUsd, color: '#6a3fb5', bars: true }]}
            format={(v) => formatUsd(v)}
            summary={`${formatUsd(daily.costUsd.reduce((a, b) => a + b, 0))} in ${HISTORY_DAYS} days`}
          />
        </div>
      </section>

      <section className="section" aria-labelledby="key-audit">
        <h2 id="key-audit">Audit trail</h2>
        <AuditTable entries={audit.data} label={`Audit trail of ${row.alias}`} />
        <p className="muted small">Updated {info !== undefined ? formatDateTime(info.updatedAt) : '—'}.</p>
      </section>
    </>
  );
}
