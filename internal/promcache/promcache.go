// Package promcache keeps the answers of PromQL range queries step by step
// and answers the same query again from them, asking the engine only for the
// steps it does not hold: what VictoriaMetrics' rollup result cache and the
// query frontends of Thanos, Mimir and Cortex do for a dashboard refreshed
// every few seconds.
//
// A range query is the instant query at each of its steps (PromQL's
// definition), so a step's answer depends only on the step's time and on the
// samples at or before it — provided the query names no other time: no `@`
// modifier, no negative offset, none of the functions and duration
// expressions that read the query's start, end or step. Other queries are
// never cached. A step is kept only when it is older than a horizon (10
// minutes by default, the store's out-of-order window), and only while the
// store says nothing before its horizon changed since (Source: a sample
// written at an older time, a partition dropped); so an answer from the
// cache is the engine's answer over the same data, step for step. Answers
// with annotations (warnings, infos) are not kept: the cache would lose them.
//
// Entries are keyed by the query's text, its step, where its steps fall
// (start modulo step: Grafana aligns a panel's range to its step, so a
// refresh finds the steps it asked before) and its lookback delta, and are
// bounded in bytes, the least recently used leaving first.
package promcache

import (
	"cmp"
	"container/list"
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/stats"

	"github.com/lumenobs/lumen/internal/promsplit"
)

// Source is a store that reports changes to its past: the generation of
// its data older than horizon, and the time (ms) before which that
// generation holds now (see store.DB.MetricsPast).
type Source interface {
	MetricsPast(horizon time.Duration) (gen uint64, before int64)
}

// Engine answers range queries from its cache and the engine under it;
// instant queries, and range queries it cannot cache, go to that engine as
// they are.
type Engine struct {
	promql.QueryEngine
	src      Source
	horizon  time.Duration
	maxBytes int64
	parser   parser.Parser
	m        *metrics

	mu    sync.Mutex
	lru   list.List // of *entry, the most recently used first
	byKey map[string]*list.Element
	bytes int64
}

// entry is the kept answer of one query at the steps first, first+step, …,
// last: its series with their points at those steps only. Its slices are
// never written once kept.
type entry struct {
	key         string
	gen         uint64
	first, last int64 // ms
	series      []promql.Series
	bytes       int64
}

type metrics struct {
	hits, misses     prometheus.Counter
	bytes, entries   prometheus.Gauge
	stored, uncached prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_promql_results_cache_steps_total",
			Help: "Steps of PromQL range queries, answered from the results cache (result=hit) or by the engine (result=miss).", ConstLabels: prometheus.Labels{"result": "hit"}}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_promql_results_cache_steps_total",
			Help: "Steps of PromQL range queries, answered from the results cache (result=hit) or by the engine (result=miss).", ConstLabels: prometheus.Labels{"result": "miss"}}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lumen_promql_results_cache_bytes",
			Help: "Bytes the PromQL results cache holds (bounded by promql.results_cache_bytes)."}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lumen_promql_results_cache_entries",
			Help: "Range-query answers the PromQL results cache holds."}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_promql_results_cache_stores_total",
			Help: "Range-query answers kept by the PromQL results cache."}),
		uncached: prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_promql_results_cache_uncacheable_total",
			Help: "Range queries the PromQL results cache cannot keep: naming a time besides each step's (@, negative offsets, start(), end(), step()), or answered with annotations."}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.bytes, m.entries, m.stored, m.uncached)
	}
	return m
}

// New returns e with a results cache of maxBytes over src's data, for steps
// older than horizon; p is the engine's parser (nil: the default). reg, if
// not nil, takes the cache's metrics.
func New(e promql.QueryEngine, src Source, horizon time.Duration, maxBytes int64, p parser.Parser, reg prometheus.Registerer) *Engine {
	if p == nil {
		p = parser.NewParser(parser.Options{})
	}
	// Asked once now: from here on the source counts what changes its past.
	src.MetricsPast(horizon)
	return &Engine{QueryEngine: e, src: src, horizon: horizon, maxBytes: maxBytes, parser: p, m: newMetrics(reg), byKey: map[string]*list.Element{}}
}

