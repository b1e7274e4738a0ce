import assert from 'node:assert/strict';
import { test } from 'node:test';
import { href, parseHash, traceHref } from '../src/route';
import { layers, layoutGraph } from '../src/graph';

test('routes round-trip through the URL fragment', () => {
  const link = href('logs', { q: '{app="a b"} |= "x"', from: 'now-1h', to: '' });
  assert.equal(link, '#/logs?q=%7Bapp%3D%22a+b%22%7D+%7C%3D+%22x%22&from=now-1h');
  const r = parseHash(link);
  assert.equal(r.page, 'logs');
  assert.equal(r.params.get('q'), '{app="a b"} |= "x"');
  assert.equal(r.params.get('to'), null);
  const t = parseHash(traceHref('ABCDEF', { tab: 'logs', span: '01' }));
  assert.deepEqual([t.page, t.id, t.params.get('tab'), t.params.get('span')], ['trace', 'abcdef', 'logs', '01']);
  assert.equal(parseHash('').page, 'traces');
  assert.equal(parseHash('#/nonsense/x').page, 'traces');
});

test('the service graph is laid out in columns by call depth', () => {
  const edges = [
    { from: 'client', to: 'frontend', calls: 6, failed: 0 },
    { from: 'frontend', to: 'backend', calls: 6, failed: 1 },
    { from: 'backend', to: 'db', calls: 6, failed: 0 },
    { from: 'client', to: 'db', calls: 1, failed: 0 },
    { from: 'db', to: 'client', calls: 1, failed: 0 }, // a cycle
  ];
  const l = layers(edges);
  assert.ok(l.get('client')! < l.get('frontend')! && l.get('frontend')! < l.get('backend')!);
  const g = layoutGraph(edges.slice(0, 4));
  assert.deepEqual(Object.fromEntries(g.nodes.map((n) => [n.id, n.layer])), { client: 0, frontend: 1, backend: 2, db: 3 });
  assert.equal(g.edges.length, 4);
  assert.ok(g.edges.every((e) => e.path.startsWith('M')));
  const xs = g.nodes.map((n) => n.x);
  assert.equal(new Set(xs).size, 4);
});
