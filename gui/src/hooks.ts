import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads `f()` now, whenever `deps` change, and every `everyMs` (never under 1 s)
 * while the page is visible.
 */
export function useLoad<T>(f: () => Promise<T>, deps: unknown[], everyMs?: number): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError>();
  const [loading, setLoading] = useState(true);
  const fn = useRef(f);
  fn.current = f;
  const gen = useRef(0);
  const reload = useCallback(() => {
    const mine = ++gen.current;
    fn.current().then(
      (d) => {
        if (mine !== gen.current) return;
        setData(d);
        setError(undefined);
        setLoading(false);
      },
      (e) => {
        if (mine !== gen.current) return;
        setError(e instanceof ApiError ? e : new ApiError(0, 'client', String(e)));
        setLoading(false);
      },
    );
  }, []);
  useEffect(() => {
    setLoading(true);
    setData(undefined);
    setError(undefined);
    reload();
    if (!everyMs) return;
    const id = setInterval(() => {
      if (document.visibilityState === 'visible') reload();
    }, Math.max(1000, everyMs));
    return () => clearInterval(id);
  }, deps);
  return { data, error, loading, reload };
}

export function useTitle(title: string) {
  useEffect(() => {
    document.title = title ? `${title} · Junction` : 'Junction';
  }, [title]);
}
