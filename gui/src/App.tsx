// Layout, navigation, theme, login, and the route table.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, needsLogin, onAuthChange, currentAuth, setAuth } from './api';
import { Link, useLocation } from './router';
import { Login } from './pages/Login';
import { Overview } from './pages/Overview';
import { Stations } from './pages/Stations';
import { StationDetail } from './pages/StationDetail';
import { DeadLetter } from './pages/DeadLetter';
import { Connections } from './pages/Connections';
import { Schemas } from './pages/Schemas';
import { Lineage } from './pages/Lineage';
import { Notifications } from './pages/Notifications';
import { Cluster } from './pages/Cluster';
import { Tenants } from './pages/Tenants';
import { KeyValue } from './pages/KeyValue';

const NAV: [string, string][] = [
  ['/', 'Overview'],
  ['/stations', 'Stations'],
  ['/kv', 'Key-value'],
  ['/connections', 'Connections'],
  ['/lineage', 'Lineage'],
  ['/schemas', 'Schemas'],
  ['/notifications', 'Notifications'],
  ['/cluster', 'Cluster'],
];

/** Shown to the operators only (the system tenant's users). */
const OPERATOR_NAV: [string, string][] = [['/tenants', 'Tenants']];

/**
 * Whether the signed-in user is an operator. The console has no other way to
 * know than asking: `GET /v1/tenants` answers 200 to the operators and 403 to
 * anyone else; asked once per set of credentials.
 */
function useOperator(): boolean {
  const [operator, setOperator] = useState(false);
  const auth = currentAuth();
  const locked = needsLogin();
  useEffect(() => {
    setOperator(false);
    if (locked) return;
    let live = true;
    api.tenants(true).then(
      () => live && setOperator(true),
      () => live && setOperator(false),
    );
    return () => {
      live = false;
    };
  }, [auth, locked]);
  return operator;
}

/**
 * The alarms raised now, on every page: a badge with their count that links to
 * the Notifications page; nothing while none is raised.
 */
function AlarmBadge() {
  const [count, setCount] = useState(0);
  const auth = currentAuth();
  const locked = needsLogin();
  useEffect(() => {
    setCount(0);
    if (locked) return;
    let live = true;
    const load = () =>
      api.alarms(true).then(
        (a) => live && setCount(a.length),
        () => live && setCount(0),
      );
    load();
    const id = setInterval(() => {
      if (document.visibilityState === 'visible') load();
    }, 3000);
    return () => {
      live = false;
      clearInterval(id);
    };
  }, [auth, locked]);
  if (count === 0) return null;
  const label = `${count} active alarm${count === 1 ? '' : 's'}`;
  return (
    <Link href="/notifications" class="badge alarm-badge" data-testid="alarm-badge" aria-label={label} title={label}>
      ⚠ {count}
    </Link>
  );
}

function route(path: string, operator: boolean) {
  let m: RegExpExecArray | null;
  if (path === '/' || path === '') return <Overview />;
  if (path === '/stations' || path === '/stations/') return <Stations />;
  if ((m = /^\/stations\/([^/]+)\/dls\/?$/.exec(path))) return <DeadLetter station={m[1]} />;
  if ((m = /^\/stations\/([^/]+)\/?$/.exec(path))) return <StationDetail name={m[1]} />;
  if (path === '/kv' || path === '/kv/') return <KeyValue />;
  if (path === '/connections') return <Connections />;
  if (path === '/lineage') return <Lineage />;
  if (path === '/schemas') return <Schemas />;
  // `/events` was the page's address before it held alarms and webhooks.
  if (path === '/notifications' || path === '/events') return <Notifications operator={operator} />;
  if (path === '/cluster') return <Cluster />;
  if (path === '/tenants') return <Tenants />;
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        There is no page at <code>{path}</code>. <Link href="/">Go to the overview</Link>.
      </p>
    </section>
  );
}

type Theme = 'light' | 'dark';

function initialTheme(): Theme {
  const set = document.documentElement.dataset.theme;
  if (set === 'light' || set === 'dark') return set;
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

export function App() {
  const { path } = useLocation();
  const [, tick] = useState(0);
  const [theme, setTheme] = useState<Theme>(initialTheme);
  useEffect(() => onAuthChange(() => tick((n) => n + 1)), []);
  const operator = useOperator();
  const firstPath = useRef(true);
  useEffect(() => {
    // Move focus to the page heading on navigation (not on the first load, where
    // the skip link comes first), for keyboard and screen-reader users.
    if (firstPath.current) {
      firstPath.current = false;
      return;
    }
    document.querySelector<HTMLElement>('main h1')?.focus({ preventScroll: true });
  }, [path]);

  const toggleTheme = () => {
    const next: Theme = theme === 'dark' ? 'light' : 'dark';
    document.documentElement.dataset.theme = next;
    try {
      localStorage.setItem('junction.theme', next);
    } catch {
      /* private mode: the choice lasts for this page */
    }
    setTheme(next);
  };

  const first = path === '/' ? '/' : `/${path.split('/')[1]}`;
  const section = first === '/events' ? '/notifications' : first;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/" class="brand">
          Junction
        </Link>
        <nav aria-label="Main">
          <ul>
            {(operator ? [...NAV, ...OPERATOR_NAV] : NAV).map(([href, label]) => (
              <li key={href}>
                <Link href={href} aria-current={section === href ? 'page' : undefined}>
                  {label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div class="tools">
          <AlarmBadge />
          {currentAuth() && (
            <button type="button" onClick={() => setAuth(null)}>
              Sign out
            </button>
          )}
          <button type="button" onClick={toggleTheme} aria-label={`Switch to ${theme === 'dark' ? 'light' : 'dark'} theme`}>
            {theme === 'dark' ? '☀ Light' : '☾ Dark'}
          </button>
        </div>
      </header>
      <main id="main">{needsLogin() ? <Login /> : route(path, operator)}</main>
    </>
  );
}
