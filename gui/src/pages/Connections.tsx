// Every connected client, of every protocol.
import { useMemo, useState } from 'preact/hooks';
import { api, type Connection } from '../api';
import { Confirm } from '../components/Confirm';
import { ErrorNote, Loading } from '../components/Status';
import { ago, bytes, num } from '../format';
import { useLoad, useTitle } from '../hooks';
import { setQuery, useLocation } from '../router';

const EVERY_MS = 2000;

/** The protocols whose clients an operator can disconnect. */
const CLOSABLE = new Set(['nats', 'mqtt']);

export function Connections() {
  useTitle('Connections');
  const { query } = useLocation();
  const proto = query.get('protocol') ?? '';
  const search = query.get('q') ?? '';
  const showInternal = query.get('internal') === '1';
  const { data, error, reload } = useLoad(() => api.connections(), [], EVERY_MS);
  const [kicking, setKicking] = useState<Connection>();
  const rows = useMemo(() => {
    const q = search.toLowerCase();
    return (data ?? []).filter(
      (c) =>
        (showInternal || !c.internal) &&
        (!proto || c.protocol === proto) &&
        (!q ||
          (c.name ?? '').toLowerCase().includes(q) ||
          c.remote.includes(q) ||
          c.subscriptions.some((s) => s.subject.toLowerCase().includes(q))),
    );
  }, [data, proto, search, showInternal]);
  const internalCount = (data ?? []).filter((c) => c.internal).length;
  // Only the operators see more than one tenant's clients: the column is shown then.
  const showTenant = new Set((data ?? []).map((c) => c.tenant ?? '$G')).size > 1;
  const protocols = Array.from(new Set((data ?? []).map((c) => c.protocol))).sort();
  return (
    <section>
      <div class="row">
        <h1 tabIndex={-1}>Connections</h1>
        <p class="muted">Refreshed every {EVERY_MS / 1000} s</p>
      </div>
      <div class="filters">
        <label>
          Protocol
          <select value={proto} onChange={(e) => setQuery({ protocol: e.currentTarget.value || null })}>
            <option value="">all</option>
            {['nats', 'mqtt', 'http', 'websocket', ...protocols]
              .filter((p, i, a) => a.indexOf(p) === i)
              .map((p) => (
                <option key={p} value={p}>
                  {p}
                </option>
              ))}
          </select>
        </label>
        <label class="search">
          Search
          <input
            type="search"
            value={search}
            placeholder="name, address or subject"
            onInput={(e) => setQuery({ q: e.currentTarget.value || null })}
          />
        </label>
        <label class="inline">
          <input
            type="checkbox"
            checked={showInternal}
            onChange={(e) => setQuery({ internal: e.currentTarget.checked ? '1' : null })}
          />{' '}
          Show the broker's internal clients ({internalCount})
        </label>
      </div>
      {error && <ErrorNote error={error} what="Could not list connections" />}
      {!data ? (
        <Loading />
      ) : rows.length === 0 ? (
        <p class="muted">No clients match.</p>
      ) : (
        <div class="table-wrap">
          <table data-testid="connections-table">
            <thead>
              <tr>
                <th scope="col" class="num">
                  Id
                </th>
                <th scope="col">Protocol</th>
                {showTenant && <th scope="col">Tenant</th>}
                <th scope="col">Name</th>
                <th scope="col">Address</th>
                <th scope="col">Client</th>
                <th scope="col">Subscriptions</th>
                <th scope="col" class="num">
                  In
                </th>
                <th scope="col" class="num">
                  Out
                </th>
                <th scope="col" class="num">
                  Pending
                </th>
                <th scope="col">Connected</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((c) => (
                <tr key={c.id} class={c.internal ? 'internal' : undefined}>
                  <td class="num">{c.id}</td>
                  <td>
                    <span class={`badge ${c.protocol}`}>{c.protocol}</span>
                    {c.internal && (
                      <>
                        {' '}
                        <span class="badge internal" title="One of the broker's own clients, not a network connection">
                          internal
                        </span>
                      </>
                    )}
                  </td>
                  {showTenant && (
                    <td>
                      <code>{c.tenant ?? '$G'}</code>
                    </td>
                  )}
                  <td>
                    {c.name ?? <span class="muted">unnamed</span>}
                    {c.user && <div class="muted small">user {c.user}</div>}
                  </td>
                  <td>{c.internal ? <span class="muted">inside the broker</span> : <code>{c.remote}</code>}</td>
                  <td class="small">{[c.lang, c.version].filter(Boolean).join(' ') || '—'}</td>
                  <td>
                    {c.subscriptions.length === 0 ? (
                      <span class="muted">none</span>
                    ) : (
                      <ul class="plain">
                        {c.subscriptions.map((s) => (
                          <li key={s.sid}>
                            <code>{s.subject}</code>
                            {s.queue && <span class="muted"> queue {s.queue}</span>}
                            <span class="muted"> · {num(s.delivered)} delivered</span>
                          </li>
                        ))}
                      </ul>
                    )}
                  </td>
                  <td class="num">
                    {num(c.in_msgs)}
                    <div class="muted small">{bytes(c.in_bytes)}</div>
                  </td>
                  <td class="num">
                    {num(c.out_msgs)}
                    <div class="muted small">{bytes(c.out_bytes)}</div>
                  </td>
                  <td class="num">{bytes(c.pending_bytes)}</td>
                  <td>{ago(c.start)}</td>
                  <td>
                    {CLOSABLE.has(c.protocol) && !c.internal && (
                      <button
                        type="button"
                        class="danger"
                        onClick={() => setKicking(c)}
                        aria-label={`Disconnect ${c.protocol} client ${c.name ?? c.id}`}
                      >
                        Disconnect
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <p class="muted small">
        The broker's own clients are hidden unless asked for, and never counted as connections: HTTP requests publish
        through one internal client per tenant (<code>junction-http</code>, which carries their traffic), and the MQTT
        front-end publishes its <code>$SYS</code> figures and wills through another (<code>junction-mqtt</code>). SSE
        streams and WebSockets are connections of their own; MQTT over the WebSocket at <code>/mqtt</code> is listed as{' '}
        <code>mqtt</code>.
        NATS and MQTT clients can be disconnected: a NATS client reads <code>-ERR 'Kicked by operator'</code>, an MQTT 5
        client DISCONNECT 0x98 (administrative action), and an MQTT will is published as after any abnormal close.
      </p>
      {kicking && (
        <Confirm
          title={`Disconnect ${kicking.protocol} client ${kicking.name ?? kicking.id}?`}
          confirmLabel="Disconnect"
          danger
          onClose={() => {
            setKicking(undefined);
            reload();
          }}
          onConfirm={async () => {
            await api.disconnect(kicking.id);
          }}
        >
          <p>
            This closes connection {kicking.id} from <code>{kicking.remote}</code>. A client that reconnects on its own
            comes back as a new connection.
          </p>
        </Confirm>
      )}
    </section>
  );
}
