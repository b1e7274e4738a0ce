package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/limits"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/query/traceql"
	"github.com/lumenobs/lumen/store"
)

// TraceReader is the part of the store the Tempo API reads.
type TraceReader interface {
	Trace(ctx context.Context, id model.TraceID) (store.Trace, error)
	SearchTraces(ctx context.Context, q store.TraceSearch) (store.SearchResult, error)
	SearchCatalog(ctx context.Context, kind byte, a string, start, end uint64) ([]store.Term, error)
}

// TempoAPI serves the parts of Tempo's HTTP API that Grafana's Tempo data
// source uses: trace by id, search (tags and TraceQL filters), tag names
// and values, echo and build info.
type TempoAPI struct {
	r       TraceReader
	indexed map[string]bool
	version string
	cfg     TraceConfig
	lim     *limits.Limiter // searches
	m       *Metrics
	log     *zap.Logger
	now     func() time.Time
}

// NewTempo returns the Tempo API over r; indexed are the attributes the
// store indexes for search; m, if not nil, counts what its limits refuse.
func NewTempo(r TraceReader, indexed []string, version string, cfg TraceConfig, m *Metrics, log *zap.Logger) *TempoAPI {
	if log == nil {
		log = zap.NewNop()
	}
	a := &TempoAPI{r: r, indexed: map[string]bool{}, version: version, cfg: cfg, m: m, log: log.Named("query.tempo"), now: time.Now,
		lim: limits.New("trace searches", cfg.MaxConcurrent, cfg.MaxQueued)}
	for _, k := range indexed {
		a.indexed[k] = true
	}
	return a
}

// Register adds the Tempo routes to mux.
func (a *TempoAPI) Register(mux *http.ServeMux, wrap Wrap) {
	wrap = orPlain(wrap)
	for path, h := range map[string]http.HandlerFunc{
		"/api/traces/{trace_id}":          a.traceV1,
		"/api/v2/traces/{trace_id}":       a.traceV2,
		"/api/search":                     a.search,
		"/api/search/tags":                a.tags,
		"/api/v2/search/tags":             a.tagsV2,
		"/api/search/tag/{tag}/values":    a.tagValues,
		"/api/v2/search/tag/{tag}/values": a.tagValuesV2,
		"/api/echo":                       func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("echo")) },
		"/api/status/buildinfo":           a.buildinfo,
	} {
		mux.Handle("GET "+path, wrap(path+" (tempo)", h))
	}
	mux.Handle("GET /api/v1/search", wrap("/api/v1/search", http.HandlerFunc(a.lumenSearch)))
}

// fail answers as Tempo does: the status, and the message as text.
func (a *TempoAPI) fail(w http.ResponseWriter, err error) {
	a.m.count(apiTempo, err)
	http.Error(w, err.Error(), failStatus(w, a.log, err))
}

// searchTraces runs a search once one of the API's slots is free, within
// the trace timeout.
func (a *TempoAPI) searchTraces(r *http.Request, ts store.TraceSearch) (store.SearchResult, error) {
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		return store.SearchResult{}, err
	}
	defer done()
	return a.r.SearchTraces(ctx, ts)
}

func (a *TempoAPI) readTrace(w http.ResponseWriter, r *http.Request) (ptrace.Traces, bool) {
	id, err := model.ParseTraceID(r.PathValue("trace_id"))
	if err != nil {
		a.fail(w, err)
		return ptrace.Traces{}, false
	}
	t, err := a.r.Trace(r.Context(), id)
	if err == nil && t.Spans.SpanCount() == 0 {
		err = fmt.Errorf("trace %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		a.fail(w, err)
		return ptrace.Traces{}, false
	}
	normalizeSpans(t.Spans)
	markTruncated(w, t)
	return t.Spans, true
}

// traceV1 answers /api/traces/{id}: {"batches":[…]} in OTLP/JSON, or the
// protobuf (tempopb.Trace, which is field for field OTLP's TracesData) when
// the client accepts application/protobuf.
func (a *TempoAPI) traceV1(w http.ResponseWriter, r *http.Request) {
	td, ok := a.readTrace(w, r)
	if !ok {
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "application/protobuf") {
		b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			a.fail(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/protobuf")
		_, _ = w.Write(b)
		return
	}
	b, err := tracesJSON.MarshalTraces(td)
	if err != nil {
		a.fail(w, err)
		return
	}
	var otlp struct {
		ResourceSpans json.RawMessage `json:"resourceSpans"`
	}
	if err := json.Unmarshal(b, &otlp); err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]json.RawMessage{"batches": otlp.ResourceSpans})
}

