package query

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/query/traceql"
	"github.com/lumenobs/lumen/store"
)

// The search answer, as Tempo's jsonpb writes tempopb.SearchResponse and
// Grafana's Tempo data source reads it.
type tempoSearchResponse struct {
	Traces  []tempoTrace       `json:"traces"`
	Metrics tempoSearchMetrics `json:"metrics"`
}

type tempoSearchMetrics struct {
	InspectedTraces int  `json:"inspectedTraces"`
	CompletedJobs   int  `json:"completedJobs"`
	TotalJobs       int  `json:"totalJobs"`
	Partial         bool `json:"partial,omitempty"` // Lumen's: the search stopped at its bound of candidates
}

type tempoTrace struct {
	TraceID           string                       `json:"traceID"`
	RootServiceName   string                       `json:"rootServiceName"`
	RootTraceName     string                       `json:"rootTraceName,omitempty"`
	StartTimeUnixNano string                       `json:"startTimeUnixNano"`
	DurationMs        int64                        `json:"durationMs"`
	SpanSet           *tempoSpanSet                `json:"spanSet,omitempty"`
	SpanSets          []tempoSpanSet               `json:"spanSets,omitempty"`
	ServiceStats      map[string]tempoServiceStats `json:"serviceStats,omitempty"`
}

type tempoServiceStats struct {
	SpanCount  int `json:"spanCount"`
	ErrorCount int `json:"errorCount,omitempty"`
}

type tempoSpanSet struct {
	Spans      []tempoSpan   `json:"spans"`
	Matched    int           `json:"matched"`
	Attributes []tempoKeyVal `json:"attributes,omitempty"`
}

type tempoSpan struct {
	SpanID            string        `json:"spanID"`
	Name              string        `json:"name,omitempty"`
	StartTimeUnixNano string        `json:"startTimeUnixNano"`
	DurationNanos     string        `json:"durationNanos"`
	Attributes        []tempoKeyVal `json:"attributes,omitempty"`
}

// tempoKeyVal is an OTLP KeyValue in proto3 JSON: ints as strings.
type tempoKeyVal struct {
	Key   string         `json:"key"`
	Value map[string]any `json:"value"`
}

func anyValue(v traceql.Value) map[string]any {
	switch v.Type {
	case traceql.TypeInt:
		return map[string]any{"intValue": strconv.FormatInt(v.N, 10)}
	case traceql.TypeFloat:
		return map[string]any{"doubleValue": v.F}
	case traceql.TypeBool:
		return map[string]any{"boolValue": v.B}
	}
	return map[string]any{"stringValue": v.String()}
}

// rootNotYetReceived is what Tempo shows for a trace whose root span has
// not arrived.
const rootNotYetReceived = "<root span not yet received>"

// candidateFactor is how many more candidate traces a search reads than
// it answers when its query holds on the trace (structure, aggregates,
// trace intrinsics) rather than on one span: the store's per-span filter
// lets through traces the whole query then turns down.
const candidateFactor = 10

