// The live stream: /v1/events read with fetch (so the token goes in a header), folded into the
// query cache and the page's own request metrics. Re-renders are batched to once a second so
// hundreds of keys and tens of events a second stay cheap.
import { useQueryClient } from '@tanstack/react-query';
import { createContext, type ReactNode, useContext, useEffect, useMemo, useRef, useState } from 'react';
import { LiveMetrics } from './live-metrics.js';
import { queryKeys } from './queries.js';
import { useSession } from './session-context.js';
import { openEventStream, type StreamState } from './sse.js';
import type { PoolHealth } from './types.js';

/** No byte for this long (health every few seconds, keep-alive every 15 s) and the data is stale. */
export const STALE_AFTER_MS = 20_000;

export interface LiveEvent {
  id: number;
  at: number;
  name: string;
  keyId?: string;
  alias?: string;
  text: string;
}

export interface LiveValue {
  state: StreamState;
  retryAt?: number;
  lastActivityAt?: number;
  isStale: boolean;
  metrics: LiveMetrics;
  /** Newest first, at most 100. */
  events: readonly LiveEvent[];
  /** Changes once a second while anything changed, so consumers re-render. */
  tick: number;
}

const LiveContext = createContext<LiveValue | undefined>(undefined);

export function useLive(): LiveValue {
  const value = useContext(LiveContext);
  if (value === undefined) throw new Error('useLive outside <LiveProvider>');
  return value;
}

/** Pool events that change what the health view shows: refresh it (throttled). */
const KEY_CHANGES = new Set([
  'key:status',
  'key:cooldown',
  'key:exhausted',
  'key:invalid',
  'key:model-blocked',
  'key:added',
  'key:updated',
  'key:removed',
  'breaker:open',
  'breaker:half-open',
  'breaker:close',
]);

const PROBE_REASONS: Record<string, string> = {
  invalid: 'invalid',
  exhausted: 'exhausted',
  'breaker-open': 'behind an open breaker',
};
const PROBE_FAILURES: Record<string, string> = {
  timeout: 'timed out',
  connection: 'connection failed',
  abort: 'aborted',
};

/** What an event means to an operator, in words. Payloads carry ids and aliases, never secrets. */
export function describeEvent(name: string, data: Record<string, unknown>): string | undefined {
  const alias = typeof data.alias === 'string' ? data.alias : 'a key';
  const seconds = (until: number) => Math.max(0, Math.round((until - Date.now()) / 1000));
  const secondsUntil = (until: unknown) => (typeof until === 'number' ? ` for ${seconds(until)} s` : '');
  // What a probed key was out for, in words: "invalid or behind an open breaker".
  const outFor = (reasons: unknown) =>
    (Array.isArray(reasons) ? reasons : []).map((r) => PROBE_REASONS[String(r)] ?? String(r)).join(' or ') ||
    'out of service';
  switch (name) {
    case 'key:status':
      return `${alias}: ${String(data.from)} → ${String(data.to)}${typeof data.reason === 'string' ? ` (${data.reason})` : ''}`;
    // `via`: another key of the same organization answered 429 or spent the shared quota.
    case 'key:cooldown':
      return typeof data.via === 'string'
        ? `${alias} cooling down${secondsUntil(data.until)}: cooled with ${data.via} (same organization)`
        : `${alias} cooling down${secondsUntil(data.until)} after a rate limit`;
    case 'key:exhausted':
      return typeof data.via === 'string'
        ? `${alias} exhausted with ${data.via} (same organization)`
        : `${alias} exhausted its quota`;
    case 'key:invalid':
      return `${alias} was refused by the provider${typeof data.status === 'number' ? ` (${data.status})` : ''}`;
    case 'key:model-blocked':
      return `${alias} blocked for ${String(data.model)}`;
    case 'key:added':
      return `${alias} added`;
    case 'key:updated':
      return `${alias} changed`;
    case 'key:removed':
      return `${alias} removed`;
    case 'breaker:open':
      return `${alias}: breaker opened after ${String(data.failures)} failures`;
    case 'breaker:half-open':
      return `${alias}: breaker half-open, probing`;
    case 'breaker:close':
      return `${alias}: breaker closed`;
    case 'key:last-resort':
      return `${alias} used as a last resort${typeof data.model === 'string' ? ` for ${data.model}` : ''} while ${
        data.reason === 'breaker-open' ? 'its breaker is open' : 'cooling down after a rate limit'
      }${typeof data.until === 'number' ? ` (${seconds(data.until)} s left)` : ''}: no other key was available`;
    case 'probe:passed':
      return `${alias} passed a probe and is no longer ${outFor(data.reasons)}`;
    case 'probe:failed': {
      // The upstream's HTTP status when it answered; else what went wrong on the way.
      const why =
        typeof data.status === 'number'
          ? String(data.status)
          : typeof data.failure === 'string'
            ? (PROBE_FAILURES[data.failure] ?? data.failure)
            : undefined;
      return `${alias} failed a probe${why !== undefined ? ` (${why})` : ''}: still ${outFor(data.reasons)}`;
    }
    case 'pool:no-key':
      return `No ${String(data.provider)} key available${typeof data.model === 'string' ? ` for ${data.model}` : ''}`;
    case 'store:degraded':
      return `Store ${String(data.store)} degraded: ${String(data.error)}`;
    case 'store:recovered':
      return `Store ${String(data.store)} recovered`;
    default:
      return undefined;
  }
}