// traceV2 answers /api/v2/traces/{id}: {"trace":{"resourceSpans":[…]}}.
func (a *TempoAPI) traceV2(w http.ResponseWriter, r *http.Request) {
	td, ok := a.readTrace(w, r)
	if !ok {
		return
	}
	b, err := tracesJSON.MarshalTraces(td)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]json.RawMessage{"trace": b})
}

type tempoSpan struct {
	SpanID            string `json:"spanID"`
	Name              string `json:"name,omitempty"`
	StartTimeUnixNano string `json:"startTimeUnixNano"`
	DurationNanos     string `json:"durationNanos"`
	Attributes        []any  `json:"attributes"`
}

type tempoSpanSet struct {
	Spans   []tempoSpan `json:"spans"`
	Matched int         `json:"matched"`
}

type tempoTrace struct {
	TraceID           string         `json:"traceID"`
	RootServiceName   string         `json:"rootServiceName"`
	RootTraceName     string         `json:"rootTraceName"`
	StartTimeUnixNano string         `json:"startTimeUnixNano"`
	DurationMs        int64          `json:"durationMs"`
	SpanSet           *tempoSpanSet  `json:"spanSet,omitempty"`
	SpanSets          []tempoSpanSet `json:"spanSets,omitempty"`
}

// rootNotYetReceived is what Tempo shows for a trace whose root span has
// not arrived.
const rootNotYetReceived = "<root span not yet received>"

// search answers /api/search: tags= (logfmt key=value pairs), q= (a
// TraceQL spanset filter), minDuration/maxDuration (of the trace),
// start/end (unix seconds), limit, spss.
func (a *TempoAPI) search(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	now := a.now()
	start, end := now.Add(-time.Hour), now
	if s := qs.Get("start"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			a.fail(w, fmt.Errorf("%w: start=%q is not unix seconds", errBadRequest, s))
			return
		}
		start = time.Unix(n, 0)
	}
	if s := qs.Get("end"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			a.fail(w, fmt.Errorf("%w: end=%q is not unix seconds", errBadRequest, s))
			return
		}
		end = time.Unix(n, 0)
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
	q := &traceql.Query{}
	if s := strings.TrimSpace(qs.Get("q")); s != "" {
		var err error
		if q, err = traceql.Parse(s); err != nil {
			a.fail(w, err)
			return
		}
	}
	if tags := qs.Get("tags"); tags != "" {
		conds, err := tagConds(tags)
		if err != nil {
			a.fail(w, err)
			return
		}
		for _, c := range conds {
			if q.Root == nil {
				q.Root = c
			} else {
				q.Root = traceql.And{L: q.Root, R: c}
			}
		}
	}
	ts := a.plan(q)
	ts.Start, ts.End = uint64(start.UnixNano()), uint64(end.UnixNano())
	ts.Limit, ts.MaxMatched, ts.MaxInspect = limit, spss, 20000
	if minDur > 0 || maxDur > 0 {
		// Trace duration: more candidates are read, the summaries decide.
		ts.Limit = limit * 10
	}
	res, err := a.searchTraces(r, ts)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := []tempoTrace{}
	for _, t := range res.Traces {
		d := time.Duration(t.End - t.Start)
		if (minDur > 0 && d < minDur) || (maxDur > 0 && d > maxDur) {
			continue
		}
		if len(out) >= limit {
			break
		}
		tt := tempoTrace{TraceID: t.TraceID.String(), RootServiceName: t.RootService, RootTraceName: t.RootName,
			StartTimeUnixNano: strconv.FormatUint(t.Start, 10), DurationMs: d.Milliseconds()}
		if t.RootName == "" {
			tt.RootServiceName = rootNotYetReceived
		}
		set := tempoSpanSet{Spans: []tempoSpan{}, Matched: t.MatchedCount}
		for _, m := range t.Matched {
			set.Spans = append(set.Spans, tempoSpan{SpanID: m.SpanID.String(), Name: m.Name,
				StartTimeUnixNano: strconv.FormatUint(m.Start, 10), DurationNanos: strconv.FormatUint(m.End-min(m.End, m.Start), 10),
				Attributes: []any{map[string]any{"key": "service.name", "value": map[string]string{"stringValue": m.Service}}}})
		}
		tt.SpanSet, tt.SpanSets = &set, []tempoSpanSet{set}
		out = append(out, tt)
	}
	writeJSON(w, http.StatusOK, map[string]any{"traces": out, "metrics": map[string]any{
		"inspectedTraces": res.Inspected, "completedJobs": 1, "totalJobs": 1, "partial": res.Partial,
	}})
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

