// The broker at a glance, refreshed every 2 s from /v1/server, /v1/stations,
// /v1/cluster and /metrics; rates are differences between two readings.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, DLS_PREFIX, type ClusterView, type ServerInfo, type Station } from '../api';
import { Chart, type Series } from '../components/Chart';
import { ErrorNote, Loading } from '../components/Status';
import { bytes, duration, num, rate } from '../format';
import { byLabel, metric, parseMetrics } from '../metrics';
import { Link } from '../router';
import { useTitle } from '../hooks';

const PROTOCOLS = ['nats', 'mqtt', 'http', 'websocket'];
const COLORS = ['#2563eb', '#16a34a', '#d97706', '#9333ea'];
const SERIES: Series[] = PROTOCOLS.map((p, i) => ({ label: p, color: COLORS[i] }));
const HISTORY = 90;
const EVERY_MS = 2000;

interface Reading {
  at: number;
  server: ServerInfo;
  stations: Station[];
  cluster: ClusterView;
  connections: Record<string, number>;
  protoIn: Record<string, number>;
  protoOut: Record<string, number>;
  disk?: number;
  memory?: number;
}

interface Figures {
  now: Reading;
  inRate: number;
  outRate: number;
  chartIn: number[][];
  chartOut: number[][];
}

async function read(): Promise<Reading> {
  const [server, stations, cluster, text] = await Promise.all([
    api.server(),
    api.stations(),
    api.cluster(),
    // Server-wide figures are the operators': a tenant's user gets 403 and an
    // overview of its own stations without them.
    api.metrics().catch(() => ''),
  ]);
  const samples = parseMetrics(text);
  return {
    at: Date.now(),
    server,
    stations,
    cluster,
    connections: byLabel(samples, 'junction_connections', 'protocol'),
    protoIn: byLabel(samples, 'junction_protocol_messages_in_total', 'protocol'),
    protoOut: byLabel(samples, 'junction_protocol_messages_out_total', 'protocol'),
    disk: metric(samples, 'junction_storage_disk_bytes'),
    memory: metric(samples, 'junction_resident_memory_bytes'),
  };
}

// A per-protocol counter sums the clients connected now, so it drops when one
// leaves: a negative difference counts as zero.
const perSecond = (a: number | undefined, b: number | undefined, secs: number) =>
  Math.max(0, ((b ?? 0) - (a ?? 0)) / secs);

