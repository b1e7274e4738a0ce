// Package promsplit runs a PromQL range query of many steps as several
// range queries, each over every k-th of its steps, at once, on Prometheus'
// own engine, and joins their answers.
//
// Prometheus' engine evaluates a query on one core; a range query over
// 100k series spends most of its time there (the storage under it a tenth).
// Every step of a range query is evaluated on its own (PromQL defines a
// range query as the instant query at each step; subquery steps are
// aligned to absolute time, not to the query's start), so the parts'
// answers, put together, are the whole query's, sample for sample. The
// parts take interleaved steps (part p the steps p, p+k, p+2k, …) rather
// than runs of them: a dashboard's range often holds data only in its
// recent part, and runs would leave all the work to one part. What would
// differ is excluded: an expression using `@ start()` or `@ end()`, the
// functions start(), end(), step() and range(), or a duration expression
// (which may use step()) is not split. Errors are the parts': an error of
// a step is the error of the part holding it (the first part's when
// several fail). The sample limit (max_samples) applies to each part, as
// if each were asked alone.
package promsplit

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/stats"
)

// MinStepsPerPart is the fewest steps a part takes: a range query of fewer
// than twice as many is asked whole (each part selects the series and
// reads their samples again).
const MinStepsPerPart = 8

// Engine splits range queries over Parts parts; instant queries, and range
// queries that are short or not splittable, go to the engine as they are.
type Engine struct {
	promql.QueryEngine
	// Parts is how many parts at most (0: GOMAXPROCS).
	Parts int
	// Parser is the engine's (EngineOpts.Parser); nil: the default.
	Parser parser.Parser
}

// New returns e, whose parser is p (nil: the default), splitting range
// queries over up to GOMAXPROCS parts.
func New(e promql.QueryEngine, p parser.Parser) *Engine { return &Engine{QueryEngine: e, Parser: p} }

// NewRangeQuery makes the query's parts, or the engine's query when it is
// not split.
func (e *Engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	parts := e.Parts
	if parts <= 0 {
		parts = runtime.GOMAXPROCS(0)
	}
	steps := 0
	if interval > 0 && !end.Before(start) {
		steps = int(end.Sub(start)/interval) + 1
	}
	parts = min(parts, steps/MinStepsPerPart)
	if parts < 2 || !e.splittable(qs) {
		return e.QueryEngine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	}
	sq := &splitQuery{qs: qs}
	var shared *selections
	if c, ok := q.(ConcurrentSeries); ok && c.ConcurrentSeries() {
		shared = &selections{byKey: map[string]*selection{}}
	}
	for i := range parts {
		pq := q
		if shared != nil {
			pq = sharedQueryable{q: q, shared: shared, shift: int64(i) * interval.Milliseconds()}
		}
		part, err := e.QueryEngine.NewRangeQuery(ctx, pq, opts, qs,
			start.Add(time.Duration(i)*interval), end, time.Duration(parts)*interval)
		if err != nil {
			sq.Close()
			return nil, err
		}
		sq.parts = append(sq.parts, part)
	}
	return sq, nil
}

// splittable reports whether the query's answer is the same asked in
// parts: it parses, and no `@ start()` or `@ end()` names the query's
// ends. A query that does not parse is asked whole, for the engine to name
// its error.
func (e *Engine) splittable(qs string) bool {
	p := e.Parser
	if p == nil {
		p = parser.NewParser(parser.Options{})
	}
	expr, err := p.ParseExpr(qs)
	if err != nil {
		return false
	}
	return StepsOnly(expr, false)
}

// StepsOnly reports whether an expression's value at a step depends on no
// time but the step's: no `@ start()` or `@ end()`, none of the functions
// start(), end(), step() and range(), no duration expression. With
// pastOnly, also no `@` at a fixed time and no negative offset: its value
// at a step then depends only on samples at or before the step.
func StepsOnly(expr parser.Expr, pastOnly bool) bool {
	ok := true
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			ok = ok && n.StartOrEnd == 0 && n.OriginalOffsetExpr == nil && (!pastOnly || n.Timestamp == nil && n.OriginalOffset >= 0)
		case *parser.MatrixSelector:
			ok = ok && n.RangeExpr == nil
		case *parser.SubqueryExpr:
			ok = ok && n.StartOrEnd == 0 && n.RangeExpr == nil && n.StepExpr == nil && n.OriginalOffsetExpr == nil && (!pastOnly || n.Timestamp == nil && n.OriginalOffset >= 0)
		case *parser.DurationExpr:
			ok = false
		case *parser.Call:
			switch n.Func.Name {
			case "start", "end", "step", "range":
				ok = false
			}
		}
		return nil
	})
	return ok
}

