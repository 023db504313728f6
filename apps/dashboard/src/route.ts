// Hash routes (#/keys/abc): the admin API serves one static index.html, so no server-side
// fallback is needed, and the token is never part of any URL.
import { useSyncExternalStore } from 'react';

export type Route =
  | { page: 'overview' }
  | { page: 'keys' }
  | { page: 'key'; id: string }
  | { page: 'usage' }
  | { page: 'audit' }
  | { page: 'admin' };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [first, second] = parts;
  if (first === 'keys' && second !== undefined) return { page: 'key', id: second };
  if (first === 'keys' || first === 'usage' || first === 'audit' || first === 'admin') return { page: first };
  return { page: 'overview' };
}

export function href(route: Route): string {
  if (route.page === 'key') return `#/keys/${encodeURIComponent(route.id)}`;
  return route.page === 'overview' ? '#/' : `#/${route.page}`;
}

function subscribe(onChange: () => void) {
  window.addEventListener('hashchange', onChange);
  return () => window.removeEventListener('hashchange', onChange);
}

export function useRoute(): Route {
  const hash = useSyncExternalStore(subscribe, () => window.location.hash);
  return parseRoute(hash);
}
