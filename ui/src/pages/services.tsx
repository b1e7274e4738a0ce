// Services: rate, errors and latency per service from span metrics, and the
// service graph; a service links to its traces, logs and metrics.
import { prom, useAsync } from '../api';
import { Empty, ErrorBox, Loading, TimeRangePicker } from '../components';
import { formatDuration, resolveRange, serviceLogQuery, serviceQueries, type Range } from '../query';
import { go, href } from '../route';
import { layoutGraph, type Edge } from '../graph';

interface Row { service: string; rate: number; errors: number; p50: number; p95: number; p99: number }

export function ServicesPage({ params, now }: { params: URLSearchParams; now: number }) {
  const range: Range = { from: params.get('from') || 'now-1h', to: params.get('to') || 'now' };
  const focus = params.get('service') ?? '';
  const rr = resolveRange(range, now);
  const data = useAsync('error' in rr ? null : async (s) => {
    const w = (rr.end - rr.start) / 1000;
    const qs = serviceQueries(w);
    const keys = Object.keys(qs) as (keyof typeof qs)[];
    const res = await Promise.all(keys.map((k) => prom.instant(qs[k], rr.end, s)));
    const by = Object.fromEntries(keys.map((k, i) => [k, res[i]])) as Record<keyof typeof qs, Awaited<ReturnType<typeof prom.instant>>>;
    const rows = new Map<string, Row>();
    const row = (svc: string) => rows.get(svc) ?? rows.set(svc, { service: svc, rate: NaN, errors: 0, p50: NaN, p95: NaN, p99: NaN }).get(svc)!;
    const val = (r: { value?: [number, string] }) => Number(r.value?.[1]);
    for (const r of by.allRate) row(r.metric.service).rate = val(r);
    for (const r of by.rate) row(r.metric.service).rate = val(r); // entry spans, when the service has any
    for (const r of by.errors) row(r.metric.service).errors = val(r);
    for (const k of ['p50', 'p95', 'p99'] as const) for (const r of by[k]) row(r.metric.service)[k] = val(r);
    const edges: Edge[] = by.edges.map((r) => ({ from: r.metric.client, to: r.metric.server, calls: val(r), failed: 0 }));
    for (const r of by.edgeErrors) {
      const e = edges.find((x) => x.from === r.metric.client && x.to === r.metric.server);
      if (e) e.failed = val(r);
    }
    return { rows: [...rows.values()].sort((a, b) => a.service.localeCompare(b.service)), edges };
  }, [range.from, range.to, 'error' in rr ? 0 : rr.end]);
  const links = (svc: string) => 'error' in rr ? {} : { from: range.from, to: range.to };
  return (
    <section class="page">
      <div class="querybar">
        <h2>Services</h2>
        <TimeRangePicker range={range} now={now} onChange={(r) => go(href('services', { from: r.from, to: r.to, service: focus }))} />
      </div>
      <ErrorBox error={'error' in rr ? rr.error : data.error} />
      {data.loading && <Loading what="services" />}
      {data.data && (data.data.rows.length === 0
        ? <Empty>No span metrics in this time range. They are derived from the traces Lumen receives: send traces over OTLP.</Empty>
        : <>
          <table class="results" data-testid="services">
            <thead><tr><th>Service</th><th class="num">Requests/s</th><th class="num">Error rate</th><th class="num">p50</th><th class="num">p95</th><th class="num">p99</th><th /></tr></thead>
            <tbody>
              {data.data.rows.map((r) => (
                <tr class={r.service === focus ? 'focus' : ''}>
                  <td><a href={href('services', { ...links(r.service), service: r.service })}><b>{r.service}</b></a></td>
                  <td class="num">{Number.isFinite(r.rate) ? r.rate.toPrecision(3) : '–'}</td>
                  <td class={`num${r.errors > 0 ? ' errtext' : ''}`}>{Number.isFinite(r.rate) && r.rate > 0 ? `${((r.errors / r.rate) * 100).toFixed(1)}%` : '–'}</td>
                  {(['p50', 'p95', 'p99'] as const).map((k) => <td class="num">{Number.isFinite(r[k]) ? formatDuration(r[k] * 1e9) : '–'}</td>)}
                  <td class="nowrap">
                    <a href={href('traces', { ...links(r.service), service: r.service })}>traces</a>{' · '}
                    <a href={href('logs', { ...links(r.service), q: serviceLogQuery(r.service) })}>logs</a>{' · '}
                    <a href={href('metrics', { ...links(r.service), q: `sum by (span_name) (rate(traces_spanmetrics_calls_total{service="${r.service}"}[5m]))` })}>metrics</a>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>Service graph</h3>
          {data.data.edges.length ? <Graph edges={data.data.edges} focus={focus} range={range} /> : <Empty>No calls between services were seen in this time range.</Empty>}
        </>)}
    </section>
  );
}

function Graph({ edges, focus, range }: { edges: Edge[]; focus: string; range: Range }) {
  const g = layoutGraph(edges);
  const W = Math.max(400, g.width), H = Math.max(120, g.height);
  return (
    <svg class="graph" data-testid="service-graph" viewBox={`0 0 ${W} ${H}`} width={W} height={H} role="img" aria-label="service graph">
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead" /></marker></defs>
      {g.edges.map((e) => (
        <g class={e.failed > 0 ? 'edge err' : 'edge'}>
          <path d={e.path} marker-end="url(#arrow)" />
          <text x={e.labelX} y={e.labelY}>{Math.round(e.calls)}{e.failed > 0 ? ` (${Math.round(e.failed)} failed)` : ''}</text>
        </g>
      ))}
      {g.nodes.map((n) => (
        <a href={href('services', { service: n.id, from: range.from, to: range.to })}>
          <g class={n.id === focus ? 'node focus' : 'node'} transform={`translate(${n.x},${n.y})`}>
            <rect width={n.w} height={n.h} rx={6} />
            <text x={n.w / 2} y={n.h / 2 + 4} text-anchor="middle">{n.id}</text>
          </g>
        </a>
      ))}
    </svg>
  );
}
