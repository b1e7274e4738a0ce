// Package promdirect evaluates the commonest dashboard query — an
// aggregation (sum, count, min, max, avg), by or without labels, of rate()
// or increase() (or irate(), sum/count/max/min_over_time()) over one
// selector, and histogram_quantile() of such a sum by le, over a range or
// at an instant — series
// by series on every core, in one pass over each series' samples, instead
// of through Prometheus' engine.
//
// The engine evaluates such a query in two stages: rate() of every series at
// every step into a matrix (each series' samples pulled through a buffered
// iterator, each window copied into a slice of points, each series' labels
// rebuilt without its name), then the aggregation of that matrix step by
// step. Over 100k series that is most of a range query's time, on one core
// per part. Here each worker reads a series' samples once, slides the
// window over the steps and writes the series' rates into a block; the
// block is then added into the groups in series order, with the engine's
// own arithmetic (its rate extrapolation, its Kahan sums, its hashing of a
// group's labels), so the answer is the engine's, bit for bit.
//
// Anything else goes to the engine: other shapes, `@`, anchored or smoothed
// selectors, duration expressions, per-step statistics, a series holding
// native histograms (found while reading: the engine then evaluates the
// query from the start), a read error, an answer that might come near the
// engine's sample limit (the engine then answers, or refuses as it would).
package promdirect

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/schema"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/kahansum"
	"github.com/prometheus/prometheus/util/stats"

	"github.com/lumenobs/lumen/internal/promsplit"
)

// maxCells bounds groups × steps, the aggregation's state (40 bytes a
// cell); a query over more goes to the engine.
const maxCells = 1 << 20

// blockBytes is about the size of the rates a block of series holds.
const blockBytes = 8 << 20

// Engine answers the range queries it can evaluate directly and hands the
// others to the engine under it.
type Engine struct {
	promql.QueryEngine
	parser     parser.Parser
	maxSamples int
	timeout    time.Duration
	workers    int

	direct, fallback, engine prometheus.Counter
}

// New returns an Engine over e. maxSamples and timeout are e's
// (EngineOpts.MaxSamples, Timeout); workers is how many series are read at
// once (0: GOMAXPROCS) when the store says its series may be read so
// (promsplit.ConcurrentSeries), else one; p is e's parser (nil: the
// default).
func New(e promql.QueryEngine, p parser.Parser, maxSamples int, timeout time.Duration, workers int, reg prometheus.Registerer) *Engine {
	if p == nil {
		p = parser.NewParser(parser.Options{})
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lumen_promql_direct_queries_total",
		Help: "Range and instant queries by how they were evaluated: direct (an aggregation of rate, increase, irate or sum/count/max/min_over_time read series by series), fallback (taken for it, then found to need the engine: native histograms, a read error, near the sample limit) or engine (any other shape).",
	}, []string{"evaluation"})
	if reg != nil {
		// Another engine of the same process (the API's and the rules')
		// counts into the same counters.
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					c = existing
				}
			}
		}
	}
	return &Engine{QueryEngine: e, parser: p, maxSamples: maxSamples, timeout: timeout, workers: workers,
		direct: c.WithLabelValues("direct"), fallback: c.WithLabelValues("fallback"), engine: c.WithLabelValues("engine")}
}

// functions are the range functions evaluated here: each drops the
// series' name, and each is a function of the window's floats alone.
var functions = map[string]bool{
	"rate": true, "increase": true, "irate": true,
	"sum_over_time": true, "count_over_time": true, "max_over_time": true, "min_over_time": true,
}

// shape is a query the engine need not evaluate.
type shape struct {
	expr     parser.Expr
	agg      *parser.AggregateExpr
	grouping []string // sorted, as the engine sorts them
	fn       string
	ms       *parser.MatrixSelector
	vs       *parser.VectorSelector
	// histogram_quantile(quantile, agg): the aggregation is a sum by le
	// (and other labels) of classic buckets.
	quantile *float64
	buckets  parser.Expr // the aggregation, histogram_quantile's argument
}

