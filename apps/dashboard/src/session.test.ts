import { describe, expect, it } from 'vitest';
import { type Api, ApiError } from './api.js';
import {
  canAdminister,
  canOperate,
  clearToken,
  detectRole,
  loadToken,
  roleFromMessage,
  saveToken,
} from './session.js';

function apiAnswering(tokens: 'ok' | ApiError): Api {
  return {
    async get(path) {
      if (path !== '/v1/tokens') throw new Error(`unexpected ${path}`);
      if (tokens instanceof ApiError) throw tokens;
      return {} as never;
    },
    post: async () => ({}) as never,
  };
}

describe('session', () => {
  it('keeps the token in session storage only', () => {
    saveToken('kp_secret');
    expect(sessionStorage.getItem('keypool.dashboard.token')).toBe('kp_secret');
    expect(loadToken()).toBe('kp_secret');
    expect(localStorage.length).toBe(0);
    clearToken();
    expect(loadToken()).toBeUndefined();
  });

  it('learns the role from side-effect-free answers', async () => {
    expect(await detectRole(apiAnswering('ok'))).toBe('admin');
    const forbidden = (role: string) =>
      new ApiError(403, 'KEYPOOL_FORBIDDEN', `Token "t" has role ${role}; this needs admin.`);
    expect(await detectRole(apiAnswering(forbidden('operator')))).toBe('operator');
    expect(await detectRole(apiAnswering(forbidden('viewer')))).toBe('viewer');
    expect(await detectRole(apiAnswering(new ApiError(403, 'KEYPOOL_FORBIDDEN', 'nope')))).toBe('viewer');
  });

  it('rejects a bad token with the API error', async () => {
    const unauthorized = new ApiError(401, 'KEYPOOL_UNAUTHORIZED', 'Unknown or revoked token');
    await expect(detectRole(apiAnswering(unauthorized))).rejects.toMatchObject({ status: 401 });
  });

  it('maps roles to what they may do', () => {
    expect(roleFromMessage('Token "x" has role operator; this needs admin.')).toBe('operator');
    expect(roleFromMessage('Token "x" has role wizard')).toBeUndefined();
    expect([canOperate('admin'), canOperate('operator'), canOperate('viewer')]).toEqual([true, true, false]);
    expect([canAdminister('admin'), canAdminister('operator')]).toEqual([true, false]);
  });
});