// splitQuery is a range query asked as parts.
type splitQuery struct {
	qs    string
	parts []promql.Query
	once  sync.Once
}

// Exec runs the parts at once and joins their matrices: each series' points
// in time order (the parts' interleaved), the series in label order as the
// engine sorts a range query's answer; annotations of all parts.
func (s *splitQuery) Exec(ctx context.Context) *promql.Result {
	results := make([]*promql.Result, len(s.parts))
	var wg sync.WaitGroup
	for i, p := range s.parts {
		wg.Go(func() { results[i] = p.Exec(ctx) })
	}
	wg.Wait()
	var warnings annotations.Annotations
	for _, r := range results {
		warnings.Merge(r.Warnings)
	}
	for _, r := range results {
		if r.Err != nil {
			return &promql.Result{Err: r.Err, Warnings: warnings}
		}
	}
	var j Joiner
	for _, r := range results {
		m, ok := r.Value.(promql.Matrix)
		if !ok {
			// A range query answers a matrix; anything else is the
			// engine's to explain, as the first part gave it.
			return results[0]
		}
		for _, sr := range m {
			out := j.Of(sr)
			// Copied: the parts' points go back to the engine's pools when
			// the parts are closed.
			out.Floats = append(out.Floats, sr.Floats...)
			for _, h := range sr.Histograms {
				out.Histograms = append(out.Histograms, promql.HPoint{T: h.T, H: h.H.Copy()})
			}
		}
	}
	for i := range j.out {
		slices.SortFunc(j.out[i].Floats, func(a, b promql.FPoint) int { return cmp.Compare(a.T, b.T) })
		slices.SortFunc(j.out[i].Histograms, func(a, b promql.HPoint) int { return cmp.Compare(a.T, b.T) })
	}
	return &promql.Result{Value: j.Matrix(), Warnings: warnings}
}

// Joiner joins the series of several answers by their labels.
type Joiner struct {
	index map[string]int
	out   promql.Matrix
	key   []byte
}

// Of returns the joined series with sr's labels, made (without points)
// when it is the first.
func (j *Joiner) Of(sr promql.Series) *promql.Series {
	if j.index == nil {
		j.index = map[string]int{}
	}
	j.key = sr.Metric.Bytes(j.key[:0])
	i, seen := j.index[string(j.key)]
	if !seen {
		i = len(j.out)
		j.index[string(j.key)] = i
		j.out = append(j.out, promql.Series{Metric: sr.Metric, DropName: sr.DropName})
	}
	return &j.out[i]
}

// Matrix returns the joined series in label order, as promql.Matrix sorts a
// range query's answer.
func (j *Joiner) Matrix() promql.Matrix {
	slices.SortFunc(j.out, func(a, b promql.Series) int { return labels.Compare(a.Metric, b.Metric) })
	return j.out
}

// Close closes every part.
func (s *splitQuery) Close() {
	s.once.Do(func() {
		for _, p := range s.parts {
			p.Close()
		}
	})
}

// Statement is the first part's (its range is that part's).
func (s *splitQuery) Statement() parser.Statement { return s.parts[0].Statement() }

// Stats are the first part's timers with the samples of all parts: their
// totals added, peaks the highest, per-step counts in step order (the
// parts' interleaved).
func (s *splitQuery) Stats() *stats.Statistics {
	first := s.parts[0].Stats()
	if first == nil || first.Samples == nil {
		return first
	}
	samples := *first.Samples
	samples.TotalSamples, samples.SamplesRead, samples.PeakSamples = 0, 0, 0
	samples.TotalSamplesPerStep, samples.SamplesReadPerStep = nil, nil
	var total, read [][]int64
	for _, p := range s.parts {
		st := p.Stats()
		if st == nil || st.Samples == nil {
			continue
		}
		samples.TotalSamples += st.Samples.TotalSamples
		samples.SamplesRead += st.Samples.SamplesRead
		samples.PeakSamples = max(samples.PeakSamples, st.Samples.PeakSamples)
		total = append(total, st.Samples.TotalSamplesPerStep)
		read = append(read, st.Samples.SamplesReadPerStep)
	}
	samples.TotalSamplesPerStep, samples.SamplesReadPerStep = interleave(total), interleave(read)
	if len(s.parts) > 0 {
		samples.Interval /= int64(len(s.parts)) // the parts step k times as far
	}
	return &stats.Statistics{Timers: first.Timers, Samples: &samples}
}

