// The trace view: waterfall with span details, the trace's logs, and the
// metrics of its services around it.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { getJSON, prom, useAsync } from '../api';
import { Chart, color, toChartSeries, seriesName, type Exemplar } from '../chart';
import { Empty, ErrorBox, fmtTime, Labels, Loading, Tabs } from '../components';
import { formatValue, parseTrace, type AttrValue, type Span, type Trace } from '../otlp';
import { autoStep, formatDuration, redQueries, serviceLogQuery } from '../query';
import { go, href, traceHref } from '../route';
import { buildTree, ticks, visible, windowRows, type Node, type Tree } from '../waterfall';

interface LogLine { time: string; timeUnixNano: string; stream: Record<string, string>; line: string; structuredMetadata?: Record<string, string>; spanId?: string }
interface TraceMetrics {
  exemplars: { seriesLabels: Record<string, string>; exemplars: { labels: Record<string, string>; value: string; timestamp: number }[] }[];
  series: { service: string; metric: Record<string, string>; values: [number, string][] }[];
  serviceGraph: { parent: string; child: string; callCount: number }[];
  from: string; to: string;
}
interface TraceResponse {
  traceId: string; startTimeUnixNano: string; durationNanos: number; spanCount: number; logCount: number; services: string[];
  trace?: any; logs?: LogLine[]; metrics?: TraceMetrics;
  // What part is missing and why (a metrics backend that could not be read).
  warnings?: string[];
}

type Tab = 'spans' | 'logs' | 'metrics';

declare global {
  interface Window { __lumenTraceRender?: { traceId: string; spans: number; ms: number } }
}

export function TracePage({ id, params }: { id: string; params: URLSearchParams }) {
  const started = useRef(performance.now());
  const res = useAsync((s) => {
    started.current = performance.now();
    return getJSON<TraceResponse>(`/api/v1/traces/${encodeURIComponent(id)}`, undefined, s);
  }, [id]);
  const tab = (params.get('tab') as Tab) || 'spans';
  const selected = params.get('span') ?? '';
  const setParam = (k: string, v: string) => {
    const p = new URLSearchParams(params);
    if (v) p.set(k, v);
    else p.delete(k);
    go(href('trace', p, id), k === 'span');
  };
  const trace = useMemo(() => (res.data?.trace ? parseTrace(id, res.data.trace) : undefined), [res.data]);
  const tree = useMemo(() => (trace ? buildTree(trace.spans) : undefined), [trace]);
  const logs = res.data?.logs ?? [];

  if (res.loading && !res.data) return <section class="page"><Loading what={`trace ${id}`} /></section>;
  if (res.error) return <section class="page"><ErrorBox error={res.error} /></section>;
  const d = res.data;
  if (!d) return null;
  const root = tree?.roots[0]?.span;
  const startMs = Number(BigInt(d.startTimeUnixNano) / 1000000n);
  return (
    <section class="page trace-page">
      <header class="trace-head">
        <h2>{root ? <><span class="svc" style={{ color: svcColor(root.service) }}>{root.service}</span> {root.name}</> : 'Trace'}</h2>
        <div class="facts">
          <span class="mono" data-testid="trace-id">{d.traceId}</span>
          <span>{fmtTime(startMs)}</span>
          <span>{formatDuration(d.durationNanos)}</span>
          <span>{d.spanCount} spans</span>
          <span>{d.logCount} log lines</span>
          {d.services.map((s) => <a class="chip" href={href('services', { service: s })}>{s}</a>)}
        </div>
      </header>
      {d.warnings?.map((w) => <div class="error" role="alert" data-testid="trace-warning">{w}</div>)}
      <Tabs<Tab> active={tab} onSelect={(t) => setParam('tab', t === 'spans' ? '' : t)} tabs={[
        { id: 'spans', label: `Spans (${d.spanCount})` }, { id: 'logs', label: `Logs (${logs.length})` }, { id: 'metrics', label: 'Metrics' },
      ]} />
      {tab === 'spans' && (trace && tree
        ? <SpansTab trace={trace} tree={tree} logs={logs} selected={selected} onSelect={(s) => setParam('span', s)} started={started.current} />
        : <Empty>No spans of this trace are stored: it is known from its logs or exemplars only.</Empty>)}
      {tab === 'logs' && <LogsTab logs={logs} tree={tree} selected={selected} onSelect={(s) => setParam('span', s)} traceId={d.traceId} startMs={startMs} durationNs={d.durationNanos} />}
      {tab === 'metrics' && <MetricsTab d={d} />}
    </section>
  );
}

