import { QueryClient, QueryClientProvider, useQueryClient } from '@tanstack/react-query';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { ApiError, createApi } from './api.js';
import { ConnectionIndicator } from './components/connection-indicator.js';
import { ToastProvider } from './components/toast.js';
import { LiveProvider } from './live.js';
import { Admin } from './pages/admin.js';
import { Audit } from './pages/audit.js';
import { KeyDetail } from './pages/key-detail.js';
import { Keys } from './pages/keys.js';
import { Overview } from './pages/overview.js';
import { SignIn } from './pages/sign-in.js';
import { Usage } from './pages/usage.js';
import { queryKeys } from './queries.js';
import { href, type Route, useRoute } from './route.js';
import { canAdminister, clearToken, detectRole, loadToken, type Session, saveToken } from './session.js';
import { SessionContext, type SessionValue } from './session-context.js';
import type { PoolHealth } from './types.js';

const TITLES: Record<Route['page'], string> = {
  overview: 'Overview',
  keys: 'Keys',
  key: 'Key',
  usage: 'Usage',
  audit: 'Audit log',
  admin: 'Admin',
};

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'overview':
      return <Overview />;
    case 'keys':
      return <Keys />;
    case 'key':
      return <KeyDetail id={route.id} />;
    case 'usage':
      return <Usage />;
    case 'audit':
      return <Audit />;
    case 'admin':
      return <Admin />;
  }
}

function Shell({ session }: { session: SessionValue }) {
  const route = useRoute();
  const main = useRef<HTMLElement>(null);
  const routeKey = href(route);
  const shownRoute = useRef(routeKey);
  useEffect(() => {
    document.title = `${TITLES[route.page]} · keypool`;
    // Move focus to the new page for keyboard and screen-reader users (not on first load).
    if (shownRoute.current === routeKey) return;
    shownRoute.current = routeKey;
    main.current?.focus();
  }, [routeKey, route.page]);
  const nav: Array<{ route: Route; label: string }> = [
    { route: { page: 'overview' }, label: 'Overview' },
    { route: { page: 'keys' }, label: 'Keys' },
    { route: { page: 'usage' }, label: 'Usage' },
    { route: { page: 'audit' }, label: 'Audit' },
    ...(canAdminister(session.role) ? [{ route: { page: 'admin' } as Route, label: 'Admin' }] : []),
  ];
  const current = route.page === 'key' ? 'keys' : route.page;
  return (
    <>
      {/* A button, not a #main link: the hash holds the route. */}
      <button type="button" className="skip-link" onClick={() => main.current?.focus()}>
        Skip to content
      </button>
      <header className="topbar">
        <span className="brand">keypool</span>
        <nav aria-label="Main">
          <ul>
            {nav.map((item) => (
              <li key={item.label}>
                <a href={href(item.route)} aria-current={item.route.page === current ? 'page' : undefined}>
                  {item.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div className="topbar-end">
          <ConnectionIndicator />
          <span className="role" data-testid="role">
            {session.role}
          </span>
          <button type="button" className="link" onClick={() => session.signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        <Page route={route} />
      </main>
    </>
  );
}

function Signed({ session, signOut }: { session: Session; signOut(message?: string): void }) {
  const queryClient = useQueryClient();
  const value = useMemo<SessionValue>(
    () => ({
      ...session,
      api: createApi(session.token),
      signOut(message?: string) {
        queryClient.clear();
        signOut(message);
      },
    }),
    [session, signOut, queryClient],
  );
  return (
    <SessionContext.Provider value={value}>
      <LiveProvider>
        <Shell session={value} />
      </LiveProvider>
    </SessionContext.Provider>
  );
}

export function App({ queryClient }: { queryClient?: QueryClient }) {
  const client = useMemo(
    () =>
      queryClient ??
      new QueryClient({
        defaultOptions: {
          queries: {
            staleTime: 2000,
            refetchOnWindowFocus: true,
            // A refused token will not start working by retrying.
            retry: (count, error) =>
              !(error instanceof ApiError && [401, 403].includes(error.status)) && count < 2,
          },
        },
      }),
    [queryClient],
  );
  const [session, setSession] = useState<Session | undefined>();
  const [restoring, setRestoring] = useState(() => loadToken() !== undefined);
  const [notice, setNotice] = useState<string | undefined>();

  useEffect(() => {
    const token = loadToken();
    if (token === undefined) return;
    const api = createApi(token);
    // Health is what the first page shows: ask for it while the role is being learned.
    void client.prefetchQuery({
      queryKey: queryKeys.health,
      queryFn: () => api.get<PoolHealth>('/v1/health'),
    });
    detectRole(api)
      .then((role) => setSession({ token, role }))
      .catch((error) => {
        clearToken();
        if (error instanceof ApiError && error.status === 401)
          setNotice('Your saved token is no longer accepted. Sign in again.');
      })
      .finally(() => setRestoring(false));
  }, [client]);

  const signOut = useCallback((message?: string) => {
    clearToken();
    setSession(undefined);
    setNotice(message);
  }, []);

  return (
    <QueryClientProvider client={client}>
      <ToastProvider>
        {restoring ? (
          <main id="main">
            <p>Signing in…</p>
          </main>
        ) : session === undefined ? (
          <SignIn
            notice={notice}
            onSignedIn={(s) => {
              saveToken(s.token);
              setNotice(undefined);
              setSession(s);
            }}
          />
        ) : (
          <Signed session={session} signOut={signOut} />
        )}
      </ToastProvider>
    </QueryClientProvider>
  );
}