// match reports the shape of expr when it is one evaluated here.
func match(expr parser.Expr) (*shape, bool) {
	call, ok := expr.(*parser.Call)
	if !ok || call.Func.Name != "histogram_quantile" || len(call.Args) != 2 {
		return matchAggregation(expr)
	}
	// histogram_quantile(φ, sum by (le, …) (f(selector[range]))): a valid
	// φ (else the engine warns at each step it has buckets), no __name__
	// in the grouping (else two names could make one output series).
	num, ok := call.Args[0].(*parser.NumberLiteral)
	if !ok || math.IsNaN(num.Val) || num.Val < 0 || num.Val > 1 {
		return nil, false
	}
	sh, ok := matchAggregation(call.Args[1])
	if !ok || sh.agg.Op != parser.SUM || sh.agg.Without || !slices.Contains(sh.grouping, labels.BucketLabel) ||
		slices.Contains(sh.grouping, labels.MetricName) {
		return nil, false
	}
	q := num.Val
	sh.expr, sh.quantile, sh.buckets = expr, &q, call.Args[1]
	return sh, true
}

// matchAggregation reports the shape of an aggregation evaluated here.
func matchAggregation(expr parser.Expr) (*shape, bool) {
	agg, ok := expr.(*parser.AggregateExpr)
	if !ok || agg.Param != nil {
		return nil, false
	}
	switch agg.Op {
	case parser.SUM, parser.COUNT, parser.MIN, parser.MAX, parser.AVG:
	default:
		return nil, false
	}
	call, ok := agg.Expr.(*parser.Call)
	if !ok || len(call.Args) != 1 || !functions[call.Func.Name] {
		return nil, false
	}
	ms, ok := call.Args[0].(*parser.MatrixSelector)
	if !ok || ms.RangeExpr != nil || ms.Range <= 0 || ms.Range%time.Millisecond != 0 {
		return nil, false
	}
	// Whole milliseconds only: the engine truncates the sum of range and
	// offset, not each.
	vs, ok := ms.VectorSelector.(*parser.VectorSelector)
	if !ok || vs.Timestamp != nil || vs.StartOrEnd != 0 || vs.Anchored || vs.Smoothed || vs.OriginalOffsetExpr != nil ||
		vs.OriginalOffset%time.Millisecond != 0 {
		return nil, false
	}
	g := slices.Clone(agg.Grouping)
	slices.Sort(g)
	return &shape{expr: expr, agg: agg, grouping: g, fn: call.Func.Name, ms: ms, vs: vs}, true
}

// NewRangeQuery returns a query evaluated here when its shape is one of
// those, the engine's otherwise.
func (e *Engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	var sh *shape
	ok := interval > 0 && interval%time.Millisecond == 0 && !end.Before(start)
	if ok {
		sh, ok = e.shapeOf(qs, opts)
	}
	if !ok {
		e.engine.Inc()
		return e.QueryEngine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	}
	return e.newQuery(ctx, q, opts, qs, sh, start, end, interval), nil
}

// NewInstantQuery returns a query evaluated here when its shape is one of
// those (as a range query of one step), the engine's otherwise.
func (e *Engine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	sh, ok := e.shapeOf(qs, opts)
	if !ok {
		e.engine.Inc()
		return e.QueryEngine.NewInstantQuery(ctx, q, opts, qs, ts)
	}
	return e.newQuery(ctx, q, opts, qs, sh, ts, ts, 0), nil
}

// newQuery is the query of shape sh from start to end at interval; an
// interval of 0 is an instant query, a range query of one step (the
// engine's interval of 1 ms).
func (e *Engine) newQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, sh *shape, start, end time.Time, interval time.Duration) *query {
	var lookback time.Duration
	if opts != nil {
		lookback = opts.LookbackDelta()
	}
	step := interval.Milliseconds()
	if interval == 0 {
		step = 1
	}
	return &query{e: e, ctx: ctx, q: q, opts: opts, qs: qs, sh: sh, instant: interval == 0,
		start: millis(start), end: millis(end), step: step,
		stmt: &parser.EvalStmt{Expr: sh.expr, Start: start, End: end, Interval: interval, LookbackDelta: lookback}}
}

