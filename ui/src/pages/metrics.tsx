// Metrics: PromQL with completion, time range and step, a chart with its
// legend, and exemplars as dots that open their traces.
import { useEffect, useState } from 'preact/hooks';
import { prom, useAsync } from '../api';
import { Chart, toChartSeries } from '../chart';
import { Empty, ErrorBox, Loading, QueryBox, TimeRangePicker } from '../components';
import { autoStep, capSeries, parseDuration, resolveRange, type Completion, type Range } from '../query';
import { go, href } from '../route';
import { toExemplars } from './trace';

let metricNames: Promise<string[]> | null = null;

export function promCandidates(c: Completion): Promise<string[]> {
  if (c.kind === 'metric') {
    metricNames ??= prom.labelValues('__name__').catch((e) => { metricNames = null; throw e; });
    return metricNames;
  }
  if (c.kind === 'label') return prom.labelNames(c.metric).then((l) => l.filter((n) => n !== '__name__'));
  if (c.kind === 'value' && c.label) return prom.labelValues(c.label, c.metric);
  return Promise.resolve([]);
}

export function MetricsPage({ params, now }: { params: URLSearchParams; now: number }) {
  const range: Range = { from: params.get('from') || 'now-1h', to: params.get('to') || 'now' };
  const q = params.get('q') ?? '';
  const stepParam = params.get('step') ?? '';
  const [text, setText] = useState(q);
  const [stepText, setStepText] = useState(stepParam);
  useEffect(() => setText(q), [q]);
  const nav = (next: Record<string, string>) => go(href('metrics', { q, from: range.from, to: range.to, step: stepParam, ...next }));
  const rr = resolveRange(range, now);
  let error = 'error' in rr ? rr.error : '';
  let step = 0;
  if (!('error' in rr)) {
    step = autoStep(rr.start, rr.end);
    if (stepParam) {
      const ns = parseDuration(stepParam);
      if (ns == null || ns < 1e9) error = `step "${stepParam}" is not a duration of a second or more (like 15s or 1m)`;
      else step = ns / 1e9;
    }
  }
  const data = useAsync(q && !error && !('error' in rr) ? async (s) => {
    const [series, ex] = await Promise.all([
      prom.range(q, rr.start, rr.end, step, s),
      prom.exemplars(q, rr.start, rr.end, s).catch(() => []),
    ]);
    const { shown, hidden } = capSeries(toChartSeries(series));
    return { series: shown, hidden, exemplars: toExemplars(ex) };
  } : null, [q, error, !('error' in rr) && rr.start, !('error' in rr) && rr.end, step]);
  return (
    <section class="page">
      <div class="querybar">
        <QueryBox label="PromQL query" lang="promql" value={text} onInput={setText} onSubmit={(v) => nav({ q: v })} candidates={promCandidates}
          placeholder='sum by (service) (rate(traces_spanmetrics_calls_total[5m]))' />
        <TimeRangePicker range={range} now={now} onChange={(r) => nav({ from: r.from, to: r.to })} />
        <label class="inline">step <input size={5} value={stepText} placeholder={step ? `${step}s` : 'auto'} onInput={(e) => setStepText((e.target as HTMLInputElement).value)} onKeyDown={(e) => e.key === 'Enter' && nav({ q: text, step: stepText })} /></label>
        <button class="primary" onClick={() => nav({ q: text, step: stepText })}>Run query</button>
      </div>
      <ErrorBox error={error || data.error} />
      {!q && <Empty>Write a PromQL query and press Enter; metric names and labels complete as you type. Try <a href={href('metrics', { q: 'sum by (service) (rate(traces_spanmetrics_calls_total[5m]))' })}>request rates by service</a> or <a href={href('metrics', { q: 'histogram_quantile(0.95, sum by (service, le) (rate(traces_spanmetrics_duration_seconds_bucket[5m])))' })}>p95 latency by service</a>.</Empty>}
      {data.loading && <Loading what="series" />}
      {data.data && (data.data.series.length
        ? <>
          {data.data.hidden > 0 && <p class="hint">The query returned {data.data.series.length + data.data.hidden} series; the chart shows the first {data.data.series.length}. Aggregate (sum by …) or narrow the selector.</p>}
          <p class="dim">{data.data.series.length} series, step {step}s{data.data.exemplars.length ? `, ${data.data.exemplars.length} exemplars (dots: click to open the trace)` : ''}. Drag across the chart to zoom.</p>
          <Chart series={data.data.series} exemplars={data.data.exemplars} height={320} range={'error' in rr ? undefined : [rr.start, rr.end]}
            onZoom={(a, b) => nav({ from: String(a), to: String(b) })} testid="metrics-chart" />
        </>
        : <Empty>The query returned no series in this time range.</Empty>)}
    </section>
  );
}
