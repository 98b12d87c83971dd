// Shared states: loading, errors, and "this broker does not provide X yet".
import { ApiError } from '../api';

export function ErrorNote({ error, what }: { error: ApiError; what?: string }) {
  return (
    <p class="error" role="alert">
      {what ? `${what}: ` : ''}
      {error.message}
      {error.code && <code class="code">{error.code}</code>}
    </p>
  );
}

export function Loading({ what = 'Loading' }: { what?: string }) {
  return (
    <p class="muted" aria-live="polite">
      {what}…
    </p>
  );
}

/** The state shown when the broker answers 404 for a route it does not have yet. */
export function NotProvided({ feature, route }: { feature: string; route: string }) {
  return (
    <section class="notice" role="status" data-testid="not-provided">
      <h2>This broker does not provide {feature} yet</h2>
      <p>
        The console asked for <code>{route}</code> and the broker answered <em>404 route not found</em>. This page
        will work, unchanged, once the broker serves that API; nothing here is made up in the meantime.
      </p>
    </section>
  );
}

export function isMissing(e: ApiError | undefined): boolean {
  return !!e && e.missingRoute;
}