// shapeOf parses qs and reports its shape when it is evaluated here.
func (e *Engine) shapeOf(qs string, opts promql.QueryOpts) (*shape, bool) {
	if opts != nil && opts.EnablePerStepStats() {
		return nil, false
	}
	expr, err := e.parser.ParseExpr(qs)
	if err != nil {
		return nil, false
	}
	return match(expr)
}

// millis is the engine's milliseconds of t (truncated toward zero).
func millis(t time.Time) int64 { return t.UnixNano() / int64(time.Millisecond) }

type query struct {
	e       *Engine
	ctx     context.Context
	q       storage.Queryable
	opts    promql.QueryOpts
	qs      string
	sh      *shape
	stmt    *parser.EvalStmt
	instant bool // an instant query: the answer is a vector

	start, end, step int64

	mu       sync.Mutex
	cancel   context.CancelFunc
	canceled bool
	inner    promql.Query // the engine's, when it answers
	stats    stats.QuerySamples
	timers   *stats.QueryTimers
}

// errFallback says the engine must answer.
var errFallback = errors.New("the engine evaluates this query")

// Exec evaluates the query, or has the engine evaluate it (within the same
// timeout: the engine's own applies too).
func (q *query) Exec(ctx context.Context) *promql.Result {
	if err := ctx.Err(); err != nil {
		return &promql.Result{Err: contextErr(err, "query execution")}
	}
	var (
		ectx   context.Context
		cancel context.CancelFunc
	)
	if q.e.timeout > 0 {
		ectx, cancel = context.WithTimeout(ctx, q.e.timeout)
	} else {
		ectx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	q.mu.Lock()
	if q.canceled {
		cancel()
	}
	q.cancel = cancel
	q.mu.Unlock()
	timers := stats.NewQueryTimers()
	total := timers.GetTimer(stats.ExecTotalTime).Start()
	eval := timers.GetTimer(stats.EvalTotalTime).Start()
	res, err := q.evalRecovered(ectx, timers)
	eval.Stop()
	total.Stop()
	if err == nil {
		q.mu.Lock()
		q.timers = timers
		q.mu.Unlock()
		q.e.direct.Inc()
		return res
	}
	if !errors.Is(err, errFallback) {
		return &promql.Result{Err: err}
	}
	if err := ectx.Err(); err != nil {
		return &promql.Result{Err: contextErr(err, "expression evaluation")}
	}
	q.e.fallback.Inc()
	var inner promql.Query
	if q.instant {
		inner, err = q.e.QueryEngine.NewInstantQuery(q.ctx, q.q, q.opts, q.qs, q.stmt.Start)
	} else {
		inner, err = q.e.QueryEngine.NewRangeQuery(q.ctx, q.q, q.opts, q.qs, q.stmt.Start, q.stmt.End, q.stmt.Interval)
	}
	if err != nil {
		return &promql.Result{Err: err}
	}
	q.mu.Lock()
	q.inner = inner
	if q.canceled {
		inner.Cancel()
	}
	q.mu.Unlock()
	return inner.Exec(ectx)
}

// contextErr is the engine's error for a context ended in env.
func contextErr(err error, env string) error {
	switch {
	case errors.Is(err, context.Canceled):
		return promql.ErrQueryCanceled(env)
	case errors.Is(err, context.DeadlineExceeded):
		return promql.ErrQueryTimeout(env)
	}
	return err
}

// group is one output series: the labels of the first series (in the
// selection's order) that had a value in it.
type group struct {
	lset labels.Labels
	seen bool
}

// cell is a group's aggregation at one step, as the engine keeps it.
type cell struct {
	v, c, mean, n float64
	seen, incMean bool
}

// evalRecovered is eval, a panic in it the query's error (as the engine's
// recovery makes it), not the process's end.
func (q *query) evalRecovered(ctx context.Context, timers *stats.QueryTimers) (res *promql.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("unexpected error: %v", r)
		}
	}()
	return q.eval(ctx, timers)
}

