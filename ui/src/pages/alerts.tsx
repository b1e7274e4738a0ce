// Alerts: every rule (PromQL and LogQL) with its state, last evaluation
// and error; the alerts firing and pending. An alert's page charts its
// expression over its window and shows the evidence behind it: the
// exemplar traces of its series, erroring and slowest first, or the log
// lines it counts, each one click from its trace.
import { getJSON, loki, prom, useAsync } from '../api';
import { Chart, fmtValue, toChartSeries } from '../chart';
import { Empty, ErrorBox, Labels, Loading, fmtTime } from '../components';
import { autoStep, labelsAgree, parseLabelSet, quote, resolveRange, type Range } from '../query';
import { href, traceHref } from '../route';

export interface RuleAlert { labels: Record<string, string>; annotations: Record<string, string>; state: string; activeAt?: string; value: string }
export interface Rule {
  name: string; query: string; type: 'alerting' | 'recording'; health: string; lastError?: string;
  lastEvaluation: string; evaluationTime: number; state?: string; duration?: number; alerts?: RuleAlert[]; labels?: Record<string, string>;
}
export interface RuleGroup { name: string; file: string; interval: number; rules: Rule[]; lastEvaluation: string; evaluationTime: number }
type Lang = 'promql' | 'logql';

async function rulesOf(path: string, signal: AbortSignal): Promise<RuleGroup[]> {
  return (await getJSON(path, undefined, signal)).data?.groups ?? [];
}

/** alertHref is an alert's page: its expression and evidence over its window, from five minutes before it became active. */
export function alertHref(lang: Lang, rule: Rule, a: RuleAlert, now: number): string {
  const active = a.activeAt ? Date.parse(a.activeAt) : now - 3600e3;
  const labels = `{${Object.entries(a.labels).map(([k, v]) => `${k}=${quote(v)}`).join(', ')}}`;
  return href('alert', { lang, expr: rule.query, labels, from: String(active - 300e3), to: String(now + 60e3) });
}

