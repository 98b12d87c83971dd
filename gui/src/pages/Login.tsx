// Shown when the broker answers 401: a bearer token or a user and password. The
// 401's body names the kinds the broker is configured with (`auth_methods`); the form
// starts on that one (user and password when the broker has users), and offers the
// other only when the broker takes both.
import { useState } from 'preact/hooks';
import { ApiError, basic, bearer, request, serverAuthMethods, setAuth } from '../api';

type Mode = 'token' | 'basic';

function initialMode(): Mode {
  const methods = serverAuthMethods();
  return methods.includes('basic') && !methods.includes('bearer') ? 'basic' : 'token';
}

export function Login() {
  const methods = serverAuthMethods();
  const [mode, setMode] = useState<Mode>(initialMode);
  // Both when the broker did not say (an older broker).
  const offered: Mode[] =
    methods.length === 0 ? ['token', 'basic'] : (['token', 'basic'] as Mode[]).filter((m) => methods.includes(m === 'token' ? 'bearer' : 'basic'));
  const [token, setToken] = useState('');
  const [user, setUser] = useState('');
  const [pass, setPass] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const value = mode === 'token' ? bearer(token.trim()) : basic(user, pass);
    setBusy(true);
    setError(undefined);
    try {
      await request('GET', '/v1/server', { headers: { Authorization: value }, quiet401: true });
      setAuth(value);
    } catch (err) {
      const e = err as ApiError;
      setError(e.status === 401 ? 'The broker refused these credentials.' : e.message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="login">
      <h1 tabIndex={-1}>Sign in</h1>
      <p>This broker requires credentials for its API.</p>
      <form onSubmit={submit} class="form">
        {offered.length > 1 ? (
          <fieldset>
            <legend>Credentials</legend>
            <label class="inline">
              <input type="radio" name="mode" checked={mode === 'token'} onChange={() => setMode('token')} /> Bearer token
            </label>
            <label class="inline">
              <input type="radio" name="mode" checked={mode === 'basic'} onChange={() => setMode('basic')} /> User and
              password
            </label>
          </fieldset>
        ) : (
          <p class="muted" data-testid="auth-method">
            {mode === 'token' ? 'This broker takes a bearer token.' : 'This broker takes a user and password.'}
          </p>
        )}
        {mode === 'token' ? (
          <label>
            Token
            <input
              type="password"
              required
              value={token}
              autocomplete="current-password"
              onInput={(e) => setToken(e.currentTarget.value)}
              autoFocus
            />
          </label>
        ) : (
          <>
            <label>
              User
              <input
                required
                value={user}
                autocomplete="username"
                onInput={(e) => setUser(e.currentTarget.value)}
                autoFocus
              />
            </label>
            <label>
              Password
              <input
                type="password"
                required
                value={pass}
                autocomplete="current-password"
                onInput={(e) => setPass(e.currentTarget.value)}
              />
            </label>
          </>
        )}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        <p class="muted">Credentials are kept for this browser tab only (session storage).</p>
      </form>
    </section>
  );
}