// NewRangeQuery makes a query answered from the kept steps and, for the
// others, the engine's range query over them.
func (e *Engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	step := interval.Milliseconds()
	expr, cacheable := e.cacheable(qs)
	if step <= 0 || interval%time.Millisecond != 0 || end.Before(start) || !cacheable {
		e.m.uncached.Inc()
		return e.QueryEngine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	}
	s, en := start.UnixMilli(), end.UnixMilli()
	var lookback time.Duration
	if opts != nil {
		lookback = opts.LookbackDelta()
	}
	key := qs + "\xff" + strconv.FormatInt(step, 10) + "\xff" + strconv.FormatInt(((s%step)+step)%step, 10) + "\xff" + lookback.String()
	gen, before := e.src.MetricsPast(e.horizon)
	cq := &query{e: e, qs: qs, key: key, gen: gen, before: before, start: s, end: en, step: step, from: s}
	if kept := e.get(key, gen); kept != nil && kept.first <= s && s <= kept.last+step {
		cq.kept, cq.from = kept, max(s, kept.last+step)
	}
	if cq.from <= en {
		inner, err := e.QueryEngine.NewRangeQuery(ctx, q, opts, qs, time.UnixMilli(cq.from), end, interval)
		if err != nil {
			return nil, err
		}
		cq.inner = inner
	} else {
		cq.stmt = &parser.EvalStmt{Expr: expr, Start: start, End: end, Interval: interval, LookbackDelta: lookback}
	}
	return cq, nil
}

// cacheable parses qs and reports whether a step's answer depends on
// nothing but the step's time and the samples at or before it.
func (e *Engine) cacheable(qs string) (parser.Expr, bool) {
	expr, err := e.parser.ParseExpr(qs)
	if err != nil {
		return nil, false
	}
	return expr, promsplit.StepsOnly(expr, true)
}

// get returns the entry kept under key if it is of generation gen; an
// entry of another generation is dropped.
func (e *Engine) get(key string, gen uint64) *entry {
	e.mu.Lock()
	defer e.mu.Unlock()
	el, ok := e.byKey[key]
	if !ok {
		return nil
	}
	kept := el.Value.(*entry)
	if kept.gen != gen {
		e.remove(el)
		return nil
	}
	e.lru.MoveToFront(el)
	return kept
}

// put keeps kept in place of what its key held, then drops the least
// recently used entries while over the bound.
func (e *Engine) put(kept *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if el, ok := e.byKey[kept.key]; ok {
		e.remove(el)
	}
	e.byKey[kept.key] = e.lru.PushFront(kept)
	e.bytes += kept.bytes
	for e.bytes > e.maxBytes {
		e.remove(e.lru.Back())
	}
	e.m.stored.Inc()
	e.m.bytes.Set(float64(e.bytes))
	e.m.entries.Set(float64(len(e.byKey)))
}

func (e *Engine) remove(el *list.Element) {
	kept := el.Value.(*entry)
	e.lru.Remove(el)
	delete(e.byKey, kept.key)
	e.bytes -= kept.bytes
	e.m.bytes.Set(float64(e.bytes))
	e.m.entries.Set(float64(len(e.byKey)))
}

// query is a range query answered from an entry and the engine.
type query struct {
	e                *Engine
	qs, key          string
	gen              uint64
	before           int64 // ms: steps before it may be kept
	start, end, step int64 // ms
	kept             *entry
	from             int64        // ms: the first step the engine answers
	inner            promql.Query // nil when every step is kept
	stmt             *parser.EvalStmt
	closeOnce        sync.Once
}

