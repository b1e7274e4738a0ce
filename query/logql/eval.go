package logql

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/store"
)

// Reader is the part of the store LogQL reads.
type Reader interface {
	SelectLogs(ctx context.Context, q store.LogSelect) ([]store.LogStream, error)
}

// Params are a query's time range, step and log limits.
type Params struct {
	Start, End time.Time
	// Step is the resolution of a range metric query; 0 for an instant one
	// (evaluated at End).
	Step time.Duration
	// Limit bounds the lines of a log query; Forward returns the oldest
	// first, otherwise the newest.
	Limit   int
	Forward bool
	// MaxLines bounds the lines a query may read.
	MaxLines int
}

// Entry is one line of a log query's answer.
type Entry struct {
	T    int64 // unix ns
	Line string
}

// Stream is a log query's lines with one label set.
type Stream struct {
	Labels  labels.Labels
	Entries []Entry
}

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

// Result is a query's answer: Streams for a log query, Series for a metric
// query.
type Result struct {
	Streams []Stream
	Series  []Series
}

// Exec evaluates e over r.
func Exec(ctx context.Context, r Reader, e Expr, p Params) (Result, error) {
	if le, ok := e.(*LogExpr); ok {
		streams, err := execLogs(ctx, r, le, p)
		return Result{Streams: streams}, err
	}
	steps := stepTimes(p)
	series, err := evalMetric(ctx, r, e, steps, p)
	return Result{Series: series}, err
}

// stepTimes lists the evaluation times of a metric query, unix ms.
func stepTimes(p Params) []int64 {
	if p.Step <= 0 {
		return []int64{p.End.UnixMilli()}
	}
	var out []int64
	for t := p.Start; !t.After(p.End); t = t.Add(p.Step) {
		out = append(out, t.UnixMilli())
	}
	return out
}

// pipeline runs a log query's stages over one line.
type pipeline struct {
	stages []Stage
	// pushed is how many leading line filters ran in the store already.
	pushed int
}

func newPipeline(e *LogExpr) *pipeline {
	p := &pipeline{stages: e.Stages}
	for _, st := range e.Stages {
		if _, ok := st.(*LineFilter); !ok {
			break
		}
		p.pushed++
	}
	return p
}

// keep is the leading line filters, run by the store as it reads.
func (p *pipeline) keep() func(labels.Labels, *store.LogEntry) bool {
	if p.pushed == 0 {
		return nil
	}
	filters := p.stages[:p.pushed]
	return func(_ labels.Labels, e *store.LogEntry) bool {
		for _, f := range filters {
			if !f.(*LineFilter).match(e.Line) {
				return false
			}
		}
		return true
	}
}

func (f *LineFilter) match(line string) bool {
	hit := false
	for i, v := range f.Values {
		switch f.Op {
		case tPipeExact, tNeq:
			hit = strings.Contains(line, v)
		default:
			hit = f.res[i].MatchString(line)
		}
		if hit {
			break
		}
	}
	if f.Op == tNeq || f.Op == tNre {
		return !hit
	}
	return hit
}

// run takes one line through the stages after the pushed filters and
// returns its labels and line, or false when a stage drops it.
func (p *pipeline) run(stream labels.Labels, e *store.LogEntry) (labels.Labels, string, bool) {
	rest := p.stages[p.pushed:]
	if len(rest) == 0 && e.Metadata.IsEmpty() {
		return stream, e.Line, true
	}
	lb := labels.NewBuilder(stream)
	e.Metadata.Range(func(l labels.Label) {
		if !stream.Has(l.Name) {
			lb.Set(l.Name, l.Value)
		}
	})
	line := e.Line
	for _, st := range rest {
		switch st := st.(type) {
		case *LineFilter:
			if !st.match(line) {
				return labels.EmptyLabels(), "", false
			}
		case *Parser:
			var ok bool
			if st.Kind == "json" {
				ok = parseJSON(line, lb)
			} else {
				ok = parseLogfmt(line, lb)
			}
			if !ok && lb.Get("__error__") == "" {
				lb.Set("__error__", map[string]string{"json": "JSONParserErr", "logfmt": "LogfmtParserErr"}[st.Kind])
			}
		case *LabelFilter:
			keep, err := evalPred(st.Pred, lb)
			if err != nil {
				if lb.Get("__error__") == "" {
					lb.Set("__error__", "LabelFilterErr")
					lb.Set("__error_details__", err.Error())
				}
				continue
			}
			if !keep {
				return labels.EmptyLabels(), "", false
			}
		case *LineFormat:
			data := map[string]any{"__line__": line, "__timestamp__": time.Unix(0, e.T).UTC()}
			lb.Range(func(l labels.Label) { data[l.Name] = l.Value })
			var b bytes.Buffer
			if err := st.tmpl.Execute(&b, data); err != nil {
				lb.Set("__error__", "TemplateFormatErr")
				lb.Set("__error_details__", err.Error())
				continue
			}
			line = b.String()
		}
	}
	return lb.Labels(), line, true
}

