// The cluster as the node serving the console sees it: every node with its
// state, meta group id and role, the stations it holds, address and client URLs,
// refreshed every 2 s. A node running alone says so.
import { api } from '../api';
import { ErrorNote, Loading } from '../components/Status';
import { ago, num, time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { Link, stationHref } from '../router';

const EVERY_MS = 2000;

export function Cluster() {
  useTitle('Cluster');
  const { data, error } = useLoad(() => api.cluster(), [], EVERY_MS);
  const { data: stations } = useLoad(() => api.stations(), [], EVERY_MS);
  // Station names by the node that holds them (with its groups' count).
  const held = new Map<string, string[]>();
  for (const s of stations ?? []) {
    if (!s.node) continue;
    const groups = s.state.groups;
    const label = groups > 0 ? `${s.name} (${groups} group${groups === 1 ? '' : 's'})` : s.name;
    held.set(s.node, [...(held.get(s.node) ?? []), label]);
  }
  const online = (data?.nodes ?? []).filter((n) => n.online).length;
  return (
    <section>
      <div class="row">
        <h1 tabIndex={-1}>Cluster</h1>
        <p class="muted">Refreshed every {EVERY_MS / 1000} s</p>
      </div>
      {error && <ErrorNote error={error} what="Could not read the cluster" />}
      {!data ? (
        <Loading />
      ) : (
        <>
          <p data-testid="cluster-summary">
            {data.name === null ? (
              <>This node runs alone: start nodes with <code>--cluster</code> and <code>--routes</code> to form a cluster.</>
            ) : (
              <>
                Cluster <strong>{data.name}</strong>: {online} of {data.nodes.length} nodes online. Meta leader:{' '}
                <strong data-testid="cluster-leader">{data.meta_leader ?? 'none (election, no quorum, or forming)'}</strong>. This node
                is {data.meta_role === 'joining' ? 'joining the meta group' : `a ${data.meta_role}`}, at log index{' '}
                {num(data.meta_applied)}.
              </>
            )}
          </p>
          {data.under_replicated.length > 0 && (
            <p class="error" role="alert" data-testid="cluster-under-replicated">
              Under-replicated: fewer replicas online and current than configured for{' '}
              {data.under_replicated.map((n, i) => (
                <span key={n}>
                  {i > 0 && ', '}
                  <Link href={stationHref(n)}>{n}</Link>
                </span>
              ))}
              .
            </p>
          )}
          {data.dropped_forwards > 0 && (
            <p class="error" role="alert" data-testid="cluster-dropped">
              {num(data.dropped_forwards)} messages could not be forwarded to a peer since start.
            </p>
          )}
          <div class="table-wrap">
            <table data-testid="cluster-table">
              <thead>
                <tr>
                  <th scope="col">Node</th>
                  <th scope="col">State</th>
                  <th scope="col">ID</th>
                  <th scope="col">Role</th>
                  <th scope="col" class="num" title="Meta log entries behind the leader, as the leader sees them">
                    Lag
                  </th>
                  <th scope="col" title="Stations whose messages and groups this node holds">
                    Stations held
                  </th>
                  <th scope="col">Cluster address</th>
                  <th scope="col">Client URLs</th>
                  <th scope="col">Last seen</th>
                </tr>
              </thead>
              <tbody>
                {data.nodes.map((n) => (
                  <tr key={n.name} data-node={n.name}>
                    <td>
                      {n.name}
                      {n.this && <span class="muted"> (this node)</span>}
                    </td>
                    <td>
                      <span class={`badge ${n.online ? '' : 'warn'}`}>{n.online ? 'online' : 'offline'}</span>
                    </td>
                    <td>{n.id ?? '—'}</td>
                    <td>{n.id === null ? '—' : data.meta_leader === n.name ? 'leader' : n.voter ? 'voter' : 'learner'}</td>
                    <td class="num" data-testid="lag">{n.lag ?? '—'}</td>
                    <td data-testid="held">{(held.get(n.name) ?? []).join(', ') || '—'}</td>
                    <td>
                      <code>{n.addr || '—'}</code>
                    </td>
                    <td>{n.client_urls.join(', ') || '—'}</td>
                    <td title={n.last_seen ? time(n.last_seen) : ''}>{n.this ? 'now' : n.last_seen ? ago(n.last_seen) : 'not since start'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
