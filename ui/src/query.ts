// Query building: time ranges, durations, the search API's parameters, LogQL
// and PromQL helpers, completion contexts and trace ids in log lines. Pure
// functions, unit-tested in test/query.test.ts.

/** A time range as written in the URL: `now-1h`, `now`, or unix milliseconds. */
export interface Range { from: string; to: string }

export const presets: { label: string; from: string }[] = [
  { label: 'Last 5 minutes', from: 'now-5m' },
  { label: 'Last 15 minutes', from: 'now-15m' },
  { label: 'Last 1 hour', from: 'now-1h' },
  { label: 'Last 6 hours', from: 'now-6h' },
  { label: 'Last 24 hours', from: 'now-24h' },
  { label: 'Last 7 days', from: 'now-7d' },
];

const units: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/** resolveTime turns `now`, `now-15m` or unix ms into unix ms; null when it is neither. */
export function resolveTime(s: string, now: number): number | null {
  const t = s.trim();
  if (t === 'now') return now;
  const rel = /^now-(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(t);
  if (rel) return now - Number(rel[1]) * units[rel[2]];
  if (/^\d{10,16}$/.test(t)) return Number(t);
  const d = Date.parse(t);
  return Number.isNaN(d) ? null : d;
}

/** resolveRange gives [start, end] in unix ms, or an error naming the bad bound. */
export function resolveRange(r: Range, now: number): { start: number; end: number } | { error: string } {
  const start = resolveTime(r.from, now);
  if (start == null) return { error: `cannot read the start time "${r.from}"` };
  const end = resolveTime(r.to, now);
  if (end == null) return { error: `cannot read the end time "${r.to}"` };
  if (end <= start) return { error: 'the end of the time range is not after its start' };
  return { start, end };
}

/** parseDuration reads Prometheus/Go durations (`250ms`, `1.5s`, `1m30s`) into nanoseconds. */
export function parseDuration(s: string): number | null {
  const t = s.trim();
  if (!t) return null;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)/gy;
  const ns: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9, d: 86400e9 };
  let total = 0;
  let m: RegExpExecArray | null;
  let pos = 0;
  while ((m = re.exec(t))) {
    total += Number(m[1]) * ns[m[2]];
    pos = re.lastIndex;
  }
  return pos === t.length && pos > 0 ? Math.round(total) : null;
}

/** formatDuration writes nanoseconds the way people read them: 850µs, 12.3ms, 1.52s, 2m5s. */
export function formatDuration(ns: number): string {
  if (ns < 1e3) return `${Math.round(ns)}ns`;
  if (ns < 1e6) return `${trim(ns / 1e3)}µs`;
  if (ns < 1e9) return `${trim(ns / 1e6)}ms`;
  if (ns < 60e9) return `${trim(ns / 1e9)}s`;
  const m = Math.floor(ns / 60e9);
  const s = Math.round((ns - m * 60e9) / 1e9);
  return s ? `${m}m${s}s` : `${m}m`;
}

function trim(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1).replace(/\.0$/, '') : x.toFixed(2).replace(/\.?0+$/, '');
}

/** The traces page's search form, as kept in the URL. */
export interface SearchForm {
  service: string;
  name: string;
  status: string; // '', 'error', 'ok', 'unset'
  minDuration: string;
  maxDuration: string;
  attrs: string; // `key=value key2="a b"`
  limit: string;
}

/** parseAttrs reads `k=v k2="v 2"` into pairs; it reports the first token that is not key=value. */
export function parseAttrs(s: string): { pairs: [string, string][]; error?: string } {
  const pairs: [string, string][] = [];
  const re = /\s*([^\s=]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/y;
  let pos = 0;
  const t = s.trimEnd();
  while (pos < t.length) {
    re.lastIndex = pos;
    const m = re.exec(t);
    if (!m) {
      const bad = t.slice(pos).trim().split(/\s+/)[0];
      return { pairs, error: `"${bad}" is not key=value` };
    }
    pairs.push([m[1], m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]]);
    pos = re.lastIndex;
  }
  return { pairs };
}

