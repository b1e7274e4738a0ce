package query

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/query/traceql"
	"github.com/lumenobs/lumen/store"
)

// SearchResponse is the body of GET /api/v1/search: Lumen's own trace
// search, what the UI's result list shows.
type SearchResponse struct {
	Traces []SearchTrace `json:"traces"`
	// Inspected counts the candidate traces whose spans were read;
	// Partial is set when the search stopped before the limit because it
	// inspected as many as it may.
	Inspected int  `json:"inspected"`
	Partial   bool `json:"partial"`
}

// SearchTrace is one trace's summary.
type SearchTrace struct {
	TraceID string `json:"traceId"`
	// RootService and RootName are empty when the root span has not
	// arrived.
	RootService       string        `json:"rootService"`
	RootName          string        `json:"rootName"`
	StartTime         time.Time     `json:"startTime"`
	StartTimeUnixNano string        `json:"startTimeUnixNano"`
	DurationNanos     int64         `json:"durationNanos"`
	SpanCount         int           `json:"spanCount"`
	ErrorCount        int           `json:"errorCount"`
	Services          []string      `json:"services"`
	Matched           []MatchedSpan `json:"matched"`
	MatchedCount      int           `json:"matchedCount"`
}

// MatchedSpan is a span that met the search's conditions.
type MatchedSpan struct {
	SpanID            string `json:"spanId"`
	Service           string `json:"service"`
	Name              string `json:"name"`
	StartTimeUnixNano string `json:"startTimeUnixNano"`
	DurationNanos     int64  `json:"durationNanos"`
}

// lumenSearch answers /api/v1/search: service=, name= (span name),
// status=error|ok|unset, minDuration= and maxDuration= (of the span),
// attr=key=value (repeatable: a span or resource attribute), root=true
// (the span must be the trace's root), start=, end= (as the Loki API
// reads times; default the last hour), limit= (20, at most
// max_search_limit). All conditions hold on one span; results are newest
// first.
func (a *TempoAPI) lumenSearch(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	end, err := lokiTime("end", qs.Get("end"), a.now())
	if err != nil {
		a.fail(w, err)
		return
	}
	start, err := lokiTime("start", qs.Get("start"), end.Add(-time.Hour))
	if err != nil {
		a.fail(w, err)
		return
	}
	var conds []string
	if s := qs.Get("service"); s != "" {
		conds = append(conds, "resource.service.name = "+strconv.Quote(s))
	}
	if s := qs.Get("name"); s != "" {
		conds = append(conds, "name = "+strconv.Quote(s))
	}
	switch s := qs.Get("status"); s {
	case "":
	case "error", "ok", "unset":
		conds = append(conds, "status = "+s)
	default:
		a.fail(w, fmt.Errorf("%w: status=%q: use error, ok or unset", errBadRequest, s))
		return
	}
	for param, op := range map[string]string{"minDuration": ">=", "maxDuration": "<="} {
		if s := qs.Get(param); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				a.fail(w, fmt.Errorf("%w: %s=%q is not a duration such as 100ms", errBadRequest, param, s))
				return
			}
			conds = append(conds, "duration "+op+" "+d.String())
		}
	}
	for _, kv := range qs["attr"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\"=") {
			a.fail(w, fmt.Errorf("%w: attr=%q is not key=value", errBadRequest, kv))
			return
		}
		conds = append(conds, "."+k+" = "+strconv.Quote(v))
	}
	limit := min(20, a.cfg.MaxSearchLimit)
	if s := qs.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		switch {
		case err != nil || n < 1:
			a.fail(w, fmt.Errorf("%w: limit=%q is not an integer in 1..%d", errBadRequest, s, a.cfg.MaxSearchLimit))
			return
		case n > a.cfg.MaxSearchLimit:
			a.fail(w, overLimit(reasonLimit, "limit=%q is not an integer in 1..%d", s, a.cfg.MaxSearchLimit))
			return
		}
		limit = n
	}
	root := qs.Get("root") == "true"
	q, err := traceql.Parse("{ " + strings.Join(conds, " && ") + " }")
	if err != nil {
		a.fail(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	ts := a.plan(q)
	if root {
		ts.Match = func(res pcommon.Resource, sp ptrace.Span) bool {
			return sp.ParentSpanID().IsEmpty() && q.Match(res, sp)
		}
		if svc, name := qs.Get("service"), qs.Get("name"); svc != "" && name != "" {
			ts.Drive, ts.Also = store.Term{Kind: store.TermRoot, A: svc, B: name}, nil
		}
	}
	ts.Start, ts.End = uint64(start.UnixNano()), uint64(end.UnixNano())
	ts.Limit, ts.MaxInspect, ts.MaxMatched = limit, 20000, 10
	res, err := a.searchTraces(r, ts)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := SearchResponse{Traces: []SearchTrace{}, Inspected: res.Inspected, Partial: res.Partial}
	for _, t := range res.Traces {
		st := SearchTrace{TraceID: t.TraceID.String(), RootService: t.RootService, RootName: t.RootName,
			StartTime: time.Unix(0, int64(t.Start)).UTC(), StartTimeUnixNano: strconv.FormatUint(t.Start, 10),
			DurationNanos: int64(t.End - t.Start), SpanCount: t.SpanCount, ErrorCount: t.ErrorCount, Services: t.Services,
			Matched: []MatchedSpan{}, MatchedCount: t.MatchedCount}
		for _, m := range t.Matched {
			st.Matched = append(st.Matched, MatchedSpan{SpanID: m.SpanID.String(), Service: m.Service, Name: m.Name,
				StartTimeUnixNano: strconv.FormatUint(m.Start, 10), DurationNanos: int64(m.End - m.Start)})
		}
		out.Traces = append(out.Traces, st)
	}
	writeJSON(w, http.StatusOK, out)
}
