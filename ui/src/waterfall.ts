// Waterfall layout: the span tree in display order, collapsing, self time and
// the critical path. Pure functions, unit-tested in test/waterfall.test.ts.
import type { Span } from './otlp';

export interface Node {
  span: Span;
  depth: number;
  children: Node[];
  /** time of this span not covered by any child, in ns */
  selfNs: number;
  /** on the trace's critical path */
  critical: boolean;
  /** number of descendants, for the collapsed badge */
  descendants: number;
}

export interface Tree {
  roots: Node[];
  /** every node in display (depth-first, start-time) order */
  order: Node[];
  byId: Map<string, Node>;
}

const byStart = (a: Node, b: Node) => a.span.startNs - b.span.startNs || a.span.endNs - b.span.endNs;

/** buildTree links spans to their parents; a span whose parent is missing is a root. */
export function buildTree(spans: Span[]): Tree {
  const byId = new Map<string, Node>();
  for (const span of spans) byId.set(span.spanId, { span, depth: 0, children: [], selfNs: 0, critical: false, descendants: 0 });
  const roots: Node[] = [];
  for (const n of byId.values()) {
    const p = n.span.parentId ? byId.get(n.span.parentId) : undefined;
    if (p && p !== n) p.children.push(n);
    else roots.push(n);
  }
  roots.sort(byStart);
  const order: Node[] = [];
  // Iterative depth-first walk: a 5,000-span chain must not overflow the stack.
  const stack: Node[] = [...roots].reverse();
  const seen = new Set<Node>();
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue; // a cycle of parent ids
    seen.add(n);
    order.push(n);
    n.children.sort(byStart);
    for (let i = n.children.length - 1; i >= 0; i--) {
      n.children[i].depth = n.depth + 1;
      stack.push(n.children[i]);
    }
  }
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i];
    n.selfNs = selfTime(n.span, n.children.map((c) => c.span));
    n.descendants = n.children.reduce((s, c) => s + 1 + c.descendants, 0);
  }
  for (const r of roots) markCritical(r);
  return { roots, order, byId };
}

/** selfTime is a span's duration less the union of its children's intervals within it. */
export function selfTime(span: Span, children: Span[]): number {
  const iv = children
    .map((c) => [Math.max(c.startNs, span.startNs), Math.min(c.endNs, span.endNs)] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let covered = 0;
  let curA = -1;
  let curB = -1;
  for (const [a, b] of iv) {
    if (a > curB) {
      covered += curB - curA;
      curA = a;
      curB = b;
    } else if (b > curB) curB = b;
  }
  covered += curB - curA;
  return Math.max(0, span.endNs - span.startNs - covered);
}

/**
 * markCritical marks the critical path under n: walking back from the span's
 * end, the child that finished last before that point is on the path, then
 * the point moves to that child's start (the algorithm Jaeger's UI uses).
 */
export function markCritical(root: Node): void {
  const stack: Node[] = [root];
  while (stack.length) {
    const n = stack.pop()!;
    n.critical = true;
    const kids = [...n.children].sort((a, b) => b.span.endNs - a.span.endNs);
    let point = n.span.endNs;
    for (const c of kids) {
      const end = Math.min(c.span.endNs, n.span.endNs); // a child may outlive its parent
      if (end <= point && end >= n.span.startNs) {
        stack.push(c);
        point = c.span.startNs;
      }
    }
  }
}

/** visible lists the rows shown when the spans in collapsed hide their subtrees. */
export function visible(tree: Tree, collapsed: Set<string>): Node[] {
  if (collapsed.size === 0) return tree.order;
  const out: Node[] = [];
  let skipDepth = -1;
  for (const n of tree.order) {
    if (skipDepth >= 0) {
      if (n.depth > skipDepth) continue;
      skipDepth = -1;
    }
    out.push(n);
    if (collapsed.has(n.span.spanId) && n.children.length) skipDepth = n.depth;
  }
  return out;
}

/** windowRows is the slice of rows a virtual list draws for a scroll position. */
export function windowRows(count: number, rowHeight: number, scrollTop: number, viewport: number, overscan = 10): [number, number] {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(count, Math.ceil((scrollTop + viewport) / rowHeight) + overscan);
  return [first, Math.max(first, last)];
}

/** ticks gives about n round time marks across [0, total] ns. */
export function ticks(totalNs: number, n = 5): number[] {
  if (totalNs <= 0) return [0];
  const raw = totalNs / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let t = 0; t <= totalNs + 1e-9; t += step) out.push(t);
  return out;
}