// Exec joins the kept steps and the engine's answer of the others, each
// series' points in time order, the series in label order (as the engine
// sorts a range query's matrix), and keeps the steps before the horizon
// when the answer has no annotations.
func (q *query) Exec(ctx context.Context) *promql.Result {
	var res *promql.Result
	if q.inner != nil {
		res = q.inner.Exec(ctx)
		if res.Err != nil {
			return res
		}
	} else {
		res = &promql.Result{Value: promql.Matrix{}}
		if err := ctx.Err(); err != nil {
			return &promql.Result{Err: err}
		}
	}
	computed, ok := res.Value.(promql.Matrix)
	if !ok {
		return res // the engine's to explain
	}
	last := min(q.end, q.from-q.step) // the last step taken from the entry
	hits := int64(0)
	if q.kept != nil && last >= q.start {
		hits = (last-q.start)/q.step + 1
	}
	q.e.m.hits.Add(float64(hits))
	q.e.m.misses.Add(float64((q.end-q.start)/q.step + 1 - hits))

	var j promsplit.Joiner
	add := func(sr promql.Series, floats []promql.FPoint, hists []promql.HPoint, copyHists bool) {
		if len(floats) == 0 && len(hists) == 0 {
			return
		}
		out := j.Of(sr)
		// New slices: the entry's are shared, the engine's go back to its
		// pools (and its histograms are reused) when the query is closed.
		out.Floats = append(out.Floats, floats...)
		for _, h := range hists {
			if copyHists {
				h.H = h.H.Copy()
			}
			out.Histograms = append(out.Histograms, h)
		}
	}
	if hits > 0 {
		for _, sr := range q.kept.series {
			add(sr, floatsIn(sr.Floats, q.start, last), histogramsIn(sr.Histograms, q.start, last), false)
		}
	}
	for _, sr := range computed {
		add(sr, sr.Floats, sr.Histograms, true)
	}
	out := j.Matrix()
	result := &promql.Result{Value: out, Warnings: res.Warnings}
	if len(res.Warnings) > 0 {
		q.e.m.uncached.Inc()
		return result
	}
	q.keep(out)
	return result
}

// keep puts the answer's steps before the horizon in the cache, when there
// are any and they fit in a quarter of its bound.
func (q *query) keep(out promql.Matrix) {
	last := min(q.end, q.before-1)
	if last < q.start {
		return
	}
	last = q.start + (last-q.start)/q.step*q.step
	if q.kept != nil && q.kept.first == q.start && q.kept.last >= last {
		return // the entry it was answered from holds these steps already
	}
	kept := &entry{key: q.key, gen: q.gen, first: q.start, last: last, bytes: 200 + int64(len(q.key))}
	for _, sr := range out {
		floats, hists := floatsIn(sr.Floats, q.start, last), histogramsIn(sr.Histograms, q.start, last)
		if len(floats) == 0 && len(hists) == 0 {
			continue
		}
		kept.bytes += 64 + int64(sr.Metric.ByteSize()) + 16*int64(len(floats))
		for _, h := range hists {
			kept.bytes += 16 + int64(h.H.Size())
		}
		if kept.bytes > q.e.maxBytes/4 {
			return
		}
		// Copied: a slice of the answer's points would keep its newer
		// steps' (and append's spare room) alive beyond what is counted.
		kept.series = append(kept.series, promql.Series{Metric: sr.Metric, DropName: sr.DropName, Floats: slices.Clone(floats), Histograms: slices.Clone(hists)})
	}
	q.e.put(kept)
}

// floatsIn is the points of ps (in time order) from first to last.
func floatsIn(ps []promql.FPoint, first, last int64) []promql.FPoint {
	i, _ := slices.BinarySearchFunc(ps, first, func(p promql.FPoint, t int64) int { return cmp.Compare(p.T, t) })
	j, _ := slices.BinarySearchFunc(ps, last+1, func(p promql.FPoint, t int64) int { return cmp.Compare(p.T, t) })
	return ps[i:j]
}

// histogramsIn is the points of ps (in time order) from first to last.
func histogramsIn(ps []promql.HPoint, first, last int64) []promql.HPoint {
	i, _ := slices.BinarySearchFunc(ps, first, func(p promql.HPoint, t int64) int { return cmp.Compare(p.T, t) })
	j, _ := slices.BinarySearchFunc(ps, last+1, func(p promql.HPoint, t int64) int { return cmp.Compare(p.T, t) })
	return ps[i:j]
}

// Close closes the engine's query.
func (q *query) Close() {
	q.closeOnce.Do(func() {
		if q.inner != nil {
			q.inner.Close()
		}
	})
}

// Statement is the engine's query's (over the steps it answers), or the
// whole query's when every step is kept.
func (q *query) Statement() parser.Statement {
	if q.inner != nil {
		return q.inner.Statement()
	}
	return q.stmt
}

// Stats are the engine's query's, or none when every step is kept.
func (q *query) Stats() *stats.Statistics {
	if q.inner != nil {
		return q.inner.Stats()
	}
	return &stats.Statistics{Timers: stats.NewQueryTimers(), Samples: stats.NewQuerySamples(false)}
}

// Cancel cancels the engine's query.
func (q *query) Cancel() {
	if q.inner != nil {
		q.inner.Cancel()
	}
}

func (q *query) String() string { return q.qs }
