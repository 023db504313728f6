import { useMemo } from 'react';
import { TimeChart } from '../components/chart.js';
import { OrgTable } from '../components/org-table.js';
import { OverallBadge, StatusBadge } from '../components/status-badge.js';
import { formatAgo, formatCount, formatMs, formatPercent, formatRate, formatUsd } from '../format.js';
import { DEFAULT_QUERY, joinKeys, needsAttention, selectKeys } from '../key-table.js';
import { useLive } from '../live.js';
import { useHealth, useKeys, useSpend } from '../queries.js';
import { href } from '../route.js';
import { useNow } from '../use-now.js';

function Meter({ label, value, of }: { label: string; value: number; of: number }) {
  const share = of > 0 ? Math.min(1, value / of) : 0;
  const level = share > 0.9 ? 'low' : share > 0.75 ? 'warn' : 'ok';
  return (
    <meter
      className={`bar bar-wide bar-${level}`}
      aria-label={label}
      min={0}
      max={100}
      value={Math.round(share * 100)}
    />
  );
}

export function Overview() {
  const live = useLive();
  const now = useNow();
  const health = useHealth(!live.isStale);
  const keys = useKeys(health.data !== undefined);
  const spend = useSpend(now);
  const summary = live.metrics.summary(now);
  // biome-ignore lint/correctness/useExhaustiveDependencies: recomputed on each live tick
  const series = useMemo(() => live.metrics.series(Date.now()), [live.tick, live.metrics]);

  const rows = useMemo(() => joinKeys(health.data?.keys ?? [], keys.data), [health.data, keys.data]);
  const trouble = useMemo(() => selectKeys(rows.filter(needsAttention), DEFAULT_QUERY), [rows]);
  const counts = useMemo(() => {
    const c: Record<string, number> = {};
    for (const r of rows) c[r.status] = (c[r.status] ?? 0) + 1;
    return c;
  }, [rows]);
  const budgets = useMemo(() => {
    let monthlyUsd = 0;
    let tokensPerDay = 0;
    for (const k of keys.data ?? []) {
      monthlyUsd += k.limits.monthlyBudgetUsd ?? 0;
      tokensPerDay += k.limits.tokensPerDay ?? 0;
    }
    return { monthlyUsd, tokensPerDay };
  }, [keys.data]);

  if (health.isLoading) return <p>Loading pool health…</p>;
  if (health.error !== null && health.data === undefined) {
    return <p role="alert">Could not load pool health: {health.error.message}</p>;
  }
  const h = health.data!;
  const tokensToday = (spend.today?.inputTokens ?? 0) + (spend.today?.outputTokens ?? 0);
  const tokensMonth = (spend.month?.inputTokens ?? 0) + (spend.month?.outputTokens ?? 0);
  // An admin API from before organizations sends none.
  const orgs = h.orgs ?? [];

  return (
    <>
      <h1>Overview</h1>
      <section className={`card status-card status-${h.status}`} aria-labelledby="pool-status">
        <h2 id="pool-status">
          Pool is <OverallBadge status={h.status} />
        </h2>
        {h.reasons.length > 0 ? (
          <ul className="reasons">
            {h.reasons.map((reason) => (
              <li key={reason}>{reason}</li>
            ))}
          </ul>
        ) : (
          <p>Every key is serving.</p>
        )}
        <p className="muted small">
          {rows.length} keys:{' '}
          {Object.entries(counts)
            .map(([status, n]) => `${n} ${status}`)
            .join(', ')}{' '}
          · store {h.store.name}
          {h.store.degraded ? ' (degraded)' : ''} · checked {formatAgo(h.checkedAt, now)}
        </p>
      </section>

      <section aria-labelledby="traffic" className="section">
        <h2 id="traffic">Traffic, last minute</h2>
        <dl className="stats">
          <div>
            <dt>Requests</dt>
            <dd data-testid="rps">{formatRate(summary.requestsPerSecond)}</dd>
          </div>
          <div>
            <dt>Error rate</dt>
            <dd data-testid="error-rate">{formatPercent(summary.errorRate)}</dd>
          </div>
          <div>
            <dt>Latency p50</dt>
            <dd>{formatMs(summary.p50Ms)}</dd>
          </div>
          <div>
            <dt>Latency p95</dt>
            <dd>{formatMs(summary.p95Ms)}</dd>
          </div>
        </dl>
        <p className="muted small">Measured by this page from live events since it opened.</p>
      </section>

      <section aria-labelledby="spend" className="section">
        <h2 id="spend">Tokens and spend</h2>
        <dl className="stats">
          <div>
            <dt>Tokens today</dt>
            <dd>
              {formatCount(tokensToday)}
              {budgets.tokensPerDay > 0 && (
                <span className="muted small"> of {formatCount(budgets.tokensPerDay)}</span>
              )}
              {budgets.tokensPerDay > 0 && (
                <Meter label="Daily token limits used" value={tokensToday} of={budgets.tokensPerDay} />
              )}
            </dd>
          </div>
          <div>
            <dt>Cost today</dt>
            <dd>{formatUsd(spend.today?.costUsd ?? 0)}</dd>
          </div>
          <div>
            <dt>Tokens this month</dt>
            <dd>{formatCount(tokensMonth)}</dd>
          </div>
          <div>
            <dt>Cost this month</dt>
            <dd>
              {formatUsd(spend.month?.costUsd ?? 0)}
              {budgets.monthlyUsd > 0 && (
                <span className="muted small"> of {formatUsd(budgets.monthlyUsd)}</span>
              )}
              {budgets.monthlyUsd > 0 && (
                <Meter
                  label="Monthly budget used"
                  value={spend.month?.costUsd ?? 0}
                  of={budgets.monthlyUsd}
                />
              )}
            </dd>
          </div>
        </dl>
      </section>

      {orgs.length > 0 && (
        <section aria-labelledby="orgs" className="section">
          <h2 id="orgs">Organizations</h2>
          <p className="muted small">
            Keys of one organization share its limits, and a rate limit or spent quota on one of them holds
            back all of them.
          </p>
          <OrgTable orgs={orgs} />
        </section>
      )}

      <section aria-labelledby="trend" className="section">
        <h2 id="trend">Since this page opened</h2>
        <TimeChart
          title="Requests and errors per 10 s"
          x={series.t}
          series={[
            { label: 'requests', values: series.requests, color: '#1f5fbf' },
            { label: 'errors', values: series.errors, color: '#b3261e' },
          ]}
          summary={`${summary.count} requests in the last minute, ${formatPercent(summary.errorRate)} errors`}
        />
      </section>

      <div className="columns">
        <section aria-labelledby="attention" className="section">
          <h2 id="attention">Keys needing attention ({trouble.length})</h2>
          {trouble.length === 0 ? (
            <p>None.</p>
          ) : (
            <ul className="plain-list">
              {trouble.slice(0, 12).map((k) => (
                <li key={k.id}>
                  <a href={href({ page: 'key', id: k.id })}>{k.alias}</a>{' '}
                  <StatusBadge status={k.status} until={k.until} />{' '}
                  {k.breaker !== 'closed' && <span className="muted">breaker {k.breaker} · </span>}
                  <span className="muted">{k.reason ?? k.disabledReason ?? ''}</span>
                </li>
              ))}
              {trouble.length > 12 && (
                <li>
                  <a href={href({ page: 'keys' })}>and {trouble.length - 12} more</a>
                </li>
              )}
            </ul>
          )}
        </section>
        <section aria-labelledby="events" className="section">
          <h2 id="events">Recent events</h2>
          {live.events.length === 0 ? (
            <p className="muted">No key events since this page opened.</p>
          ) : (
            <ul className="plain-list events" data-testid="events">
              {live.events.slice(0, 15).map((e) => (
                <li key={e.id}>
                  <time className="muted small" dateTime={new Date(e.at).toISOString()}>
                    {formatAgo(e.at, now)}
                  </time>{' '}
                  {e.text}
                </li>
              ))}
            </ul>
          )}
        </section>
      </div>
    </>
  );
}