// plan picks the index term a query's matching spans must all have, the
// most selective first, and the duration bounds that prune by it.
func (a *TempoAPI) plan(q *traceql.Query) store.TraceSearch {
	ts := store.TraceSearch{Match: q.Match}
	if q.Root == nil {
		ts.Match = nil
		return ts
	}
	conds := q.Conjuncts()
	service, name := "", ""
	for _, c := range conds {
		switch {
		case c.Op == "=" && c.Scope != "span" && c.Name == "service.name":
			service = c.Str
		case c.Op == "=" && c.Scope == "intrinsic" && c.Name == "name":
			name = c.Str
		case c.Scope == "intrinsic" && c.Name == "duration" && (c.Op == ">" || c.Op == ">="):
			ts.MinDuration = uint64(c.Dur)
		case c.Scope == "intrinsic" && c.Name == "duration" && (c.Op == "<" || c.Op == "<="):
			ts.MaxDuration = uint64(c.Dur)
		}
	}
	// The drive term: service + span name, an indexed attribute value,
	// error status, the service; the other indexed conditions narrow it.
	var terms []store.Term
	if service != "" && name != "" {
		terms = append(terms, store.Term{Kind: store.TermName, A: service, B: name})
	}
	for _, c := range conds {
		if c.Op == "=" && !c.IsNum && !c.IsDur && a.indexed[c.Name] {
			switch c.Scope {
			case "span":
				terms = append(terms, store.Term{Kind: store.TermSpanAttr, A: c.Name, B: c.Str})
			case "resource":
				terms = append(terms, store.Term{Kind: store.TermResAttr, A: c.Name, B: c.Str})
			}
		}
	}
	for _, c := range conds {
		if c.Scope == "intrinsic" && c.Name == "status" && c.Op == "=" && c.Str == "error" {
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

// tagConds turns tags= (logfmt: service.name=api http.status_code=500
// error=true) into conditions, as Tempo reads them: service.name and
// other keys on the span or its resource; error=true for error status.
func tagConds(tags string) ([]traceql.Expr, error) {
	var out []traceql.Expr
	for _, kv := range splitLogfmt(tags) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: tags=%q: %q is not key=value", errBadRequest, tags, kv)
		}
		v = strings.Trim(v, `"`)
		var src string
		switch k {
		case "error":
			if v != "true" {
				continue
			}
			src = "{ status = error }"
		case "name":
			src = fmt.Sprintf("{ name = %q }", v)
		default:
			src = fmt.Sprintf("{ .%s = %q }", k, v)
		}
		q, err := traceql.Parse(src)
		if err != nil {
			return nil, fmt.Errorf("%w: tags=%q: %w", errBadRequest, tags, err)
		}
		out = append(out, q.Root)
	}
	return out, nil
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

func (a *TempoAPI) catalogRange(r *http.Request) (uint64, uint64) {
	now := a.now()
	start, end := uint64(now.Add(-24*time.Hour).UnixNano()), uint64(now.Add(time.Minute).UnixNano())
	if n, err := strconv.ParseInt(r.URL.Query().Get("start"), 10, 64); err == nil {
		start = uint64(time.Unix(n, 0).UnixNano())
	}
	if n, err := strconv.ParseInt(r.URL.Query().Get("end"), 10, 64); err == nil {
		end = uint64(time.Unix(n, 0).UnixNano())
	}
	return start, end
}

// tagNames lists the searchable attributes by scope.
func (a *TempoAPI) tagNames(r *http.Request) (span, resource []string, err error) {
	start, end := a.catalogRange(r)
	resource = []string{"service.name"}
	for kind, dst := range map[byte]*[]string{store.TermSpanAttr: &span, store.TermResAttr: &resource} {
		terms, err := a.r.SearchCatalog(r.Context(), kind, "", start, end)
		if err != nil {
			return nil, nil, err
		}
		for _, t := range terms {
			if !slices.Contains(*dst, t.A) {
				*dst = append(*dst, t.A)
			}
		}
	}
	slices.Sort(span)
	slices.Sort(resource)
	return span, resource, nil
}

func (a *TempoAPI) tags(w http.ResponseWriter, r *http.Request) {
	span, resource, err := a.tagNames(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	names := slices.Concat(span, resource)
	slices.Sort(names)
	writeJSON(w, http.StatusOK, map[string]any{"tagNames": slices.Compact(names)})
}

func (a *TempoAPI) tagsV2(w http.ResponseWriter, r *http.Request) {
	span, resource, err := a.tagNames(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	if span == nil {
		span = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"scopes": []map[string]any{
		{"name": "span", "tags": span},
		{"name": "resource", "tags": resource},
		{"name": "intrinsic", "tags": []string{"duration", "kind", "name", "status"}},
	}})
}

// values lists a tag's values: service.name, name (span names), status,
// kind, or an indexed attribute (with or without a resource./span.
// prefix, as v2 clients send it).
func (a *TempoAPI) values(r *http.Request) ([]string, string, error) {
	tag := r.PathValue("tag")
	start, end := a.catalogRange(r)
	typ := "string"
	var terms []store.Term
	var err error
	pick := func(t store.Term) string { return t.B }
	switch tag {
	case "status":
		return []string{"error", "ok", "unset"}, "keyword", nil
	case "kind":
		return []string{"client", "consumer", "internal", "producer", "server", "unspecified"}, "keyword", nil
	case "service.name", "resource.service.name":
		terms, err = a.r.SearchCatalog(r.Context(), store.TermService, "", start, end)
		pick = func(t store.Term) string { return t.A }
	case "name", "span:name":
		terms, err = a.r.SearchCatalog(r.Context(), store.TermName, "", start, end)
	default:
		key := strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(tag, "span."), "resource."), ".")
		var s, rs []store.Term
		if !strings.HasPrefix(tag, "resource.") {
			s, err = a.r.SearchCatalog(r.Context(), store.TermSpanAttr, key, start, end)
		}
		if err == nil && !strings.HasPrefix(tag, "span.") {
			rs, err = a.r.SearchCatalog(r.Context(), store.TermResAttr, key, start, end)
		}
		terms = slices.Concat(s, rs)
	}
	if err != nil {
		return nil, "", err
	}
	out := []string{}
	for _, t := range terms {
		out = append(out, pick(t))
	}
	slices.Sort(out)
	return slices.Compact(out), typ, nil
}

func (a *TempoAPI) tagValues(w http.ResponseWriter, r *http.Request) {
	vs, _, err := a.values(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tagValues": vs})
}

func (a *TempoAPI) tagValuesV2(w http.ResponseWriter, r *http.Request) {
	vs, typ, err := a.values(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]map[string]string, len(vs))
	for i, v := range vs {
		out[i] = map[string]string{"type": typ, "value": v}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tagValues": out})
}

func (a *TempoAPI) buildinfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": a.version, "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": runtime.Version()})
}