const svcColors = new Map<string, string>();
export function svcColor(service: string): string {
  let c = svcColors.get(service);
  if (!c) {
    c = color(svcColors.size);
    svcColors.set(service, c);
  }
  return c;
}

const ROW = 24;

function SpansTab({ trace, tree, logs, selected, onSelect, started }: { trace: Trace; tree: Tree; logs: LogLine[]; selected: string; onSelect: (s: string) => void; started: number }) {
  const [collapsed, setCollapsed] = useState<Set<string>>(new Set());
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(600);
  const scroller = useRef<HTMLDivElement>(null);
  const rows = useMemo(() => visible(tree, collapsed), [tree, collapsed]);
  const logsBySpan = useMemo(() => {
    const m = new Map<string, number[]>();
    for (const l of logs) {
      if (!l.spanId) continue;
      const off = Number(BigInt(l.timeUnixNano) - trace.startUnixNano);
      (m.get(l.spanId) ?? m.set(l.spanId, []).get(l.spanId)!).push(off);
    }
    return m;
  }, [logs, trace]);
  useEffect(() => {
    const el = scroller.current;
    if (!el) return undefined;
    setViewport(el.clientHeight);
    const ro = new ResizeObserver(() => setViewport(el.clientHeight));
    ro.observe(el);
    // Time to first render, for the browser test's performance figure.
    requestAnimationFrame(() => {
      window.__lumenTraceRender = { traceId: trace.traceId, spans: trace.spans.length, ms: performance.now() - started };
    });
    return () => ro.disconnect();
  }, [trace]);
  useEffect(() => {
    // Bring a selected span (from the URL or the logs tab) into view.
    const i = rows.findIndex((n) => n.span.spanId === selected);
    const el = scroller.current;
    if (i >= 0 && el && (i * ROW < el.scrollTop || (i + 1) * ROW > el.scrollTop + el.clientHeight)) el.scrollTop = Math.max(0, i * ROW - el.clientHeight / 3);
  }, [selected]);
  const [first, last] = windowRows(rows.length, ROW, scrollTop, viewport);
  const total = Math.max(1, trace.durationNs);
  const toggle = (id: string) => {
    const next = new Set(collapsed);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setCollapsed(next);
  };
  const sel = selected ? tree.byId.get(selected) : undefined;
  return (
    <div class={sel ? 'spans-tab with-details' : 'spans-tab'}>
      <div class="wf-main">
      <div class="wf-tools">
        <button onClick={() => setCollapsed(new Set())}>Expand all</button>
        <button onClick={() => setCollapsed(new Set(tree.order.filter((n) => n.depth >= 1 && n.children.length).map((n) => n.span.spanId)))}>Collapse to services' entry spans</button>
        <span class="legend"><span class="crit-swatch" /> critical path</span>
        <span class="legend"><span class="log-swatch" /> log line</span>
      </div>
      <div class="wf-head">
        <div class="wf-name">Service · span</div>
        <div class="wf-time">{ticks(total).map((t) => <span style={{ left: `${(t / total) * 100}%`, transform: t / total > 0.92 ? 'translateX(-100%)' : undefined }}>{formatDuration(t)}</span>)}</div>
      </div>
      <div class="waterfall" data-testid="waterfall" ref={scroller} style={{ height: `min(${rows.length * ROW + 2}px, max(240px, 100vh - 260px))` }}
        onScroll={(e) => setScrollTop((e.target as HTMLDivElement).scrollTop)}>
        <div style={{ height: `${rows.length * ROW}px`, position: 'relative' }}>
          {rows.slice(first, last).map((n, k) => (
            <SpanRow key={n.span.spanId} n={n} top={(first + k) * ROW} total={total} selected={n.span.spanId === selected}
              collapsed={collapsed.has(n.span.spanId)} logTimes={logsBySpan.get(n.span.spanId)} onToggle={toggle} onSelect={onSelect} />
          ))}
        </div>
      </div>
      </div>
      {sel && <SpanDetails n={sel} logCount={logsBySpan.get(sel.span.spanId)?.length ?? 0} onClose={() => onSelect('')} />}
    </div>
  );
}