// search answers /api/search: q= (TraceQL) or, without it, tags=
// (logfmt key=value pairs), minDuration/maxDuration (of the trace),
// start/end (unix seconds), limit, spss.
func (a *TempoAPI) search(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	now := a.now()
	start, end := now.Add(-time.Hour), now
	for name, dst := range map[string]*time.Time{"start": &start, "end": &end} {
		if s := qs.Get(name); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				a.fail(w, fmt.Errorf("%w: %s=%q is not unix seconds", errBadRequest, name, s))
				return
			}
			*dst = time.Unix(n, 0)
		}
	}
	if end.Before(start) {
		a.fail(w, fmt.Errorf("%w: end is before start", errBadRequest))
		return
	}
	limit, spss, err := a.searchLimits(qs)
	if err != nil {
		a.fail(w, err)
		return
	}
	var minDur, maxDur time.Duration
	for name, dst := range map[string]*time.Duration{"minDuration": &minDur, "maxDuration": &maxDur} {
		if s := qs.Get(name); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				a.fail(w, fmt.Errorf("%w: %s=%q is not a duration such as 100ms", errBadRequest, name, s))
				return
			}
			*dst = d
		}
	}
	if maxDur > 0 && minDur > maxDur {
		a.fail(w, fmt.Errorf("%w: minDuration %s is over maxDuration %s", errBadRequest, minDur, maxDur))
		return
	}
	src := strings.TrimSpace(qs.Get("q"))
	if src == "" {
		// Without q, Tempo makes its query of tags=.
		if src, err = tagsQuery(qs.Get("tags")); err != nil {
			a.fail(w, err)
			return
		}
	}
	q, err := traceql.Parse(src)
	if err != nil {
		a.fail(w, err)
		return
	}
	ts := a.plan(q)
	ts.Start, ts.End = uint64(start.UnixNano()), uint64(end.UnixNano())
	ts.Limit, ts.MaxMatched, ts.MaxInspect = limit, 1, 20000
	if !q.Simple() {
		ts.Limit = limit * candidateFactor
	}
	if minDur > 0 || maxDur > 0 {
		// Trace duration: more candidates are read, the summaries decide.
		ts.Limit = ts.Limit * 10
	}
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		a.fail(w, err)
		return
	}
	defer done()
	res, err := a.r.SearchTraces(ctx, ts)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := tempoSearchResponse{Traces: []tempoTrace{}, Metrics: tempoSearchMetrics{InspectedTraces: res.Inspected, CompletedJobs: 1, TotalJobs: 1, Partial: res.Partial}}
	for _, t := range res.Traces {
		if len(out.Traces) >= limit {
			break
		}
		d := time.Duration(t.End - t.Start)
		if (minDur > 0 && d < minDur) || (maxDur > 0 && d > maxDur) {
			continue
		}
		tt, ok, err := a.evalTrace(ctx, q, t, spss)
		if err != nil {
			a.fail(w, err)
			return
		}
		if ok {
			out.Traces = append(out.Traces, tt)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// evalTrace reads a candidate trace and runs the query on it: its search
// result, or false when the query returns nothing for it.
func (a *TempoAPI) evalTrace(ctx context.Context, q *traceql.Query, t store.TraceSummary, spss int) (tempoTrace, bool, error) {
	st, err := a.r.TraceSpans(ctx, t.TraceID)
	if err != nil {
		return tempoTrace{}, false, err
	}
	tr := traceql.NewTrace(st.Spans)
	sets := q.Eval(tr)
	if len(sets) == 0 {
		return tempoTrace{}, false, nil
	}
	tt := tempoTrace{TraceID: t.TraceID.String(), RootServiceName: tr.RootService, RootTraceName: tr.RootName,
		StartTimeUnixNano: strconv.FormatUint(tr.Start, 10), DurationMs: time.Duration(tr.End - tr.Start).Milliseconds(),
		ServiceStats: map[string]tempoServiceStats{}}
	if tr.RootName == "" && tr.RootService == "" {
		tt.RootServiceName = rootNotYetReceived
	}
	for _, s := range tr.Spans {
		svc, _ := s.Resource.Attributes().Get("service.name")
		stats := tt.ServiceStats[svc.AsString()]
		stats.SpanCount++
		if s.Span.Status().Code() == ptrace.StatusCodeError {
			stats.ErrorCount++
		}
		tt.ServiceStats[svc.AsString()] = stats
	}
	shown := q.Shown()
	for _, ss := range sets {
		set := tempoSpanSet{Spans: []tempoSpan{}, Matched: len(ss.Spans)}
		for _, kv := range ss.Attributes {
			set.Attributes = append(set.Attributes, tempoKeyVal{kv.Key, anyValue(kv.Value)})
		}
		for _, s := range ss.Spans[:min(len(ss.Spans), spss)] {
			set.Spans = append(set.Spans, searchSpan(s, shown))
		}
		tt.SpanSets = append(tt.SpanSets, set)
	}
	tt.SpanSet = &tt.SpanSets[0]
	return tt, true, nil
}

// searchSpan is a matched span as a search result shows it: its service
// (as Tempo's results carry it), then the attributes the query read or
// selected that the span has.
func searchSpan(s *traceql.Span, shown []*traceql.Attr) tempoSpan {
	start, end := uint64(s.Span.StartTimestamp()), uint64(s.Span.EndTimestamp())
	out := tempoSpan{SpanID: s.Span.SpanID().String(), Name: s.Span.Name(), StartTimeUnixNano: strconv.FormatUint(start, 10),
		DurationNanos: strconv.FormatUint(end-min(end, start), 10)}
	keys := map[string]bool{}
	add := func(key string, v traceql.Value) {
		if !keys[key] {
			keys[key] = true
			out.Attributes = append(out.Attributes, tempoKeyVal{key, anyValue(v)})
		}
	}
	if v, ok := s.Resource.Attributes().Get("service.name"); ok {
		add("service.name", traceql.Value{Type: traceql.TypeString, S: v.AsString()})
	}
	var buf [4]traceql.Value
	for _, attr := range shown {
		if vs := attr.Values(s, buf[:0]); len(vs) > 0 {
			add(attr.Key(), vs[0])
		}
	}
	return out
}

// searchLimits reads limit= (default 20, lowered to max_search_limit as
// Tempo lowers it to its max_result_limit) and spss= (default 3; over
// max_spans_per_span_set a 400, as in Tempo).
func (a *TempoAPI) searchLimits(qs url.Values) (limit, spss int, err error) {
	limit, spss = 20, 3
	for name, dst := range map[string]*int{"limit": &limit, "spss": &spss} {
		if s := qs.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return 0, 0, fmt.Errorf("%w: %s=%q is not a positive integer", errBadRequest, name, s)
			}
			*dst = n
		}
	}
	if spss > a.cfg.MaxSpansPerSpanSet {
		return 0, 0, overLimit(reasonLimit, "spans per span set exceeds %d. received %d", a.cfg.MaxSpansPerSpanSet, spss)
	}
	return min(limit, a.cfg.MaxSearchLimit), spss, nil
}