// addParsed sets a parsed field, as Loki does: a name that is already a
// label gets the suffix _extracted.
func addParsed(lb *labels.Builder, name, value string) {
	name = sanitize(name)
	if name == "" {
		return
	}
	if lb.Get(name) != "" {
		name += "_extracted"
	}
	lb.Set(name, value)
}

func sanitize(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9':
			b.WriteByte(c)
		case i == 0 && '0' <= c && c <= '9':
			b.WriteByte('_')
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// parseJSON adds the fields of a JSON object line as labels, nested
// objects joined with '_'; arrays are skipped, as Loki's json parser does.
func parseJSON(line string, lb *labels.Builder) bool {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return false
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, x := range m {
			name := k
			if prefix != "" {
				name = prefix + "_" + k
			}
			switch x := x.(type) {
			case map[string]any:
				walk(name, x)
			case []any:
			case nil:
				addParsed(lb, name, "")
			case string:
				addParsed(lb, name, x)
			default:
				addParsed(lb, name, fmt.Sprint(x))
			}
		}
	}
	walk("", v)
	return true
}

// parseLogfmt adds a logfmt line's key=value pairs as labels. A key alone
// is an empty value; values may be double-quoted with Go escapes.
func parseLogfmt(line string, lb *labels.Builder) bool {
	i := 0
	for i < len(line) {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			break
		}
		ks := i
		for i < len(line) && line[i] > ' ' && line[i] != '=' && line[i] != '"' {
			i++
		}
		key := line[ks:i]
		if key == "" {
			return false
		}
		value := ""
		if i < len(line) && line[i] == '=' {
			i++
			if i < len(line) && line[i] == '"' {
				j := i + 1
				for j < len(line) && line[j] != '"' {
					if line[j] == '\\' {
						j++
					}
					j++
				}
				if j >= len(line) {
					return false
				}
				s, err := strconv.Unquote(line[i : j+1])
				if err != nil {
					return false
				}
				value, i = s, j+1
			} else {
				vs := i
				for i < len(line) && line[i] > ' ' {
					i++
				}
				value = line[vs:i]
			}
		}
		addParsed(lb, key, value)
	}
	return true
}

func evalPred(p Pred, lb *labels.Builder) (bool, error) {
	switch p := p.(type) {
	case And:
		l, err := evalPred(p.L, lb)
		if err != nil || !l {
			return false, err
		}
		return evalPred(p.R, lb)
	case Or:
		l, err := evalPred(p.L, lb)
		if err == nil && l {
			return true, nil
		}
		r, err2 := evalPred(p.R, lb)
		if err2 != nil {
			return false, err2
		}
		return r, err
	case StringMatch:
		return p.M.Matches(lb.Get(p.M.Name)), nil
	case *NumberMatch:
		s := lb.Get(p.Name)
		var v float64
		var err error
		switch p.Kind {
		case tDuration:
			var d time.Duration
			d, err = parseDuration(s)
			v = d.Seconds()
		case tBytes:
			var b uint64
			b, err = parseBytes(s)
			v = float64(b)
		default:
			v, err = strconv.ParseFloat(s, 64)
		}
		if err != nil {
			return false, fmt.Errorf("label %s=%q is not a %s", p.Name, s, map[tokKind]string{tNumber: "number", tDuration: "duration", tBytes: "byte size"}[p.Kind])
		}
		switch p.Op {
		case tEqEq:
			return v == p.Value, nil
		case tNeq:
			return v != p.Value, nil
		case tGt:
			return v > p.Value, nil
		case tGte:
			return v >= p.Value, nil
		case tLt:
			return v < p.Value, nil
		case tLte:
			return v <= p.Value, nil
		}
	}
	return false, fmt.Errorf("unknown label filter %T", p)
}

// Line is a line after a query's pipeline, with its labels.
type Line struct {
	Labels labels.Labels
	T      int64
	Line   string
}

// Pipe runs lines of one stream through e's whole pipeline (for live tail,
// where the store has not filtered them).
func Pipe(e *LogExpr, stream labels.Labels, es []store.LogEntry) []Line {
	pl := &pipeline{stages: e.Stages}
	var out []Line
	for i := range es {
		if lset, line, ok := pl.run(stream, &es[i]); ok {
			out = append(out, Line{Labels: lset, T: es[i].T, Line: line})
		}
	}
	return out
}