/** searchParams builds the query string of GET /api/v1/search, or names what is wrong in the form. */
export function searchParams(f: SearchForm, start: number, end: number): { params: URLSearchParams } | { error: string } {
  const p = new URLSearchParams();
  if (f.service) p.set('service', f.service);
  if (f.name) p.set('name', f.name);
  if (f.status) p.set('status', f.status);
  for (const [k, v] of [['minDuration', f.minDuration], ['maxDuration', f.maxDuration]] as const) {
    if (!v) continue;
    if (parseDuration(v) == null) return { error: `${k === 'minDuration' ? 'minimum' : 'maximum'} duration "${v}" is not a duration like 250ms or 1.5s` };
    p.set(k, v);
  }
  const a = parseAttrs(f.attrs);
  if (a.error) return { error: `attributes: ${a.error}` };
  for (const [k, v] of a.pairs) p.append('attr', `${k}=${v}`);
  p.set('start', String(Math.floor(start / 1000)));
  p.set('end', String(Math.ceil(end / 1000)));
  p.set('limit', f.limit || '50');
  return { params: p };
}

/** autoStep picks a round step in seconds that gives at most about `points` points. */
export function autoStep(start: number, end: number, points = 250): number {
  const raw = Math.max(1, (end - start) / 1000 / points);
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
  return steps.find((s) => s >= raw) ?? Math.ceil(raw / 86400) * 86400;
}

/** isLogQuery tells a LogQL log query (a selector and pipeline) from a metric query. */
export function isLogQuery(q: string): boolean {
  return q.trim().startsWith('{');
}

/** selectorOf returns the stream selector `{…}` that starts a log query, or '' if there is none. */
export function selectorOf(q: string): string {
  const t = q.trim();
  if (!t.startsWith('{')) return '';
  let inStr: string | null = null;
  for (let i = 1; i < t.length; i++) {
    const c = t[i];
    if (inStr) {
      if (c === '\\' && inStr === '"') i++;
      else if (c === inStr) inStr = null;
    } else if (c === '"' || c === '`') inStr = c;
    else if (c === '}') return t.slice(0, i + 1);
  }
  return '';
}

/** volumeQuery is the metric query behind the logs page's histogram. */
export function volumeQuery(q: string, stepSec: number): string {
  return `sum(count_over_time(${q.trim()} [${stepSec}s]))`;
}

/** quote writes a string as a LogQL/PromQL double-quoted string. */
export function quote(s: string): string {
  return JSON.stringify(s);
}

/** serviceLogQuery is the logs of one service, as Loki's OTLP mapping labels them. */
export function serviceLogQuery(service: string): string {
  return `{service_name=${quote(service)}}`;
}

/** The PromQL behind the services page over a window of `w` seconds ending at the query time. */
export function serviceQueries(w: number): Record<'rate' | 'allRate' | 'errors' | 'p50' | 'p95' | 'p99' | 'edges' | 'edgeErrors', string> {
  const r = `[${Math.max(60, Math.round(w))}s]`;
  const entry = 'span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"';
  const q = (p: number) => `histogram_quantile(${p}, sum by (service, le) (rate(traces_spanmetrics_duration_seconds_bucket{${entry}}${r})))`;
  return {
    rate: `sum by (service) (rate(traces_spanmetrics_calls_total{${entry}}${r}))`,
    allRate: `sum by (service) (rate(traces_spanmetrics_calls_total${r}))`,
    errors: `sum by (service) (rate(traces_spanmetrics_calls_total{status_code="STATUS_CODE_ERROR"}${r}))`,
    p50: q(0.5),
    p95: q(0.95),
    p99: q(0.99),
    edges: `sum by (client, server) (increase(traces_service_graph_request_total${r}))`,
    edgeErrors: `sum by (client, server) (increase(traces_service_graph_request_failed_total${r}))`,
  };
}

