// A small history-API router: stable URLs, reload-safe (the broker serves
// index.html for every app path).
import type { AnchorHTMLAttributes, ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';

const listeners = new Set<() => void>();
const notify = () => listeners.forEach((l) => l());
window.addEventListener('popstate', notify);

export function navigate(to: string, opts: { replace?: boolean } = {}) {
  if (to === location.pathname + location.search) return;
  history[opts.replace ? 'replaceState' : 'pushState'](null, '', to);
  notify();
}

/** The current path and query, re-rendering the caller when they change. */
export function useLocation(): { path: string; query: URLSearchParams } {
  const [, tick] = useState(0);
  useEffect(() => {
    const l = () => tick((n) => n + 1);
    listeners.add(l);
    return () => {
      listeners.delete(l);
    };
  }, []);
  return { path: decodeURI(location.pathname), query: new URLSearchParams(location.search) };
}

/** Replaces some query parameters of the current URL (null removes one). */
export function setQuery(changes: Record<string, string | null>, replace = true) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) (v === null ? q.delete(k) : q.set(k, v));
  const s = q.toString();
  navigate(location.pathname + (s ? `?${s}` : ''), { replace });
}

type LinkProps = AnchorHTMLAttributes<HTMLAnchorElement> & { href: string; children?: ComponentChildren };

export function Link({ href, onClick, ...rest }: LinkProps) {
  return (
    <a
      href={href}
      {...rest}
      onClick={(e) => {
        if (onClick) (onClick as (e: MouseEvent) => void)(e);
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href);
      }}
    />
  );
}

export const stationHref = (name: string) => `/stations/${encodeURIComponent(name)}`;
