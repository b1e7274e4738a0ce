package query

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/limits"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/store"
)

// JaegerReader is the part of the store Jaeger's query API reads.
type JaegerReader interface {
	TraceReader
	storage.Queryable
}

// JaegerAPI serves Jaeger's query API (what the Jaeger UI and Grafana's
// Jaeger data source call) under /jaeger/api/, so that its
// /api/traces/{id} does not collide with Tempo's: point the Jaeger UI's
// query base path, or Grafana's Jaeger data source URL, at /jaeger.
type JaegerAPI struct {
	r   JaegerReader
	cfg TraceConfig
	lim *limits.Limiter // searches
	m   *Metrics
	log *zap.Logger
	now func() time.Time
}

// NewJaeger returns the Jaeger API over r; m, if not nil, counts what its
// limits refuse.
func NewJaeger(r JaegerReader, cfg TraceConfig, m *Metrics, log *zap.Logger) *JaegerAPI {
	if log == nil {
		log = zap.NewNop()
	}
	return &JaegerAPI{r: r, cfg: cfg, lim: limits.New("trace searches", cfg.MaxConcurrent, cfg.MaxQueued), m: m,
		log: log.Named("query.jaeger"), now: time.Now}
}

// JaegerPrefix is where the Jaeger API lives.
const JaegerPrefix = "/jaeger"

// JaegerRoutes are the Jaeger API's routes, under JaegerPrefix.
var JaegerRoutes = []string{"/api/services", "/api/services/{service}/operations", "/api/operations",
	"/api/traces", "/api/traces/{trace_id}", "/api/dependencies"}

// Register adds the Jaeger routes to mux.
func (a *JaegerAPI) Register(mux Mux, wrap Wrap) {
	wrap = orPlain(wrap)
	handlers := []http.HandlerFunc{a.services, a.serviceOperations, a.operations, a.findTraces, a.trace, a.dependencies}
	for i, path := range JaegerRoutes {
		mux.Handle("GET "+JaegerPrefix+path, wrap(JaegerPrefix+path, handlers[i]))
	}
}

type jaegerError struct {
	Code int    `json:"code"`
	Msg  string `json:"msg"`
}

// jaegerResponse is Jaeger's envelope.
type jaegerResponse struct {
	Data   any           `json:"data"`
	Total  int           `json:"total"`
	Limit  int           `json:"limit"`
	Offset int           `json:"offset"`
	Errors []jaegerError `json:"errors"`
}

func (a *JaegerAPI) fail(w http.ResponseWriter, err error) {
	a.m.count(apiJaeger, err)
	code := failStatus(w, a.log, err)
	writeJSON(w, code, jaegerResponse{Errors: []jaegerError{{Code: code, Msg: err.Error()}}})
}

func ok(w http.ResponseWriter, data any, total int) {
	writeJSON(w, http.StatusOK, jaegerResponse{Data: data, Total: total})
}

func (a *JaegerAPI) catalogWindow() (uint64, uint64) {
	now := a.now()
	return uint64(now.Add(-7 * 24 * time.Hour).UnixNano()), uint64(now.Add(time.Minute).UnixNano())
}

func (a *JaegerAPI) services(w http.ResponseWriter, r *http.Request) {
	lo, hi := a.catalogWindow()
	terms, err := a.r.SearchCatalog(r.Context(), store.TermService, "", lo, hi)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := []string{}
	for _, t := range terms {
		if t.A != "" {
			out = append(out, t.A)
		}
	}
	ok(w, out, len(out))
}

func (a *JaegerAPI) names(ctx context.Context, service string) ([]string, error) {
	lo, hi := a.catalogWindow()
	terms, err := a.r.SearchCatalog(ctx, store.TermName, service, lo, hi)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, t := range terms {
		out = append(out, t.B)
	}
	return out, nil
}

func (a *JaegerAPI) serviceOperations(w http.ResponseWriter, r *http.Request) {
	names, err := a.names(r.Context(), r.PathValue("service"))
	if err != nil {
		a.fail(w, err)
		return
	}
	if len(names) == 0 {
		names = nil // Jaeger answers null for a service it does not know
	}
	ok(w, names, len(names))
}