func (q *query) eval(ctx context.Context, timers *stats.QueryTimers) (*promql.Result, error) {
	sh := q.sh
	prepare := timers.GetTimer(stats.QueryPreparationTime).Start()
	rng := sh.ms.Range.Milliseconds()
	off := sh.vs.OriginalOffset.Milliseconds()
	// The engine's selection: the first window's start (exclusive) to the
	// last window's end (timestamp.FromTime, as the engine's).
	mint, maxt := timestamp.FromTime(q.stmt.Start)-off-rng+1, timestamp.FromTime(q.stmt.End)-off
	querier, err := q.q.Querier(mint, maxt)
	if err != nil {
		return nil, errFallback
	}
	defer querier.Close()
	hintStep := q.step
	if q.instant {
		hintStep = 0 // the engine's hint for an instant query
	}
	// The engine's hints: its grouping is only its selector's parent's,
	// the matrix selector's (none).
	hints := &storage.SelectHints{Start: mint, End: maxt, Step: hintStep, Range: rng, Func: sh.fn}
	set := querier.Select(ctx, false, hints, sh.vs.LabelMatchers...)
	var series []storage.Series
	for set.Next() {
		series = append(series, set.At())
	}
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("expanding series: %w", err) // the engine's words
	}
	prepare.Stop()
	inner := timers.GetTimer(stats.InnerEvalTime).Start()
	defer inner.Stop()
	var annos annotations.Annotations
	annos.Merge(set.Warnings())
	if err := ctx.Err(); err != nil {
		return nil, contextErr(err, "expression evaluation")
	}

	nSteps := int((q.end-q.start)/q.step) + 1
	// Groups, by the engine's hash of a series' labels without its name.
	groupOf := make([]int32, len(series))
	byHash := map[uint64]int32{}
	buf := make([]byte, 0, 1024)
	metrics := make([]labels.Labels, len(series))
	for i, s := range series {
		m := s.Labels().DropReserved(schema.IsMetadataLabel)
		metrics[i] = m
		var h uint64
		switch {
		case sh.agg.Without:
			h, buf = m.HashWithoutLabels(buf, sh.grouping...)
		case len(sh.grouping) > 0:
			h, buf = m.HashForLabels(buf, sh.grouping...)
		}
		g, ok := byHash[h]
		if !ok {
			g = int32(len(byHash))
			byHash[h] = g
		}
		groupOf[i] = g
	}
	nGroups := len(byHash)
	if nGroups*nSteps > maxCells || nGroups*nSteps > q.e.maxSamples/2 {
		return nil, errFallback
	}
	groups := make([]group, nGroups)
	order := make([]int32, 0, nGroups) // groups as they were first seen, the engine's order
	cells := make([]cell, nGroups*nSteps)

	block := max(1, min(4096, blockBytes/(9*nSteps)))
	vals := make([]float64, min(block, len(series))*nSteps)
	has := make([]bool, len(vals))
	workers := 1
	if c, ok := q.q.(promsplit.ConcurrentSeries); ok && c.ConcurrentSeries() {
		// Series read by several goroutines at once: only a store that
		// says they may be.
		workers = min(q.e.workers, max(1, len(series)/64))
	}
	wks := make([]*worker, workers)
	for i := range wks {
		wks[i] = &worker{q: q, rng: rng, off: off, fn: sh.fn, rangeSeconds: sh.ms.Range.Seconds()}
	}
	var points, maxWindow int64
	var lb labels.Builder
	checkName := sh.fn == "rate" || sh.fn == "increase"
	for b := 0; b < len(series); b += block {
		if err := ctx.Err(); err != nil {
			return nil, contextErr(err, "expression evaluation")
		}
		blk := series[b:min(b+block, len(series))]
		clear(has[:len(blk)*nSteps])
		var next atomic.Int64
		var failed atomic.Bool
		var panicked atomic.Value
		run := func(w *worker) {
			defer func() {
				// A panic reading a series is the query's error, as the
				// engine makes it, not the process's end.
				if r := recover(); r != nil {
					panicked.CompareAndSwap(nil, fmt.Errorf("unexpected error: %v", r))
					failed.Store(true)
				}
			}()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(blk) || ctx.Err() != nil {
					return
				}
				if !w.series(blk[i], vals[i*nSteps:(i+1)*nSteps], has[i*nSteps:(i+1)*nSteps]) {
					failed.Store(true)
				}
			}
		}
		if workers == 1 || len(blk) < 2*64 {
			run(wks[0])
		} else {
			var wg sync.WaitGroup
			for _, w := range wks {
				wg.Add(1)
				go func() { defer wg.Done(); run(w) }()
			}
			wg.Wait()
		}
		if err, ok := panicked.Load().(error); ok {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, contextErr(err, "expression evaluation")
		}
		if failed.Load() {
			return nil, errFallback
		}
		// Into the groups, in the selection's order: the engine's order of
		// additions at every step.
		for i := range blk {
			si := b + i
			vs, hs := vals[i*nSteps:(i+1)*nSteps], has[i*nSteps:(i+1)*nSteps]
			g := groupOf[si]
			gc := cells[int(g)*nSteps : int(g+1)*nSteps]
			valued := false
			for s, ok := range hs {
				if !ok {
					continue
				}
				valued = true
				points++
				add(sh.agg.Op, &gc[s], vs[s])
			}
			if !valued {
				continue
			}
			if !groups[g].seen {
				groups[g] = group{lset: groupLabels(&lb, metrics[si], sh.agg.Without, sh.grouping), seen: true}
				order = append(order, g)
			}
			if checkName {
				if name := series[si].Labels().Get(labels.MetricName); name != "" && !counterName(name) {
					annos.Add(annotations.NewPossibleNonCounterInfo(name, sh.ms.PositionRange()))
				}
			}
		}
		if points+int64(nGroups) > int64(q.e.maxSamples)/2 {
			return nil, errFallback
		}
	}
	var total, read int64
	for _, w := range wks {
		total += w.total
		read += w.read
		maxWindow = max(maxWindow, int64(w.maxWindow))
	}
	q.mu.Lock()
	q.stats = stats.QuerySamples{TotalSamples: total, SamplesRead: read, PeakSamples: int(points + maxWindow)}
	q.mu.Unlock()
	if points+maxWindow+int64(nGroups) > int64(q.e.maxSamples)/2 {
		return nil, errFallback
	}

	if err := ctx.Err(); err != nil {
		return nil, contextErr(err, "expression evaluation")
	}
	if sh.quantile != nil {
		return q.quantiles(groups, order, cells, nSteps, annos, timers)
	}
	if q.instant {
		// One point a group, in the order the groups were first seen, as
		// the engine turns its one-step matrix into a vector.
		out := make(promql.Vector, 0, len(order))
		for _, g := range order {
			out = append(out, promql.Sample{Metric: groups[g].lset, T: q.start, F: result(sh.agg.Op, &cells[g]), DropName: true})
		}
		return &promql.Result{Value: out, Warnings: annos}, nil
	}
	out := make(promql.Matrix, 0, len(order))
	for _, g := range order {
		gc := cells[int(g)*nSteps : int(g+1)*nSteps]
		n := 0
		for s := range gc {
			if gc[s].seen {
				n++
			}
		}
		fs := make([]promql.FPoint, 0, n)
		for s := range gc {
			if gc[s].seen {
				fs = append(fs, promql.FPoint{T: q.start + int64(s)*q.step, F: result(sh.agg.Op, &gc[s])})
			}
		}
		out = append(out, promql.Series{Metric: groups[g].lset, Floats: fs, DropName: true})
	}
	sorting := timers.GetTimer(stats.ResultSortTime).Start()
	sort.Sort(out)
	sorting.Stop()
	return &promql.Result{Value: out, Warnings: annos}, nil
}

