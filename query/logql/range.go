package logql

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/store"
)

// Range aggregations, as Loki computes them: each line the log query
// keeps is a sample (1, its size, or an unwrapped label's value) of the
// series its labels name; at each step t a series' samples in the window
// (t-offset-range, t-offset] give one value.

// sampleExtractionErr is the __error__ of a sample whose unwrapped value
// is not a number, as Loki names it.
const sampleExtractionErr = "SampleExtractionErr"

// rangeSeries is one series' samples, in time order.
type rangeSeries struct {
	lset labels.Labels
	ts   []int64 // unix ns
	vs   []float64
}

// rangeAgg evaluates a range aggregation at every step; parent is the
// vector aggregation right around it, if any (a sum's grouping tells the
// parsers which labels to extract, as in Loki).
func (ev *evaluator) rangeAgg(e *RangeAgg, parent *VectorAgg) ([]vector, error) {
	series, err := ev.rangeSamples(e, parent)
	if err != nil {
		return nil, err
	}
	var absent labels.Labels
	if e.Op == "absent_over_time" {
		absent = absentLabels(e.Log)
	}
	out := make([]vector, len(ev.steps))
	// Each series' window [a, b) slides forward with the steps.
	win := make([][2]int, len(series))
	for i, t := range ev.steps {
		hi := t - e.Offset.Nanoseconds()
		lo := hi - e.Range.Nanoseconds()
		var vec vector
		for j, s := range series {
			a, b := win[j][0], win[j][1]
			for b < len(s.ts) && s.ts[b] <= hi {
				b++
			}
			for a < b && s.ts[a] <= lo {
				a++
			}
			win[j] = [2]int{a, b}
			if a == b {
				continue
			}
			if s.lset.Has(errorLabel) && s.lset.Get(preserveErrLabel) != "true" {
				return nil, &PipelineError{Err: s.lset.Get(errorLabel), Series: s.lset}
			}
			vec = append(vec, sample{lset: s.lset, v: overTime(e, s.ts[a:b], s.vs[a:b])})
		}
		if e.Op == "absent_over_time" {
			if len(vec) == 0 {
				vec = vector{{lset: absent, v: 1}}
			} else {
				vec = nil
			}
		}
		out[i] = vec
	}
	return out, nil
}

// rangeSamples reads the lines of e's windows and turns them into series
// of samples, sorted by labels.
func (ev *evaluator) rangeSamples(e *RangeAgg, parent *VectorAgg) ([]*rangeSeries, error) {
	first := ev.steps[0] - e.Offset.Nanoseconds() - e.Range.Nanoseconds()
	last := ev.steps[len(ev.steps)-1] - e.Offset.Nanoseconds()
	pl := newMetricPipeline(e, parent)
	streams, err := ev.r.SelectLogs(ev.ctx, store.LogSelect{Matchers: e.Log.Matchers, Start: first + 1, End: last + 1,
		Keep: pl.keep(), MaxLines: ev.p.MaxLines})
	if err != nil {
		return nil, fmt.Errorf("logql: %w", err)
	}
	byKey := map[string]*rangeSeries{}
	var out []*rangeSeries
	for _, st := range streams {
		for i := range st.Entries {
			en := &st.Entries[i]
			lb, line, ok := pl.process(st.Labels, en)
			if !ok {
				continue
			}
			v, lset, ok := extract(e, lb, line, en.T)
			if !ok {
				continue
			}
			k := lset.String()
			s := byKey[k]
			if s == nil {
				s = &rangeSeries{lset: lset}
				byKey[k] = s
				out = append(out, s)
			}
			s.ts = append(s.ts, en.T)
			s.vs = append(s.vs, v)
		}
	}
	for _, s := range out {
		if !slices.IsSorted(s.ts) {
			idx := make([]int, len(s.ts))
			for i := range idx {
				idx[i] = i
			}
			sort.SliceStable(idx, func(a, b int) bool { return s.ts[idx[a]] < s.ts[idx[b]] })
			ts, vs := make([]int64, len(idx)), make([]float64, len(idx))
			for i, j := range idx {
				ts[i], vs[i] = s.ts[j], s.vs[j]
			}
			s.ts, s.vs = ts, vs
		}
	}
	slices.SortFunc(out, func(a, b *rangeSeries) int { return labels.Compare(a.lset, b.lset) })
	return out, nil
}