/** redQueries are a service's rate, errors and latency over the trace view's metrics tab. */
export function redQueries(service: string, stepSec: number): { title: string; query: string; unit: string; exemplars?: string }[] {
  const s = `service=${quote(service)}`;
  const r = `[${Math.max(60, stepSec * 4)}s]`;
  return [
    { title: `${service}: requests/s`, unit: 'req/s', query: `sum by (span_name) (rate(traces_spanmetrics_calls_total{${s}}${r}))` },
    { title: `${service}: errors/s`, unit: 'err/s', query: `sum by (span_name) (rate(traces_spanmetrics_calls_total{${s}, status_code="STATUS_CODE_ERROR"}${r}))` },
    {
      title: `${service}: p95 latency`, unit: 's',
      query: `histogram_quantile(0.95, sum by (span_name, le) (rate(traces_spanmetrics_duration_seconds_bucket{${s}}${r})))`,
      exemplars: `traces_spanmetrics_duration_seconds_bucket{${s}}`,
    },
  ];
}

/** What a query box completes at the cursor. */
export interface Completion { kind: 'metric' | 'label' | 'value'; from: number; to: number; prefix: string; label?: string; metric?: string }

/**
 * completionAt finds what is being typed at the cursor of a PromQL or LogQL
 * query: a metric name (PromQL, outside braces), a label name inside braces,
 * or a label value inside the quotes after `label=`, `!=`, `=~` or `!~`.
 */
export function completionAt(text: string, cursor: number, lang: 'promql' | 'logql'): Completion | null {
  // Find whether the cursor is inside braces and inside a string.
  let brace = -1;
  let strStart = -1;
  for (let i = 0; i < cursor; i++) {
    const c = text[i];
    if (strStart >= 0) {
      if (c === '\\') i++;
      else if (c === '"') strStart = -1;
      continue;
    }
    if (c === '"') strStart = i;
    else if (c === '{') brace = i;
    else if (c === '}') brace = -1;
  }
  if (strStart >= 0) {
    if (brace < 0) return null;
    const m = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*$/.exec(text.slice(brace + 1, strStart));
    if (!m) return null;
    let end = cursor;
    while (end < text.length && text[end] !== '"' && text[end] !== '\\') end++;
    if (text[end] !== '"') end = cursor; // an unclosed string: replace only what was typed
    const metric = lang === 'promql' ? /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/.exec(text.slice(0, brace))?.[1] : undefined;
    return { kind: 'value', from: strStart + 1, to: end, prefix: text.slice(strStart + 1, cursor), label: m[1], metric };
  }
  let from = cursor;
  while (from > 0 && /[a-zA-Z0-9_:]/.test(text[from - 1])) from--;
  let to = cursor;
  while (to < text.length && /[a-zA-Z0-9_:]/.test(text[to])) to++;
  const prefix = text.slice(from, cursor);
  if (brace >= 0) {
    const before = text.slice(brace + 1, from);
    if (!/(^|,)\s*$/.test(before)) return null;
    const metric = lang === 'promql' ? /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/.exec(text.slice(0, brace))?.[1] : undefined;
    return { kind: 'label', from, to, prefix, metric };
  }
  if (lang === 'logql' || prefix === '' || /^\d/.test(prefix)) return null;
  // A word followed by `(` is a function, not a metric; `by (`/`without (` hold labels.
  if (/\b(by|without)\s*\([^)]*$/.test(text.slice(0, from))) return { kind: 'label', from, to, prefix };
  return { kind: 'metric', from, to, prefix };
}

/** suggest filters candidates for a completion: prefix matches first, then substring matches. */
export function suggest(cands: string[], prefix: string, max = 12): string[] {
  const p = prefix.toLowerCase();
  const starts: string[] = [];
  const contains: string[] = [];
  for (const c of cands) {
    const l = c.toLowerCase();
    if (l === p) continue;
    if (l.startsWith(p)) starts.push(c);
    else if (p && l.includes(p)) contains.push(c);
  }
  return [...starts, ...contains].slice(0, max);
}

