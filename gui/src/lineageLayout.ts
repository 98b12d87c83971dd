// The lineage graph's layout: layers by kind (producers → stations → groups → any
// other kind), each layer ordered to reduce edge crossings (barycentre sweeps, the
// best order found kept), edges as curves between ports spread along a node's side
// (sorted by the far end, so edges at one node do not cross each other), and each
// edge's label beside its line, on a background, where no other label or line is.
import type { LineageEdge, LineageNode } from './api';

export const NODE_W = 170;
const NODE_H = 44;
const PORT_GAP = 22;
const COL_GAP = 260;
const ROW_GAP = 28;
const MARGIN = 24;
const LABEL_H = 14;
const CHAR_W = 6.4;

export interface Point {
  x: number;
  y: number;
}

export interface PlacedNode {
  node: LineageNode;
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface PlacedEdge {
  edge: LineageEdge;
  /** Start (right side of `from`) and end (left side of `to`). */
  from: Point;
  to: Point;
  /** SVG path data: a cubic curve from `from` to `to`. */
  d: string;
  label: { text: string; x: number; y: number; w: number; h: number };
}

export interface Placed {
  nodes: PlacedNode[];
  edges: PlacedEdge[];
  width: number;
  height: number;
  /** Edge pairs between the same two layers that cross (0 when the order avoids it). */
  crossings: number;
}

const LAYER_OF: Record<string, number> = { producer: 0, station: 1, group: 2 };
const layerOf = (n: LineageNode) => LAYER_OF[n.kind] ?? 3;

/** Crossings between two adjacent layers, given each node's position in its layer. */
function crossingsOf(edges: [string, string][], pos: Map<string, number>): number {
  let n = 0;
  for (let i = 0; i < edges.length; i++) {
    for (let j = i + 1; j < edges.length; j++) {
      const [a, b] = edges[i];
      const [c, d] = edges[j];
      const s = (pos.get(a)! - pos.get(c)!) * (pos.get(b)! - pos.get(d)!);
      if (s < 0) n++;
    }
  }
  return n;
}

/** Orders every layer to reduce crossings; returns the layers and the crossings left. */
function orderLayers(nodes: LineageNode[], edges: [string, string][]): { layers: string[][]; crossings: number } {
  const layerIdx = new Map(nodes.map((n) => [n.id, layerOf(n)]));
  const count = Math.max(0, ...nodes.map(layerOf)) + 1;
  const layers: string[][] = Array.from({ length: count }, () => []);
  for (const n of [...nodes].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id)))
    layers[layerOf(n)].push(n.id);
  // Edges between adjacent layers only take part in the ordering (others do not occur
  // in the broker's graph: producer → station → group).
  const between = (l: number) =>
    edges.filter(([a, b]) => layerIdx.get(a) === l && layerIdx.get(b) === l + 1);
  const total = (ls: string[][]) => {
    const pos = new Map<string, number>();
    ls.forEach((layer) => layer.forEach((id, i) => pos.set(id, i)));
    let n = 0;
    for (let l = 0; l + 1 < ls.length; l++) n += crossingsOf(between(l), pos);
    return n;
  };
  const sortBy = (layer: string[], fixed: string[], neighbours: (id: string) => string[]) => {
    const pos = new Map(fixed.map((id, i) => [id, i]));
    const keyed = layer.map((id, i) => {
      const ps = neighbours(id)
        .map((x) => pos.get(x))
        .filter((p): p is number => p !== undefined);
      return { id, key: ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : i, i };
    });
    keyed.sort((a, b) => a.key - b.key || a.i - b.i);
    return keyed.map((k) => k.id);
  };
  const outs = (id: string) => edges.filter(([a]) => a === id).map(([, b]) => b);
  const ins = (id: string) => edges.filter(([, b]) => b === id).map(([a]) => a);
  let best = layers.map((l) => l.slice());
  let bestCount = total(best);
  let cur = best.map((l) => l.slice());
  for (let sweep = 0; sweep < 12 && bestCount > 0; sweep++) {
    if (sweep % 2 === 0) {
      for (let l = 1; l < cur.length; l++) cur[l] = sortBy(cur[l], cur[l - 1], ins);
    } else {
      for (let l = cur.length - 2; l >= 0; l--) cur[l] = sortBy(cur[l], cur[l + 1], outs);
    }
    const n = total(cur);
    if (n < bestCount) {
      best = cur.map((l) => l.slice());
      bestCount = n;
    }
  }
  return { layers: best.filter((l) => l.length > 0), crossings: bestCount };
}

/** Points along a cubic curve, for collision tests. */
function sample(p0: Point, p1: Point, p2: Point, p3: Point, n = 48): Point[] {
  const out: Point[] = [];
  for (let i = 0; i <= n; i++) {
    const t = i / n;
    const u = 1 - t;
    out.push({
      x: u * u * u * p0.x + 3 * u * u * t * p1.x + 3 * u * t * t * p2.x + t * t * t * p3.x,
      y: u * u * u * p0.y + 3 * u * u * t * p1.y + 3 * u * t * t * p2.y + t * t * t * p3.y,
    });
  }
  return out;
}

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}
const overlaps = (a: Box, b: Box) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
const inside = (p: Point, b: Box) => p.x >= b.x && p.x <= b.x + b.w && p.y >= b.y && p.y <= b.y + b.h;