// extract is a line's sample: its value and the labels of its series, or
// false when the line yields none (an unwrapped label that is missing or
// empty, or a label filter after unwrap that drops it).
func extract(e *RangeAgg, lb *lineLabels, line string, ts int64) (float64, labels.Labels, bool) {
	u := e.Unwrap
	if u == nil {
		if e.Op == "bytes_over_time" || e.Op == "bytes_rate" {
			return float64(len(line)), lb.labels(), true
		}
		return 1, lb.labels(), true
	}
	s, _ := lb.get(u.Label)
	if s == "" {
		return 0, labels.EmptyLabels(), false
	}
	v, err := convert(u.Conv, s)
	if err != nil {
		lb.setError(sampleExtractionErr, err)
	}
	if len(u.Post) > 0 {
		if _, ok := runStages(u.Post, ts, line, lb); !ok {
			return 0, labels.EmptyLabels(), false
		}
	}
	return v, unwrapLabels(e, lb.labels()), true
}

// convert reads an unwrapped label's value: a float, a Go duration in
// seconds (duration, duration_seconds) or a byte size (bytes).
func convert(conv, s string) (float64, error) {
	switch conv {
	case "duration", "duration_seconds":
		d, err := time.ParseDuration(s)
		return d.Seconds(), err
	case "bytes":
		b, err := humanize.ParseBytes(s)
		return float64(b), err
	}
	return strconv.ParseFloat(s, 64)
}

// unwrapLabels are the labels of an unwrapped sample's series: without
// the unwrapped label, or as the aggregation's by or without says. A
// sample marked with an error keeps all its labels, so that the error
// shows.
func unwrapLabels(e *RangeAgg, lset labels.Labels) labels.Labels {
	if lset.Has(errorLabel) {
		return lset
	}
	g := e.Grouping
	switch {
	case g == nil:
		return labels.NewBuilder(lset).Del(e.Unwrap.Label).Labels()
	case g.Without:
		return labels.NewBuilder(lset).Del(g.Labels...).Del(e.Unwrap.Label).Labels()
	case len(g.Labels) == 0:
		return labels.EmptyLabels()
	}
	return labels.NewBuilder(lset).Keep(g.Labels...).Labels()
}

// absentLabels are the labels absent_over_time answers with: those its
// selector names with =, unless another matcher names them too.
func absentLabels(e *LogExpr) labels.Labels {
	lb := labels.NewBuilder(labels.EmptyLabels())
	var drop []string
	for _, m := range e.Matchers {
		if m.Name == labels.MetricName {
			continue
		}
		if m.Type == labels.MatchEqual && lb.Get(m.Name) == "" {
			lb.Set(m.Name, m.Value)
		} else {
			drop = append(drop, m.Name)
		}
	}
	return lb.Del(drop...).Labels()
}