// interleave takes the first of each list, then the second of each, …
func interleave(lists [][]int64) []int64 {
	var out []int64
	for i := 0; ; i++ {
		took := false
		for _, l := range lists {
			if i < len(l) {
				out = append(out, l[i])
				took = true
			}
		}
		if !took {
			return out
		}
	}
}

// Cancel cancels every part.
func (s *splitQuery) Cancel() {
	for _, p := range s.parts {
		p.Cancel()
	}
}

func (s *splitQuery) String() string { return s.qs }

// ConcurrentSeries is a Queryable whose selected series may be iterated by
// several goroutines at once, and outlive their querier: the parts of a
// split query then share one selection of each selector instead of each
// making its own (Lumen's store: its series are immutable chunks).
type ConcurrentSeries interface {
	storage.Queryable
	ConcurrentSeries() bool
}

// selections are the series a split query's selectors selected, shared by
// its parts.
type selections struct {
	mu    sync.Mutex
	byKey map[string]*selection
}

type selection struct {
	done     chan struct{}
	series   []storage.Series
	err      error
	warnings annotations.Annotations
}

// sharedQueryable is one part's view: its times are shifted back to the
// first part's (part p starts p steps later), so that every part asks the
// same range of each selector, which is selected once.
type sharedQueryable struct {
	q      storage.Queryable
	shared *selections
	shift  int64 // ms
}

func (s sharedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := s.q.Querier(mint-s.shift, maxt)
	if err != nil {
		return nil, err
	}
	return sharedQuerier{Querier: q, shared: s.shared, shift: s.shift}, nil
}

type sharedQuerier struct {
	storage.Querier
	shared *selections
	shift  int64
}

// Select selects the series of ms over the first part's range, once for
// every part: the parts' engines read only the samples of their own steps.
func (s sharedQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if hints != nil {
		h := *hints
		h.Start -= s.shift
		hints = &h
	}
	key := selectionKey(sortSeries, hints, ms)
	s.shared.mu.Lock()
	sel, ok := s.shared.byKey[key]
	if !ok {
		sel = &selection{done: make(chan struct{})}
		s.shared.byKey[key] = sel
	}
	s.shared.mu.Unlock()
	if !ok {
		set := s.Querier.Select(ctx, sortSeries, hints, ms...)
		for set.Next() {
			sel.series = append(sel.series, set.At())
		}
		sel.err, sel.warnings = set.Err(), set.Warnings()
		close(sel.done)
	} else {
		select {
		case <-sel.done:
		case <-ctx.Done():
			return storage.ErrSeriesSet(ctx.Err())
		}
	}
	return &sharedSet{sel: sel, i: -1}
}

// selectionKey names a selector's selection: its matchers and hints.
func selectionKey(sortSeries bool, h *storage.SelectHints, ms []*labels.Matcher) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%t", sortSeries)
	if h != nil {
		fmt.Fprintf(&b, "|%d|%d|%d|%d|%s|%t|%q|%d|%t", h.Start, h.End, h.Step, h.Range, h.Func, h.By, h.Grouping, h.Limit, h.DisableTrimming)
	}
	for _, m := range ms {
		b.WriteString("|")
		b.WriteString(m.String())
	}
	return b.String()
}

// sharedSet iterates a shared selection.
type sharedSet struct {
	sel *selection
	i   int
}

func (s *sharedSet) Next() bool {
	if s.sel.err != nil {
		return false
	}
	s.i++
	return s.i < len(s.sel.series)
}
func (s *sharedSet) At() storage.Series                { return s.sel.series[s.i] }
func (s *sharedSet) Err() error                        { return s.sel.err }
func (s *sharedSet) Warnings() annotations.Annotations { return s.sel.warnings }