export function Overview() {
  useTitle('Overview');
  const [figures, setFigures] = useState<Figures>();
  const [error, setError] = useState<ApiError>();
  const prev = useRef<Reading | undefined>(undefined);
  const hist = useRef<{ t: number[]; in: number[][]; out: number[][] }>({
    t: [],
    in: PROTOCOLS.map(() => []),
    out: PROTOCOLS.map(() => []),
  });

  useEffect(() => {
    let stopped = false;
    const tick = async () => {
      if (document.visibilityState !== 'visible') return;
      try {
        const now = await read();
        if (stopped) return;
        const p = prev.current;
        prev.current = now;
        let inRate = 0;
        let outRate = 0;
        if (p) {
          const secs = Math.max(0.001, (now.at - p.at) / 1000);
          inRate = perSecond(p.server.in_msgs, now.server.in_msgs, secs);
          outRate = perSecond(p.server.out_msgs, now.server.out_msgs, secs);
          const h = hist.current;
          h.t.push(now.at / 1000);
          PROTOCOLS.forEach((proto, i) => {
            h.in[i].push(perSecond(p.protoIn[proto], now.protoIn[proto], secs));
            h.out[i].push(perSecond(p.protoOut[proto], now.protoOut[proto], secs));
          });
          if (h.t.length > HISTORY) {
            h.t.shift();
            h.in.forEach((s) => s.shift());
            h.out.forEach((s) => s.shift());
          }
        }
        const h = hist.current;
        setFigures({
          now,
          inRate,
          outRate,
          chartIn: [h.t.slice(), ...h.in.map((s) => s.slice())],
          chartOut: [h.t.slice(), ...h.out.map((s) => s.slice())],
        });
        setError(undefined);
      } catch (e) {
        if (!stopped) setError(e as ApiError);
      }
    };
    tick();
    const id = setInterval(tick, EVERY_MS);
    return () => {
      stopped = true;
      clearInterval(id);
    };
  }, []);

  if (!figures) {
    return (
      <section>
        <h1 tabIndex={-1}>Overview</h1>
        {error ? <ErrorNote error={error} what="Could not read the broker" /> : <Loading />}
      </section>
    );
  }
  const { now } = figures;
  const user = now.stations.filter((s) => !s.name.startsWith('$'));
  const dls = now.stations.filter((s) => s.name.startsWith(DLS_PREFIX));
  const totalMessages = user.reduce((a, s) => a + s.state.messages, 0);
  const storedBytes = now.stations.reduce((a, s) => a + s.state.bytes, 0);
  const { server_name: name, server_id: id } = now.server;
  // A broker without a name of its own is named by its 56-character id: shorten it.
  const shownName = name && name !== id ? name : shortId(id);
  return (
    <section>
      <div class="row">
        <h1 tabIndex={-1}>Overview</h1>
        <p class="muted">
          version {now.server.version} · up {duration(now.server.uptime_ms)} · refreshed every {EVERY_MS / 1000} s
        </p>
      </div>
      <p class="server-name">
        Server <strong data-testid="server-name" title={name}>{shownName}</strong>{' '}
        <span class="muted small">
          id{' '}
          <code data-testid="server-id" title={id}>
            {shortId(id)}
          </code>
        </span>
      </p>
      {error && <ErrorNote error={error} what="Last refresh failed" />}
      <dl class="cards" data-testid="overview-cards">
        <Card
          label="Messages in"
          value={`${rate(figures.inRate)}/s`}
          note={<span data-testid="messages-in-total">{num(now.server.in_msgs)} since start</span>}
          title="Messages clients published (HTTP requests included); not the broker's own acks, API replies, advisories or $SYS figures."
        />
        <Card label="Messages out" value={`${rate(figures.outRate)}/s`} note={`${num(now.server.out_msgs)} since start`} />
        <Card
          label="Connections"
          value={num(now.server.connections)}
          note={
            now.server.total_connections === undefined
              ? 'of your tenant'
              : `${num(now.server.total_connections)} since start`
          }
          testid="connections-card"
          title="Network connections (NATS, MQTT, WebSocket, SSE); the broker's own clients are not counted."
        />
        <Card label="Stations" value={num(user.length)} note={<Link href="/stations">all stations</Link>} />
        <Card label="Stored messages" value={num(totalMessages)} note={bytes(storedBytes)} testid="total-messages" />
        <Card
          label="Dead-letter messages"
          value={dls.length ? num(dls.reduce((a, s) => a + s.state.messages, 0)) : '—'}
          note={dls.length ? `${dls.length} dead-letter stations` : 'no station keeps dead letters'}
        />
        <Card
          label="Storage on disk"
          value={bytes(now.disk)}
          testid="storage-card"
          title={DISK_EXPLAINED}
          note={
            <>
              <span data-testid="stored-bytes">{bytes(storedBytes)} of messages</span> · memory {bytes(now.memory)}
              <br />
              <span class="small">
                The store's files: the journal is preallocated (a sparse file), so this starts near its size with
                nothing stored.
              </span>
            </>
          }
        />
        {now.server.slow_consumers !== undefined && (
          <Card label="Slow consumers" value={num(now.server.slow_consumers)} note="disconnected since start" />
        )}
        {now.cluster.name !== null && (
          <Card
            label="Cluster"
            value={`${now.cluster.nodes.filter((n) => n.online).length} of ${now.cluster.nodes.length} nodes`}
            testid="cluster-card"
            title="Nodes online in this node's view of the cluster, and the meta group's leader."
            note={
              <>
                {now.cluster.name} · leader{' '}
                <span data-testid="cluster-card-leader">{now.cluster.meta_leader ?? 'none'}</span> ·{' '}
                <Link href="/cluster">nodes</Link>
              </>
            }
          />
        )}
      </dl>
      <div class="grid2">
        <Chart title="Messages in per second, by protocol" series={SERIES} data={figures.chartIn} />
        <Chart title="Messages out per second, by protocol" series={SERIES} data={figures.chartOut} />
      </div>
      <h2>Connections by protocol</h2>
      <table class="compact" data-testid="connections-by-protocol">
        <thead>
          <tr>
            <th scope="col">Protocol</th>
            <th scope="col" class="num">
              Connected
            </th>
          </tr>
        </thead>
        <tbody>
          {PROTOCOLS.map((p) => (
            <tr key={p}>
              <td>{p}</td>
              <td class="num">{num(now.connections[p] ?? 0)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="muted">
        Cluster nodes: this broker runs as a single node (clustering has not landed). See{' '}
        <Link href="/connections">connections</Link> for every client.
      </p>
    </section>
  );
}

const DISK_EXPLAINED =
  "Size of the store's files in the data directory (junction_storage_disk_bytes): the write-ahead journal, " +
  'preallocated in one large sparse file, plus the table files of every station, consumer offsets and metadata. ' +
  'It is not the size of the stored messages (shown below it and on the Stored messages card); ' +
  'the space actually used on the disk (du) is smaller until the journal fills.';

/** `NABCDEF…WXYZ` for a long server id; the whole id is in the tooltip. */
export function shortId(id: string): string {
  return id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

function Card({
  label,
  value,
  note,
  testid,
  title,
}: {
  label: string;
  value: string;
  note?: ComponentChildren;
  testid?: string;
  title?: string;
}) {
  return (
    <div class="card" data-testid={testid} title={title}>
      <dt>{label}</dt>
      <dd class="big">{value}</dd>
      {note && <dd class="muted">{note}</dd>}
    </div>
  );
}