// jaegerOperation is one entry of /api/operations.
type jaegerOperation struct {
	Name     string `json:"name"`
	SpanKind string `json:"spanKind"`
}

// operations answers /api/operations?service=&spanKind=: an entry per
// span name and kind of the service, as Jaeger lists them (spanKind=
// keeps one kind). The catalog keeps span names, not kinds: the kinds of
// a name are those of its spans in the newest traces that have it.
func (a *JaegerAPI) operations(w http.ResponseWriter, r *http.Request) {
	service, kind := r.URL.Query().Get("service"), r.URL.Query().Get("spanKind")
	if service == "" {
		a.fail(w, fmt.Errorf("%w: service= is required", errBadRequest))
		return
	}
	names, err := a.names(r.Context(), service)
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		a.fail(w, err)
		return
	}
	defer done()
	out := []jaegerOperation{}
	for i, name := range names {
		kinds := []string{""} // past maxKindLookups names: kind unknown
		if i < maxKindLookups {
			if kinds, err = a.kindsOf(ctx, service, name); err != nil {
				a.fail(w, err)
				return
			}
		}
		for _, k := range kinds {
			if kind == "" || k == kind {
				out = append(out, jaegerOperation{name, k})
			}
		}
	}
	ok(w, out, len(out))
}

// kindsPerName is how many traces kindsOf reads for one span name, and
// maxKindLookups for how many names of a service operations looks kinds up.
const (
	kindsPerName   = 3
	maxKindLookups = 1000
)

// kindsOf lists the span kinds of a service's spans of a name, from the
// newest traces that have them, as Jaeger names kinds ("" for none).
func (a *JaegerAPI) kindsOf(ctx context.Context, service, name string) ([]string, error) {
	lo, hi := a.catalogWindow()
	seen := map[string]bool{}
	ts := store.TraceSearch{Start: lo, End: hi, Drive: store.Term{Kind: store.TermName, A: service, B: name},
		Limit: kindsPerName, MaxInspect: kindsPerName, MaxMatched: 1,
		Match: func(res pcommon.Resource, sp ptrace.Span) bool {
			if sp.Name() != name {
				return false
			}
			if v, _ := res.Attributes().Get("service.name"); v.AsString() != service {
				return false
			}
			seen[kindName(sp.Kind())] = true
			return true
		}}
	if _, err := a.r.SearchTraces(ctx, ts); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

// jaegerDuration parses Jaeger's durations: Go durations (100ms, 1.2s).
func jaegerDuration(name, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: %s=%q is not a duration such as 100ms", errBadRequest, name, s)
	}
	return d, nil
}