function SpanRow({ n, top, total, selected, collapsed, logTimes, onToggle, onSelect }: {
  n: Node; top: number; total: number; selected: boolean; collapsed: boolean; logTimes?: number[];
  onToggle: (id: string) => void; onSelect: (id: string) => void;
}) {
  const s = n.span;
  const left = (s.startNs / total) * 100;
  const width = Math.max(0.15, ((s.endNs - s.startNs) / total) * 100);
  const c = svcColor(s.service);
  return (
    <div class={`row${selected ? ' selected' : ''}${s.statusCode === 'ERROR' ? ' err' : ''}`} style={{ top: `${top}px` }}
      data-span-id={s.spanId} onClick={() => onSelect(selected ? '' : s.spanId)}>
      <div class="wf-name" style={{ paddingLeft: `${4 + Math.min(n.depth, 30) * 12}px` }}>
        {n.children.length
          ? <button class="toggle" aria-label={collapsed ? 'expand' : 'collapse'} onClick={(e) => { e.stopPropagation(); onToggle(s.spanId); }}>{collapsed ? '▸' : '▾'}</button>
          : <span class="toggle" />}
        <span class="swatch" style={{ background: c }} />
        <span class="svc">{s.service}</span> <span class="name" title={s.name}>{s.name}</span>
        {collapsed && <span class="badge">+{n.descendants}</span>}
        {s.statusCode === 'ERROR' && <span class="errmark" title={s.statusMessage || 'error'}>!</span>}
      </div>
      <div class="wf-time">
        <div class={`bar${n.critical ? ' crit' : ''}`} style={{ left: `${left}%`, width: `${width}%`, background: c }} />
        {logTimes?.map((t) => <span class="logmark" style={{ left: `${(t / total) * 100}%` }} title="log line" />)}
        <span class="dur" style={left > 70 ? { right: `${100 - left + 0.5}%` } : { left: `${left + width + 0.5}%` }}>{formatDuration(s.endNs - s.startNs)}</span>
      </div>
    </div>
  );
}

function AttrTable({ title, list }: { title: string; list: [string, AttrValue][] }) {
  if (!list.length) return null;
  return (
    <>
      <h4>{title}</h4>
      <table class="kv">{list.map(([k, v]) => <tr><th>{k}</th><td>{formatValue(v)}</td></tr>)}</table>
    </>
  );
}

