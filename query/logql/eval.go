package logql

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/store"
)

// Reader is the part of the store LogQL reads.
type Reader interface {
	SelectLogs(ctx context.Context, q store.LogSelect) ([]store.LogStream, error)
}

// Executor evaluates a query somewhere other than over a Reader: a
// remote Loki (query/lokiremote).
type Executor interface {
	Exec(ctx context.Context, e Expr, p Params) (Result, error)
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

// pipeline runs a log query's stages over one line (pipeline.go).
type pipeline struct {
	// stages are in the order they run (execOrder).
	stages []Stage
	// pushed is how many leading line filters ran in the store already.
	pushed int
	hints  *hints
}

func newPipeline(e *LogExpr) *pipeline {
	p := &pipeline{stages: execOrder(e.Stages)}
	for _, st := range p.stages {
		if _, ok := st.(*LineFilter); !ok {
			break
		}
		p.pushed++
	}
	p.hints = logHints(p.stages)
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