// overTime is a range aggregation of one series' samples in a window (at
// least one).
func overTime(e *RangeAgg, ts []int64, vs []float64) float64 {
	seconds := e.Range.Seconds()
	switch e.Op {
	case "count_over_time":
		return float64(len(vs))
	case "rate":
		if e.Unwrap == nil {
			return float64(len(vs)) / seconds
		}
		return sum(vs) / seconds
	case "bytes_rate":
		return sum(vs) / seconds
	case "bytes_over_time", "sum_over_time":
		return sum(vs)
	case "avg_over_time":
		return mean(vs)
	case "max_over_time":
		m := vs[0]
		for _, v := range vs {
			if v > m || math.IsNaN(m) {
				m = v
			}
		}
		return m
	case "min_over_time":
		m := vs[0]
		for _, v := range vs {
			if v < m || math.IsNaN(m) {
				m = v
			}
		}
		return m
	case "stdvar_over_time":
		return variance(vs)
	case "stddev_over_time":
		return math.Sqrt(variance(vs))
	case "quantile_over_time":
		return quantile(e.Param, vs)
	case "first_over_time":
		return vs[0]
	case "last_over_time":
		return vs[len(vs)-1]
	case "rate_counter":
		return counterRate(ts, vs, e.Range)
	}
	return 1 // absent_over_time
}

func sum(vs []float64) float64 {
	var s float64
	for _, v := range vs {
		s += v
	}
	return s
}

// mean is the running mean, which stays finite where a sum would not and
// keeps an infinite mean rather than turn it into NaN.
func mean(vs []float64) float64 {
	var m, n float64
	for _, v := range vs {
		n++
		if math.IsInf(m, 0) {
			if math.IsInf(v, 0) && (m > 0) == (v > 0) {
				continue
			}
			if !math.IsInf(v, 0) && !math.IsNaN(v) {
				continue
			}
		}
		m += v/n - m/n
	}
	return m
}

// variance is the population variance, by Welford's method.
func variance(vs []float64) float64 {
	var aux, n, m float64
	for _, v := range vs {
		n++
		d := v - m
		m += d / n
		aux += d * (v - m)
	}
	return aux / n
}

// quantile is the φ-quantile of vs, interpolated between the two nearest
// ranks; below 0 it is -Inf, above 1 +Inf.
func quantile(q float64, vs []float64) float64 {
	switch {
	case len(vs) == 0:
		return math.NaN()
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	}
	sorted := slices.Clone(vs)
	slices.SortFunc(sorted, func(a, b float64) int {
		switch {
		case math.IsNaN(a) && math.IsNaN(b):
			return 0
		case math.IsNaN(a):
			return -1
		case math.IsNaN(b):
			return 1
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	})
	n := float64(len(sorted))
	rank := q * (n - 1)
	lower := math.Max(0, math.Floor(rank))
	upper := math.Min(n-1, lower+1)
	w := rank - math.Floor(rank)
	return sorted[int(lower)]*(1-w) + sorted[int(upper)]*w
}

// counterRate is rate_counter: the per-second increase of a counter over
// the window, allowing for resets and extrapolated to the window's edges.
// It reproduces Loki's arithmetic exactly, which takes the samples'
// times in nanoseconds where Prometheus' takes milliseconds: the window
// start then lies range milliseconds, not range, before the first sample
// and the end is the last sample, so the extrapolation differs from
// Prometheus' rate.
func counterRate(ts []int64, vs []float64, rng time.Duration) float64 {
	if len(vs) < 2 {
		return 0
	}
	n := len(vs)
	start := ts[0] - rng.Milliseconds()
	end := ts[n-1]
	result := vs[n-1] - vs[0]
	var prev float64
	for _, v := range vs {
		if v < prev {
			result += prev
		}
		prev = v
	}
	toStart := float64(ts[0]-start) / 1000
	toEnd := float64(end-ts[n-1]) / 1000
	sampled := float64(ts[n-1]-ts[0]) / 1000
	avgGap := sampled / float64(n-1)
	if result > 0 && vs[0] >= 0 {
		if toZero := sampled * (vs[0] / result); toZero < toStart {
			toStart = toZero
		}
	}
	threshold := avgGap * 1.1
	interval := sampled
	if toStart < threshold {
		interval += toStart
	} else {
		interval += avgGap / 2
	}
	if toEnd < threshold {
		interval += toEnd
	} else {
		interval += avgGap / 2
	}
	return result * (interval / sampled) / rng.Seconds()
}