export function layoutLineage(
  nodes: LineageNode[],
  edgesIn: LineageEdge[],
  labelOf: (e: LineageEdge) => string,
): Placed {
  const known = new Set(nodes.map((n) => n.id));
  const edgesAll = edgesIn.filter((e) => known.has(e.from) && known.has(e.to));
  const { layers, crossings } = orderLayers(
    nodes,
    edgesAll.map((e) => [e.from, e.to]),
  );
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const outDeg = new Map<string, number>();
  const inDeg = new Map<string, number>();
  for (const e of edgesAll) {
    outDeg.set(e.from, (outDeg.get(e.from) ?? 0) + 1);
    inDeg.set(e.to, (inDeg.get(e.to) ?? 0) + 1);
  }
  const heightOf = (id: string) =>
    Math.max(NODE_H, Math.max(outDeg.get(id) ?? 0, inDeg.get(id) ?? 0) * PORT_GAP + 12);
  const columnHeight = (layer: string[]) =>
    layer.reduce((a, id) => a + heightOf(id), 0) + ROW_GAP * Math.max(0, layer.length - 1);
  const tallest = Math.max(0, ...layers.map(columnHeight));
  const placed = new Map<string, PlacedNode>();
  layers.forEach((layer, l) => {
    let y = MARGIN + (tallest - columnHeight(layer)) / 2;
    for (const id of layer) {
      const h = heightOf(id);
      placed.set(id, { node: byId.get(id)!, x: MARGIN + l * (NODE_W + COL_GAP), y, w: NODE_W, h });
      y += h + ROW_GAP;
    }
  });
  const centre = (id: string) => {
    const p = placed.get(id)!;
    return p.y + p.h / 2;
  };
  // Ports: a node's outgoing edges down its right side in the order of their targets,
  // incoming ones down its left side in the order of their sources.
  const outPort = new Map<LineageEdge, Point>();
  const inPort = new Map<LineageEdge, Point>();
  for (const [id, p] of placed) {
    const outs = edgesAll.filter((e) => e.from === id).sort((a, b) => centre(a.to) - centre(b.to));
    outs.forEach((e, i) => outPort.set(e, { x: p.x + p.w, y: p.y + (p.h * (i + 1)) / (outs.length + 1) }));
    const ins = edgesAll.filter((e) => e.to === id).sort((a, b) => centre(a.from) - centre(b.from));
    ins.forEach((e, i) => inPort.set(e, { x: p.x, y: p.y + (p.h * (i + 1)) / (ins.length + 1) }));
  }
  const curves = edgesAll.map((edge) => {
    const from = outPort.get(edge)!;
    const to = inPort.get(edge)!;
    // An edge within a layer or backwards bends out to the right and comes back.
    const dx = Math.max(60, (to.x - from.x) / 2);
    const c1 = { x: from.x + dx, y: from.y };
    const c2 = { x: to.x - dx, y: to.y };
    return { edge, from, to, c1, c2, points: sample(from, c1, c2, to) };
  });
  // Labels: beside their own line (just above, or just below), at the first point
  // along it where the label meets no other label, no line and no node.
  const labels: Box[] = [];
  const nodeBoxes: Box[] = [...placed.values()].map((p) => ({ x: p.x - 2, y: p.y - 2, w: p.w + 4, h: p.h + 4 }));
  const edges: PlacedEdge[] = curves.map((c) => {
    const text = labelOf(c.edge);
    const w = Math.ceil(text.length * CHAR_W) + 8;
    const h = LABEL_H;
    // How much a spot collides: labels and nodes overlapped, line points covered.
    const clashes = (b: Box) =>
      labels.filter((o) => overlaps(o, b)).length * 100 +
      nodeBoxes.filter((o) => overlaps(o, b)).length * 100 +
      curves.reduce((n, o) => n + o.points.filter((p) => inside(p, b)).length, 0);
    let chosen: Box | undefined;
    let best = Infinity;
    // Mid-way first, then towards either end; centred on the point, or starting
    // or ending at it; just above the line, then just below.
    const steps = [0.5, 0.45, 0.55, 0.4, 0.6, 0.35, 0.65, 0.3, 0.7, 0.25, 0.75, 0.2, 0.8, 0.15, 0.85];
    outer: for (const t of steps) {
      const p = c.points[Math.round(t * (c.points.length - 1))];
      for (const left of [p.x - w / 2, p.x + 4, p.x - w - 4]) {
        for (const top of [p.y - h - 2, p.y + 2]) {
          const b = { x: left, y: top, w, h };
          const n = clashes(b);
          if (n < best) {
            best = n;
            chosen = b;
            if (n === 0) break outer;
          }
        }
      }
    }
    if (!chosen) {
      const p = c.points[Math.round(c.points.length / 2)];
      chosen = { x: p.x - w / 2, y: p.y - h - 2, w, h };
    }
    labels.push(chosen);
    const d = `M ${c.from.x} ${c.from.y} C ${c.c1.x} ${c.c1.y}, ${c.c2.x} ${c.c2.y}, ${c.to.x} ${c.to.y}`;
    return { edge: c.edge, from: c.from, to: c.to, d, label: { text, ...chosen } };
  });
  const all: Box[] = [...nodeBoxes, ...labels];
  const width = Math.max(400, ...all.map((b) => b.x + b.w)) + MARGIN;
  const height = Math.max(120, ...all.map((b) => b.y + b.h)) + MARGIN;
  // Labels pushed above the top margin move everything down.
  const top = Math.min(0, ...all.map((b) => b.y - 4));
  if (top < 0) {
    for (const p of placed.values()) p.y -= top;
    for (const e of edges) {
      e.from.y -= top;
      e.to.y -= top;
      e.label.y -= top;
    }
    for (const e of edges) {
      const dx = Math.max(60, (e.to.x - e.from.x) / 2);
      e.d = `M ${e.from.x} ${e.from.y} C ${e.from.x + dx} ${e.from.y}, ${e.to.x - dx} ${e.to.y}, ${e.to.x} ${e.to.y}`;
    }
  }
  return { nodes: [...placed.values()], edges, width, height: height - top, crossings };
}