// bucketSet is one classic histogram of histogram_quantile's input: its
// labels but le, and its buckets at the step at hand.
type bucketSet struct {
	metric  labels.Labels
	buckets promql.Buckets
	out     int // its series in the answer, or -1
}

// quantiles is histogram_quantile of the groups (a sum by le and other
// labels) at every step, as the engine computes it: the groups with a
// value at a step, in the order they were first seen (the engine's
// order), made buckets of their histograms (resetHistograms), each
// histogram's quantile from Prometheus' own BucketQuantile. Buckets that
// are not monotonic are the engine's to answer.
func (q *query) quantiles(groups []group, order []int32, cells []cell, nSteps int, annos annotations.Annotations, timers *stats.QueryTimers) (*promql.Result, error) {
	sh := q.sh
	pos := sh.buckets.PositionRange()
	byKey := map[string]*bucketSet{}
	var (
		sets []*bucketSet // as first seen
		out  []promql.Series
		buf  []byte
		lb   labels.Builder
	)
	// The engine evaluates histogram_quantile over the sum's whole answer
	// and φ at every step, holding its own answer meanwhile: near half
	// its sample limit, it answers (or refuses).
	held := nSteps + 1 + len(groups)
	for _, c := range cells {
		if c.seen {
			held++
		}
	}
	for s := range nSteps {
		ts := q.start + int64(s)*q.step
		for _, b := range sets {
			b.buckets = b.buckets[:0]
		}
		for _, g := range order {
			c := &cells[int(g)*nSteps+s]
			if !c.seen {
				continue
			}
			lset := groups[g].lset
			le := lset.Get(labels.BucketLabel)
			ub, err := strconv.ParseFloat(le, 64)
			if err != nil {
				annos.Add(annotations.NewBadBucketLabelWarning("", le, pos))
				continue
			}
			buf = lset.BytesWithoutLabels(buf, labels.BucketLabel)
			b := byKey[string(buf)]
			if b == nil {
				lb.Reset(lset)
				lb.Del(labels.BucketLabel)
				b = &bucketSet{metric: lb.Labels(), out: -1}
				byKey[string(buf)] = b
				sets = append(sets, b)
			}
			b.buckets = append(b.buckets, promql.Bucket{UpperBound: ub, Count: result(parser.SUM, c)})
		}
		for _, b := range sets {
			if len(b.buckets) == 0 {
				continue
			}
			v, forced, _, _, _, _ := promql.BucketQuantile(*sh.quantile, b.buckets)
			if forced {
				// Buckets that had to be made monotonic: the engine's
				// info annotation counts them through its merges of
				// annotations step by step and level by level, which
				// only the engine itself repeats.
				return nil, errFallback
			}
			if b.out < 0 {
				b.out = len(out)
				out = append(out, promql.Series{Metric: b.metric.DropReserved(schema.IsMetadataLabel), DropName: true})
			}
			out[b.out].Floats = append(out[b.out].Floats, promql.FPoint{T: ts, F: v})
			if held++; held > q.e.maxSamples/2 {
				return nil, errFallback
			}
		}
	}
	if q.instant {
		// The engine's order is its map's, which is none; here the
		// histograms' as first seen.
		vec := make(promql.Vector, 0, len(out))
		for _, sr := range out {
			vec = append(vec, promql.Sample{Metric: sr.Metric, T: q.start, F: sr.Floats[0].F, DropName: true})
		}
		return &promql.Result{Value: vec, Warnings: annos}, nil
	}
	sorting := timers.GetTimer(stats.ResultSortTime).Start()
	sort.Sort(promql.Matrix(out))
	sorting.Stop()
	return &promql.Result{Value: promql.Matrix(out), Warnings: annos}, nil
}

