package logql

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
)

// Metric queries are evaluated as Loki evaluates them: step by step, each
// node of the expression turning the vectors of its children (one vector
// of samples per step) into its own. Range aggregations are computed from
// the lines (range.go); the vector level here follows Loki's evaluator,
// which differs from PromQL's in places (division by zero is NaN, numbers
// compare without bool, no duplicate-series checks), so it is not
// PromQL's engine (docs/decisions.md).

// The types of a query's result, as Loki names them.
const (
	ResultStreams = "streams"
	ResultMatrix  = "matrix"
	ResultVector  = "vector"
	ResultScalar  = "scalar"
)

// Point is one sample of a metric query's answer.
type Point struct {
	T int64 // unix ms
	V float64
}

// Series is a metric query's samples with one label set.
type Series struct {
	Metric labels.Labels
	Points []Point
}

// Result is a query's answer: Streams for a log query; Series for a
// matrix (one per label set, sorted by labels) or a vector (one point
// each, sorted by labels unless the query sorts by value); Scalar for a
// number asked at one time.
type Result struct {
	Type    string
	Streams []Stream
	Series  []Series
	Scalar  Point
}

// ErrPipeline marks a metric query whose samples carry an __error__ label
// that no label filter removed: Loki refuses those (a 400).
var ErrPipeline = errors.New("pipeline error")

// PipelineError names the error and the series it marks.
type PipelineError struct {
	Err    string
	Series labels.Labels
}

func (e *PipelineError) Error() string {
	return fmt.Sprintf("%s: '%s' for series: '%s'. Skip this error with a label filter (| __error__!=%q), "+
		"or every error with | __error__=\"\"; after unwrap the filter follows it (| unwrap latency | __error__=\"\")",
		ErrPipeline, e.Err, e.Series, e.Err)
}

// Unwrap lets errors.Is find ErrPipeline.
func (e *PipelineError) Unwrap() error { return ErrPipeline }

// Exec evaluates e over r: a log query's lines, or a metric query at the
// steps of p (at p.End alone for an instant query, p.Step 0).
func Exec(ctx context.Context, r Reader, e Expr, p Params) (Result, error) {
	if le, ok := e.(*LogExpr); ok {
		streams, err := execLogs(ctx, r, le, p)
		return Result{Type: ResultStreams, Streams: streams}, err
	}
	instant := p.Step <= 0
	ev := &evaluator{ctx: ctx, r: r, p: p, steps: stepTimes(p)}
	if len(ev.steps) == 0 { // End before Start
		return Result{Type: ResultMatrix}, nil
	}
	byValue := sortable(e)
	e = frontendRewrite(e, true)
	switch e := e.(type) {
	case *Literal:
		if instant {
			return Result{Type: ResultScalar, Scalar: Point{T: ev.stepMs(0), V: e.Val}}, nil
		}
		return Result{Type: ResultMatrix, Series: []Series{ev.constant(e.Val)}}, nil
	case *VectorLit:
		if !instant {
			return Result{Type: ResultMatrix, Series: []Series{ev.constant(e.Val)}}, nil
		}
	}
	vecs, err := ev.eval(e)
	if err != nil {
		return Result{}, err
	}
	if instant {
		return Result{Type: ResultVector, Series: ev.instant(vecs[0], byValue)}, nil
	}
	return Result{Type: ResultMatrix, Series: ev.matrix(vecs)}, nil
}

// stepTimes lists the evaluation times of a metric query, unix ns: every
// step from Start to End, both included, or End for an instant query.
func stepTimes(p Params) []int64 {
	if p.Step <= 0 {
		return []int64{p.End.UnixNano()}
	}
	var out []int64
	for t := p.Start.UnixNano(); t <= p.End.UnixNano(); t += p.Step.Nanoseconds() {
		out = append(out, t)
	}
	return out
}

// sample is one series' value at a step.
type sample struct {
	lset labels.Labels
	v    float64
}

// vector is the samples of one step.
type vector []sample

