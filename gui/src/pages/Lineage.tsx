// Lineage: the station-level graph (producers → stations → consumer groups, with
// rates), laid out by dagre, and a message's journey by message id or trace id.
// Written against the API of the station-semantics work (issue 6):
//   GET /v1/lineage/graph → {nodes:[{id, kind, label?, protocol?}], edges:[{from|source, to|target, rate?}]}
//   GET /v1/lineage/{message-id or trace-id} → {hops:[…]} (or an array of hops)
// Until the broker serves them, the page says so.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get } from '../api';
import { ErrorNote, Loading, NotProvided, isMissing } from '../components/Status';
import { rate, time } from '../format';
import { useLoad, useTitle } from '../hooks';
import { Link, setQuery, stationHref, useLocation } from '../router';

interface GraphNode {
  id: string;
  kind?: string;
  label?: string;
  name?: string;
  protocol?: string;
}
interface GraphEdge {
  from?: string;
  to?: string;
  source?: string;
  target?: string;
  rate?: number;
  rate_per_sec?: number;
  msgs_per_sec?: number;
}
interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
}
interface Placed {
  nodes: { node: GraphNode; x: number; y: number; w: number; h: number }[];
  edges: { edge: GraphEdge; points: { x: number; y: number }[]; mid: { x: number; y: number } }[];
  width: number;
  height: number;
}

const NODE_W = 170;
const NODE_H = 44;
const edgeEnds = (e: GraphEdge) => [e.from ?? e.source ?? '', e.to ?? e.target ?? ''];
const edgeRate = (e: GraphEdge) => e.rate ?? e.rate_per_sec ?? e.msgs_per_sec;

async function layout(g: Graph): Promise<Placed> {
  // dagre is loaded with this page only.
  const { default: dagre } = await import('@dagrejs/dagre');
  const d = new dagre.graphlib.Graph({ multigraph: true });
  d.setGraph({ rankdir: 'LR', nodesep: 30, ranksep: 90, marginx: 20, marginy: 20 });
  d.setDefaultEdgeLabel(() => ({}));
  for (const n of g.nodes) d.setNode(n.id, { width: NODE_W, height: NODE_H });
  g.edges.forEach((e, i) => {
    const [a, b] = edgeEnds(e);
    if (d.hasNode(a) && d.hasNode(b)) d.setEdge(a, b, { i }, `e${i}`);
  });
  dagre.layout(d);
  const nodes = g.nodes.map((node) => {
    const p = d.node(node.id);
    return { node, x: p.x - NODE_W / 2, y: p.y - NODE_H / 2, w: NODE_W, h: NODE_H };
  });
  const edges = d.edges().map((ref) => {
    const e = d.edge(ref) as { i: number; points: { x: number; y: number }[] };
    const pts = e.points;
    return { edge: g.edges[e.i], points: pts, mid: pts[Math.floor(pts.length / 2)] };
  });
  const info = d.graph();
  return { nodes, edges, width: info.width ?? 400, height: info.height ?? 200 };
}

export function Lineage() {
  useTitle('Lineage');
  const { query } = useLocation();
  const id = query.get('id') ?? '';
  const graph = useLoad(() => get<Graph>('/v1/lineage/graph'), [], 5000);
  const [placed, setPlaced] = useState<Placed>();
  const [layoutError, setLayoutError] = useState<string>();
  useEffect(() => {
    if (!graph.data) return;
    layout({ nodes: graph.data.nodes ?? [], edges: graph.data.edges ?? [] }).then(setPlaced, (e) =>
      setLayoutError(String(e)),
    );
  }, [graph.data]);
  const [input, setInput] = useState(id);

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
        {layoutError && <p class="error">{layoutError}</p>}
        {!placed ? (
          <Loading what="Laying out the graph" />
        ) : placed.nodes.length === 0 ? (
          <p class="muted">No traffic recorded yet.</p>
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
      >
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="currentColor" />
          </marker>
        </defs>
        {placed.edges.map((e, i) => {
          const r = edgeRate(e.edge);
          const [a, b] = edgeEnds(e.edge);
          return (
            <g key={i} class="edge" data-from={a} data-to={b}>
              <polyline points={e.points.map((p) => `${p.x},${p.y}`).join(' ')} fill="none" stroke="currentColor" marker-end="url(#arrow)" />
              {r !== undefined && (
                <text x={e.mid.x} y={e.mid.y - 6} text-anchor="middle" class="edge-label">
                  {rate(r)}/s
                </text>
              )}
            </g>
          );
        })}
        {placed.nodes.map(({ node, x, y, w, h }) => {
          const label = node.label ?? node.name ?? node.id;
          const body = (
            <g class={`node ${node.kind ?? ''}`} data-id={node.id}>
              <rect x={x} y={y} width={w} height={h} rx="8" />
              <text x={x + w / 2} y={y + 18} text-anchor="middle" class="node-label">
                {label.length > 22 ? `${label.slice(0, 21)}…` : label}
              </text>
              <text x={x + w / 2} y={y + 34} text-anchor="middle" class="node-kind">
                {[node.kind, node.protocol].filter(Boolean).join(' · ')}
              </text>
              <title>{`${node.kind ?? 'node'} ${label}`}</title>
            </g>
          );
          return node.kind === 'station' ? (
            <a key={node.id} href={stationHref(label)}>
              {body}
            </a>
          ) : (
            <g key={node.id}>{body}</g>
          );
        })}
      </svg>
    </div>
  );
}

function Journey({ id }: { id: string }) {
  const { data, error } = useLoad(
    () =>
      get<{ hops?: Record<string, unknown>[] } | Record<string, unknown>[]>(`/v1/lineage/${encodeURIComponent(id)}`).then((r) =>
        Array.isArray(r) ? r : (r.hops ?? []),
      ),
    [id],
  );
  if (isMissing(error)) return <NotProvided feature="message journeys" route={`GET /v1/lineage/${id}`} />;
  if (error) return <ErrorNote error={error as ApiError} what="Journey" />;
  if (!data) return <Loading />;
  if (data.length === 0) return <p class="muted">No hops recorded for {id}.</p>;
  return (
    <ol class="journey">
      {data.map((hop, i) => {
        const station = typeof hop.station === 'string' ? hop.station : undefined;
        const when = typeof hop.time === 'string' ? hop.time : typeof hop.timestamp === 'string' ? hop.timestamp : undefined;
        return (
          <li key={i}>
            <strong>{String(hop.kind ?? hop.type ?? 'hop')}</strong>
            {station && (
              <>
                {' '}
                at <Link href={stationHref(station)}>{station}</Link>
              </>
            )}
            {when && <span class="muted"> · {time(when)}</span>}
            <dl class="facts small">
              {Object.entries(hop)
                .filter(([k]) => !['kind', 'type', 'station', 'time', 'timestamp'].includes(k))
                .map(([k, v]) => (
                  <>
                    <dt>{k}</dt>
                    <dd>
                      <code>{typeof v === 'string' ? v : JSON.stringify(v)}</code>
                    </dd>
                  </>
                ))}
            </dl>
          </li>
        );
      })}
    </ol>
  );
}
