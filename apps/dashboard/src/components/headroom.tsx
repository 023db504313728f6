import { formatPercent } from '../format.js';

/** Remaining share of one limit as a bar: green with room, amber below 25 %, red below 10 %. */
export function HeadroomBar({ label, share }: { label: string; share: number }) {
  const level = share < 0.1 ? 'low' : share < 0.25 ? 'warn' : 'ok';
  const pct = Math.round(Math.max(0, Math.min(1, share)) * 100);
  return (
    <div className="headroom">
      <span className="headroom-label">{label}</span>
      <meter className={`bar bar-${level}`} aria-label={`${label} headroom`} min={0} max={100} value={pct} />
      <span className="headroom-value">{formatPercent(share)}</span>
    </div>
  );
}

const LABELS: Record<string, string> = {
  rpm: 'rpm',
  tpm: 'tpm',
  requestsPerDay: 'req/day',
  tokensPerDay: 'tok/day',
  monthlyBudgetUsd: 'budget',
};

export function HeadroomBars({
  headroom,
  empty = 'no limits',
}: {
  headroom: Partial<Record<string, number>>;
  /** What to say when there is no limit to show. */
  empty?: string;
}) {
  const entries = Object.entries(headroom).filter((e): e is [string, number] => typeof e[1] === 'number');
  if (entries.length === 0) return <span className="muted">{empty}</span>;
  return (
    <div className="headroom-list">
      {entries.map(([name, share]) => (
        <HeadroomBar key={name} label={LABELS[name] ?? name} share={share} />
      ))}
    </div>
  );
}
