package logql

import (
	"slices"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/store"
)

// run takes one line through the stages after the pushed filters and
// returns its labels and line, or false when a stage drops it.
func (p *pipeline) run(stream labels.Labels, e *store.LogEntry) (labels.Labels, string, bool) {
	if p.pushed == len(p.stages) && e.Metadata.IsEmpty() {
		return stream, e.Line, true
	}
	lb, line, ok := p.process(stream, e)
	if !ok {
		return labels.EmptyLabels(), "", false
	}
	return lb.labels(), line, true
}

// process runs the stages after the pushed filters over one line and
// returns the line's labels as the stages left them: for a metric query,
// the labels an unwrap reads and groups (lineLabels.get, .labels, .err).
func (p *pipeline) process(stream labels.Labels, e *store.LogEntry) (*lineLabels, string, bool) {
	lb := newLineLabels(stream, p.hints)
	lb.addMeta(e.Metadata)
	line, ok := runStages(p.stages[p.pushed:], e.T, e.Line, lb)
	return lb, line, ok
}

// runStages runs stages over a line (ts unix ns) and its labels; false
// when one drops the line. An unwrap's label filters run through it too.
func runStages(stages []Stage, ts int64, line string, lb *lineLabels) (string, bool) {
	for _, st := range stages {
		pr, ok := st.(processor)
		if !ok {
			continue
		}
		if line, ok = pr.process(ts, line, lb); !ok {
			return "", false
		}
	}
	return line, true
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
	pl := newPipeline(e)
	pl.pushed = 0
	var out []Line
	for i := range es {
		if lset, line, ok := pl.run(stream, &es[i]); ok {
			out = append(out, Line{Labels: lset, T: es[i].T, Line: line})
		}
	}
	return out
}

// logHints are a log query's hints: its label filters, which parsers
// apply as soon as they set their label.
func logHints(stages []Stage) *hints { return newHints(stages, nil, nil, false, false, "") }

// newMetricPipeline is the pipeline of a range aggregation's log query,
// as Loki builds its sample extractor:
//   - line_format is left out when nothing after it reads the line
//     (no parser, no line filter), except for bytes_over_time and
//     bytes_rate, which measure it;
//   - the parsers extract only the labels the query needs: its grouping
//     (parent, a sum by/without whose grouping Loki pushes down when the
//     range aggregation has none, may be nil), the labels the stages
//     and the unwrap's filters read, and the unwrapped label; with no
//     grouping at all, none.
//
// The unwrap's own filters (e.Unwrap.Post) are not part of the stages:
// run them with runStages on what process returns.
func newMetricPipeline(e *RangeAgg, parent *VectorAgg) *pipeline {
	stages := e.Log.Stages
	if e.Op != "bytes_over_time" && e.Op != "bytes_rate" {
		stages = withoutIdleLineFormat(stages)
	}
	p := &pipeline{stages: execOrder(stages)}
	for _, st := range p.stages {
		if _, ok := st.(*LineFilter); !ok {
			break
		}
		p.pushed++
	}

	var (
		groups            []string
		without, noLabels bool
	)
	if e.Grouping != nil {
		groups, without = e.Grouping.Labels, e.Grouping.Without
		noLabels = len(groups) == 0 && !without
	}
	if parent != nil && e.Grouping == nil && parent.Op == "sum" {
		switch e.Op {
		case "bytes_over_time", "bytes_rate", "sum_over_time", "rate", "count_over_time":
			groups, without = parent.Grouping, parent.Without
			noLabels = len(groups) == 0 && !without
		}
	}
	if e.Op == "absent_over_time" {
		noLabels = true
	}
	groups = slices.Sorted(slices.Values(groups))
	required := stagesRequire(p.stages)
	hintStages := p.stages
	metricLabel := ""
	if e.Unwrap != nil {
		metricLabel = e.Unwrap.Label
		if len(groups) == 0 || without {
			without = true
			groups = slices.Sorted(slices.Values(append(slices.Clone(groups), metricLabel)))
		}
		post := postFilter(e.Unwrap.Post)
		if post != nil {
			required = append(required, post.requiredLabels()...)
			hintStages = append(slices.Clone(p.stages), post)
		}
	}
	p.hints = newHints(hintStages, required, groups, without, noLabels, metricLabel)
	return p
}

// postFilter is an unwrap's label filters as one (Loki and-s them).
func postFilter(post []Stage) *LabelFilter {
	var pred Pred
	for _, st := range post {
		f, ok := st.(*LabelFilter)
		if !ok {
			continue
		}
		if pred == nil {
			pred = f.Pred
		} else {
			pred = And{pred, f.Pred}
		}
	}
	if pred == nil {
		return nil
	}
	return &LabelFilter{Pred: pred}
}

// withoutIdleLineFormat leaves out each line_format that no parser or
// line filter after it reads.
func withoutIdleLineFormat(stages []Stage) []Stage {
	out := make([]Stage, 0, len(stages))
	for i, st := range stages {
		if _, ok := st.(*LineFormat); !ok {
			out = append(out, st)
			continue
		}
		used := slices.ContainsFunc(stages[i:], func(s Stage) bool {
			switch s.(type) {
			case *LineFilter, *JSONParser, *LogfmtParser, *RegexpParser, *PatternParser, *UnpackParser:
				return true
			}
			return false
		})
		if used {
			out = append(out, st)
		}
	}
	return out
}
