import type { Role } from '@keypool/spec';

/** Who may do what (DESIGN "Admin API"): admin everything, operator acts on keys, viewer reads, service leases. */
export const READ: readonly Role[] = ['admin', 'operator', 'viewer'];
export const OPERATE: readonly Role[] = ['admin', 'operator'];
export const ADMIN: readonly Role[] = ['admin'];
export const SERVICE: readonly Role[] = ['service'];
/** Any valid token, whatever its role. */
export const ANY: readonly Role[] = ['admin', 'operator', 'viewer', 'service'];
