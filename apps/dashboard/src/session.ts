// Where the sign-in token lives: sessionStorage (gone when the tab closes), never the URL.
import type { Api } from './api.js';
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
 * The token's role from `GET /v1/me`, which answers any valid token (a bad one gets 401). A role
 * this page does not know falls back to viewer, the role that can do least.
 */
export async function detectRole(api: Api): Promise<Role> {
  const me = await api.get<{ role?: string }>('/v1/me');
  const role = me?.role as Role | undefined;
  return role !== undefined && ROLES.includes(role) ? role : 'viewer';
}

export function canOperate(role: Role): boolean {
  return role === 'admin' || role === 'operator';
}

export function canAdminister(role: Role): boolean {
  return role === 'admin';
}