// plan makes the store search of a query: its per-span filter of
// candidates (Query.Match), the index term those spans must all have, the
// most selective first, and the duration bounds that prune by it.
func (a *TempoAPI) plan(q *traceql.Query) store.TraceSearch {
	ts := store.TraceSearch{Match: q.Match}
	if q.All() {
		ts.Match = nil
		return ts
	}
	type cond struct {
		attr *traceql.Attr
		op   string
		v    traceql.Value
	}
	var conds []cond
	for _, c := range q.Conjuncts() {
		if attr, v, ok := c.Attr(); ok {
			conds = append(conds, cond{attr, c.Op, v})
		}
	}
	intrinsic := func(c cond, name string) bool { return c.attr.Scope == traceql.ScopeIntrinsic && c.attr.Name == name }
	service, name := "", ""
	for _, c := range conds {
		switch {
		case c.op == "=" && (c.attr.Scope == traceql.ScopeResource || c.attr.Scope == traceql.ScopeAny) &&
			c.attr.Name == "service.name" && c.v.Type == traceql.TypeString:
			service = c.v.S
		case c.op == "=" && intrinsic(c, "name") && c.v.Type == traceql.TypeString:
			name = c.v.S
		case intrinsic(c, "duration") && c.v.Type == traceql.TypeDuration && (c.op == ">" || c.op == ">="):
			ts.MinDuration = uint64(max(c.v.D, 0))
		case intrinsic(c, "duration") && c.v.Type == traceql.TypeDuration && (c.op == "<" || c.op == "<="):
			ts.MaxDuration = uint64(max(c.v.D, 0))
		}
	}
	// The drive term: service + span name, an indexed attribute value,
	// error status, the service; the other indexed conditions narrow it.
	var terms []store.Term
	if service != "" && name != "" {
		terms = append(terms, store.Term{Kind: store.TermName, A: service, B: name})
	}
	for _, c := range conds {
		if c.op != "=" || !a.indexed[c.attr.Name] {
			continue
		}
		// The index holds values as strings (an int as its digits).
		val := ""
		switch c.v.Type {
		case traceql.TypeString:
			val = c.v.S
		case traceql.TypeInt:
			val = strconv.FormatInt(c.v.N, 10)
		default:
			continue
		}
		switch c.attr.Scope {
		case traceql.ScopeSpan:
			terms = append(terms, store.Term{Kind: store.TermSpanAttr, A: c.attr.Name, B: val})
		case traceql.ScopeResource:
			terms = append(terms, store.Term{Kind: store.TermResAttr, A: c.attr.Name, B: val})
		}
	}
	for _, c := range conds {
		if intrinsic(c, "status") && c.op == "=" && c.v.S == "error" && (c.v.Type == traceql.TypeStatus || c.v.Type == traceql.TypeString) {
			terms = append(terms, store.Term{Kind: store.TermError})
		}
	}
	if service != "" && name == "" {
		terms = append(terms, store.Term{Kind: store.TermService, A: service})
	}
	if len(terms) > 0 {
		ts.Drive, ts.Also = terms[0], terms[1:]
	}
	return ts
}

// tagsQuery turns tags= (logfmt: service.name=api http.status_code=500
// error=true) into a TraceQL filter, as Tempo reads them: each key on the
// span or its resource; name the span name; error=true an error status.
func tagsQuery(tags string) (string, error) {
	var conds []string
	for _, kv := range splitLogfmt(tags) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", fmt.Errorf("%w: tags=%q: %q is not key=value", errBadRequest, tags, kv)
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		switch k {
		case "error":
			if v == "true" {
				conds = append(conds, "status = error")
			}
		case "name":
			conds = append(conds, "name = "+strconv.Quote(v))
		default:
			conds = append(conds, "."+strconv.Quote(k)+" = "+strconv.Quote(v))
		}
	}
	if len(conds) == 0 {
		return "{}", nil
	}
	return "{ " + strings.Join(conds, " && ") + " }", nil
}

func splitLogfmt(s string) []string {
	var out []string
	var b strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			b.WriteRune(r)
		case r == ' ' && !quoted:
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
		default:
			b.WriteRune(r)
		}
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// sortedKeys lists a set's keys in order.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