function ago(iso: string, now: number): string {
  const t = Date.parse(iso);
  if (!t || t < 0) return 'never';
  const s = Math.max(0, Math.round((now - t) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

const stateOrder: Record<string, number> = { firing: 0, pending: 1, inactive: 2 };

export function AlertsPage({ now }: { now: number }) {
  const data = useAsync(async (s) => {
    const [p, l] = await Promise.all([rulesOf('/api/v1/rules', s), rulesOf('/prometheus/api/v1/rules', s).catch(() => [])]);
    return [...p.map((g) => ({ g, lang: 'promql' as Lang })), ...l.map((g) => ({ g, lang: 'logql' as Lang }))];
  }, [now]);
  if (data.loading && !data.data) return <section class="page"><Loading what="rules" /></section>;
  const groups = data.data ?? [];
  const active: { lang: Lang; rule: Rule; a: RuleAlert }[] = [];
  for (const { g, lang } of groups) for (const r of g.rules) for (const a of r.alerts ?? []) active.push({ lang, rule: r, a });
  active.sort((x, y) => (stateOrder[x.a.state] ?? 3) - (stateOrder[y.a.state] ?? 3) || (y.a.activeAt ?? '').localeCompare(x.a.activeAt ?? ''));
  return (
    <section class="page">
      <ErrorBox error={data.error} />
      <h2>Alerts <span class="dim">({active.filter((x) => x.a.state === 'firing').length} firing, {active.filter((x) => x.a.state === 'pending').length} pending)</span></h2>
      {active.length === 0
        ? <Empty>No alert is firing or pending.</Empty>
        : <table class="grid" data-testid="alerts">
          <thead><tr><th>state</th><th>alert</th><th>labels</th><th>active since</th><th>value</th><th /></tr></thead>
          <tbody>{active.map(({ lang, rule, a }) => (
            <tr data-testid="alert-row" class={`alert-${a.state}`}>
              <td><span class={`badge ${a.state}`}>{a.state}</span></td>
              <td><b>{a.labels.alertname}</b>{a.annotations.summary && <div class="dim">{a.annotations.summary}</div>}</td>
              <td><Labels labels={Object.fromEntries(Object.entries(a.labels).filter(([k]) => k !== 'alertname'))} /></td>
              <td>{a.activeAt ? `${fmtTime(Date.parse(a.activeAt))} (${ago(a.activeAt, now)})` : ''}</td>
              <td>{fmtValue(Number(a.value))}</td>
              <td><a href={alertHref(lang, rule, a, now)} data-testid="alert-open">traces and logs →</a></td>
            </tr>
          ))}</tbody>
        </table>}
      <h2>Rules</h2>
      {groups.length === 0 && !data.error && <Empty>No rules. Give Lumen rule files with --rules (PromQL) or --logql-rules (LogQL), or turn on the ready-made ones with --rules-builtin=spanmetrics,lumen.</Empty>}
      {groups.map(({ g, lang }) => (
        <div class="rulegroup" data-testid="rule-group">
          <h3>{g.name} <span class="dim">{lang === 'logql' ? 'LogQL' : 'PromQL'} · {g.file} · every {g.interval}s · last {ago(g.lastEvaluation, now)} in {(g.evaluationTime * 1000).toFixed(1)} ms</span></h3>
          <table class="grid">
            <thead><tr><th>rule</th><th>state</th><th>expression</th><th>last evaluation</th><th>took</th><th>error</th></tr></thead>
            <tbody>{g.rules.map((r) => (
              <tr data-testid="rule-row">
                <td><b>{r.name}</b> <span class="dim">{r.type}{r.duration ? `, for ${r.duration}s` : ''}</span></td>
                <td>{r.type === 'alerting' ? <span class={`badge ${r.state}`}>{r.state}</span> : <span class={`badge ${r.health}`}>{r.health}</span>}</td>
                <td><code><a href={lang === 'logql' ? href('logs', { q: r.query }) : href('metrics', { q: r.query })}>{r.query}</a></code></td>
                <td>{ago(r.lastEvaluation, now)}</td>
                <td>{(r.evaluationTime * 1000).toFixed(1)} ms</td>
                <td class="error-text">{r.lastError ?? ''}</td>
              </tr>
            ))}</tbody>
          </table>
        </div>
      ))}
    </section>
  );
}

interface EvidenceTrace { traceID: string; spanID?: string; service?: string; name?: string; durationSeconds: number; error: boolean; timestamp: number; series: Record<string, string>; found: boolean }
interface EvidenceLine { timestamp: string; line: string; labels: Record<string, string>; traceID?: string }

export function AlertPage({ params, now }: { params: URLSearchParams; now: number }) {
  const lang = (params.get('lang') as Lang) || 'promql';
  const expr = params.get('expr') ?? '';
  const labelText = params.get('labels') ?? '{}';
  const alertLabels = parseLabelSet(labelText) ?? {};
  const range: Range = { from: params.get('from') || 'now-1h', to: params.get('to') || 'now' };
  const rr = resolveRange(range, now);
  const err = 'error' in rr ? rr.error : '';
  const start = 'error' in rr ? 0 : rr.start;
  const end = 'error' in rr ? 0 : rr.end;
  const step = start ? autoStep(start, end) : 0;
  const chart = useAsync(expr && !err ? async (s) => {
    const result = lang === 'logql'
      ? ((await loki.range(expr, start, end, { step }, s)).result as { metric: Record<string, string>; values: [number, string][] }[])
      : await prom.range(expr, start, end, step, s);
    return toChartSeries(result.filter((r) => labelsAgree(alertLabels, r.metric)));
  } : null, [lang, expr, labelText, start, end]);
  const evidence = useAsync(expr && !err ? async (s) => {
    const p = new URLSearchParams({ lang, expr, labels: labelText, start: String(start), end: String(end), limit: '20' });
    return (await getJSON('/api/v1/alert_evidence', p, s)).data as { traces: EvidenceTrace[]; lines: EvidenceLine[] };
  } : null, [lang, expr, labelText, start, end]);
  return (
    <section class="page">
      <p><a href={href('alerts')}>← all alerts</a></p>
      <h2 data-testid="alert-name">{alertLabels.alertname ?? 'Alert'}</h2>
      <Labels labels={alertLabels} />
      <p><code>{expr}</code> <span class="dim">({lang === 'logql' ? 'LogQL' : 'PromQL'})</span>{' '}
        <a href={href(lang === 'logql' ? 'logs' : 'metrics', { q: expr, from: range.from, to: range.to })}>open the query</a></p>
      <ErrorBox error={err || chart.error} />
      {chart.loading && <Loading what="series" />}
      {chart.data && (chart.data.length
        ? <Chart series={chart.data} height={220} range={[start, end]} testid="alert-chart" />
        : <Empty>The expression has no series for this alert in its window.</Empty>)}
      <ErrorBox error={evidence.error} />
      {evidence.loading && <Loading what="evidence" />}
      {evidence.data && lang === 'promql' && <>
        <h3>Traces behind it <span class="dim">exemplars of its series in this window, erroring and slowest first</span></h3>
        {evidence.data.traces.length === 0
          ? <Empty>The series of this expression carry no exemplars in this window. Span metrics (traces_spanmetrics_*) and instrumented histograms do.</Empty>
          : <table class="grid" data-testid="evidence-traces">
            <thead><tr><th /><th>service</th><th>span</th><th>duration</th><th>at</th><th>trace</th><th /></tr></thead>
            <tbody>{evidence.data.traces.map((t) => (
              <tr data-testid="evidence-trace">
                <td>{t.error ? <span class="badge firing">error</span> : ''}</td>
                <td>{t.service ?? t.series.service ?? ''}</td>
                <td>{t.name ?? t.series.span_name ?? ''}</td>
                <td>{fmtValue(t.durationSeconds, 's')}</td>
                <td>{fmtTime(t.timestamp)}</td>
                <td><a href={traceHref(t.traceID)} data-testid="evidence-trace-link"><code>{t.traceID}</code></a></td>
                <td><a href={traceHref(t.traceID, { tab: 'logs' })}>its logs</a></td>
              </tr>
            ))}</tbody>
          </table>}
      </>}
      {evidence.data && lang === 'logql' && <>
        <h3>Lines behind it <span class="dim">the lines it counts in this window, newest first</span></h3>
        {evidence.data.lines.length === 0
          ? <Empty>No line of this alert in this window.</Empty>
          : <table class="grid" data-testid="evidence-lines">
            <tbody>{evidence.data.lines.map((l) => (
              <tr data-testid="evidence-line">
                <td>{fmtTime(Number(BigInt(l.timestamp) / 1000000n))}</td>
                <td><code>{l.line}</code></td>
                <td>{l.traceID ? <a href={traceHref(l.traceID)}>trace</a> : ''}</td>
              </tr>
            ))}</tbody>
          </table>}
      </>}
    </section>
  );
}
