import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  applyCompletion, autoStep, capSeries, completionAt, formatDuration, isLogQuery, labelsAgree, parseAttrs, parseDuration, parseLabelSet, redQueries, resolveRange,
  resolveTime, searchParams, selectorOf, serviceQueries, suggest, traceOfLine, volumeQuery, type SearchForm,
} from '../src/query';

const now = 1_763_800_000_000;

test('time bounds: relative, unix ms, dates; bad ranges are named', () => {
  assert.equal(resolveTime('now', now), now);
  assert.equal(resolveTime('now-15m', now), now - 900_000);
  assert.equal(resolveTime('now-1.5h', now), now - 5_400_000);
  assert.equal(resolveTime('1763799000000', now), 1763799000000);
  assert.equal(resolveTime('2025-11-22T08:26:40Z', now), 1763800000000);
  assert.equal(resolveTime('yesterday', now), null);
  assert.deepEqual(resolveRange({ from: 'now-1h', to: 'now' }, now), { start: now - 3_600_000, end: now });
  assert.deepEqual(resolveRange({ from: 'now', to: 'now-1h' }, now), { error: 'the end of the time range is not after its start' });
  assert.deepEqual(resolveRange({ from: 'soon', to: 'now' }, now), { error: 'cannot read the start time "soon"' });
});

test('durations are read as Go writes them and written as people read them', () => {
  assert.equal(parseDuration('250ms'), 250e6);
  assert.equal(parseDuration('1m30s'), 90e9);
  assert.equal(parseDuration('1.5s'), 1.5e9);
  assert.equal(parseDuration('100'), null);
  assert.equal(parseDuration('5 ms'), null);
  assert.equal(formatDuration(850), '850ns');
  assert.equal(formatDuration(12_300_000), '12.3ms');
  assert.equal(formatDuration(1_520_000_000), '1.52s');
  assert.equal(formatDuration(125e9), '2m5s');
});

const form: SearchForm = { service: 'frontend', name: 'GET /cart/{id}', status: 'error', minDuration: '100ms', maxDuration: '', attrs: 'http.route=/cart db.statement="select 1"', limit: '' };

test('the search form becomes /api/v1/search parameters', () => {
  const r = searchParams(form, 1_000_500, 2_000_500);
  assert.ok('params' in r);
  assert.equal(r.params.toString(),
    'service=frontend&name=GET+%2Fcart%2F%7Bid%7D&status=error&minDuration=100ms&attr=http.route%3D%2Fcart&attr=db.statement%3Dselect+1&start=1000&end=2001&limit=50');
  assert.deepEqual(searchParams({ ...form, maxDuration: 'long' }, 0, 1), { error: 'maximum duration "long" is not a duration like 250ms or 1.5s' });
  assert.deepEqual(searchParams({ ...form, attrs: 'a=1 oops' }, 0, 1), { error: 'attributes: "oops" is not key=value' });
});

test('attributes: quoted values keep spaces and escapes', () => {
  assert.deepEqual(parseAttrs('a=1  b="x \\"y\\"" c='), { pairs: [['a', '1'], ['b', 'x "y"'], ['c', '']] });
});

test('steps are round and bounded in points', () => {
  assert.equal(autoStep(0, 3_600_000), 15);
  assert.equal(autoStep(0, 60_000), 1);
  assert.equal(autoStep(0, 7 * 86_400_000, 250), 3600);
});

test('LogQL helpers: log or metric query, the selector, the volume query', () => {
  assert.ok(isLogQuery(' {app="a"} |= "x"'));
  assert.ok(!isLogQuery('sum(rate({app="a"}[1m]))'));
  assert.equal(selectorOf('{app="a}b", ns=~`x}`} |= "}"'), '{app="a}b", ns=~`x}`}');
  assert.equal(selectorOf('{app="a"'), '');
  assert.equal(volumeQuery('{app="a"} |= "x"', 30), 'sum(count_over_time({app="a"} |= "x" [30s]))');
});

test('PromQL of the services page and the trace metrics tab', () => {
  const q = serviceQueries(3600);
  assert.equal(q.rate, 'sum by (service) (rate(traces_spanmetrics_calls_total{span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"}[3600s]))');
  assert.equal(q.edges, 'sum by (client, server) (increase(traces_service_graph_request_total[3600s]))');
  assert.equal(serviceQueries(5).errors, 'sum by (service) (rate(traces_spanmetrics_calls_total{status_code="STATUS_CODE_ERROR"}[60s]))');
  const red = redQueries('we"ird', 15);
  assert.equal(red[0].query, 'sum by (span_name) (rate(traces_spanmetrics_calls_total{service="we\\"ird"}[60s]))');
  assert.equal(red[2].exemplars, 'traces_spanmetrics_duration_seconds_bucket{service="we\\"ird"}');
});

