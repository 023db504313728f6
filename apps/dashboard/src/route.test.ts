import { describe, expect, it } from 'vitest';
import { href, parseRoute } from './route.js';

describe('routes', () => {
  it('round-trips every page through the hash', () => {
    for (const route of [
      { page: 'overview' },
      { page: 'keys' },
      { page: 'key', id: 'key_a/b c' },
      { page: 'usage' },
      { page: 'audit' },
      { page: 'admin' },
    ] as const) {
      expect(parseRoute(href(route))).toEqual(route);
    }
  });

  it('falls back to the overview for anything unknown', () => {
    expect(parseRoute('')).toEqual({ page: 'overview' });
    expect(parseRoute('#/nope')).toEqual({ page: 'overview' });
  });
});
