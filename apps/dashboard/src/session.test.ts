import { describe, expect, it } from 'vitest';
import { type Api, ApiError } from './api.js';
import { canAdminister, canOperate, clearToken, detectRole, loadToken, saveToken } from './session.js';

function apiAnswering(me: Record<string, unknown> | ApiError): Api {
  return {
    async get(path) {
      if (path !== '/v1/me') throw new Error(`unexpected ${path}`);
      if (me instanceof ApiError) throw me;
      return me as never;
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

  it('learns the role from GET /v1/me', async () => {
    for (const role of ['admin', 'operator', 'viewer', 'service']) {
      expect(await detectRole(apiAnswering({ tokenId: 'tok_1', name: 't', role }))).toBe(role);
    }
    expect(await detectRole(apiAnswering({ tokenId: 'tok_1', name: 't', role: 'wizard' }))).toBe('viewer');
  });

  it('rejects a bad token with the API error', async () => {
    const unauthorized = new ApiError(401, 'KEYPOOL_UNAUTHORIZED', 'Unknown or revoked token');
    await expect(detectRole(apiAnswering(unauthorized))).rejects.toMatchObject({ status: 401 });
  });

  it('maps roles to what they may do', () => {
    expect([canOperate('admin'), canOperate('operator'), canOperate('viewer')]).toEqual([true, true, false]);
    expect([canAdminister('admin'), canAdminister('operator')]).toEqual([true, false]);
  });
});