type evaluator struct {
	ctx   context.Context
	r     Reader
	p     Params
	steps []int64 // unix ns
}

func (ev *evaluator) stepMs(i int) int64 { return ev.steps[i] / int64(1e6) }

// constant is a number at every step, with no labels.
func (ev *evaluator) constant(v float64) Series {
	s := Series{Metric: labels.EmptyLabels(), Points: make([]Point, len(ev.steps))}
	for i := range ev.steps {
		s.Points[i] = Point{T: ev.stepMs(i), V: v}
	}
	return s
}

// instant is the answer of an instant query: one point a series, sorted
// by labels unless the query sorted it by value.
func (ev *evaluator) instant(vec vector, byValue bool) []Series {
	out := make([]Series, len(vec))
	for i, s := range vec {
		out[i] = Series{Metric: s.lset, Points: []Point{{T: ev.stepMs(0), V: s.v}}}
	}
	if !byValue {
		slices.SortStableFunc(out, func(a, b Series) int { return labels.Compare(a.Metric, b.Metric) })
	}
	return out
}

// matrix joins the steps' vectors into series, sorted by labels.
func (ev *evaluator) matrix(vecs []vector) []Series {
	byKey := map[string]int{}
	var out []Series
	for i, vec := range vecs {
		for _, s := range vec {
			k := s.lset.String()
			j, ok := byKey[k]
			if !ok {
				j = len(out)
				byKey[k] = j
				out = append(out, Series{Metric: s.lset})
			}
			out[j].Points = append(out[j].Points, Point{T: ev.stepMs(i), V: s.v})
		}
	}
	slices.SortFunc(out, func(a, b Series) int { return labels.Compare(a.Metric, b.Metric) })
	return out
}