// outLine is a line after the pipeline, with its output labels.
type outLine struct {
	key  string
	lset labels.Labels
	t    int64
	line string
}

// selectLines reads the lines of e in [start, end) and runs the pipeline.
func selectLines(ctx context.Context, r Reader, e *LogExpr, start, end int64, maxLines int) ([]outLine, error) {
	pl := newPipeline(e)
	return pl.selectLines(ctx, r, store.LogSelect{Matchers: e.Matchers, Start: start, End: end, Keep: pl.keep(), MaxLines: maxLines})
}

// selectLimited reads the limit oldest (forward) or newest lines of e in
// [start, end) that pass the whole pipeline: the store runs the pipeline
// as it reads and keeps only those lines, so what a query holds does not
// depend on how many lines match.
func selectLimited(ctx context.Context, r Reader, e *LogExpr, p Params) ([]outLine, error) {
	pl := newPipeline(e)
	filters := pl.keep()
	keep := func(lset labels.Labels, le *store.LogEntry) bool {
		if filters != nil && !filters(lset, le) {
			return false
		}
		_, _, ok := pl.run(lset, le)
		return ok
	}
	return pl.selectLines(ctx, r, store.LogSelect{Matchers: e.Matchers, Start: p.Start.UnixNano(), End: p.End.UnixNano(), Keep: keep,
		Limit: p.Limit, Backward: !p.Forward})
}

func (pl *pipeline) selectLines(ctx context.Context, r Reader, q store.LogSelect) ([]outLine, error) {
	streams, err := r.SelectLogs(ctx, q)
	if err != nil {
		return nil, err
	}
	var out []outLine
	for _, st := range streams {
		key := st.Labels.String()
		for i := range st.Entries {
			lset, line, ok := pl.run(st.Labels, &st.Entries[i])
			if !ok {
				continue
			}
			k := key
			if !labels.Equal(lset, st.Labels) {
				k = lset.String()
			}
			out = append(out, outLine{key: k, lset: lset, t: st.Entries[i].T, line: line})
		}
	}
	return out, nil
}

func execLogs(ctx context.Context, r Reader, e *LogExpr, p Params) ([]Stream, error) {
	var (
		lines []outLine
		err   error
	)
	if p.Limit > 0 {
		lines, err = selectLimited(ctx, r, e, p)
	} else {
		lines, err = selectLines(ctx, r, e, p.Start.UnixNano(), p.End.UnixNano(), p.MaxLines)
	}
	if err != nil {
		return nil, err
	}
	// The limit takes the oldest (forward) or newest (backward) lines
	// across all streams, as Loki does.
	slices.SortStableFunc(lines, func(a, b outLine) int {
		if p.Forward {
			return cmp.Compare(a.t, b.t)
		}
		return cmp.Compare(b.t, a.t)
	})
	if p.Limit > 0 && len(lines) > p.Limit {
		lines = lines[:p.Limit]
	}
	byKey := map[string]*Stream{}
	var out []*Stream
	for _, l := range lines {
		s := byKey[l.key]
		if s == nil {
			s = &Stream{Labels: l.lset}
			byKey[l.key] = s
			out = append(out, s)
		}
		s.Entries = append(s.Entries, Entry{T: l.t, Line: l.line})
	}
	res := make([]Stream, len(out))
	for i, s := range out {
		res[i] = *s
	}
	slices.SortFunc(res, func(a, b Stream) int { return labels.Compare(a.Labels, b.Labels) })
	return res, nil
}

// evalMetric evaluates a metric query at each step (unix ms).
func evalMetric(ctx context.Context, r Reader, e Expr, steps []int64, p Params) ([]Series, error) {
	switch e := e.(type) {
	case *RangeAgg:
		return evalRange(ctx, r, e, steps, p)
	case *VectorAgg:
		inner, err := evalMetric(ctx, r, e.Inner, steps, p)
		if err != nil {
			return nil, err
		}
		return aggregate(e, inner, steps), nil
	}
	return nil, fmt.Errorf("%w: %s is not a metric query", ErrParse, e)
}