// findTraces answers /api/traces?service=&operation=&tags=&minDuration=
// &maxDuration=&start=&end=&lookback=&limit= with whole traces, newest
// first. The conditions hold on one span, as in Jaeger: of the service,
// named operation, with the tags (on the span, its resource or an event),
// its duration in range.
func (a *JaegerAPI) findTraces(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	service, op := qs.Get("service"), qs.Get("operation")
	if service == "" {
		a.fail(w, fmt.Errorf("%w: service= is required", errBadRequest))
		return
	}
	now := a.now()
	end, start := now, now.Add(-time.Hour)
	for name, dst := range map[string]*time.Time{"start": &start, "end": &end} {
		if s := qs.Get(name); s != "" {
			us, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				a.fail(w, fmt.Errorf("%w: %s=%q is not unix microseconds", errBadRequest, name, s))
				return
			}
			*dst = time.UnixMicro(us)
		}
	}
	if s := qs.Get("lookback"); s != "" && qs.Get("start") == "" && s != "custom" {
		d, err := parseLokiDuration(s)
		if err != nil {
			a.fail(w, fmt.Errorf("%w: lookback=%q is not a duration", errBadRequest, s))
			return
		}
		start = end.Add(-d)
	}
	minDur, err := jaegerDuration("minDuration", qs.Get("minDuration"))
	if err != nil {
		a.fail(w, err)
		return
	}
	maxDur, err := jaegerDuration("maxDuration", qs.Get("maxDuration"))
	if err != nil {
		a.fail(w, err)
		return
	}
	// Each result is a whole trace: limit (Jaeger's default, 100) is
	// lowered to max_jaeger_limit.
	limit := min(100, a.cfg.MaxJaegerLimit)
	if s := qs.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			a.fail(w, fmt.Errorf("%w: limit=%q is not a positive integer", errBadRequest, s))
			return
		}
		limit = min(n, a.cfg.MaxJaegerLimit)
	}
	tags := map[string]string{}
	if s := qs.Get("tags"); s != "" {
		if err := json.Unmarshal([]byte(s), &tags); err != nil {
			a.fail(w, fmt.Errorf("%w: tags=%q is not a JSON object of strings: %v", errBadRequest, s, err))
			return
		}
	}
	for _, kv := range qs["tag"] {
		k, v, found := strings.Cut(kv, ":")
		if !found {
			a.fail(w, fmt.Errorf("%w: tag=%q is not key:value", errBadRequest, kv))
			return
		}
		tags[k] = v
	}
	match := func(res pcommon.Resource, sp ptrace.Span) bool {
		if v, _ := res.Attributes().Get("service.name"); v.AsString() != service {
			return false
		}
		if op != "" && sp.Name() != op {
			return false
		}
		d := time.Duration(sp.EndTimestamp()) - time.Duration(sp.StartTimestamp())
		if (minDur > 0 && d < minDur) || (maxDur > 0 && d > maxDur) {
			return false
		}
		for k, want := range tags {
			if !hasTag(res, sp, k, want) {
				return false
			}
		}
		return true
	}
	ts := store.TraceSearch{Start: uint64(start.UnixNano()), End: uint64(end.UnixNano()), Limit: limit, Match: match, MaxInspect: 20000,
		Drive: store.Term{Kind: store.TermService, A: service}, MinDuration: uint64(minDur), MaxDuration: uint64(maxDur)}
	if op != "" {
		ts.Drive = store.Term{Kind: store.TermName, A: service, B: op}
	}
	out, err := a.find(r, ts)
	if err != nil {
		a.fail(w, err)
		return
	}
	ok(w, out, 0) // Jaeger leaves total at 0 for traces
}

// find runs a search and reads its traces once one of the API's slots is
// free, within the trace timeout.
func (a *JaegerAPI) find(r *http.Request, ts store.TraceSearch) ([]jaegerTrace, error) {
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		return nil, err
	}
	defer done()
	res, err := a.r.SearchTraces(ctx, ts)
	if err != nil {
		return nil, err
	}
	out := []jaegerTrace{}
	for _, s := range res.Traces {
		t, err := a.r.TraceSpans(ctx, s.TraceID)
		if err != nil {
			return nil, err
		}
		out = append(out, toJaeger(s.TraceID, t.Spans))
	}
	return out, nil
}

// hasTag reports whether a span, its resource or one of its events has
// the tag; error=true matches an error status and error=false an ok one,
// as in Jaeger.
func hasTag(res pcommon.Resource, sp ptrace.Span, k, want string) bool {
	if k == "error" && (want == "true" || want == "false") {
		return sp.Status().Code() == map[bool]ptrace.StatusCode{true: ptrace.StatusCodeError, false: ptrace.StatusCodeOk}[want == "true"]
	}
	if k == "span.kind" && want == kindName(sp.Kind()) {
		return true
	}
	if v, found := sp.Attributes().Get(k); found && v.AsString() == want {
		return true
	}
	if v, found := res.Attributes().Get(k); found && v.AsString() == want {
		return true
	}
	for _, ev := range sp.Events().All() {
		if v, found := ev.Attributes().Get(k); found && v.AsString() == want {
			return true
		}
	}
	return false
}