// eval evaluates a metric expression at every step.
func (ev *evaluator) eval(e Expr) ([]vector, error) {
	if err := ev.ctx.Err(); err != nil {
		return nil, fmt.Errorf("logql: %w", err)
	}
	switch e := e.(type) {
	case *RangeAgg:
		return ev.rangeAgg(e, nil)
	case *VectorAgg:
		var in []vector
		var err error
		if ra, ok := e.Inner.(*RangeAgg); ok {
			in, err = ev.rangeAgg(ra, e)
		} else {
			in, err = ev.eval(e.Inner)
		}
		if err != nil {
			return nil, err
		}
		for i := range in {
			in[i] = aggregate(e, in[i])
		}
		return in, nil
	case *BinOp:
		return ev.binOp(e)
	case *LabelReplace:
		in, err := ev.eval(e.Inner)
		if err != nil {
			return nil, err
		}
		for _, vec := range in {
			for i := range vec {
				vec[i].lset = e.replace(vec[i].lset)
			}
		}
		return in, nil
	case *VectorLit:
		out := make([]vector, len(ev.steps))
		for i := range out {
			out[i] = vector{{lset: labels.EmptyLabels(), v: e.Val}}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %s is not a metric query that can be evaluated here", ErrParse, e)
}

// replace is label_replace on one label set: when the regex matches all
// of the source label's value, dst becomes the expanded replacement (or
// goes, when that is empty).
func (e *LabelReplace) replace(lset labels.Labels) labels.Labels {
	src := lset.Get(e.Src)
	idx := e.re.FindStringSubmatchIndex(src)
	if idx == nil {
		return lset
	}
	res := e.re.ExpandString(nil, e.Replacement, src, idx)
	lb := labels.NewBuilder(lset).Del(e.Dst)
	if len(res) > 0 {
		lb.Set(e.Dst, string(res))
	}
	return lb.Labels()
}

// groupLabels returns the labels a vector aggregation keeps of lset: by
// keeps the listed labels that are set, without drops them.
func groupLabels(e *VectorAgg, lset labels.Labels) labels.Labels {
	if e.Without {
		return labels.NewBuilder(lset).Del(e.Grouping...).Del(labels.MetricName).Labels()
	}
	if len(e.Grouping) == 0 {
		return labels.EmptyLabels()
	}
	return labels.NewBuilder(lset).Keep(e.Grouping...).Labels()
}

// aggregate is a vector aggregation of one step.
func aggregate(e *VectorAgg, vec vector) vector {
	type group struct {
		lset    labels.Labels
		value   float64
		mean    float64
		count   int
		samples vector
	}
	groups := map[string]*group{}
	var order []*group
	for _, s := range vec {
		gl := groupLabels(e, s.lset)
		k := gl.String()
		g := groups[k]
		if g == nil {
			g = &group{lset: gl, value: s.v, mean: s.v, count: 1}
			if e.Op == "stddev" || e.Op == "stdvar" {
				g.value = 0
			}
			groups[k] = g
			order = append(order, g)
			g.samples = append(g.samples, s)
			continue
		}
		g.samples = append(g.samples, s)
		switch e.Op {
		case "sum":
			g.value += s.v
		case "avg":
			g.count++
			g.mean += (s.v - g.mean) / float64(g.count)
		case "max":
			if g.value < s.v || math.IsNaN(g.value) {
				g.value = s.v
			}
		case "min":
			if g.value > s.v || math.IsNaN(g.value) {
				g.value = s.v
			}
		case "count":
			g.count++
		case "stddev", "stdvar":
			g.count++
			delta := s.v - g.mean
			g.mean += delta / float64(g.count)
			g.value += delta * (s.v - g.mean)
		}
	}
	out := make(vector, 0, len(order))
	for _, g := range order {
		switch e.Op {
		case "avg":
			g.value = g.mean
		case "count":
			g.value = float64(g.count)
		case "stddev":
			g.value = math.Sqrt(g.value / float64(g.count))
		case "stdvar":
			g.value /= float64(g.count)
		case "topk", "sort_desc":
			out = append(out, byValue(g.samples, true, e.Param)...)
			continue
		case "bottomk", "sort":
			out = append(out, byValue(g.samples, false, e.Param)...)
			continue
		}
		out = append(out, sample{lset: g.lset, v: g.value})
	}
	return out
}

// byValue selects and orders a group's samples as Loki's topk, bottomk,
// sort and sort_desc do, and in the same order, ties included: through a
// heap (smallest on top for topk and sort_desc, largest for bottomk and
// sort; NaN always on top), filled in label order (the order Loki's
// queriers answer in), then sorted in reverse with the standard library's
// unstable sort. k is topk and bottomk's parameter, 0 for all.
func byValue(vec vector, desc bool, k int) vector {
	in := slices.Clone(vec)
	slices.SortStableFunc(in, func(a, b sample) int { return labels.Compare(a.lset, b.lset) })
	h := &valueHeap{smallestOnTop: desc}
	for _, s := range in {
		if k > 0 && len(h.s) == k {
			t := h.s[0].v
			better := s.v > t
			if !desc {
				better = s.v < t
			}
			if !better && !math.IsNaN(t) {
				continue
			}
			heap.Pop(h)
		}
		heap.Push(h, s)
	}
	sort.Sort(sort.Reverse(h))
	return h.s
}

// valueHeap is a heap of samples by value, NaN on top.
type valueHeap struct {
	s             vector
	smallestOnTop bool
}

func (h *valueHeap) Len() int      { return len(h.s) }
func (h *valueHeap) Swap(i, j int) { h.s[i], h.s[j] = h.s[j], h.s[i] }
func (h *valueHeap) Less(i, j int) bool {
	if math.IsNaN(h.s[i].v) {
		return true
	}
	if h.smallestOnTop {
		return h.s[i].v < h.s[j].v
	}
	return h.s[i].v > h.s[j].v
}
func (h *valueHeap) Push(x any) { h.s = append(h.s, x.(sample)) }
func (h *valueHeap) Pop() any {
	last := h.s[len(h.s)-1]
	h.s = h.s[:len(h.s)-1]
	return last
}
