// Layered layout of the service graph: each service in the column of its
// longest call path from a caller-less service; unit-tested.

export interface Edge { from: string; to: string; calls: number; failed: number }
export interface GNode { id: string; layer: number; x: number; y: number; w: number; h: number }
export interface GEdge extends Edge { path: string; labelX: number; labelY: number }

const NW = 140, NH = 34, GX = 90, GY = 26;

export function layers(edges: Edge[]): Map<string, number> {
  const ids = new Set<string>();
  for (const e of edges) ids.add(e.from).add(e.to);
  const layer = new Map<string, number>([...ids].map((id) => [id, 0]));
  // Longest path, bounded by the node count so cycles terminate.
  for (let round = 0; round < ids.size; round++) {
    let changed = false;
    for (const e of edges) {
      if (e.from === e.to) continue;
      const want = layer.get(e.from)! + 1;
      if (want > layer.get(e.to)! && want < ids.size) {
        layer.set(e.to, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return layer;
}

export function layoutGraph(edges: Edge[]): { nodes: GNode[]; edges: GEdge[]; width: number; height: number } {
  const layer = layers(edges);
  const cols = new Map<number, string[]>();
  for (const [id, l] of [...layer.entries()].sort(([a], [b]) => a.localeCompare(b))) (cols.get(l) ?? cols.set(l, []).get(l)!).push(id);
  const nodes = new Map<string, GNode>();
  let maxRows = 0;
  for (const [l, ids] of cols) {
    maxRows = Math.max(maxRows, ids.length);
    ids.forEach((id, i) => nodes.set(id, { id, layer: l, x: 10 + l * (NW + GX), y: 10 + i * (NH + GY), w: NW, h: NH }));
  }
  const out: GEdge[] = edges.map((e) => {
    const a = nodes.get(e.from)!, b = nodes.get(e.to)!;
    let path: string;
    let lx: number, ly: number;
    if (a === b) {
      path = `M${a.x + a.w - 20},${a.y} c 10,-22 30,-22 20,0`;
      lx = a.x + a.w - 10; ly = a.y - 14;
    } else if (b.x > a.x) {
      const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
      path = `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`;
      lx = (x1 + x2) / 2 - 10; ly = (y1 + y2) / 2 - 5;
    } else {
      // A call back to an earlier column: arc below.
      const x1 = a.x + a.w / 2, y1 = a.y + a.h, x2 = b.x + b.w / 2, y2 = b.y + b.h;
      const dip = Math.max(y1, y2) + 30;
      path = `M${x1},${y1} C${x1},${dip} ${x2},${dip} ${x2},${y2}`;
      lx = (x1 + x2) / 2; ly = dip - 4;
    }
    return { ...e, path, labelX: lx, labelY: ly };
  });
  const width = 20 + cols.size * (NW + GX) - GX;
  const height = 50 + maxRows * (NH + GY);
  return { nodes: [...nodes.values()], edges: out, width, height };
}
