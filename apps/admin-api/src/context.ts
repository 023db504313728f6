import { randomBytes } from 'node:crypto';
import type { MasterKey } from '@keypool/core';
import type { KeyPool, Store } from '@keypool/spec';
import type { Logger } from 'pino';
import { type Auth, actorOf, type Caller } from './auth.js';
import type { LeaseBook } from './leases.js';
import type { AdminMetrics } from './metrics.js';

/** What every route handler may use. One per app: two apps in a process share nothing. */
export interface AppContext {
  pool: KeyPool;
  store: Store;
  logger: Logger;
  auth: Auth;
  leases: LeaseBook;
  metrics: AdminMetrics;
  /** To open a key's secret for the test endpoint; absent = key tests unavailable. */
  masterKeys: MasterKey[];
  healthIntervalMs: number;
  /** True once shutdown began: /readyz answers 503 so balancers stop sending traffic. */
  closing: boolean;
  now: () => number;
  /** Open SSE streams, ended at close. */
  streams: Set<() => void>;
  audit(
    caller: Caller | undefined,
    action: string,
    target?: string,
    details?: Record<string, unknown>,
  ): Promise<void>;
}

export function auditWriter(store: Store, now: () => number): AppContext['audit'] {
  return async (caller, action, target, details) => {
    await store.appendAudit({
      id: `aud_${now().toString(36)}${randomBytes(6).toString('base64url')}`,
      time: now(),
      actor: actorOf(caller),
      action,
      ...(target !== undefined && { target }),
      // The actor's identity gets its own names so it never overwrites what the entry is about
      // (token.create of a viewer token has details.role = 'viewer', whoever created it).
      details: {
        ...details,
        ...(caller !== undefined && { actorTokenId: caller.tokenId, actorRole: caller.role }),
      },
    });
  };
}
