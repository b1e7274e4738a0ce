// Logs: LogQL with label/value completion, a volume histogram, expandable
// lines that link to their traces, and live tail over the websocket.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { loki, useAsync, wsProtocols } from '../api';
import { Chart, toChartSeries } from '../chart';
import { Empty, ErrorBox, fmtTime, Labels, Loading, QueryBox, TimeRangePicker } from '../components';
import { autoStep, capSeries, isLogQuery, resolveRange, selectorOf, traceOfLine, volumeQuery, type Completion, type Range } from '../query';
import { go, href, traceHref } from '../route';

interface Line { ns: string; ms: number; line: string; labels: Record<string, string> }

function flatten(streams: { stream: Record<string, string>; values: [string, string][] }[], backward: boolean): Line[] {
  const out: Line[] = [];
  for (const s of streams) for (const [ns, line] of s.values) out.push({ ns, ms: Number(BigInt(ns) / 1000000n), line, labels: s.stream });
  out.sort((a, b) => (BigInt(a.ns) < BigInt(b.ns) ? -1 : BigInt(a.ns) > BigInt(b.ns) ? 1 : 0));
  return backward ? out.reverse() : out;
}

export function LogsPage({ params, now }: { params: URLSearchParams; now: number }) {
  const range: Range = { from: params.get('from') || 'now-1h', to: params.get('to') || 'now' };
  const q = params.get('q') ?? '';
  const live = params.get('live') === '1';
  const [text, setText] = useState(q);
  useEffect(() => setText(q), [q]);
  const nav = (next: Record<string, string>) => go(href('logs', { q, from: range.from, to: range.to, live: live ? '1' : '', ...next }));
  const rr = resolveRange(range, now);
  const candidates = async (c: Completion) => {
    if ('error' in rr) return [];
    if (c.kind === 'label') return loki.labels(rr.start, rr.end);
    if (c.kind === 'value' && c.label) return loki.labelValues(c.label, rr.start, rr.end);
    return [];
  };
  return (
    <section class="page">
      <div class="querybar">
        <QueryBox label="LogQL query" lang="logql" value={text} onInput={setText} onSubmit={(v) => nav({ q: v })} candidates={candidates}
          placeholder='{service_name="frontend"} |= "error" | logfmt | level="error"' />
        <TimeRangePicker range={range} now={now} onChange={(r) => nav({ from: r.from, to: r.to })} />
        <button class="primary" onClick={() => nav({ q: text, live: '' })}>Run query</button>
        <button class={live ? 'live on' : 'live'} data-testid="live-toggle" onClick={() => nav({ q: text, live: live ? '' : '1' })}>{live ? 'Stop live tail' : 'Live tail'}</button>
      </div>
      <ErrorBox error={'error' in rr ? rr.error : ''} />
      {!q && <Empty>Write a LogQL query — a stream selector such as <code>{'{service_name="frontend"}'}</code>, then filters and parsers — and press Enter. Labels and their values complete as you type.</Empty>}
      {q && live && <LiveTail query={q} />}
      {q && !live && !('error' in rr) && <LogResults q={q} start={rr.start} end={rr.end} onZoom={(a, b) => nav({ from: String(a), to: String(b) })} />}
    </section>
  );
}

function LogResults({ q, start, end, onZoom }: { q: string; start: number; end: number; onZoom: (a: number, b: number) => void }) {
  const logQuery = isLogQuery(q);
  const step = autoStep(start, end, 120);
  const lines = useAsync((s) => loki.range(q, start, end, { limit: 1000, step }, s), [q, start, end]);
  const volume = useAsync(logQuery ? (s) => loki.range(volumeQuery(q, step), start, end, { step }, s) : null, [q, start, end]);
  const sel = selectorOf(q);
  const index = useAsync(logQuery && sel ? (s) => loki.series(sel, start, end, s) : null, [sel, start, end]);
  const indexNames = useMemo(() => new Set((index.data ?? []).flatMap((l) => Object.keys(l))), [index.data]);
  if (lines.loading && !lines.data) return <Loading what="log lines" />;
  if (lines.error) return <ErrorBox error={lines.error} />;
  const d = lines.data;
  if (!d) return null;
  if (d.resultType === 'matrix') {
    const { shown, hidden } = capSeries(toChartSeries(d.result));
    if (!shown.length) return <Empty>The query returned no series in this time range.</Empty>;
    return (
      <>
        {hidden > 0 && <p class="hint">The query returned {shown.length + hidden} series; the chart shows the first {shown.length}. Aggregate (sum by …) or narrow the selector.</p>}
        <Chart series={shown} onZoom={onZoom} range={[start, end]} />
      </>
    );
  }
  const all = flatten(d.result, true);
  const vol = volume.data?.resultType === 'matrix' ? toChartSeries(volume.data.result).map((s) => ({ ...s, label: 'lines' })) : [];
  return (
    <>
      {vol.length > 0 && <div class="panel"><div class="panel-title">Log volume (lines per {step}s) — drag to zoom</div><Chart series={vol} bars height={110} onZoom={onZoom} range={[start, end]} testid="volume" /></div>}
      <ErrorBox error={volume.error} />
      {all.length === 0
        ? <Empty>No lines match in this time range.</Empty>
        : <>
          <p class="dim">{all.length} newest lines{all.length >= 1000 ? ' (the limit: narrow the query or the time range)' : ''}. Click a line for its labels.</p>
          <LineList lines={all} indexNames={indexNames} />
        </>}
    </>
  );
}

