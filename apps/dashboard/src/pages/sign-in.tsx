import { type FormEvent, useState } from 'react';
import { ApiError, createApi } from '../api.js';
import { detectRole, type Session } from '../session.js';

export function SignIn({
  onSignedIn,
  notice,
}: {
  onSignedIn(session: Session): void;
  notice?: string | undefined;
}) {
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const token = String(new FormData(form).get('token') ?? '').trim();
    if (token === '') {
      setError('Paste an API token (admin, operator or viewer).');
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      const role = await detectRole(createApi(token));
      if (role === 'service') {
        setError(
          'Service tokens lease keys; they cannot read the dashboard. Use an admin, operator or viewer token.',
        );
        return;
      }
      form.reset();
      onSignedIn({ token, role });
    } catch (caught) {
      if (caught instanceof ApiError && caught.status === 401) {
        setError(
          'That token was not accepted. Check it, or ask an admin for a new one (`keypool tokens create`).',
        );
      } else if (caught instanceof ApiError && caught.status === 403) {
        setError('That token may not read pool health. Use an admin, operator or viewer token.');
      } else if (caught instanceof ApiError && caught.status === 429) {
        setError(caught.message);
      } else {
        setError('The admin API did not answer. Is `keypool serve` running?');
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <main id="main" className="sign-in">
      <h1>keypool</h1>
      <p>Sign in with an API token to see the pool's health.</p>
      {notice !== undefined && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      <form onSubmit={submit} noValidate>
        <label htmlFor="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          spellCheck={false}
          aria-describedby={error !== undefined ? 'token-error' : 'token-help'}
          aria-invalid={error !== undefined}
        />
        <p id="token-help" className="muted small">
          Kept for this browser tab only (session storage); never put in a URL.
        </p>
        {error !== undefined && (
          <p id="token-error" className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
