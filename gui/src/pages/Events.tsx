// Notifications and system log: recent events the broker recorded (clients coming
// and going, operator disconnects, slow consumers, schema violations, dead
// letters), newest first, refreshed every 2 s.
import { useMemo } from 'preact/hooks';
import { api } from '../api';
import { ErrorNote, Loading } from '../components/Status';
import { ago, time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { Link, setQuery, stationHref, useLocation } from '../router';

const EVERY_MS = 2000;

/** Kinds that need an operator's attention, shown as warnings. */
const WARN = new Set(['schema_violation', 'slow_consumer', 'dead_letter', 'client_kicked']);

const KINDS: [string, string][] = [
  ['', 'all'],
  ['warnings', 'warnings only'],
  ['schema_violation', 'schema violations'],
  ['dead_letter', 'dead letters'],
  ['slow_consumer', 'slow consumers'],
  ['client_kicked', 'operator disconnects'],
  ['client_connected', 'connects'],
  ['client_disconnected', 'disconnects'],
];

export function Events() {
  useTitle('Events');
  const { query } = useLocation();
  const kind = query.get('kind') ?? '';
  const { data, error } = useLoad(() => api.events(500), [], EVERY_MS);
  const rows = useMemo(
    () => (data ?? []).filter((e) => !kind || (kind === 'warnings' ? WARN.has(e.kind) : e.kind === kind)),
    [data, kind],
  );
  return (
    <section>
      <div class="row">
        <h1 tabIndex={-1}>Events</h1>
        <p class="muted">Newest first · refreshed every {EVERY_MS / 1000} s</p>
      </div>
      <div class="filters">
        <label>
          Kind
          <select value={kind} onChange={(e) => setQuery({ kind: e.currentTarget.value || null })}>
            {KINDS.map(([k, label]) => (
              <option key={k} value={k}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </div>
      {error && <ErrorNote error={error} what="Could not read the system log" />}
      {!data ? (
        <Loading />
      ) : rows.length === 0 ? (
        <p class="muted" data-testid="no-events">
          No events yet.
        </p>
      ) : (
        <div class="table-wrap">
          <table data-testid="events-table">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Kind</th>
                <th scope="col">Client</th>
                <th scope="col">Station</th>
                <th scope="col">What happened</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((e) => (
                <tr key={e.id} data-kind={e.kind}>
                  <td title={time(e.time)}>{ago(e.time)}</td>
                  <td>
                    <span class={`badge ${WARN.has(e.kind) ? 'warn' : ''}`}>{e.kind.replace(/_/g, ' ')}</span>
                  </td>
                  <td>
                    {e.client_id === null ? (
                      <span class="muted">—</span>
                    ) : (
                      <>
                        {e.protocol && <span class={`badge ${e.protocol}`}>{e.protocol}</span>}{' '}
                        {e.client_name ?? <span class="muted">client {e.client_id}</span>}
                      </>
                    )}
                  </td>
                  <td>{e.station ? <Link href={stationHref(e.station)}>{e.station}</Link> : <span class="muted">—</span>}</td>
                  <td>{e.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <p class="muted small">
        The broker keeps its last 1000 events in memory (<code>GET /v1/events</code>); a restart starts an empty log.
      </p>
    </section>
  );
}
