// Server state through react-query: one cache, so the live stream can update what pages show.
import { useQuery } from '@tanstack/react-query';
import { startOfDay, startOfMonth } from './format.js';
import { useSession } from './session-context.js';
import type { ApiKey, ApiToken, ApiUsageRow, AuditEntry, PoolHealth } from './types.js';

export const queryKeys = {
  health: ['health'] as const,
  keys: ['keys'] as const,
  tokens: ['tokens'] as const,
  usage: (params: Record<string, string | number | undefined>) => ['usage', params] as const,
  audit: (params: Record<string, string | number | undefined>) => ['audit', params] as const,
};

export function queryString(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params))
    if (value !== undefined && value !== '') search.set(name, String(value));
  const text = search.toString();
  return text === '' ? '' : `?${text}`;
}

/** Health arrives by the live stream; polling is the fallback while the stream is down. */
export function useHealth(isLive: boolean) {
  const { api } = useSession();
  return useQuery({
    queryKey: queryKeys.health,
    queryFn: () => api.get<PoolHealth>('/v1/health'),
    refetchInterval: isLive ? 30_000 : 5_000,
  });
}

/**
 * Key metadata (limits, disabled reason). Health comes first: it is what the page shows, and
 * /v1/keys is the slower answer with many keys, so it waits until health is in.
 */
export function useKeys(enabled = true) {
  const { api } = useSession();
  return useQuery({
    queryKey: queryKeys.keys,
    queryFn: async () => (await api.get<{ keys: ApiKey[] }>('/v1/keys')).keys,
    refetchInterval: 60_000,
    enabled,
  });
}

export function useUsage(params: Record<string, string | number | undefined>, refetchMs = 30_000) {
  const { api } = useSession();
  return useQuery({
    queryKey: queryKeys.usage(params),
    queryFn: async () => (await api.get<{ rows: ApiUsageRow[] }>(`/v1/usage${queryString(params)}`)).rows,
    refetchInterval: refetchMs,
  });
}

/** Totals for today and this calendar month (local time). */
export function useSpend(now: number) {
  const day = startOfDay(now);
  const month = startOfMonth(now);
  const today = useUsage({ from: day });
  const thisMonth = useUsage({ from: month });
  return {
    today: today.data?.[0],
    month: thisMonth.data?.[0],
    isLoading: today.isLoading || thisMonth.isLoading,
  };
}

export function useAudit(params: { target?: string; action?: string; limit?: number }) {
  const { api } = useSession();
  return useQuery({
    queryKey: queryKeys.audit(params),
    queryFn: async () =>
      (await api.get<{ entries: AuditEntry[] }>(`/v1/audit${queryString(params)}`)).entries,
    refetchInterval: 30_000,
  });
}

export function useTokens(enabled: boolean) {
  const { api } = useSession();
  return useQuery({
    queryKey: queryKeys.tokens,
    queryFn: async () => (await api.get<{ tokens: ApiToken[] }>('/v1/tokens')).tokens,
    enabled,
  });
}
