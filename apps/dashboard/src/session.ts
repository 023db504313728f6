// Where the sign-in token lives: sessionStorage (gone when the tab closes), never the URL.
import { type Api, ApiError } from './api.js';
import type { Role } from './types.js';

const STORAGE_KEY = 'keypool.dashboard.token';

export interface Session {
  token: string;
  role: Role;
}

export function loadToken(
  storage: Pick<Storage, 'getItem'> | undefined = globalThis.sessionStorage,
): string | undefined {
  try {
    return storage?.getItem(STORAGE_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

export function saveToken(
  token: string,
  storage: Pick<Storage, 'setItem'> | undefined = globalThis.sessionStorage,
) {
  try {
    storage?.setItem(STORAGE_KEY, token);
  } catch {
    // Storage can be off (private mode): the session then lasts as long as the page.
  }
}

export function clearToken(storage: Pick<Storage, 'removeItem'> | undefined = globalThis.sessionStorage) {
  try {
    storage?.removeItem(STORAGE_KEY);
  } catch {
    // Nothing stored, nothing to clear.
  }
}

const ROLES: readonly Role[] = ['admin', 'operator', 'viewer', 'service'];

/**
 * The API has no "who am I" endpoint, so the role is learned from one answer with no side
 * effects: /v1/tokens is admin-only; for any other valid token its 403 names the caller's role
 * ("Token "x" has role operator; …"), and a bad token gets 401. An unreadable 403 falls back to
 * viewer, the role that can do least.
 */
export async function detectRole(api: Api): Promise<Role> {
  try {
    await api.get('/v1/tokens');
    return 'admin';
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) return roleFromMessage(error.message) ?? 'viewer';
    throw error;
  }
}

export function roleFromMessage(message: string): Role | undefined {
  const match = /has role (\w+)/.exec(message);
  const role = match?.[1] as Role | undefined;
  return role !== undefined && ROLES.includes(role) ? role : undefined;
}

export function canOperate(role: Role): boolean {
  return role === 'admin' || role === 'operator';
}

export function canAdminister(role: Role): boolean {
  return role === 'admin';
}