function SpanDetails({ n, logCount, onClose }: { n: Node; logCount: number; onClose: () => void }) {
  const s: Span = n.span;
  return (
    <aside class="span-details" data-testid="span-details">
      <button class="close" onClick={onClose} aria-label="close">×</button>
      <h3><span class="svc" style={{ color: svcColor(s.service) }}>{s.service}</span> {s.name}</h3>
      <table class="kv">
        <tr><th>span id</th><td class="mono">{s.spanId}</td></tr>
        {s.parentId && <tr><th>parent</th><td class="mono">{s.parentId}</td></tr>}
        <tr><th>kind</th><td>{s.kind}</td></tr>
        <tr><th>status</th><td class={s.statusCode === 'ERROR' ? 'errtext' : ''}>{s.statusCode}{s.statusMessage ? `: ${s.statusMessage}` : ''}</td></tr>
        <tr><th>starts at</th><td>+{formatDuration(s.startNs)}</td></tr>
        <tr><th>duration</th><td>{formatDuration(s.endNs - s.startNs)}</td></tr>
        <tr><th>self time</th><td>{formatDuration(n.selfNs)}</td></tr>
        <tr><th>critical path</th><td>{n.critical ? 'yes' : 'no'}</td></tr>
        <tr><th>log lines</th><td>{logCount ? <a href={href('trace', { tab: 'logs', span: s.spanId }, s.traceId)}>{logCount} lines</a> : 'none'}</td></tr>
        {s.scope && <tr><th>scope</th><td>{s.scope}</td></tr>}
      </table>
      <AttrTable title="Attributes" list={s.attributes} />
      {s.events.length > 0 && (
        <>
          <h4>Events</h4>
          {s.events.map((e) => (
            <div class="event"><b>+{formatDuration(e.offsetNs)}</b> {e.name}<AttrTable title="" list={e.attributes} /></div>
          ))}
        </>
      )}
      {s.links.length > 0 && (
        <>
          <h4>Links</h4>
          {s.links.map((l) => <div><a href={traceHref(l.traceId, { span: l.spanId })} class="mono">{l.traceId} / {l.spanId}</a></div>)}
        </>
      )}
      <AttrTable title="Resource" list={s.resource} />
    </aside>
  );
}