func (a *JaegerAPI) trace(w http.ResponseWriter, r *http.Request) {
	id, err := model.ParseTraceID(padTraceID(r.PathValue("trace_id")))
	if err != nil {
		a.fail(w, err)
		return
	}
	t, err := a.r.TraceSpans(r.Context(), id)
	if err == nil && t.Spans.SpanCount() == 0 {
		err = fmt.Errorf("trace %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	jt := toJaeger(id, t.Spans)
	if t.Truncated != "" {
		jt.Warnings = append(jt.Warnings, "trace truncated: "+t.Truncated)
	}
	markTruncated(w, t)
	ok(w, []jaegerTrace{jt}, 0)
}

// padTraceID accepts Jaeger's short form of a 64-bit id.
func padTraceID(s string) string {
	if len(s) < 32 {
		return strings.Repeat("0", 32-len(s)) + s
	}
	return s
}

// dependencies answers /api/dependencies?endTs=&lookback= (ms) from the
// service graph: the calls between each pair of services in the window.
func (a *JaegerAPI) dependencies(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	end := a.now()
	lookback := 24 * time.Hour
	if s := qs.Get("endTs"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			a.fail(w, fmt.Errorf("%w: endTs=%q is not unix milliseconds", errBadRequest, s))
			return
		}
		end = time.UnixMilli(ms)
	}
	if s := qs.Get("lookback"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms <= 0 {
			a.fail(w, fmt.Errorf("%w: lookback=%q is not a positive number of milliseconds", errBadRequest, s))
			return
		}
		lookback = time.Duration(ms) * time.Millisecond
	}
	deps, err := serviceGraph(r.Context(), a.r, end.Add(-lookback), end)
	if err != nil {
		a.fail(w, err)
		return
	}
	ok(w, deps, 0) // Jaeger leaves total at 0 for dependencies
}

// Dependency is one edge of the service graph, as Jaeger writes it.
type Dependency struct {
	Parent    string `json:"parent"`
	Child     string `json:"child"`
	CallCount uint64 `json:"callCount"`
}

// serviceGraph sums traces_service_graph_request_total's increase in
// [from, to] per (client, server), counter resets included.
func serviceGraph(ctx context.Context, q storage.Queryable, from, to time.Time) ([]Dependency, error) {
	querier, err := q.Querier(from.Add(-5*time.Minute).UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer querier.Close()
	set := querier.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "traces_service_graph_request_total"))
	calls := map[[2]string]float64{}
	for set.Next() {
		s := set.At()
		it := s.Iterator(nil)
		var before, prev, inc float64
		seenBefore, first := false, true
		for it.Next() != 0 {
			t, v := it.At()
			if t < from.UnixMilli() {
				before, seenBefore = v, true
				continue
			}
			switch {
			case first && seenBefore:
				if v >= before {
					inc += v - before
				} else {
					inc += v
				}
			case first:
				inc += v // the series starts in the window
			case v >= prev:
				inc += v - prev
			default:
				inc += v // a reset
			}
			prev, first = v, false
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
		if inc > 0 {
			k := [2]string{s.Labels().Get("client"), s.Labels().Get("server")}
			calls[k] += inc
		}
	}
	if err := set.Err(); err != nil {
		return nil, err
	}
	out := []Dependency{}
	for k, n := range calls {
		out = append(out, Dependency{Parent: k[0], Child: k[1], CallCount: uint64(math.Round(n))})
	}
	slices.SortFunc(out, func(x, y Dependency) int {
		if c := strings.Compare(x.Parent, y.Parent); c != 0 {
			return c
		}
		return strings.Compare(x.Child, y.Child)
	})
	return out, nil
}

type jaegerKV struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

type jaegerRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type jaegerLog struct {
	Timestamp int64      `json:"timestamp"`
	Fields    []jaegerKV `json:"fields"`
}

type jaegerSpan struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	Flags         uint32      `json:"flags,omitempty"` // OTLP's trace flags are not carried, as in Jaeger
	OperationName string      `json:"operationName"`
	References    []jaegerRef `json:"references"`
	StartTime     int64       `json:"startTime"`
	Duration      int64       `json:"duration"`
	Tags          []jaegerKV  `json:"tags"`
	Logs          []jaegerLog `json:"logs"`
	ProcessID     string      `json:"processID"`
	Warnings      []string    `json:"warnings"`
}