// counterName is the engine's test of a name that rate() may be asked of
// without an info annotation.
func counterName(name string) bool {
	return strings.HasSuffix(name, "_total") || strings.HasSuffix(name, "_sum") ||
		strings.HasSuffix(name, "_count") || strings.HasSuffix(name, "_bucket")
}

// groupLabels are the engine's labels of a group (generateGroupingLabels).
func groupLabels(lb *labels.Builder, m labels.Labels, without bool, grouping []string) labels.Labels {
	lb.Reset(m)
	switch {
	case without:
		lb.Del(grouping...)
		lb.Del(labels.MetricName)
		return lb.Labels()
	case len(grouping) > 0:
		lb.Keep(grouping...)
		return lb.Labels()
	default:
		return labels.EmptyLabels()
	}
}

// add adds f into c as the engine's aggregation does for op.
func add(op parser.ItemType, c *cell, f float64) {
	if !c.seen {
		*c = cell{seen: true, v: f, mean: f, n: 1}
		return
	}
	switch op {
	case parser.SUM:
		c.v, c.c = kahansum.Inc(f, c.v, c.c)
	case parser.AVG:
		c.n++
		if !c.incMean {
			newV, newC := kahansum.Inc(f, c.v, c.c)
			if !math.IsInf(newV, 0) {
				c.v, c.c = newV, newC
				return
			}
			c.incMean = true
			c.mean = c.v / (c.n - 1)
			c.c /= c.n - 1
		}
		r := (c.n - 1) / c.n
		c.mean, c.c = kahansum.Inc(f/c.n, r*c.mean, r*c.c)
	case parser.MAX:
		if c.v < f || math.IsNaN(c.v) {
			c.v = f
		}
	case parser.MIN:
		if c.v > f || math.IsNaN(c.v) {
			c.v = f
		}
	case parser.COUNT:
		c.n++
	}
}

