// Shapes the admin API answers with. Pool health and usage come from the shared contract;
// the rest mirror apps/admin-api/src/schemas.ts (the API's own schemas are not exported).
import type {
  AuditEntry,
  KeyHealth,
  KeyInfo,
  KeyStatus,
  OrgHealth,
  PoolHealth,
  Role,
  UsageRow,
} from '@keypool/spec';

export type { AuditEntry, KeyHealth, KeyStatus, OrgHealth, PoolHealth, Role };

/** GET /v1/keys: key metadata (limits, disabled reason) with live status; never a secret. */
export type ApiKey = Omit<KeyInfo, 'fingerprint'> & { fingerprint?: string; status?: KeyStatus };

/** GET /v1/usage rows: the store's row plus the key's alias where the API knows it. */
export type ApiUsageRow = UsageRow & { keyAlias?: string };

export interface ApiToken {
  id: string;
  name: string;
  role: Role;
  pools?: string[];
  createdAt: number;
  lastUsedAt?: number;
  revokedAt?: number;
}

export interface ProbeResult {
  ok: boolean;
  latencyMs: number;
  status?: number;
  code?: string;
  message?: string;
  /** What a passing test cleared: 'invalid', 'exhausted', 'breaker-open'. */
  recovered?: string[];
}

export interface ImportReport {
  added: Array<{ id: string; alias: string; provider: string; maskedSecret: string }>;
  duplicates: Array<{ source: string; provider: string; maskedSecret: string; existingAlias?: string }>;
  invalid: Array<{ source: string; problem: string }>;
}