type jaegerProcess struct {
	ServiceName string     `json:"serviceName"`
	Tags        []jaegerKV `json:"tags"`
}

type jaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []jaegerSpan             `json:"spans"`
	Processes map[string]jaegerProcess `json:"processes"`
	Warnings  []string                 `json:"warnings"`
}

func kindName(k ptrace.SpanKind) string {
	return map[ptrace.SpanKind]string{ptrace.SpanKindServer: "server", ptrace.SpanKindClient: "client", ptrace.SpanKindProducer: "producer",
		ptrace.SpanKindConsumer: "consumer", ptrace.SpanKindInternal: "internal"}[k]
}

// maxSafeInteger is JavaScript's largest exact integer, 2^53-1.
const maxSafeInteger = 1<<53 - 1

func jaegerValue(k string, v pcommon.Value) jaegerKV {
	switch v.Type() {
	case pcommon.ValueTypeBool:
		return jaegerKV{k, "bool", v.Bool()}
	case pcommon.ValueTypeInt:
		if n := v.Int(); n > maxSafeInteger || n < -maxSafeInteger {
			return jaegerKV{k, "int64", strconv.FormatInt(n, 10)} // as Jaeger: JavaScript would round it
		}
		return jaegerKV{k, "int64", v.Int()}
	case pcommon.ValueTypeDouble:
		return jaegerKV{k, "float64", v.Double()}
	case pcommon.ValueTypeBytes:
		return jaegerKV{k, "binary", base64.StdEncoding.EncodeToString(v.Bytes().AsRaw())}
	}
	return jaegerKV{k, "string", v.AsString()}
}

func jaegerKVs(m pcommon.Map, skip string) []jaegerKV {
	out := []jaegerKV{}
	for k, v := range m.All() {
		if k != skip {
			out = append(out, jaegerValue(k, v))
		}
	}
	slices.SortFunc(out, func(a, b jaegerKV) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// jaegerTraceID writes a trace id as Jaeger does: 16 hex digits when its
// high half is zero (a 64-bit id), else 32.
func jaegerTraceID(id pcommon.TraceID) string {
	if [8]byte(id[:8]) == [8]byte{} {
		return hex.EncodeToString(id[8:])
	}
	return hex.EncodeToString(id[:])
}

// toJaeger converts OTLP spans to Jaeger's JSON model as Jaeger's own
// OTLP translation and query service do: span kind, status and scope
// become tags, events become logs, resources become processes; tags are
// sorted by key, log fields too after "event"; the warnings are those of
// Jaeger's clock skew adjuster, which runs with adjustment off.
func toJaeger(id model.TraceID, td ptrace.Traces) jaegerTrace {
	normalizeSpans(td)
	t := jaegerTrace{TraceID: jaegerTraceID(pcommon.TraceID(id)), Spans: []jaegerSpan{}, Processes: map[string]jaegerProcess{}}
	procOf := map[string]string{}
	var times []spanTimes
	for _, rs := range td.ResourceSpans().All() {
		svc := ""
		if v, found := rs.Resource().Attributes().Get("service.name"); found {
			svc = v.AsString()
		} else if rs.Resource().Attributes().Len() == 0 {
			svc = "OTLPResourceNoServiceName" // as Jaeger's OTLP translation names it
		}
		proc := jaegerProcess{ServiceName: svc, Tags: jaegerKVs(rs.Resource().Attributes(), "service.name")}
		key, _ := json.Marshal(proc)
		pid, seen := procOf[string(key)]
		if !seen {
			pid = "p" + strconv.Itoa(len(procOf)+1)
			procOf[string(key)] = pid
			t.Processes[pid] = proc
		}
		host := hostKey(rs.Resource().Attributes())
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				t.Spans = append(t.Spans, jaegerSpanOf(sp, ss.Scope(), pid))
				times = append(times, spanTimes{start: int64(sp.StartTimestamp()), end: int64(sp.EndTimestamp()), host: host})
			}
		}
	}
	skewWarnings(t.Spans, times)
	order := make([]int, len(t.Spans))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		x, y := t.Spans[a], t.Spans[b]
		if c := cmp.Compare(x.StartTime, y.StartTime); c != 0 {
			return c
		}
		return strings.Compare(x.SpanID, y.SpanID)
	})
	sorted := make([]jaegerSpan, len(order))
	for i, j := range order {
		sorted[i] = t.Spans[j]
	}
	t.Spans = sorted
	return t
}