test('completion finds metric names, label names and label values at the cursor', () => {
  assert.deepEqual(completionAt('rate(http_req', 13, 'promql'), { kind: 'metric', from: 5, to: 13, prefix: 'http_req' });
  assert.deepEqual(completionAt('up{jo', 5, 'promql'), { kind: 'label', from: 3, to: 5, prefix: 'jo', metric: 'up' });
  assert.deepEqual(completionAt('up{job="pro', 11, 'promql'), { kind: 'value', from: 8, to: 11, prefix: 'pro', label: 'job', metric: 'up' });
  assert.deepEqual(completionAt('{app=~"ca"}', 9, 'logql'), { kind: 'value', from: 7, to: 9, prefix: 'ca', label: 'app', metric: undefined });
  assert.deepEqual(completionAt('sum by (ser', 11, 'promql'), { kind: 'label', from: 8, to: 11, prefix: 'ser' });
  assert.equal(completionAt('{app="a"} |= "err', 17, 'logql'), null);
  assert.equal(completionAt('rate(x[5', 8, 'promql'), null);
  assert.equal(completionAt('{app="a"} | json', 16, 'logql'), null);
});

test('accepting a completion replaces the token and closes an opened string', () => {
  const c = completionAt('{service_name="fr', 17, 'logql')!;
  assert.deepEqual(applyCompletion('{service_name="fr', c, 'frontend'), { text: '{service_name="frontend"', cursor: 24 });
  const c2 = completionAt('{a="x"}', 5, 'logql')!;
  assert.deepEqual(applyCompletion('{a="x"}', c2, 'x"y'), { text: '{a="x\\"y"}', cursor: 9 });
  const c3 = completionAt('sum(rate(traces_sp[5m]))', 18, 'promql')!;
  assert.deepEqual(applyCompletion('sum(rate(traces_sp[5m]))', c3, 'traces_spanmetrics_calls_total'), { text: 'sum(rate(traces_spanmetrics_calls_total[5m]))', cursor: 39 });
});

test('suggestions put prefix matches before substring matches', () => {
  assert.deepEqual(suggest(['job', 'service_name', 'name', 'namespace'], 'name'), ['namespace', 'service_name']);
  assert.deepEqual(suggest(['a', 'b'], ''), ['a', 'b']);
});

test('a log line links to its trace as the server finds it', () => {
  const id = '5b8efff798038103d269b633813fc60c';
  const span = 'eee19b7ec3c1b174';
  assert.deepEqual(traceOfLine('plain', { trace_id: id, span_id: span }), { traceId: id, spanId: span });
  assert.deepEqual(traceOfLine(`level=info trace_id=${id} span_id=${span}`, {}), { traceId: id, spanId: span });
  assert.deepEqual(traceOfLine(`{"msg":"x","traceId":"${id.toUpperCase()}"}`, {}), { traceId: id, spanId: '' });
  assert.deepEqual(traceOfLine(`traceparent=00-${id}-${span}-01`, {}), { traceId: id, spanId: span });
  assert.deepEqual(traceOfLine('trace.id: 0123456789abcdef', {}), { traceId: '00000000000000000123456789abcdef', spanId: '' });
  assert.equal(traceOfLine(`mytrace_id=${id}`, {}), null);
  assert.equal(traceOfLine('trace_id=00000000000000000000000000000000', {}), null);
});

test('charts draw at most a bounded number of series', () => {
  assert.deepEqual(capSeries([1, 2, 3], 5), { shown: [1, 2, 3], hidden: 0 });
  assert.deepEqual(capSeries([1, 2, 3, 4, 5, 6], 4), { shown: [1, 2, 3, 4], hidden: 2 });
});

test('an alert label set is read as Prometheus writes it, and series agree with it', () => {
  assert.deepEqual(parseLabelSet('{alertname="QueueTooLong", queue="a", severity="page"}'), { alertname: 'QueueTooLong', queue: 'a', severity: 'page' });
  assert.deepEqual(parseLabelSet('{msg="say \\"hi\\", ok", "dotted.name"="x"}'), { msg: 'say "hi", ok', 'dotted.name': 'x' });
  assert.deepEqual(parseLabelSet('{}'), {});
  assert.equal(parseLabelSet('queue="a"'), null);
  assert.equal(parseLabelSet('{queue=a}'), null);
  const alert = { alertname: 'QueueTooLong', queue: 'a', severity: 'page' };
  assert.ok(labelsAgree(alert, { __name__: 'queue_length', queue: 'a', instance: 'x' }));
  assert.ok(!labelsAgree(alert, { queue: 'b' }));
});
