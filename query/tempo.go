package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lumenobs/lumen/internal/limits"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/query/traceql"
	"github.com/lumenobs/lumen/store"
)

// TraceReader is the part of the store the Tempo API reads.
type TraceReader interface {
	// TraceSpans is the trace's spans (its lines only when they are in
	// the store itself).
	TraceSpans(ctx context.Context, id model.TraceID) (store.Trace, error)
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

// TempoRoutes are the Tempo API's routes.
var TempoRoutes = []string{"/api/traces/{trace_id}", "/api/v2/traces/{trace_id}", "/api/search", "/api/search/tags",
	"/api/v2/search/tags", "/api/search/tag/{tag}/values", "/api/v2/search/tag/{tag}/values", "/api/echo", "/api/status/buildinfo"}

// Register adds the Tempo routes and Lumen's own search to mux.
func (a *TempoAPI) Register(mux Mux, wrap Wrap) {
	wrap = orPlain(wrap)
	handlers := []http.HandlerFunc{a.traceV1, a.traceV2, a.search, a.tags, a.tagsV2, a.tagValues, a.tagValuesV2,
		func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("echo")) }, a.buildinfo}
	for i, path := range TempoRoutes {
		mux.Handle("GET "+path, wrap(path+" (tempo)", handlers[i]))
	}
	a.RegisterSearch(mux, wrap)
}