// result is a cell's value as the engine's aggregation ends it.
func result(op parser.ItemType, c *cell) float64 {
	switch op {
	case parser.SUM:
		return c.v + c.c
	case parser.AVG:
		if c.incMean {
			return c.mean + c.c
		}
		return c.v/c.n + c.c/c.n
	case parser.COUNT:
		return c.n
	}
	return c.v
}

// worker reads one series at a time into its rates at every step.
type worker struct {
	q            *query
	rng, off     int64
	fn           string
	rangeSeconds float64
	it           chunkenc.Iterator
	ts           []int64
	fs           []float64
	total        int64 // samples in the steps' windows
	read         int64 // samples read: a step's window's newer than the step before's end
	maxWindow    int
}

// series writes the series' rate at each step into vals, marking has;
// false when the engine must answer (a histogram, a read error).
func (w *worker) series(s storage.Series, vals []float64, has []bool) bool {
	w.it = s.Iterator(w.it)
	it := w.it
	ts, fs := w.ts[:0], w.fs[:0]
	q := w.q
	var (
		pending bool // the iterator is at a sample after the last window
		pt      int64
		pf      float64
		done    bool
	)
	for s, step := 0, q.start; step <= q.end; s, step = s+1, step+q.step {
		maxt := step - w.off
		mint := maxt - w.rng
		// Drop what is at or before the window's start.
		drop := 0
		for drop < len(ts) && ts[drop] <= mint {
			drop++
		}
		if drop > 0 {
			ts = append(ts[:0], ts[drop:]...)
			fs = append(fs[:0], fs[drop:]...)
		}
		if !done {
			var vt chunkenc.ValueType
			switch {
			case pending && pt > mint:
				vt = chunkenc.ValFloat
			case pending || len(ts) == 0:
				// Nothing held: go straight to the window.
				vt = it.Seek(mint + 1)
				if vt == chunkenc.ValFloat {
					pt, pf = it.At()
				}
			default:
				vt = it.Next()
				if vt == chunkenc.ValFloat {
					pt, pf = it.At()
				}
			}
			pending = false
			for {
				if vt == chunkenc.ValNone {
					if it.Err() != nil {
						return false
					}
					done = true
					break
				}
				if vt != chunkenc.ValFloat {
					return false
				}
				if pt > maxt {
					pending = true
					break
				}
				if pt > mint && !value.IsStaleNaN(pf) {
					ts = append(ts, pt)
					fs = append(fs, pf)
				}
				vt = it.Next()
				if vt == chunkenc.ValFloat {
					pt, pf = it.At()
				}
			}
		}
		if len(ts) == 0 {
			continue
		}
		w.total += int64(len(ts))
		w.maxWindow = max(w.maxWindow, len(ts))
		if s == 0 {
			w.read += int64(len(ts))
		} else {
			for j := len(ts) - 1; j >= 0 && ts[j] > maxt-q.step; j-- {
				w.read++
			}
		}
		vals[s], has[s] = w.value(ts, fs, step)
	}
	w.ts, w.fs = ts, fs
	return true
}