func evalRange(ctx context.Context, r Reader, e *RangeAgg, steps []int64, p Params) ([]Series, error) {
	first := steps[0]*int64(time.Millisecond) - e.Offset.Nanoseconds() - e.Range.Nanoseconds()
	last := steps[len(steps)-1]*int64(time.Millisecond) - e.Offset.Nanoseconds()
	lines, err := selectLines(ctx, r, e.Log, first+1, last+1, p.MaxLines)
	if err != nil {
		return nil, err
	}
	type group struct {
		lset  labels.Labels
		times []int64
		sizes []int
	}
	groups := map[string]*group{}
	for _, l := range lines {
		g := groups[l.key]
		if g == nil {
			g = &group{lset: l.lset}
			groups[l.key] = g
		}
		g.times = append(g.times, l.t)
		g.sizes = append(g.sizes, len(l.line))
	}
	var out []Series
	for _, g := range groups {
		idx := make([]int, len(g.times))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return g.times[idx[a]] < g.times[idx[b]] })
		times := make([]int64, len(idx))
		cum := make([]float64, len(idx)+1) // cumulative bytes
		for i, j := range idx {
			times[i] = g.times[j]
			cum[i+1] = cum[i] + float64(g.sizes[j])
		}
		s := Series{Metric: g.lset}
		for _, t := range steps {
			hi := t*int64(time.Millisecond) - e.Offset.Nanoseconds() // window (hi-range, hi]
			lo := hi - e.Range.Nanoseconds()
			a := sort.Search(len(times), func(i int) bool { return times[i] > lo })
			b := sort.Search(len(times), func(i int) bool { return times[i] > hi })
			n := b - a
			if n == 0 {
				continue
			}
			var v float64
			switch e.Op {
			case "count_over_time":
				v = float64(n)
			case "rate":
				v = float64(n) / e.Range.Seconds()
			case "bytes_over_time":
				v = cum[b] - cum[a]
			case "bytes_rate":
				v = (cum[b] - cum[a]) / e.Range.Seconds()
			}
			s.Points = append(s.Points, Point{T: t, V: v})
		}
		if len(s.Points) > 0 {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Series) int { return labels.Compare(a.Metric, b.Metric) })
	return out, nil
}

// groupLabels returns the labels a vector aggregation keeps of lset.
func groupLabels(e *VectorAgg, lset labels.Labels) labels.Labels {
	if e.Without {
		return labels.NewBuilder(lset).Del(e.Grouping...).Labels()
	}
	if len(e.Grouping) == 0 {
		return labels.EmptyLabels()
	}
	return labels.NewBuilder(lset).Keep(e.Grouping...).Labels()
}

func aggregate(e *VectorAgg, in []Series, steps []int64) []Series {
	type cell struct {
		series int
		v      float64
	}
	// per step, per group, the inputs' values
	type groupAt struct {
		lset  labels.Labels
		cells map[int64][]cell
	}
	groups := map[string]*groupAt{}
	var order []string
	for si, s := range in {
		g := groupLabels(e, s.Metric)
		k := g.String()
		ga := groups[k]
		if ga == nil {
			ga = &groupAt{lset: g, cells: map[int64][]cell{}}
			groups[k] = ga
			order = append(order, k)
		}
		for _, pt := range s.Points {
			ga.cells[pt.T] = append(ga.cells[pt.T], cell{series: si, v: pt.V})
		}
	}
	if e.Op == "topk" || e.Op == "bottomk" {
		// The chosen series keep their own labels and appear at the steps
		// where they are among the k.
		kept := map[int]*Series{}
		for _, k := range order {
			for _, t := range steps {
				cs := slices.Clone(groups[k].cells[t])
				slices.SortStableFunc(cs, func(a, b cell) int {
					if e.Op == "topk" {
						return cmp.Compare(b.v, a.v)
					}
					return cmp.Compare(a.v, b.v)
				})
				for _, c := range cs[:min(e.Param, len(cs))] {
					s := kept[c.series]
					if s == nil {
						s = &Series{Metric: in[c.series].Metric}
						kept[c.series] = s
					}
					s.Points = append(s.Points, Point{T: t, V: c.v})
				}
			}
		}
		out := make([]Series, 0, len(kept))
		for _, s := range kept {
			out = append(out, *s)
		}
		slices.SortFunc(out, func(a, b Series) int { return labels.Compare(a.Metric, b.Metric) })
		return out
	}
	var out []Series
	for _, k := range order {
		ga := groups[k]
		s := Series{Metric: ga.lset}
		for _, t := range steps {
			cs := ga.cells[t]
			if len(cs) == 0 {
				continue
			}
			var v float64
			switch e.Op {
			case "sum", "avg":
				for _, c := range cs {
					v += c.v
				}
				if e.Op == "avg" {
					v /= float64(len(cs))
				}
			case "min":
				v = math.Inf(1)
				for _, c := range cs {
					v = math.Min(v, c.v)
				}
			case "max":
				v = math.Inf(-1)
				for _, c := range cs {
					v = math.Max(v, c.v)
				}
			case "count":
				v = float64(len(cs))
			}
			s.Points = append(s.Points, Point{T: t, V: v})
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Series) int { return labels.Compare(a.Metric, b.Metric) })
	return out
}