// RegisterSearch adds Lumen's own search (/api/v1/search, the UI's) to
// mux.
func (a *TempoAPI) RegisterSearch(mux Mux, wrap Wrap) {
	mux.Handle("GET /api/v1/search", orPlain(wrap)("/api/v1/search", http.HandlerFunc(a.lumenSearch)))
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
	t, err := a.r.TraceSpans(r.Context(), id)
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

// traceV2 answers /api/v2/traces/{id} as Tempo: tempopb.TraceByIDResponse,
// {"trace":{"resourceSpans":[…]}} in JSON, or in protobuf when the client
// accepts application/protobuf (what Grafana's Tempo data source asks
// for): field 1 the Trace (field for field OTLP's TracesData), and for a
// trace answered in part, status PARTIAL (3) and the reason (4).
func (a *TempoAPI) traceV2(w http.ResponseWriter, r *http.Request) {
	td, ok := a.readTrace(w, r)
	if !ok {
		return
	}
	truncated := w.Header().Get("Lumen-Trace-Truncated")
	if strings.Contains(r.Header.Get("Accept"), "application/protobuf") {
		b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			a.fail(w, err)
			return
		}
		out := protowire.AppendTag(nil, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, b)
		if truncated != "" {
			out = protowire.AppendTag(out, 3, protowire.VarintType)
			out = protowire.AppendVarint(out, 1) // PartialStatus PARTIAL
			out = protowire.AppendTag(out, 4, protowire.BytesType)
			out = protowire.AppendString(out, truncated)
		}
		w.Header().Set("Content-Type", "application/protobuf")
		_, _ = w.Write(out)
		return
	}
	b, err := tracesJSON.MarshalTraces(td)
	if err != nil {
		a.fail(w, err)
		return
	}
	resp := map[string]any{"trace": json.RawMessage(b)}
	if truncated != "" {
		resp["status"], resp["message"] = "PARTIAL", truncated
	}
	writeJSON(w, http.StatusOK, resp)
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

// intrinsicTags are the intrinsics /api/v2/search/tags lists, as Tempo
// lists them (nestedSet… work in queries but are not listed, as in Tempo).
var intrinsicTags = []string{"duration", "event:name", "event:timeSinceStart", "instrumentation:name", "instrumentation:version",
	"kind", "link:spanID", "link:traceID", "name", "rootName", "rootServiceName", "span:duration", "span:id", "span:kind",
	"span:name", "span:parentID", "span:status", "span:statusMessage", "status", "statusMessage", "trace:duration", "trace:id",
	"trace:rootName", "trace:rootService", "traceDuration"}

// tagNames lists the searchable attributes by scope.
func (a *TempoAPI) tagNames(r *http.Request) (span, resource []string, err error) {
	start, end := a.catalogRange(r)
	resource = []string{"service.name"}
	span = []string{}
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

// tagScope reads scope= of the tag APIs: span, resource, intrinsic, or
// all (also none or empty).
func tagScope(r *http.Request) (string, error) {
	switch s := r.URL.Query().Get("scope"); s {
	case "", "all", "none":
		return "", nil
	case "span", "resource", "intrinsic":
		return s, nil
	case "event", "link", "instrumentation":
		return s, nil // none indexed: no tags
	default:
		return "", fmt.Errorf("%w: scope=%q: use span, resource, intrinsic or all", errBadRequest, s)
	}
}

// tags answers /api/search/tags: {"tagNames":[…]}, the span and resource
// attributes (scope= narrows them; intrinsic gives the intrinsics).
func (a *TempoAPI) tags(w http.ResponseWriter, r *http.Request) {
	scope, err := tagScope(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	span, resource, err := a.tagNames(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	var names []string
	switch scope {
	case "":
		names = slices.Concat(span, resource)
	case "span":
		names = span
	case "resource":
		names = resource
	case "intrinsic":
		names = slices.Clone(intrinsicTags)
	}
	slices.Sort(names)
	writeJSON(w, http.StatusOK, map[string]any{"tagNames": append([]string{}, slices.Compact(names)...)})
}

// tagsV2 answers /api/v2/search/tags: {"scopes":[{"name","tags"}]}.
func (a *TempoAPI) tagsV2(w http.ResponseWriter, r *http.Request) {
	scope, err := tagScope(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	span, resource, err := a.tagNames(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	scopes := []map[string]any{}
	for _, sc := range []struct {
		name string
		tags []string
	}{{"span", span}, {"resource", resource}, {"intrinsic", intrinsicTags}} {
		if scope == "" || scope == sc.name {
			scopes = append(scopes, map[string]any{"name": sc.name, "tags": sc.tags})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"scopes": scopes})
}

// tagValue is one value of /api/v2/search/tag/{tag}/values, typed as Tempo
// types them: string, int, float, bool, duration, keyword (status, kind).
type tagValue struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// intAttributes are the indexed attributes whose values are ints (the
// index keeps values as strings).
var intAttributes = map[string]bool{"http.response.status_code": true, "http.status_code": true, "rpc.grpc.status_code": true}

// maxTagValues bounds the values of one tag in an answer.
const maxTagValues = 1000

// values lists a tag's values. A tag is an attribute (span.x, resource.x,
// .x, or a bare x as v1 clients send it) or an intrinsic. With q= (a
// TraceQL query other than {}), the values on the spans the query returns,
// from the traces of the window it finds (up to 100); without, from the
// index: service names, span names, status and kind, and the values of
// the indexed attributes.
func (a *TempoAPI) values(r *http.Request) ([]tagValue, error) {
	attr := traceql.ParseAttr(r.PathValue("tag"))
	start, end := a.catalogRange(r)
	if src := strings.TrimSpace(r.URL.Query().Get("q")); src != "" {
		q, err := traceql.Parse(src)
		if err != nil {
			return nil, err
		}
		if !q.All() {
			return a.valuesWhere(r, attr, q, start, end)
		}
	}
	return a.indexedValues(r.Context(), attr, "", start, end)
}

// indexedValues lists the values the index knows of an attribute; service,
// when set, narrows span names to the service's.
func (a *TempoAPI) indexedValues(ctx context.Context, attr *traceql.Attr, service string, start, end uint64) ([]tagValue, error) {
	var terms []store.Term
	var err error
	pick := func(t store.Term) string { return t.B }
	switch {
	case attr.Scope == traceql.ScopeIntrinsic && attr.Name == "status":
		return keywords("error", "ok", "unset"), nil
	case attr.Scope == traceql.ScopeIntrinsic && attr.Name == "kind":
		return keywords("client", "consumer", "internal", "producer", "server", "unspecified"), nil
	case attr.Scope == traceql.ScopeIntrinsic && attr.Name == "rootServiceName",
		attr.Name == "service.name" && (attr.Scope == traceql.ScopeResource || attr.Scope == traceql.ScopeAny):
		terms, err = a.r.SearchCatalog(ctx, store.TermService, "", start, end)
		pick = func(t store.Term) string { return t.A }
	case attr.Scope == traceql.ScopeIntrinsic && (attr.Name == "name" || attr.Name == "rootName"):
		terms, err = a.r.SearchCatalog(ctx, store.TermName, service, start, end)
	case attr.Scope == traceql.ScopeSpan || attr.Scope == traceql.ScopeResource || attr.Scope == traceql.ScopeAny:
		var s, rs []store.Term
		if attr.Scope != traceql.ScopeResource {
			s, err = a.r.SearchCatalog(ctx, store.TermSpanAttr, attr.Name, start, end)
		}
		if err == nil && attr.Scope != traceql.ScopeSpan {
			rs, err = a.r.SearchCatalog(ctx, store.TermResAttr, attr.Name, start, end)
		}
		terms = slices.Concat(s, rs)
	}
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, t := range terms {
		seen[pick(t)] = true
	}
	out := []tagValue{}
	for _, v := range sortedKeys(seen) {
		typ := "string"
		if _, err := strconv.ParseInt(v, 10, 64); err == nil && intAttributes[attr.Name] {
			typ = "int"
		}
		out = append(out, tagValue{typ, v})
	}
	return out[:min(len(out), maxTagValues)], nil
}

func keywords(vs ...string) []tagValue {
	out := make([]tagValue, len(vs))
	for i, v := range vs {
		out[i] = tagValue{"keyword", v}
	}
	return out
}

// valuesWhere lists the values of attr on the spans q returns.
func (a *TempoAPI) valuesWhere(r *http.Request, attr *traceql.Attr, q *traceql.Query, start, end uint64) ([]tagValue, error) {
	// Span names of one service: the index has them.
	if conds := q.Conjuncts(); q.Simple() && len(conds) == 1 && attr.Scope == traceql.ScopeIntrinsic && attr.Name == "name" {
		if ca, v, ok := conds[0].Attr(); ok && conds[0].Op == "=" && ca.Name == "service.name" && v.Type == traceql.TypeString &&
			(ca.Scope == traceql.ScopeResource || ca.Scope == traceql.ScopeAny) {
			return a.indexedValues(r.Context(), attr, v.S, start, end)
		}
	}
	ts := a.plan(q)
	ts.Start, ts.End, ts.Limit, ts.MaxInspect, ts.MaxMatched = start, end, 100, 2000, 1
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		return nil, err
	}
	defer done()
	res, err := a.r.SearchTraces(ctx, ts)
	if err != nil {
		return nil, err
	}
	seen := map[traceql.Value]bool{}
	var buf [4]traceql.Value
	for _, t := range res.Traces {
		st, err := a.r.TraceSpans(ctx, t.TraceID)
		if err != nil {
			return nil, err
		}
		for _, ss := range q.Eval(traceql.NewTrace(st.Spans)) {
			for _, s := range ss.Spans {
				for _, v := range attr.Values(s, buf[:0]) {
					if len(seen) < maxTagValues {
						seen[v] = true
					}
				}
			}
		}
	}
	out := []tagValue{}
	for v := range seen {
		out = append(out, tagValue{valueType(v), v.String()})
	}
	slices.SortFunc(out, func(x, y tagValue) int { return strings.Compare(x.Value, y.Value) })
	return out, nil
}

func valueType(v traceql.Value) string {
	switch v.Type {
	case traceql.TypeInt:
		return "int"
	case traceql.TypeFloat:
		return "float"
	case traceql.TypeBool:
		return "bool"
	case traceql.TypeDuration:
		return "duration"
	case traceql.TypeStatus, traceql.TypeKind:
		return "keyword"
	}
	return "string"
}

// tagValues answers /api/search/tag/{tag}/values: {"tagValues":[…]}.
func (a *TempoAPI) tagValues(w http.ResponseWriter, r *http.Request) {
	vs, err := a.values(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Value
	}
	writeJSON(w, http.StatusOK, map[string]any{"tagValues": out})
}

// tagValuesV2 answers /api/v2/search/tag/{tag}/values:
// {"tagValues":[{"type","value"}]}.
func (a *TempoAPI) tagValuesV2(w http.ResponseWriter, r *http.Request) {
	vs, err := a.values(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tagValues": vs})
}

func (a *TempoAPI) buildinfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": a.version, "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": runtime.Version()})
}