func jaegerSpanOf(sp ptrace.Span, scope pcommon.InstrumentationScope, pid string) jaegerSpan {
	tid := jaegerTraceID(sp.TraceID())
	js := jaegerSpan{TraceID: tid, SpanID: sp.SpanID().String(), OperationName: sp.Name(),
		References: []jaegerRef{}, StartTime: int64(sp.StartTimestamp()) / 1000,
		Duration: (int64(sp.EndTimestamp()) - int64(sp.StartTimestamp())) / 1000, Tags: jaegerKVs(sp.Attributes(), ""),
		Logs: []jaegerLog{}, ProcessID: pid}
	// The parent first; links are FOLLOWS_FROM unless they say
	// opentracing.ref_type=child_of, and a link to the parent sets the
	// parent reference's type, as Jaeger's OTLP translation does.
	parent := sp.ParentSpanID()
	if !parent.IsEmpty() {
		js.References = append(js.References, jaegerRef{"CHILD_OF", tid, parent.String()})
	}
	for _, l := range sp.Links().All() {
		ref := jaegerRef{"FOLLOWS_FROM", jaegerTraceID(l.TraceID()), l.SpanID().String()}
		if v, ok := l.Attributes().Get("opentracing.ref_type"); ok && v.Str() == "child_of" {
			ref.RefType = "CHILD_OF"
		}
		if !parent.IsEmpty() && l.TraceID() == sp.TraceID() && l.SpanID() == parent {
			js.References[0].RefType = ref.RefType
			continue
		}
		js.References = append(js.References, ref)
	}
	if k := kindName(sp.Kind()); k != "" {
		js.Tags = append(js.Tags, jaegerKV{"span.kind", "string", k})
	}
	switch sp.Status().Code() {
	case ptrace.StatusCodeError:
		js.Tags = append(js.Tags, jaegerKV{"error", "bool", true}, jaegerKV{"otel.status_code", "string", "ERROR"})
		if m := sp.Status().Message(); m != "" {
			js.Tags = append(js.Tags, jaegerKV{"otel.status_description", "string", m})
		}
	case ptrace.StatusCodeOk:
		js.Tags = append(js.Tags, jaegerKV{"otel.status_code", "string", "OK"})
	}
	if n := scope.Name(); n != "" {
		js.Tags = append(js.Tags, jaegerKV{"otel.scope.name", "string", n})
	}
	if v := scope.Version(); v != "" {
		js.Tags = append(js.Tags, jaegerKV{"otel.scope.version", "string", v})
	}
	if ts := sp.TraceState().AsRaw(); ts != "" {
		js.Tags = append(js.Tags, jaegerKV{"w3c.tracestate", "string", ts})
	}
	slices.SortStableFunc(js.Tags, func(a, b jaegerKV) int { return strings.Compare(a.Key, b.Key) })
	for _, ev := range sp.Events().All() {
		// The event's name is the "event" field, unless it has an event
		// attribute; the other fields sorted by key.
		fields := jaegerKVs(ev.Attributes(), "")
		if _, has := ev.Attributes().Get("event"); ev.Name() != "" && !has {
			fields = append([]jaegerKV{{"event", "string", ev.Name()}}, fields...)
		} else if i := slices.IndexFunc(fields, func(f jaegerKV) bool { return f.Key == "event" && f.Type == "string" }); i > 0 {
			fields = slices.Concat(fields[i:i+1], fields[:i], fields[i+1:])
		}
		js.Logs = append(js.Logs, jaegerLog{Timestamp: int64(ev.Timestamp()) / 1000, Fields: fields})
	}
	return js
}