function LogsTab({ logs, tree, selected, onSelect, traceId, startMs, durationNs }: {
  logs: LogLine[]; tree?: Tree; selected: string; onSelect: (s: string) => void; traceId: string; startMs: number; durationNs: number;
}) {
  const [only, setOnly] = useState(false);
  const shown = only && selected ? logs.filter((l) => l.spanId === selected) : logs;
  const sel = selected ? tree?.byId.get(selected)?.span : undefined;
  const explore = href('logs', { q: `{service_name=~".+"} |= "${traceId}"`, from: String(startMs - 60000), to: String(startMs + durationNs / 1e6 + 60000) });
  if (!logs.length) return <Empty>No log line carries this trace's id. Lines are matched by a trace_id field, label or structured metadata, or a W3C traceparent. <a href={explore}>Search the logs around it</a>.</Empty>;
  return (
    <div class="trace-logs" data-testid="trace-logs">
      <div class="wf-tools">
        {sel ? <>Selected span: <b>{sel.service} {sel.name}</b> — its lines are highlighted <label><input type="checkbox" checked={only} onChange={() => setOnly(!only)} /> only these</label> <button onClick={() => onSelect('')}>clear</button></> : <span class="dim">Click a line's span to select it; the selected span's lines are highlighted.</span>}
        <a class="right" href={explore}>Open in the log explorer</a>
      </div>
      <table class="loglines">
        <tbody>
          {shown.map((l) => {
            const span = l.spanId ? tree?.byId.get(l.spanId)?.span : undefined;
            return (
              <tr class={`logline${l.spanId && l.spanId === selected ? ' hl' : ''}`} data-span-id={l.spanId ?? ''}>
                <td class="nowrap dim">{fmtTime(Number(BigInt(l.timeUnixNano) / 1000000n)).slice(11)}</td>
                <td class="nowrap">{span
                  ? <button class="linklike" onClick={() => onSelect(l.spanId!)} title="select this span"><span class="swatch" style={{ background: svcColor(span.service) }} />{span.name}</button>
                  : <span class="dim">{l.stream.service_name ?? Object.values(l.stream)[0] ?? ''}</span>}</td>
                <td class="line">{l.line}
                  <details><summary>labels</summary><Labels labels={l.stream} />{l.structuredMetadata && <><div class="dim">structured metadata</div><Labels labels={l.structuredMetadata} /></>}</details>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

function MetricsTab({ d }: { d: TraceResponse }) {
  const m = d.metrics;
  if (!m) return <Empty>No metrics were returned for this trace.</Empty>;
  const from = Date.parse(m.from);
  const to = Date.parse(m.to);
  const step = autoStep(from, to, 120);
  const related = m.series.filter((s) => !s.metric.__name__?.startsWith('traces_'));
  return (
    <div class="metrics-tab" data-testid="trace-metrics">
      <p class="dim">The services of this trace from {fmtTime(from)} to {fmtTime(to)}; Dots are exemplars: click one to open its trace.</p>
      {d.services.map((svc) => <ServiceRED service={svc} from={from} to={to} step={step} />)}
      {m.serviceGraph.length > 0 && (
        <>
          <h3>Calls between these services</h3>
          <table class="results"><thead><tr><th>client</th><th>server</th><th class="num">calls in window</th></tr></thead>
            <tbody>{m.serviceGraph.map((e) => <tr><td>{e.parent}</td><td>{e.child}</td><td class="num">{e.callCount}</td></tr>)}</tbody></table>
        </>
      )}
      {m.exemplars.length > 0 && (
        <>
          <h3>Exemplars that point at this trace</h3>
          <ul>{m.exemplars.map((e) => <li class="mono">{seriesName(e.seriesLabels)}: {e.exemplars.map((x) => x.value).join(', ')}</li>)}</ul>
        </>
      )}
      {related.length > 0 && (
        <>
          <h3>Related series</h3>
          <div class="chart-grid">
            {related.slice(0, 12).map((s) => (
              <div class="panel"><div class="panel-title mono">{seriesName(s.metric)}</div>
                <Chart series={toChartSeries([s])} height={140} range={[from, to]} /></div>
            ))}
          </div>
          {related.length > 12 && <p class="dim">{related.length - 12} more series: query them on the metrics page.</p>}
        </>
      )}
    </div>
  );
}

function ServiceRED({ service, from, to, step }: { service: string; from: number; to: number; step: number }) {
  const qs = redQueries(service, step);
  const data = useAsync(async (s) => Promise.all(qs.map(async (q) => ({
    ...q,
    series: toChartSeries(await prom.range(q.query, from, to, step, s)),
    exemplars: q.exemplars ? toExemplars(await prom.exemplars(q.exemplars, from, to, s)) : [],
  }))), [service, from, to]);
  return (
    <div class="service-red">
      <h3><span class="swatch" style={{ background: svcColor(service) }} /> {service} <a class="small" href={href('logs', { q: serviceLogQuery(service), from: String(from), to: String(to) })}>logs</a> <a class="small" href={href('traces', { service, from: String(from), to: String(to) })}>traces</a></h3>
      <ErrorBox error={data.error} />
      {data.loading && <Loading what={`${service} metrics`} />}
      <div class="chart-grid">
        {data.data?.map((q) => (
          <div class="panel"><div class="panel-title">{q.title}</div>
            {q.series.length ? <Chart series={q.series} exemplars={q.exemplars} unit={q.unit} height={160} range={[from, to]} testid={q.exemplars.length ? 'chart-exemplars' : 'chart'} />
              : <Empty>no data{q.title.includes('error') ? ' (no errors)' : ''}</Empty>}
          </div>
        ))}
      </div>
    </div>
  );
}

export function toExemplars(groups: { seriesLabels: Record<string, string>; exemplars: { labels: Record<string, string>; value: string; timestamp: number }[] }[]): Exemplar[] {
  const out: Exemplar[] = [];
  for (const g of groups) {
    for (const e of g.exemplars) {
      const id = e.labels.trace_id ?? e.labels.traceID ?? e.labels.traceId ?? e.labels['trace.id'];
      if (!id) continue;
      out.push({ t: e.timestamp, v: Number(e.value), traceId: id.toLowerCase().padStart(32, '0'), title: seriesName(g.seriesLabels) });
    }
  }
  return out;
}
