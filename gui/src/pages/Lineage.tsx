// Lineage (docs/lineage.md): the station-level graph (producers → stations →
// consumer groups, with rates on the edges), laid out in layers by kind with few
// crossings (src/lineageLayout.ts), and a message's journey by message id or trace id.
//   GET /v1/lineage/graph → {nodes:[{id, kind, name}], edges:[{from, to, messages, rate}]}
//   GET /v1/lineage/{Junction-Msg-Id or trace id} → {trace_id, messages:[{msg_id, protocol,
//       conn_id, client, subject, received, station, seq, deliveries:[{group, time, delivery_count}]}]}
import { useEffect, useMemo, useState } from 'preact/hooks';
import { ApiError, get, type LineageEdge as GraphEdge, type LineageGraph as Graph, type LineageNode as GraphNode, type LineageTrace } from '../api';
import { ErrorNote, Loading, NotProvided, isMissing } from '../components/Status';
import { num, rate, time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { layoutLineage, type Placed } from '../lineageLayout';
import { Link, setQuery, stationHref, useLocation } from '../router';

const edgeEnds = (e: GraphEdge) => [e.from, e.to];
/** Rates of a few messages a minute stay readable: 0.017/s, not 0.0/s. */
const smallRate = (n: number) => (n === 0 ? '0' : n < 0.1 ? n.toFixed(3) : rate(n));
const edgeLabel = (e: GraphEdge) => `${smallRate(e.rate)}/s · ${num(e.messages)}`;

/** What a node shows: its name, and a second line (kind, protocol or station). */
function nodeText(n: GraphNode): { label: string; sub: string; href?: string } {
  const [, ...rest] = n.id.split(':');
  const what = rest.join(':');
  if (n.kind === 'producer') {
    const [protocol, ...client] = what.split(':');
    return { label: client.join(':') || n.name, sub: `producer · ${protocol}` };
  }
  if (n.kind === 'station') return { label: n.name, sub: 'station', href: stationHref(n.name) };
  if (n.kind === 'group') {
    const station = what.slice(0, what.lastIndexOf('/'));
    return { label: n.name, sub: `group of ${station}`, href: station ? stationHref(station) : undefined };
  }
  return { label: n.name || n.id, sub: n.kind };
}

export function Lineage() {
  useTitle('Lineage');
  const { query } = useLocation();
  const id = query.get('id') ?? '';
  const graph = useLoad(() => get<Graph>('/v1/lineage/graph'), [], 3000);
  const placed = useMemo(
    () => (graph.data ? layoutLineage(graph.data.nodes ?? [], graph.data.edges ?? [], edgeLabel) : undefined),
    [graph.data],
  );
  const [input, setInput] = useState(id);
  useEffect(() => setInput(id), [id]);

  if (isMissing(graph.error)) {
    return (
      <section>
        <h1 tabIndex={-1}>Lineage</h1>
        <NotProvided feature="lineage" route="GET /v1/lineage/graph" />
      </section>
    );
  }
  return (
    <section>
      <h1 tabIndex={-1}>Lineage</h1>
      <section class="panel" aria-labelledby="graph-title">
        <h2 id="graph-title">Producers → stations → consumer groups</h2>
        {graph.error && <ErrorNote error={graph.error} what="Could not read the lineage graph" />}
        {!placed ? (
          <Loading what="Reading the graph" />
        ) : placed.nodes.length === 0 ? (
          <p class="muted" data-testid="no-lineage">
            No traffic recorded yet: stations appear once they store a message, groups once they are delivered one.
          </p>
        ) : (
          <GraphView placed={placed} />
        )}
      </section>
      <section class="panel" aria-labelledby="journey-title">
        <h2 id="journey-title">A message's journey</h2>
        <form
          class="filters"
          onSubmit={(e) => {
            e.preventDefault();
            setQuery({ id: input.trim() || null }, false);
          }}
        >
          <label>
            Message id or trace id
            <input value={input} onInput={(e) => setInput(e.currentTarget.value)} placeholder="Junction-Msg-Id or traceparent trace id" />
          </label>
          <button type="submit">Show journey</button>
        </form>
        {id && <Journey id={id} />}
      </section>
    </section>
  );
}

function GraphView({ placed }: { placed: Placed }) {
  return (
    <div class="graph-wrap">
      <svg
        viewBox={`0 0 ${placed.width} ${placed.height}`}
        width={placed.width}
        height={placed.height}
        role="img"
        aria-label="Lineage graph"
        data-testid="lineage-graph"
        data-crossings={placed.crossings}
      >
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="currentColor" />
          </marker>
        </defs>
        {placed.nodes.map(({ node, x, y, w, h }) => {
          const { label, sub, href } = nodeText(node);
          const top = y + h / 2 - 22;
          const body = (
            <g class={`node ${node.kind}`} data-id={node.id}>
              <rect x={x} y={y} width={w} height={h} rx="8" />
              <text x={x + w / 2} y={top + 18} text-anchor="middle" class="node-label">
                {label.length > 22 ? `${label.slice(0, 21)}…` : label}
              </text>
              <text x={x + w / 2} y={top + 34} text-anchor="middle" class="node-kind">
                {sub.length > 26 ? `${sub.slice(0, 25)}…` : sub}
              </text>
              <title>{`${sub}: ${label}`}</title>
            </g>
          );
          return href ? (
            <a key={node.id} href={href}>
              {body}
            </a>
          ) : (
            <g key={node.id}>{body}</g>
          );
        })}
        {/* Edges after the nodes, each with its label on a background: the layout keeps
            labels off every line and node. */}
        {placed.edges.map((e, i) => {
          const [a, b] = edgeEnds(e.edge);
          return (
            <g key={i} class="edge" data-from={a} data-to={b}>
              <path d={e.d} fill="none" stroke="currentColor" marker-end="url(#arrow)" />
              <g class="edge-label-box" data-from={a} data-to={b}>
                <rect x={e.label.x} y={e.label.y} width={e.label.w} height={e.label.h} rx="3" />
                <text x={e.label.x + e.label.w / 2} y={e.label.y + e.label.h - 4} text-anchor="middle" class="edge-label">
                  {e.label.text}
                </text>
              </g>
              <title>{`${a} → ${b}: ${e.edge.messages} messages since start, ${e.edge.rate.toFixed(3)}/s over the last minute`}</title>
            </g>
          );
        })}
      </svg>
    </div>
  );
}

function Journey({ id }: { id: string }) {
  const { data, error } = useLoad(() => get<LineageTrace>(`/v1/lineage/${encodeURIComponent(id)}`), [id]);
  if (isMissing(error)) return <NotProvided feature="message journeys" route={`GET /v1/lineage/${id}`} />;
  if (error?.code === 'lineage_not_found')
    return (
      <p class="muted" role="status">
        The broker does not know {id}: it remembers the paths of the last 100,000 stored messages since it started.
      </p>
    );
  if (error) return <ErrorNote error={error as ApiError} what="Journey" />;
  if (!data) return <Loading />;
  return (
    <section aria-label={`Journey of trace ${data.trace_id}`} data-testid="journey">
      <p class="muted small">
        Trace <code>{data.trace_id}</code>: {data.messages.length} message{data.messages.length === 1 ? '' : 's'}, in the
        order the broker received them.
      </p>
      <ol class="journey">
        {data.messages.map((m) => (
          <li key={m.msg_id} class={m.msg_id === id ? 'current' : undefined}>
            <div>
              <strong>{m.protocol}</strong> producer <code>{m.client ?? 'anonymous'}</code>{' '}
              <span class="muted">(connection {m.conn_id})</span> published on <code>{m.subject}</code>
              <span class="muted"> · {time(m.received)}</span>
            </div>
            <div>
              {m.station ? (
                <>
                  → stored in <Link href={stationHref(m.station)}>{m.station}</Link>
                  {m.seq !== null && (
                    <>
                      {' '}
                      as <Link href={`${stationHref(m.station)}?seq=${m.seq}`}>#{m.seq}</Link>
                    </>
                  )}
                </>
              ) : (
                <span class="muted">→ not stored by a station (refused, or a dead letter resent)</span>
              )}
            </div>
            {m.deliveries.length > 0 && (
              <ul>
                {m.deliveries.map((d, i) => (
                  <li key={i}>
                    → delivered to group <strong>{d.group}</strong>
                    {d.delivery_count > 1 ? ` (delivery ${d.delivery_count})` : ''}
                    <span class="muted"> · {time(d.time)}</span>
                  </li>
                ))}
              </ul>
            )}
            <div class="muted small">
              message id <code>{m.msg_id}</code>
            </div>
          </li>
        ))}
      </ol>
    </section>
  );
}
