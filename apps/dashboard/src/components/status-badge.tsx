import { formatCountdown } from '../format.js';
import type { KeyHealth } from '../types.js';
import { useNow } from '../use-now.js';

/** A cooling or exhausted key counts down to when it comes back. */
export function Countdown({ until }: { until: number }) {
  const now = useNow();
  return <span className="countdown">{formatCountdown(until, now)}</span>;
}

export function StatusBadge({ status, until }: Pick<KeyHealth, 'status' | 'until'>) {
  return (
    <span className={`badge badge-${status}`}>
      {status}
      {until !== undefined && (status === 'cooling' || status === 'exhausted') && (
        <>
          {' '}
          <span className="visually-hidden">for </span>
          <Countdown until={until} />
        </>
      )}
    </span>
  );
}

export function BreakerBadge({ breaker }: Pick<KeyHealth, 'breaker'>) {
  return <span className={`badge breaker-${breaker}`}>{breaker}</span>;
}

export function OverallBadge({ status }: { status: 'healthy' | 'degraded' | 'down' }) {
  return <span className={`badge overall-${status}`}>{status}</span>;
}
