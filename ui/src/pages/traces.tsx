// Traces: the search form, a duration-over-time scatter and the result list.
import { useEffect, useRef, useState } from 'preact/hooks';
import { getJSON, useAsync } from '../api';
import { Empty, ErrorBox, fmtTime, Loading, TimeRangePicker } from '../components';
import { formatDuration, resolveRange, searchParams, type Range, type SearchForm } from '../query';
import { go, href, traceHref } from '../route';

export interface SearchTrace {
  traceId: string; rootService: string; rootName: string; startTimeUnixNano: string; durationNanos: number;
  spanCount: number; errorCount: number; services: string[]; matchedCount: number;
}

const fields: (keyof SearchForm)[] = ['service', 'name', 'status', 'minDuration', 'maxDuration', 'attrs', 'limit'];

export function formFrom(p: URLSearchParams): SearchForm {
  const f = {} as SearchForm;
  for (const k of fields) f[k] = p.get(k) ?? '';
  return f;
}

export function TracesPage({ params, now }: { params: URLSearchParams; now: number }) {
  const range: Range = { from: params.get('from') || 'now-1h', to: params.get('to') || 'now' };
  const urlForm = formFrom(params);
  const [form, setForm] = useState<SearchForm>(urlForm);
  const set = (k: keyof SearchForm) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });
  const submit = (f: SearchForm, r: Range) => go(href('traces', { ...f, from: r.from, to: r.to }));

  const services = useAsync((s) => getJSON('/jaeger/api/services', undefined, s).then((r) => (r.data as string[]).sort()), []);
  const names = useAsync(form.service ? (s) => getJSON(`/jaeger/api/services/${encodeURIComponent(form.service)}/operations`, undefined, s).then((r) => (r.data as string[]).sort()) : null, [form.service]);

  const rr = resolveRange(range, now);
  const built = 'error' in rr ? rr : searchParams(urlForm, rr.start, rr.end);
  const result = useAsync('error' in built ? null : (s) => getJSON('/api/v1/search', built.params, s), [params.toString(), now]);

  return (
    <section class="page">
      <form class="search" onSubmit={(e) => { e.preventDefault(); submit(form, range); }}>
        <label>Service
          <select name="service" value={form.service} onChange={(e) => setForm({ ...form, service: (e.target as HTMLSelectElement).value, name: '' })}>
            <option value="">any</option>
            {(services.data ?? []).map((s) => <option value={s}>{s}</option>)}
            {form.service && !(services.data ?? []).includes(form.service) && <option value={form.service}>{form.service}</option>}
          </select>
        </label>
        <label>Span name
          <input name="name" list="span-names" value={form.name} onInput={set('name')} placeholder="any" />
          <datalist id="span-names">{(names.data ?? []).map((n) => <option value={n} />)}</datalist>
        </label>
        <label>Status
          <select name="status" value={form.status} onChange={set('status')}>
            <option value="">any</option><option value="error">error</option><option value="ok">ok</option><option value="unset">unset</option>
          </select>
        </label>
        <label>Span duration ≥<input name="minDuration" value={form.minDuration} onInput={set('minDuration')} placeholder="e.g. 100ms" size={8} /></label>
        <label>≤<input name="maxDuration" value={form.maxDuration} onInput={set('maxDuration')} placeholder="e.g. 2s" size={8} /></label>
        <label class="grow">Attributes<input name="attrs" value={form.attrs} onInput={set('attrs')} placeholder='http.route=/cart/{id} db.system=postgresql' /></label>
        <label>Limit<input name="limit" value={form.limit} onInput={set('limit')} placeholder="50" size={4} /></label>
        <TimeRangePicker range={range} now={now} onChange={(r) => submit(form, r)} />
        <button type="submit" class="primary">Search</button>
      </form>
      <ErrorBox error={'error' in built ? built.error : result.error || services.error} />
      {result.loading && <Loading what="traces" />}
      {result.data && <Results traces={result.data.traces} partial={result.data.partial} range={'error' in rr ? undefined : rr} />}
    </section>
  );
}

function Results({ traces, partial, range }: { traces: SearchTrace[]; partial: boolean; range?: { start: number; end: number } }) {
  if (!traces.length) return <Empty>No traces match in this time range. Widen the range or loosen the filters.</Empty>;
  return (
    <>
      <Scatter traces={traces} range={range} />
      {partial && <p class="hint">The search stopped at its limit of inspected traces: narrow the time range for a complete answer.</p>}
      <table class="results" data-testid="trace-results">
        <thead><tr><th>Root</th><th>Services</th><th>Start</th><th class="num">Duration</th><th class="num">Spans</th><th class="num">Errors</th></tr></thead>
        <tbody>
          {traces.map((t) => (
            <tr class={t.errorCount ? 'err' : ''}>
              <td><a href={traceHref(t.traceId)} class="trace-link"><b>{t.rootService || '?'}</b> {t.rootName || <i>root span not received</i>}</a>
                <div class="dim mono">{t.traceId}</div></td>
              <td>{t.services.map((s) => <span class="chip">{s}</span>)}</td>
              <td class="nowrap">{fmtTime(Number(BigInt(t.startTimeUnixNano) / 1000000n))}</td>
              <td class="num">{formatDuration(t.durationNanos)}</td>
              <td class="num">{t.spanCount}</td>
              <td class="num">{t.errorCount || ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

/** Scatter plots each trace's duration over its start time; a dot opens the trace. */
function Scatter({ traces, range }: { traces: SearchTrace[]; range?: { start: number; end: number } }) {
  const box = useRef<SVGSVGElement>(null);
  const [W, setW] = useState(1000);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const ro = new ResizeObserver(() => setW(Math.max(200, el.clientWidth)));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const H = 160, P = 36;
  const xs = traces.map((t) => Number(BigInt(t.startTimeUnixNano) / 1000000n));
  const x0 = range?.start ?? Math.min(...xs);
  const x1 = range?.end ?? Math.max(...xs) + 1;
  const maxD = Math.max(...traces.map((t) => t.durationNanos), 1);
  const y = (d: number) => H - 16 - (Math.log10(1 + d / 1e3) / Math.log10(1 + maxD / 1e3)) * (H - 28);
  const x = (ms: number) => P + ((ms - x0) / Math.max(1, x1 - x0)) * (W - P - 8);
  return (
    <svg class="scatter" ref={box} viewBox={`0 0 ${W} ${H}`} role="img" aria-label="trace durations over time">
      <line x1={P} y1={H - 16} x2={W} y2={H - 16} class="axis" />
      <text x={2} y={14} class="tick">{formatDuration(maxD)}</text>
      <text x={2} y={H - 18} class="tick">0</text>
      <text x={P} y={H - 2} class="tick">{fmtTime(x0).slice(11, 19)}</text>
      <text x={W - 60} y={H - 2} class="tick">{fmtTime(x1).slice(11, 19)}</text>
      {traces.map((t, i) => (
        <a href={traceHref(t.traceId)}>
          <circle cx={x(xs[i])} cy={y(t.durationNanos)} r={5} class={t.errorCount ? 'dot err' : 'dot'}>
            <title>{`${t.rootService} ${t.rootName}\n${formatDuration(t.durationNanos)}, ${t.spanCount} spans`}</title>
          </circle>
        </a>
      ))}
    </svg>
  );
}
