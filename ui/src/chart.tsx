// Time-series charts with uPlot; exemplars drawn over the plot as buttons
// that open the trace they point to.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { go, traceHref } from './route';

export interface ChartSeries { label: string; points: [number, number][] } // [unix s, value]
export interface Exemplar { t: number; v: number; traceId: string; title: string }

const palette = ['#3b82f6', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#06b6d4', '#ec4899', '#84cc16', '#f97316', '#6366f1'];

export function color(i: number): string {
  return palette[i % palette.length];
}

/** align puts every series on one sorted time axis, with nulls where a series has no point. */
export function align(series: ChartSeries[]): uPlot.AlignedData {
  const ts = new Set<number>();
  for (const s of series) for (const [t] of s.points) ts.add(t);
  const xs = [...ts].sort((a, b) => a - b);
  const idx = new Map(xs.map((t, i) => [t, i]));
  const ys = series.map((s) => {
    const y: (number | null)[] = new Array(xs.length).fill(null);
    for (const [t, v] of s.points) y[idx.get(t)!] = Number.isFinite(v) ? v : null;
    return y;
  });
  return [xs, ...ys] as uPlot.AlignedData;
}

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

export function fmtValue(v: number | null, unit = ''): string {
  if (v == null || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  let s: string;
  if (unit === 's') {
    if (a === 0) return '0';
    if (a < 1e-3) return `${(v * 1e6).toFixed(0)}µs`;
    if (a < 1) return `${(v * 1e3).toPrecision(3)}ms`;
    return `${v.toPrecision(3)}s`;
  }
  if (a >= 1e9) s = `${(v / 1e9).toPrecision(3)}G`;
  else if (a >= 1e6) s = `${(v / 1e6).toPrecision(3)}M`;
  else if (a >= 1e3) s = `${(v / 1e3).toPrecision(3)}k`;
  else if (a === 0) s = '0';
  else s = String(Number(v.toPrecision(3)));
  return unit && unit !== 's' ? `${s} ${unit}` : s;
}

/**
 * Chart draws lines (or bars) with a legend; exemplars become dots that
 * navigate to their trace; dragging across the plot zooms (onZoom).
 */
export function Chart(props: {
  series: ChartSeries[]; exemplars?: Exemplar[]; height?: number; unit?: string; bars?: boolean;
  onZoom?: (startMs: number, endMs: number) => void; testid?: string; range?: [number, number];
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const axis = { stroke: cssVar('--fg-dim'), grid: { stroke: cssVar('--grid'), width: 1 }, ticks: { stroke: cssVar('--grid'), width: 1 } };
    const exemplars = props.exemplars ?? [];
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height ?? 220,
      series: [
        {},
        ...props.series.map((s, i) => ({
          label: s.label,
          stroke: color(i),
          width: 1.5,
          fill: props.bars ? `${color(i)}99` : undefined,
          paths: props.bars ? uPlot.paths.bars!({ size: [0.8, 40] }) : undefined,
          points: { show: !props.bars && s.points.length < 3 },
          value: (_u: uPlot, v: number | null) => fmtValue(v, props.unit),
        })),
      ],
      axes: [axis, { ...axis, size: 64, values: (_u: uPlot, vals: number[]) => vals.map((v) => fmtValue(v, props.unit === 's' ? 's' : '')) }],
      scales: { x: { time: true, ...(props.range ? { range: () => [props.range![0] / 1000, props.range![1] / 1000] as [number, number] } : {}) } },
      legend: { show: props.series.length > 0 },
      cursor: { drag: { x: !!props.onZoom, y: false } },
      hooks: {
        setSelect: [(u) => {
          if (!props.onZoom || u.select.width < 5) return;
          const a = u.posToVal(u.select.left, 'x');
          const b = u.posToVal(u.select.left + u.select.width, 'x');
          props.onZoom(Math.floor(a * 1000), Math.ceil(b * 1000));
        }],
        draw: [(u) => {
          // Exemplar dots: positioned over the plot, clamped into it.
          const layer = u.over.querySelector('.exemplars') ?? u.over.appendChild(Object.assign(document.createElement('div'), { className: 'exemplars' }));
          layer.replaceChildren();
          const w = u.over.clientWidth;
          const h = u.over.clientHeight;
          for (const ex of exemplars) {
            const x = u.valToPos(ex.t, 'x');
            if (!(x >= 0 && x <= w)) continue;
            const yRaw = u.valToPos(ex.v, 'y');
            const y = Number.isFinite(yRaw) ? Math.min(h - 4, Math.max(4, yRaw)) : h / 2;
            const b = document.createElement('a');
            b.className = 'exemplar';
            b.href = traceHref(ex.traceId);
            b.title = `${ex.title}\nvalue ${fmtValue(ex.v, props.unit)}\ntrace ${ex.traceId}`;
            b.dataset.traceId = ex.traceId;
            b.style.left = `${x}px`;
            b.style.top = `${y}px`;
            b.addEventListener('mousedown', (e) => e.stopPropagation());
            b.addEventListener('click', (e) => {
              e.preventDefault();
              go(traceHref(ex.traceId));
            });
            layer.appendChild(b);
          }
        }],
      },
    };
    const data = align(props.series);
    const u = new uPlot(opts, data, el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height: props.height ?? 220 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
    };
  }, [props.series, props.exemplars, props.unit, props.bars, props.height, props.range?.[0], props.range?.[1]]);
  return <div class="chart" data-testid={props.testid ?? 'chart'} ref={box} />;
}

/** toChartSeries turns a Prometheus matrix into chart series named by their labels. */
export function toChartSeries(result: { metric: Record<string, string>; values?: [number, string][] }[]): ChartSeries[] {
  return result.map((r) => ({ label: seriesName(r.metric), points: (r.values ?? []).map(([t, v]) => [t, Number(v)] as [number, number]) }));
}

export function seriesName(m: Record<string, string>): string {
  const name = m.__name__ ?? '';
  const rest = Object.entries(m).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}="${v}"`).join(', ');
  return rest ? `${name}{${rest}}` : name || '{}';
}