// value is the function's value over the window's floats (not empty),
// and whether it has one, as the engine's functions compute it.
func (w *worker) value(ts []int64, fs []float64, step int64) (float64, bool) {
	switch w.fn {
	case "rate", "increase":
		if len(ts) < 2 {
			return 0, false
		}
		return w.rate(ts, fs, step), true
	case "irate":
		// instantValue: the last two samples; a reset leaves the last.
		n := len(ts)
		if n < 2 || ts[n-1] == ts[n-2] {
			return 0, false
		}
		v := fs[n-1]
		if !(fs[n-1] < fs[n-2]) {
			v = fs[n-1] - fs[n-2]
		}
		return v / (float64(ts[n-1]-ts[n-2]) / 1000), true
	case "count_over_time":
		return float64(len(fs)), true
	case "sum_over_time":
		var sum, c float64
		for _, f := range fs {
			sum, c = kahansum.Inc(f, sum, c)
		}
		if math.IsInf(sum, 0) {
			return sum, true
		}
		return sum + c, true
	case "max_over_time":
		v := fs[0]
		for _, f := range fs {
			if f > v || math.IsNaN(v) {
				v = f
			}
		}
		return v, true
	case "min_over_time":
		v := fs[0]
		for _, f := range fs {
			if f < v || math.IsNaN(v) {
				v = f
			}
		}
		return v, true
	}
	return 0, false
}

// rate is the engine's extrapolatedRate of a counter's floats (no start
// timestamps) in the window ending at step.
func (w *worker) rate(ts []int64, fs []float64, step int64) float64 {
	rangeStart := step - (w.rng + w.off)
	rangeEnd := step - w.off
	last := len(ts) - 1
	firstT, lastT := ts[0], ts[last]
	result := fs[last] - fs[0]
	for i := 1; i <= last; i++ {
		if fs[i] < fs[i-1] {
			result += fs[i-1]
		}
	}
	durationToStart := float64(firstT-rangeStart) / 1000
	durationToEnd := float64(rangeEnd-lastT) / 1000
	sampledInterval := float64(lastT-firstT) / 1000
	averageDurationBetweenSamples := sampledInterval / float64(last)
	extrapolationThreshold := averageDurationBetweenSamples * 1.1
	if durationToStart >= extrapolationThreshold {
		durationToStart = averageDurationBetweenSamples / 2
	}
	durationToZero := durationToStart
	if result > 0 && fs[0] >= 0 {
		durationToZero = sampledInterval * (fs[0] / result)
	}
	if durationToZero < durationToStart {
		durationToStart = durationToZero
	}
	if durationToEnd >= extrapolationThreshold {
		durationToEnd = averageDurationBetweenSamples / 2
	}
	factor := 1.0
	if sampledInterval != 0 {
		factor = (sampledInterval + durationToStart + durationToEnd) / sampledInterval
	}
	if w.fn == "rate" {
		factor /= w.rangeSeconds
	}
	return result * factor
}

// Close closes the engine's query, if the engine answered.
func (q *query) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inner != nil {
		q.inner.Close()
	}
}

// Statement is the query's.
func (q *query) Statement() parser.Statement { return q.stmt }

// Stats are the engine's when it answered; else the times taken, as the
// engine times them (no queue here), the samples in the steps' windows and
// those read, as the engine counts them, and a peak of the rates held and
// the largest window (the engine's is about that).
func (q *query) Stats() *stats.Statistics {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inner != nil {
		return q.inner.Stats()
	}
	s, timers := q.stats, q.timers
	if timers == nil {
		timers = stats.NewQueryTimers()
	}
	return &stats.Statistics{Timers: timers, Samples: &s}
}

// Cancel stops the evaluation.
func (q *query) Cancel() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.canceled = true
	if q.cancel != nil {
		q.cancel()
	}
	if q.inner != nil {
		q.inner.Cancel()
	}
}

func (q *query) String() string { return q.qs }