// spanTimes are what the clock skew adjuster reads of a span besides its
// ids: its times (ns) and its host (the process' ip tag).
type spanTimes struct {
	start, end int64
	host       string
}

// hostKey is the process' ip tag, as Jaeger's clock skew adjuster reads it.
func hostKey(res pcommon.Map) string {
	v, ok := res.Get("ip")
	if !ok {
		return ""
	}
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return v.Str()
	case pcommon.ValueTypeInt:
		n := uint32(v.Int())
		return net.IPv4(byte(n>>24), byte(n>>16), byte(n>>8), byte(n)).String()
	case pcommon.ValueTypeBytes:
		if b := v.Bytes().AsRaw(); len(b) == 4 || len(b) == 16 {
			return net.IP(b).String()
		}
	}
	return ""
}

// The warnings of Jaeger's clock skew adjuster.
const (
	warnDuplicateSpanID = "duplicate span IDs; skipping clock skew adjustment"
	warnInvalidParent   = "invalid parent span IDs=%s; skipping clock skew adjustment"
	warnSkewDisabled    = "clock skew adjustment disabled; not applying calculated delta of %v"
)

// skewWarnings adds the warnings Jaeger's query service gives spans with
// its default max_clock_skew_adjust of 0: a duplicate span id, a parent
// that is not in the trace, and a child on another host (or of no known
// host) that does not fit in its parent — whose calculated correction is
// reported, not applied.
func skewWarnings(spans []jaegerSpan, times []spanTimes) {
	byID := map[string]int{}
	for i, s := range spans {
		if _, dup := byID[s.SpanID]; dup {
			spans[i].Warnings = append(spans[i].Warnings, warnDuplicateSpanID)
			continue
		}
		byID[s.SpanID] = i
	}
	children := map[int][]int{}
	var roots []int
	for _, i := range byID {
		p := parentOf(spans[i])
		if p == "" {
			roots = append(roots, i)
			continue
		}
		if j, ok := byID[p]; ok {
			children[j] = append(children[j], i)
			continue
		}
		spans[i].Warnings = append(spans[i].Warnings, fmt.Sprintf(warnInvalidParent, p))
		roots = append(roots, i)
	}
	type frame struct {
		span, parent int
		host         string
		delta        time.Duration
	}
	var stack []frame
	for _, r := range roots {
		stack = append(stack, frame{r, -1, times[r].host, 0})
	}
	visited := map[int]bool{}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[f.span] {
			continue // a parent cycle in malformed input
		}
		visited[f.span] = true
		n := times[f.span]
		if f.parent >= 0 && (n.host != f.host || n.host == "") {
			f.host, f.delta = n.host, skew(n, times[f.parent])
		}
		if f.delta != 0 {
			spans[f.span].Warnings = append(spans[f.span].Warnings, fmt.Sprintf(warnSkewDisabled, f.delta))
		}
		for _, c := range children[f.span] {
			stack = append(stack, frame{c, f.span, f.host, f.delta})
		}
	}
}

// parentOf is the span's parent as Jaeger reads it: its first CHILD_OF
// reference in the trace, else its first FOLLOWS_FROM one.
func parentOf(s jaegerSpan) string {
	follows := ""
	for _, r := range s.References {
		if r.TraceID != s.TraceID {
			continue
		}
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
		if follows == "" {
			follows = r.SpanID
		}
	}
	return follows
}

// skew is the correction Jaeger's adjuster calculates for a child that
// does not fit in its parent (0 when it fits).
func skew(child, parent spanTimes) time.Duration {
	cd, pd := child.end-child.start, parent.end-parent.start
	if cd > pd {
		// Longer than its parent (async, or the parent timed out): only
		// a child that starts first is corrected.
		if child.start < parent.start {
			return time.Duration(parent.start - child.start)
		}
		return 0
	}
	if child.start >= parent.start && child.end <= parent.end {
		return 0
	}
	latency := (pd - cd) / 2
	return time.Duration(parent.start + latency - child.start)
}