/** applyCompletion replaces the completed token; it returns the new text and cursor. */
export function applyCompletion(text: string, c: Completion, value: string): { text: string; cursor: number } {
  let v = value;
  if (c.kind === 'value') {
    v = value.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
    if (text[c.to] !== '"') v += '"'; // close the string the user opened
    const next = text.slice(0, c.from) + v + text.slice(c.to);
    return { text: next, cursor: c.from + v.length + (next[c.from + v.length] === '"' ? 1 : 0) };
  }
  return { text: text.slice(0, c.from) + v + text.slice(c.to), cursor: c.from + v.length };
}

const idKeys = /(?:^|[\s{,;"'(])"?(?:trace[_.-]?id)"?\s*[:=]\s*"?([0-9a-fA-F]{32}|[0-9a-fA-F]{16})\b/i;
const spanKeys = /(?:^|[\s{,;"'(])"?(?:span[_.-]?id)"?\s*[:=]\s*"?([0-9a-fA-F]{16})\b/i;
const traceparent = /\b00-([0-9a-fA-F]{32})-([0-9a-fA-F]{16})-[0-9a-fA-F]{2}\b/;

/**
 * traceOfLine finds the trace (and span) a log line belongs to, in the order
 * the server uses: labels or structured metadata named trace_id/traceId/…,
 * then a field in the line (JSON, logfmt, `key: value`), then a W3C
 * traceparent. A 16-digit id is the low half of a 128-bit one.
 */
export function traceOfLine(line: string, labels: Record<string, string>): { traceId: string; spanId: string } | null {
  let traceId = '';
  let spanId = '';
  for (const [k, v] of Object.entries(labels)) {
    const key = k.toLowerCase().replace(/[_.-]/g, '');
    if (key === 'traceid' && /^([0-9a-f]{32}|[0-9a-f]{16})$/i.test(v)) traceId = v;
    if (key === 'spanid' && /^[0-9a-f]{16}$/i.test(v)) spanId = v;
  }
  if (!traceId) {
    const m = idKeys.exec(line);
    if (m) traceId = m[1];
  }
  if (!spanId) {
    const m = spanKeys.exec(line);
    if (m) spanId = m[1];
  }
  if (!traceId) {
    const m = traceparent.exec(line);
    if (m) {
      traceId = m[1];
      spanId = spanId || m[2];
    }
  }
  if (!traceId || /^0+$/.test(traceId)) return null;
  return { traceId: traceId.toLowerCase().padStart(32, '0'), spanId: spanId.toLowerCase() };
}

/** maxChartSeries bounds what one chart draws: more lines than this are unreadable and slow. */
export const maxChartSeries = 200;

/** capSeries keeps the first max series and says how many were left out. */
export function capSeries<T>(series: T[], max = maxChartSeries): { shown: T[]; hidden: number } {
  return series.length > max ? { shown: series.slice(0, max), hidden: series.length - max } : { shown: series, hidden: 0 };
}

/**
 * parseLabelSet reads a label set as Prometheus writes one
 * ({a="b", c="d\"e"}); null when it is not one.
 */
export function parseLabelSet(s: string): Record<string, string> | null {
  const t = s.trim();
  if (!t.startsWith('{') || !t.endsWith('}')) return null;
  const out: Record<string, string> = {};
  const re = /\s*([A-Za-z_][A-Za-z0-9_.]*|"(?:[^"\\]|\\.)*")\s*=\s*("(?:[^"\\]|\\.)*")\s*(,|$)/y;
  const body = t.slice(1, -1);
  re.lastIndex = 0;
  while (re.lastIndex < body.length) {
    const m = re.exec(body);
    if (!m) return body.slice(re.lastIndex).trim() === '' ? out : null;
    const name = m[1].startsWith('"') ? JSON.parse(m[1]) : m[1];
    out[name] = JSON.parse(m[2]);
    if (m[3] === '') break;
  }
  return out;
}

/** labelsAgree: every label of the series that the alert also has is the same (an alert adds its rule's labels and alertname). */
export function labelsAgree(alert: Record<string, string>, series: Record<string, string>): boolean {
  return Object.entries(series).every(([k, v]) => k === '__name__' || !(k in alert) || alert[k] === v);
}