function LineList({ lines, indexNames, testid = 'log-lines' }: { lines: Line[]; indexNames: Set<string>; testid?: string }) {
  const [open, setOpen] = useState<Set<string>>(new Set());
  return (
    <table class="loglines" data-testid={testid}>
      <tbody>
        {lines.map((l, i) => {
          const key = `${l.ns}/${i}`;
          const t = traceOfLine(l.line, l.labels);
          const isOpen = open.has(key);
          const stream: Record<string, string> = {};
          const meta: Record<string, string> = {};
          for (const [k, v] of Object.entries(l.labels)) (indexNames.size === 0 || indexNames.has(k) ? stream : meta)[k] = v;
          return (
            <tr class="logline" onClick={() => { const n = new Set(open); if (isOpen) n.delete(key); else n.add(key); setOpen(n); }}>
              <td class="nowrap dim">{fmtTime(l.ms)}</td>
              <td class="nowrap">{t ? <a class="trace-btn" href={traceHref(t.traceId, { tab: 'logs', span: t.spanId })} onClick={(e) => e.stopPropagation()} title={`trace ${t.traceId}`}>trace</a> : ''}</td>
              <td class="line">{l.line}
                {isOpen && (
                  <div class="line-details" onClick={(e) => e.stopPropagation()}>
                    <div class="dim">stream labels</div><Labels labels={stream} />
                    {Object.keys(meta).length > 0 && <><div class="dim">structured metadata and parsed fields</div><Labels labels={meta} /></>}
                    {t && <div>trace <a href={traceHref(t.traceId)} class="mono">{t.traceId}</a>{t.spanId && <> span <span class="mono">{t.spanId}</span></>}</div>}
                  </div>
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

const MAX_LIVE = 1000;

function LiveTail({ query }: { query: string }) {
  const [lines, setLines] = useState<Line[]>([]);
  const [paused, setPaused] = useState(false);
  const [status, setStatus] = useState('connecting');
  const [rate, setRate] = useState(0);
  const buffer = useRef<Line[]>([]);
  const pausedRef = useRef(false);
  const arrivals = useRef<number[]>([]);
  pausedRef.current = paused;
  useEffect(() => {
    setLines([]);
    buffer.current = [];
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const start = `${Date.now() - 60_000}000000`;
    const ws = new WebSocket(`${proto}://${location.host}/loki/api/v1/tail?${new URLSearchParams({ query, start, limit: '100' })}`, wsProtocols());
    ws.onopen = () => setStatus('live');
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      const got = flatten(msg.streams ?? [], true);
      const t = Date.now();
      for (let i = 0; i < got.length; i++) arrivals.current.push(t);
      buffer.current = [...got, ...buffer.current].slice(0, MAX_LIVE);
      if (!pausedRef.current) setLines(buffer.current);
    };
    ws.onerror = () => setStatus('error: the websocket failed');
    ws.onclose = (ev) => setStatus(ev.code === 1000 || ev.code === 1005 ? 'closed' : `closed by the server (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`);
    const timer = setInterval(() => {
      const cut = Date.now() - 10_000;
      arrivals.current = arrivals.current.filter((a) => a >= cut);
      setRate(arrivals.current.length / 10);
    }, 1000);
    return () => {
      clearInterval(timer);
      ws.close(1000);
    };
  }, [query]);
  return (
    <div class="live-tail" data-testid="live-tail">
      <div class="wf-tools">
        <span class={`status ${status === 'live' && !paused ? 'ok' : ''}`} data-testid="live-status">{paused ? 'paused' : status}</span>
        <span data-testid="live-rate">{rate.toFixed(1)} lines/s</span>
        <button data-testid="live-pause" onClick={() => { if (paused) setLines(buffer.current); setPaused(!paused); }}>{paused ? 'Resume' : 'Pause'}</button>
        <button onClick={() => { buffer.current = []; setLines([]); }}>Clear</button>
        {paused && buffer.current.length > lines.length && <span class="dim">{buffer.current.length - lines.length} new lines held</span>}
        <span class="dim">newest first, last {MAX_LIVE} kept</span>
      </div>
      {lines.length ? <LineList lines={lines} indexNames={new Set()} testid="live-lines" /> : <Empty>Waiting for lines that match…</Empty>}
    </div>
  );
}
