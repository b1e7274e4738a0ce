package query

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lumenobs/lumen/query/drain"
	"github.com/lumenobs/lumen/store"
)

// Loki's pattern querier keeps the patterns with at least this many
// lines in the range, at most this many of them.
const (
	minPatternLines = 30
	maxPatterns     = 300
)

// detectedLevels are the levels Loki mines apart; a line of another
// level is mined with the unknown ones.
var detectedLevels = map[string]bool{"unknown": true, "debug": true, "info": true, "warn": true, "error": true,
	"fatal": true, "critical": true, "trace": true}

type patternSeries struct {
	Pattern string     `json:"pattern"`
	Level   string     `json:"level"`
	Samples [][2]int64 `json:"samples"`
	total   int64      `json:"-"`
	byT     map[int64]int64
}

// patterns answers /loki/api/v1/patterns: the patterns of the selected
// streams' lines in the range, found with Drain as Loki's pattern
// ingester finds them (per stream and detected_level, tokenized by the
// stream's format), each with its line counts per step. Loki mines lines
// as they arrive and keeps its patterns for hours; Lumen mines the
// range's lines when asked, at most the LogQL line bound of them.
func (a *LokiAPI) patterns(w http.ResponseWriter, r *http.Request) {
	sel, err := a.readRangeSelector(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	defer done()
	streams, err := a.r.SelectLogs(ctx, store.LogSelect{Matchers: sel.ms, Start: sel.start.UnixNano(), End: sel.end.UnixNano(), MaxLines: a.cfg.MaxLines})
	if err != nil {
		a.lokiError(w, err)
		return
	}
	from := sel.start.UnixMilli()
	through := sel.end.UnixMilli()
	if sel.end.Nanosecond()%int(time.Millisecond) != 0 {
		through++
	}
	stepMs := sel.step.Milliseconds()
	cfg := drain.DefaultConfig()
	merged := map[[2]string]*patternSeries{}
	for _, s := range streams {
		if len(s.Entries) == 0 {
			continue
		}
		format := drain.DetectFormat(s.Entries[0].Line)
		miners := map[string]*drain.Drain{}
		for i := range s.Entries {
			e := &s.Entries[i]
			lvl := strings.ToLower(e.Metadata.Get("detected_level"))
			if !detectedLevels[lvl] {
				lvl = "unknown"
			}
			d := miners[lvl]
			if d == nil {
				d = drain.New(cfg, format)
				miners[lvl] = d
			}
			d.Train(e.Line, e.T)
		}
		for lvl, d := range miners {
			for _, p := range d.Patterns(from, through, stepMs) {
				k := [2]string{lvl, p.Pattern}
				ps := merged[k]
				if ps == nil {
					ps = &patternSeries{Pattern: p.Pattern, Level: lvl, byT: map[int64]int64{}}
					merged[k] = ps
				}
				for _, smp := range p.Samples {
					ps.byT[smp.T] += smp.N
					ps.total += smp.N
				}
			}
		}
	}
	out := make([]*patternSeries, 0, len(merged))
	for _, ps := range merged {
		if ps.total < minPatternLines {
			continue
		}
		ts := make([]int64, 0, len(ps.byT))
		for t := range ps.byT {
			ts = append(ts, t)
		}
		slices.Sort(ts)
		ps.Samples = make([][2]int64, len(ts))
		for i, t := range ts {
			ps.Samples[i] = [2]int64{t / 1000, ps.byT[t]}
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(x, y *patternSeries) int {
		if c := cmp.Compare(y.total, x.total); c != 0 {
			return c
		}
		return strings.Compare(x.Level+x.Pattern, y.Level+y.Pattern)
	})
	if len(out) > maxPatterns {
		out = out[:maxPatterns]
	}
	writeJSON(w, http.StatusOK, lokiResponse{Status: "success", Data: out})
}
