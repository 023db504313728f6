import { randomBytes } from 'node:crypto';
import { hashToken, tokensEqual } from '@keypool/core';
import type { Role, Store, TokenRecord } from '@keypool/spec';
import type { Request } from 'express';
import type { Logger } from 'pino';
import { ApiError } from './errors.js';

/** Who made a request: the token's identity, never the token. */
export interface Caller {
  tokenId: string;
  name: string;
  role: Role;
  /** Pools a service token may use; absent = all. */
  pools?: string[];
}

export interface AuthOptions {
  /** Failed authentications allowed per client IP in `windowMs` before it gets 429. Default 20 per minute. */
  maxFailures?: number;
  windowMs?: number;
  /** How long a verified token is trusted before the store is asked again. Default 1000 ms. */
  cacheMs?: number;
}

export interface Auth {
  /** Resolves the caller or throws 401 (no/bad token), 403 (role), 429 (too many failures). */
  authorize(req: Request, roles: readonly Role[]): Promise<Caller>;
  /** Drops cached tokens, e.g. after one was deleted. */
  forget(): void;
  /** Waits for last-use writes still in flight (shutdown, before the store closes). */
  flush(): Promise<void>;
}

/** A token's last use is written at most this often per token and process. */
export const LAST_USED_INTERVAL_MS = 60_000;

const TOKEN_PREFIX = 'kp_';

/** A new bearer token: 256 random bits, prefixed so secret scanners can spot it. */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export function callerOf(record: TokenRecord): Caller {
  return {
    tokenId: record.id,
    name: record.name,
    role: record.role,
    ...(record.pools !== undefined && { pools: record.pools }),
  };
}

/** The actor written to the audit log for a caller. */
export function actorOf(caller: Caller | undefined): string {
  return caller === undefined ? 'anonymous' : `${caller.name} (${caller.tokenId})`;
}

export async function createToken(
  store: Store,
  input: { name: string; role: Role; pools?: string[] },
  now = Date.now(),
): Promise<{ record: TokenRecord; token: string }> {
  const token = generateToken();
  const record: TokenRecord = {
    id: `tok_${randomBytes(9).toString('base64url')}`,
    name: input.name,
    role: input.role,
    ...(input.pools !== undefined && { pools: input.pools }),
    tokenHash: hashToken(token),
    createdAt: now,
  };
  await store.putToken(record);
  return { record, token };
}

/**
 * First start: when the store has no admin token, create one and return it so
 * the caller prints it once. Only its hash is stored.
 */
export async function ensureAdminToken(store: Store): Promise<string | undefined> {
  const tokens = await store.listTokens();
  if (tokens.some((t) => t.role === 'admin' && t.revokedAt === undefined)) return undefined;
  const { token } = await createToken(store, { name: 'admin', role: 'admin' });
  return token;
}

export function createAuth(
  store: Store,
  options: AuthOptions = {},
  now: () => number = Date.now,
  logger?: Pick<Logger, 'warn'>,
): Auth {
  const maxFailures = options.maxFailures ?? 20;
  const windowMs = options.windowMs ?? 60_000;
  const cacheMs = options.cacheMs ?? 1000;
  const failures = new Map<string, { count: number; since: number }>();
  const cache = new Map<string, { record: TokenRecord; at: number }>();
  /** Token id → when this process last wrote its lastUsedAt. */
  const touched = new Map<string, number>();
  const writing = new Set<Promise<void>>();

  /**
   * Records a token's use in the background, at most once per interval: the request neither
   * waits for the write nor fails with it; a store error is only logged.
   */
  function touch(record: TokenRecord): void {
    const t = now();
    const last = touched.get(record.id);
    if (last !== undefined && t - last < LAST_USED_INTERVAL_MS) return;
    if (touched.size > 10_000) touched.clear();
    touched.set(record.id, t);
    const write = Promise.resolve()
      .then(() => store.touchToken(record.id, t))
      .catch((error: unknown) => {
        logger?.warn(
          { tokenId: record.id, err: error instanceof Error ? error.message : String(error) },
          'could not record a token’s last use; it shows the previous one until the next request',
        );
      })
      .finally(() => writing.delete(write));
    writing.add(write);
  }

  function ipOf(req: Request): string {
    return req.ip ?? req.socket.remoteAddress ?? 'unknown';
  }

  function checkLimit(ip: string): void {
    const entry = failures.get(ip);
    if (entry === undefined) return;
    const t = now();
    if (t - entry.since >= windowMs) {
      failures.delete(ip);
      return;
    }
    if (entry.count >= maxFailures) {
      const retryAfterMs = entry.since + windowMs - t;
      throw new ApiError(
        429,
        'KEYPOOL_RATE_LIMITED',
        `Too many failed authentications from this address; retry in ${Math.ceil(retryAfterMs / 1000)} s with a valid token.`,
        { headers: { 'retry-after': String(Math.ceil(retryAfterMs / 1000)) } },
      );
    }
  }

  function fail(ip: string, message: string): never {
    const t = now();
    const entry = failures.get(ip);
    if (entry === undefined || t - entry.since >= windowMs) failures.set(ip, { count: 1, since: t });
    else entry.count++;
    // Bound memory under a spray of addresses.
    if (failures.size > 10_000) {
      for (const [key, value] of failures) if (t - value.since >= windowMs) failures.delete(key);
    }
    throw new ApiError(401, 'KEYPOOL_UNAUTHORIZED', message, {
      headers: { 'www-authenticate': 'Bearer realm="keypool"' },
    });
  }

  /**
   * The token record for a hash. A store answer is compared again in constant time, so a
   * lax store lookup cannot let another token through; only records that passed are cached,
   * so a cache hit (the lease hot path) costs no store call and no second hashing.
   */
  async function lookup(hash: string): Promise<TokenRecord | undefined> {
    const t = now();
    const cached = cache.get(hash);
    if (cached !== undefined && t - cached.at < cacheMs) return cached.record;
    const record = await store.getTokenByHash(hash);
    if (record === undefined || !tokensEqual(record.tokenHash, hash)) {
      cache.delete(hash);
      return undefined;
    }
    if (cache.size > 10_000) cache.clear();
    cache.set(hash, { record, at: t });
    return record;
  }

  return {
    async authorize(req, roles) {
      const ip = ipOf(req);
      checkLimit(ip);
      const header = req.headers.authorization;
      if (header === undefined || header === '') {
        fail(
          ip,
          'Missing token: send `Authorization: Bearer <token>` (create one with `keypool tokens create`).',
        );
      }
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (match === null) fail(ip, 'Malformed Authorization header: use `Authorization: Bearer <token>`.');
      const hash = hashToken(match[1] as string);
      const record = await lookup(hash);
      if (record === undefined || record.revokedAt !== undefined) {
        fail(
          ip,
          'Unknown or revoked token: check it, or ask an admin for a new one (`keypool tokens create`).',
        );
      }
      touch(record);
      if (!roles.includes(record.role)) {
        throw new ApiError(
          403,
          'KEYPOOL_FORBIDDEN',
          `Token "${record.name}" has role ${record.role}; this needs ${roles.join(' or ')}.`,
        );
      }
      return callerOf(record);
    },
    forget() {
      cache.clear();
    },
    async flush() {
      await Promise.all([...writing]);
    },
  };
}