export function LiveProvider({ children, url = '/v1/events' }: { children: ReactNode; url?: string }) {
  const { token, signOut } = useSession();
  const queryClient = useQueryClient();
  const metrics = useMemo(() => new LiveMetrics(), []);
  const events = useRef<LiveEvent[]>([]);
  const status = useRef<{ state: StreamState; retryAt?: number; lastActivityAt?: number; dirty: boolean }>({
    state: 'connecting',
    dirty: true,
  });
  const [value, setValue] = useState<LiveValue>(() => ({
    state: 'connecting',
    isStale: true,
    metrics,
    events: [],
    tick: 0,
  }));

  useEffect(() => {
    let nextEventId = 0;
    let wasOpen = false;
    let refreshTimer: ReturnType<typeof setTimeout> | undefined;
    let refreshKeys = false;
    const refreshSoon = (keysToo: boolean) => {
      refreshKeys ||= keysToo;
      if (refreshTimer !== undefined) return;
      refreshTimer = setTimeout(() => {
        refreshTimer = undefined;
        void queryClient.invalidateQueries({ queryKey: queryKeys.health });
        if (refreshKeys) void queryClient.invalidateQueries({ queryKey: queryKeys.keys });
        refreshKeys = false;
      }, 1000);
    };

    const stream = openEventStream({
      url,
      token,
      onActivity(at) {
        status.current.lastActivityAt = at;
      },
      onState(state, info) {
        const s = status.current;
        s.state = state;
        s.dirty = true;
        if (info.retryInMs !== undefined) s.retryAt = Date.now() + info.retryInMs;
        else delete s.retryAt;
        if (state === 'open') {
          // Back after a restart or a network drop: whatever was missed, fetch it again.
          if (wasOpen) void queryClient.invalidateQueries();
          wasOpen = true;
        }
        if (state === 'unauthorized') signOut('The server no longer accepts this token. Sign in again.');
      },
      onMessage(message) {
        let data: Record<string, unknown>;
        try {
          data = JSON.parse(message.data) as Record<string, unknown>;
        } catch {
          return;
        }
        const now = Date.now();
        if (message.event === 'health') {
          queryClient.setQueryData(queryKeys.health, data as unknown as PoolHealth);
          return;
        }
        if (message.event === 'lease:released') {
          metrics.add({
            at: now,
            keyId: String(data.keyId),
            ok: data.ok === true,
            ...(typeof data.latencyMs === 'number' && { latencyMs: data.latencyMs }),
            ...(typeof data.failure === 'string' && { failure: data.failure }),
          });
          status.current.dirty = true;
          return;
        }
        if (KEY_CHANGES.has(message.event)) {
          refreshSoon(
            message.event === 'key:added' ||
              message.event === 'key:updated' ||
              message.event === 'key:removed',
          );
        }
        const text = describeEvent(message.event, data);
        if (text === undefined) return;
        events.current.unshift({
          id: nextEventId++,
          at: now,
          name: message.event,
          text,
          ...(typeof data.keyId === 'string' && { keyId: data.keyId }),
          ...(typeof data.alias === 'string' && { alias: data.alias }),
        });
        if (events.current.length > 100) events.current.length = 100;
        status.current.dirty = true;
      },
    });

    const onOnline = () => stream.reconnectNow();
    window.addEventListener('online', onOnline);
    let wasStale = true;
    const publish = setInterval(() => {
      const s = status.current;
      const now = Date.now();
      const isStale =
        s.state !== 'open' || s.lastActivityAt === undefined || now - s.lastActivityAt > STALE_AFTER_MS;
      if (!s.dirty && isStale === wasStale && s.state === 'open') return;
      s.dirty = false;
      wasStale = isStale;
      setValue((prev) => ({
        state: s.state,
        ...(s.retryAt !== undefined && { retryAt: s.retryAt }),
        ...(s.lastActivityAt !== undefined && { lastActivityAt: s.lastActivityAt }),
        isStale,
        metrics,
        events: [...events.current],
        tick: prev.tick + 1,
      }));
    }, 1000);

    return () => {
      clearInterval(publish);
      clearTimeout(refreshTimer);
      window.removeEventListener('online', onOnline);
      stream.close();
    };
  }, [token, url, queryClient, metrics, signOut]);

  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}
