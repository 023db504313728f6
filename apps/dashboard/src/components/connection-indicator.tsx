import { formatAgo, formatDateTime } from '../format.js';
import { useLive } from '../live.js';
import { useNow } from '../use-now.js';

/** Live, reconnecting or stale: visible at all times, since stale numbers mislead. */
export function ConnectionIndicator() {
  const live = useLive();
  const now = useNow();
  let text: string;
  if (!live.isStale) text = 'Live';
  else if (live.state === 'reconnecting' || live.state === 'connecting') {
    const seconds =
      live.retryAt === undefined ? undefined : Math.max(0, Math.ceil((live.retryAt - now) / 1000));
    text = `Reconnecting${seconds !== undefined && seconds > 0 ? ` in ${seconds}s` : '…'}`;
  } else text = 'Stale';
  return (
    <div
      className={`connection ${live.isStale ? 'connection-stale' : 'connection-live'}`}
      data-testid="connection"
    >
      <span className="dot" aria-hidden="true" />
      <span>{text}</span>
      {live.isStale && live.lastActivityAt !== undefined && (
        <span className="muted" title={formatDateTime(live.lastActivityAt)}>
          {' '}
          · data from {formatAgo(live.lastActivityAt, now)}
        </span>
      )}
    </div>
  );
}
