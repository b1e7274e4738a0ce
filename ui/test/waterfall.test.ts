import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseTrace, type Span } from '../src/otlp';
import { buildTree, selfTime, ticks, visible, windowRows } from '../src/waterfall';

function span(id: string, parent: string, start: number, end: number, name = id): Span {
  return {
    spanId: id, parentId: parent, traceId: 't', name, service: 'svc', kind: 'INTERNAL', startNs: start, endNs: end,
    statusCode: 'UNSET', statusMessage: '', attributes: [], resource: [], scope: '', events: [], links: [],
  };
}

// root 0–100: a 10–40, b 30–60 (overlapping a), c 70–80; a has child a1 15–20.
const spans = [span('c', 'root', 70, 80), span('a1', 'a', 15, 20), span('root', '', 0, 100), span('b', 'root', 30, 60), span('a', 'root', 10, 40)];

test('spans are ordered depth first, children by start time, with depths', () => {
  const tree = buildTree(spans);
  assert.deepEqual(tree.order.map((n) => `${n.span.spanId}@${n.depth}`), ['root@0', 'a@1', 'a1@2', 'b@1', 'c@1']);
  assert.equal(tree.byId.get('root')!.descendants, 4);
});

test('a span whose parent is missing is a root, and parent cycles do not hang', () => {
  const tree = buildTree([span('x', 'missing', 5, 9), span('p', 'q', 0, 1), span('q', 'p', 0, 1), span('y', '', 1, 2)]);
  assert.deepEqual(tree.roots.map((n) => n.span.spanId), ['y', 'x']);
  assert.deepEqual(tree.order.map((n) => n.span.spanId), ['y', 'x']);
});

test('self time subtracts the union of the children, clipped to the span', () => {
  const tree = buildTree(spans);
  // children cover 10–60 and 70–80: 60 of 100 → self 40.
  assert.equal(tree.byId.get('root')!.selfNs, 40);
  assert.equal(tree.byId.get('a')!.selfNs, 25);
  assert.equal(selfTime(span('p', '', 0, 10), [span('k', 'p', -5, 5), span('k2', 'p', 8, 20)]), 3);
});

test('the critical path follows the last-finishing children backwards', () => {
  const tree = buildTree(spans);
  const crit = tree.order.filter((n) => n.critical).map((n) => n.span.spanId);
  // From 100 back: c (70–80), then b (30–60), then a ends at 40 > 30: not on the path.
  assert.deepEqual(crit, ['root', 'b', 'c']);
});

test('collapsing hides a subtree and nothing else', () => {
  const tree = buildTree(spans);
  assert.deepEqual(visible(tree, new Set(['a'])).map((n) => n.span.spanId), ['root', 'a', 'b', 'c']);
  assert.deepEqual(visible(tree, new Set(['root'])).map((n) => n.span.spanId), ['root']);
  assert.deepEqual(visible(tree, new Set(['c'])).map((n) => n.span.spanId), ['root', 'a', 'a1', 'b', 'c']);
});

test('a 5,000-span chain lays out without recursion', () => {
  const chain: Span[] = [];
  for (let i = 0; i < 5000; i++) chain.push(span(`s${i}`, i ? `s${i - 1}` : '', i, 10000 - i));
  const tree = buildTree(chain);
  assert.equal(tree.order.length, 5000);
  assert.equal(tree.order[4999].depth, 4999);
  assert.equal(tree.order.filter((n) => n.critical).length, 5000);
});

test('the virtual list draws only the rows in view, plus overscan', () => {
  assert.deepEqual(windowRows(5000, 24, 0, 600, 10), [0, 35]);
  assert.deepEqual(windowRows(5000, 24, 24 * 1000, 600, 10), [990, 1035]);
  assert.deepEqual(windowRows(20, 24, 0, 600, 10), [0, 20]);
});

test('time ticks are round', () => {
  assert.deepEqual(ticks(30e6, 5), [0, 10e6, 20e6, 30e6]);
  assert.deepEqual(ticks(0), [0]);
});

test('OTLP/JSON is read with times relative to the first span', () => {
  const t = parseTrace('abc', {
    resourceSpans: [{
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'cart' } }] },
      scopeSpans: [{ scope: { name: 'lib' }, spans: [
        { spanId: 'b', parentSpanId: 'a', name: 'child', kind: 3, startTimeUnixNano: '1763800000000000500', endTimeUnixNano: '1763800000000001000',
          status: { code: 2, message: 'boom' }, attributes: [{ key: 'n', value: { intValue: '7' } }, { key: 'l', value: { arrayValue: { values: [{ boolValue: true }] } } }],
          events: [{ timeUnixNano: '1763800000000000600', name: 'ev' }] },
        { spanId: 'a', name: 'root', kind: 2, startTimeUnixNano: '1763800000000000000', endTimeUnixNano: '1763800000000002000' },
      ] }],
    }],
  });
  assert.equal(t.startUnixNano, 1763800000000000000n);
  assert.equal(t.durationNs, 2000);
  const child = t.spans.find((s) => s.spanId === 'b')!;
  assert.equal(child.startNs, 500);
  assert.equal(child.kind, 'CLIENT');
  assert.equal(child.statusCode, 'ERROR');
  assert.equal(child.service, 'cart');
  assert.equal(child.scope, 'lib');
  assert.deepEqual(child.attributes, [['n', 7], ['l', [true]]]);
  assert.equal(child.events[0].offsetNs, 100);
});
