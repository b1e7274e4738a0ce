package query

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/store"
)

// TraceResponse is the body of GET /api/v1/traces/{trace_id}.
type TraceResponse struct {
	TraceID string `json:"traceId"`
	// StartTime and EndTime bound the trace's spans (or, for a trace known
	// only from logs, its log records), RFC 3339 with nanoseconds.
	StartTime         time.Time `json:"startTime"`
	EndTime           time.Time `json:"endTime"`
	StartTimeUnixNano string    `json:"startTimeUnixNano"`
	EndTimeUnixNano   string    `json:"endTimeUnixNano"`
	DurationNanos     int64     `json:"durationNanos"`
	SpanCount         int       `json:"spanCount"`
	LogCount          int       `json:"logCount"`
	Services          []string  `json:"services"`
	// Truncated, when set, says what of an oversized trace was left out
	// (the store's max_trace_bytes and max_trace_log_lines).
	Truncated string `json:"truncated,omitempty"`
	// Trace is an OTLP/JSON TracesData: spans grouped by resource and scope,
	// each group in start-time order.
	Trace json.RawMessage `json:"trace,omitempty"`
	// Logs are the log lines that carry the trace id, from OTLP and Loki
	// pushes alike, in time order, each with its stream's labels.
	Logs []TraceLog `json:"logs,omitempty"`
	// Metrics holds what the metrics store links to the trace.
	Metrics *TraceMetrics `json:"metrics,omitempty"`
	// Warnings say what part of the answer is missing and why (a metrics
	// backend that could not be read): the rest is answered.
	Warnings []string `json:"warnings,omitempty"`
}

// TraceLog is one log line of a trace.
type TraceLog struct {
	// Time is the line's time, RFC 3339 with nanoseconds; TimeUnixNano the
	// same as a decimal string, as OTLP/JSON and Loki write it.
	Time         time.Time `json:"time"`
	TimeUnixNano string    `json:"timeUnixNano"`
	// Stream is the labels of the line's stream (for OTLP records, their
	// resource mapped as Loki maps it).
	Stream map[string]string `json:"stream"`
	Line   string            `json:"line"`
	// StructuredMetadata is the line's structured metadata (for OTLP
	// records: attributes, severity, scope, ids).
	StructuredMetadata map[string]string `json:"structuredMetadata,omitempty"`
	// SpanID is the span the line belongs to, when known.
	SpanID string `json:"spanId,omitempty"`
}

// TraceMetrics is the metrics part of a trace's answer.
type TraceMetrics struct {
	// Exemplars are the exemplars whose trace_id is the trace's, by
	// series, in Prometheus' query_exemplars shape.
	Exemplars []ExemplarSeries `json:"exemplars"`
	// Series are, for each service in the trace, the series whose job,
	// service_name or service label names it, with their samples over the
	// trace's time range ± 5 minutes, in Prometheus' matrix shape.
	Series []ServiceSeries `json:"series"`
	// ServiceGraph are the calls between services, in the window, on edges
	// that touch a service of the trace (from the service graph Lumen keeps
	// at ingest).
	ServiceGraph []Dependency `json:"serviceGraph"`
	// From and To are the window the series cover.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// ServiceSeries is one series of a service in the trace.
type ServiceSeries struct {
	Service string        `json:"service"`
	Metric  labels.Labels `json:"metric"`
	// Values are written [unix seconds, "value"], as Prometheus writes them.
	Values []Sample `json:"values"`
	// Histograms are the native histogram samples, [unix seconds,
	// {count, sum, buckets}] as Prometheus writes them in a matrix.
	Histograms []json.RawMessage `json:"histograms,omitempty"`
}

// serviceLabels are the series labels that name a service, as Prometheus'
// OTLP translation (job) and common exporters (service_name, service) write it.
var serviceLabels = []string{"job", "service_name", "service"}

// seriesWindow is how far around the trace the service series reach.
const seriesWindow = 5 * time.Minute

// maxSeriesPerService bounds the series returned for one service.
const maxSeriesPerService = 50

// notGenerated leaves out the series Lumen derives from spans (the RED
// ones are selected apart; buckets and graph edges are too many to list).
var notGenerated = labels.MustNewMatcher(labels.MatchNotRegexp, "__name__", "traces_(spanmetrics|service_graph)_.+")

// redSeries are a service's rate, errors and duration from span metrics.
var redSeries = labels.MustNewMatcher(labels.MatchRegexp, "__name__",
	"traces_spanmetrics_calls_total|traces_spanmetrics_duration_seconds_count|traces_spanmetrics_duration_seconds_sum")

// maxREDNames is how many span names of a service in a trace restrict its
// RED series to those names; a trace with more takes the service's RED
// series in label order, as for a trace without spans there.
const maxREDNames = 64

// traceService is the service a resource of a trace names (its
// service.name string), or "": services and spanNames agree on it.
func traceService(res pcommon.Resource) string {
	v, _ := res.Attributes().Get("service.name")
	return v.Str()
}

// spanNames are the distinct span names of each service in td, sorted.
func spanNames(td ptrace.Traces) map[string][]string {
	out := map[string][]string{}
	for _, rs := range td.ResourceSpans().All() {
		svc := traceService(rs.Resource())
		if svc == "" {
			continue
		}
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				out[svc] = append(out[svc], sp.Name())
			}
		}
	}
	for svc, names := range out {
		slices.Sort(names)
		out[svc] = slices.Compact(names)
	}
	return out
}

func (a *API) serviceSeries(ctx context.Context, services []string, names map[string][]string, from, to time.Time) ([]ServiceSeries, error) {
	q, err := a.r.Querier(from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer q.Close()
	// Each service's selections run on their own, a core's worth at a
	// time; the answer keeps the services' order.
	perService := make([][]ServiceSeries, len(services))
	errs := make([]error, len(services))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, svc := range services {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			perService[i], errs[i] = serviceSeriesOf(ctx, q, svc, names[svc], from, to)
			perService[i] = mergeReplicas(perService[i])
		})
	}
	wg.Wait()
	out := []ServiceSeries{}
	for i := range services {
		if errs[i] != nil {
			return nil, errs[i]
		}
		out = append(out, perService[i]...)
	}
	return out, nil
}

// serviceSeriesOf is serviceSeries of one service, whose spans in the trace
// are named names.
func serviceSeriesOf(ctx context.Context, q storage.Querier, svc string, names []string, from, to time.Time) ([]ServiceSeries, error) {
	out := []ServiceSeries{}
	seen := map[uint64][]labels.Labels{} // by hash; a collision is told apart by the labels
	n := 0
	// A limit, so the store reads the chunks of the series returned, not of
	// every one that matches (a service can have thousands of span-metric
	// series).
	hints := &storage.SelectHints{Start: from.UnixMilli(), End: to.UnixMilli(), Limit: maxSeriesPerService}
	service := labels.MustNewMatcher(labels.MatchEqual, "service", svc)
	// The RED series from span metrics of the service's operations in the
	// trace first, then what else names the service, up to the bound.
	selects := []func() storage.SeriesSet{func() storage.SeriesSet {
		if len(names) == 0 || len(names) > maxREDNames {
			return q.Select(ctx, true, hints, redSeries, service)
		}
		// One selection per name, merged in label order: the series of
		// span_name =~ "a|b|…" without compiling an expression for each
		// trace's set of names (a third of this function's time).
		sets := make([]storage.SeriesSet, len(names))
		for i, name := range names {
			sets[i] = q.Select(ctx, true, hints, redSeries, service, labels.MustNewMatcher(labels.MatchEqual, "span_name", name))
		}
		return storage.NewMergeSeriesSet(sets, maxSeriesPerService, storage.ChainedSeriesMerge)
	}}
	for _, name := range serviceLabels {
		selects = append(selects, func() storage.SeriesSet {
			return q.Select(ctx, true, hints, labels.MustNewMatcher(labels.MatchEqual, name, svc), notGenerated)
		})
	}
	// The series' samples share one backing array, each series a capped
	// part of it: far fewer allocations than a slice grown per series.
	var samples []Sample
	for _, sel := range selects {
		if n >= maxSeriesPerService {
			break
		}
		set := sel()
		for set.Next() && n < maxSeriesPerService {
			series := set.At()
			lset := series.Labels()
			h := lset.Hash()
			if slices.ContainsFunc(seen[h], func(l labels.Labels) bool { return labels.Equal(l, lset) }) {
				continue
			}
			seen[h] = append(seen[h], lset)
			n++
			ss := ServiceSeries{Service: svc, Metric: lset}
			first := len(samples)
			it := series.Iterator(nil)
			for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
				if t := it.AtT(); t < from.UnixMilli() || t > to.UnixMilli() {
					continue
				}
				switch vt {
				case chunkenc.ValFloat:
					t, v := it.At()
					samples = append(samples, Sample{T: t, V: v})
				case chunkenc.ValHistogram, chunkenc.ValFloatHistogram:
					t, h := it.AtFloatHistogram(nil)
					b, err := promql.HPoint{T: t, H: h}.MarshalJSON()
					if err != nil {
						return nil, fmt.Errorf("histogram of %s at %d: %w", series.Labels(), t, err)
					}
					ss.Histograms = append(ss.Histograms, b)
				}
			}
			if err := it.Err(); err != nil {
				return nil, err
			}
			ss.Values = samples[first:len(samples):len(samples)]
			if len(ss.Values) == 0 {
				ss.Values = []Sample{}
			}
			out = append(out, ss)
		}
		if err := set.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ExemplarSeries is one series' exemplars, as Prometheus' query_exemplars
// answers them.
type ExemplarSeries struct {
	SeriesLabels map[string]string `json:"seriesLabels"`
	Exemplars    []Exemplar        `json:"exemplars"`
}

// Exemplar is one exemplar: its labels, its value as a string and its time
// in seconds, as Prometheus writes them.
type Exemplar struct {
	Labels    map[string]string `json:"labels"`
	Value     string            `json:"value"`
	Timestamp float64           `json:"timestamp"`
}

func exemplarSeries(in []exemplar.QueryResult) []ExemplarSeries {
	out := make([]ExemplarSeries, 0, len(in))
	for _, qr := range in {
		es := ExemplarSeries{SeriesLabels: qr.SeriesLabels.Map()}
		for _, e := range qr.Exemplars {
			es.Exemplars = append(es.Exemplars, Exemplar{
				Labels:    e.Labels.Map(),
				Value:     strconv.FormatFloat(e.Value, 'f', -1, 64),
				Timestamp: float64(e.Ts) / 1000,
			})
		}
		out = append(out, es)
	}
	return out
}

var tracesJSON ptrace.JSONMarshaler

// parts lists what include= may name.
var parts = []string{"trace", "logs", "metrics"}

func parseInclude(q string) (map[string]bool, error) {
	inc := map[string]bool{}
	if q == "" {
		for _, p := range parts {
			inc[p] = true
		}
		return inc, nil
	}
	for p := range strings.SplitSeq(q, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(parts, p) {
			return nil, fmt.Errorf("%w: include=%q: unknown part %q; known parts: %s", errBadRequest, q, p, strings.Join(parts, ", "))
		}
		inc[p] = true
	}
	return inc, nil
}

// fail answers err in Prometheus' envelope, counting what a limit refused.
func (a *API) fail(w http.ResponseWriter, err error) {
	a.m.count(apiTraces, err)
	writeError(w, err)
}

func (a *API) trace(w http.ResponseWriter, r *http.Request) {
	id, err := model.ParseTraceID(r.PathValue("trace_id"))
	if err != nil {
		writeError(w, err)
		return
	}
	inc, err := parseInclude(r.URL.Query().Get("include"))
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		a.fail(w, err)
		return
	}
	defer done()
	r = r.WithContext(ctx)
	t, err := a.r.Trace(r.Context(), id)
	var exemplars []exemplar.QueryResult
	if err == nil || errors.Is(err, store.ErrNotFound) {
		// A trace known only from exemplars is still an answer.
		var exErr error
		if exemplars, exErr = a.r.TraceExemplars(r.Context(), id); exErr != nil {
			err = exErr
		} else if err != nil && len(exemplars) > 0 {
			t, err = store.Trace{Spans: ptrace.NewTraces()}, nil
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w: %w", errCanceledRequest, err)
		}
		a.log.Debug("trace lookup failed", zap.Stringer("trace_id", id), zap.Error(err))
		writeError(w, err)
		return
	}
	normalizeSpans(t.Spans)
	logs := traceLogs(t.Logs)
	resp := TraceResponse{
		TraceID:   id.String(),
		SpanCount: t.Spans.SpanCount(),
		LogCount:  len(logs),
		Services:  services(t.Spans, t.Logs),
		Truncated: t.Truncated,
		Warnings:  t.Warnings,
	}
	lo, hi := timeRange(t.Spans, logs)
	if lo == 0 {
		lo, hi = exemplarRange(exemplars)
	}
	resp.StartTime, resp.EndTime = time.Unix(0, int64(lo)).UTC(), time.Unix(0, int64(hi)).UTC()
	resp.StartTimeUnixNano, resp.EndTimeUnixNano = strconv.FormatUint(lo, 10), strconv.FormatUint(hi, 10)
	resp.DurationNanos = int64(hi - lo)
	if inc["trace"] {
		if resp.Trace, err = tracesJSON.MarshalTraces(t.Spans); err != nil {
			writeError(w, fmt.Errorf("encode trace %s: %w", id, err))
			return
		}
	}
	if inc["logs"] {
		resp.Logs = logs
	}
	if inc["metrics"] {
		from, to := resp.StartTime.Add(-seriesWindow), resp.EndTime.Add(seriesWindow)
		// The services' series and the graph are read at once: each is a
		// few selections in every partition, and the answer waits for both.
		var (
			series     []ServiceSeries
			graph      []Dependency
			serr, gerr error
			wg         sync.WaitGroup
		)
		wg.Go(func() { series, serr = a.serviceSeries(r.Context(), resp.Services, spanNames(t.Spans), from, to) })
		wg.Go(func() { graph, gerr = serviceGraph(r.Context(), a.r, from, to) })
		wg.Wait()
		// A metrics store that cannot be read (a remote backend down)
		// leaves its part out, said in the warnings: the spans and the
		// lines are answered.
		if serr != nil {
			resp.Warnings = append(resp.Warnings, fmt.Sprintf("series of the trace's services left out: %v", serr))
			a.log.Warn("trace's service series", zap.Stringer("trace_id", id), zap.Error(serr))
		}
		if gerr != nil {
			resp.Warnings = append(resp.Warnings, fmt.Sprintf("service graph around the trace left out: %v", gerr))
			a.log.Warn("service graph around a trace", zap.Stringer("trace_id", id), zap.Error(gerr))
		}
		graph = slices.DeleteFunc(graph, func(d Dependency) bool {
			return !slices.Contains(resp.Services, d.Parent) && !slices.Contains(resp.Services, d.Child)
		})
		resp.Metrics = &TraceMetrics{Exemplars: exemplarSeries(mergeReplicaExemplars(exemplars)), Series: series, ServiceGraph: graph, From: from, To: to}
	}
	buf := responseBuffers.Get().(*[]byte)
	body, err := encodeTraceResponseTo((*buf)[:0], resp)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	body = append(body, '\n')
	_, _ = w.Write(body) // the client went away; nothing to do
	if cap(body) <= maxPooledResponse {
		*buf = body[:0]
		responseBuffers.Put(buf)
	}
}

// responseBuffers hold the buffers trace answers are written into, for
// the next answers: an answer is tens of KiB, a third of what it
// allocated. One past maxPooledResponse is let go.
var responseBuffers = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledResponse = 1 << 20

// exemplarRange is the time range (unix ns) of exemplars, for a trace known
// only from them.
func exemplarRange(in []exemplar.QueryResult) (lo, hi uint64) {
	for _, qr := range in {
		for _, e := range qr.Exemplars {
			ns := uint64(e.Ts) * 1e6
			if lo == 0 || ns < lo {
				lo = ns
			}
			hi = max(hi, ns)
		}
	}
	return lo, hi
}

// groupKey identifies a (resource, scope) pair, so that spans received in
// different requests from the same source are shown together.
func groupKey(res pcommon.Resource, resSchema string, scope pcommon.InstrumentationScope, scopeSchema string) string {
	return fmt.Sprint(res.Attributes().AsRaw(), "\x00", resSchema, "\x00", scope.Name(), "\x00", scope.Version(), "\x00",
		scope.Attributes().AsRaw(), "\x00", scopeSchema)
}

// normalizeSpans merges groups of the same resource and scope, sorts spans by
// start time within a group and groups by their first span.
func normalizeSpans(td ptrace.Traces) {
	merged := ptrace.NewTraces()
	index := map[string]ptrace.SpanSlice{}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			k := groupKey(rs.Resource(), rs.SchemaUrl(), ss.Scope(), ss.SchemaUrl())
			dst, ok := index[k]
			if !ok {
				nrs := merged.ResourceSpans().AppendEmpty()
				rs.Resource().MoveTo(nrs.Resource())
				nrs.SetSchemaUrl(rs.SchemaUrl())
				nss := nrs.ScopeSpans().AppendEmpty()
				ss.Scope().MoveTo(nss.Scope())
				nss.SetSchemaUrl(ss.SchemaUrl())
				dst = nss.Spans()
				index[k] = dst
			}
			ss.Spans().MoveAndAppendTo(dst)
		}
	}
	for _, dst := range index {
		dst.Sort(func(a, b ptrace.Span) bool {
			if a.StartTimestamp() != b.StartTimestamp() {
				return a.StartTimestamp() < b.StartTimestamp()
			}
			return a.EndTimestamp() > b.EndTimestamp()
		})
	}
	first := func(rs ptrace.ResourceSpans) pcommon.Timestamp {
		if spans := rs.ScopeSpans().At(0).Spans(); spans.Len() > 0 {
			return spans.At(0).StartTimestamp()
		}
		return 0
	}
	merged.ResourceSpans().Sort(func(a, b ptrace.ResourceSpans) bool { return first(a) < first(b) })
	merged.MoveTo(td)
}

// traceLogs flattens a trace's streams into one list of lines in time order.
func traceLogs(streams []store.LogStream) []TraceLog {
	var out []TraceLog
	for _, st := range streams {
		stream := st.Labels.Map()
		for _, e := range st.Entries {
			l := TraceLog{
				Time:         time.Unix(0, e.T).UTC(),
				TimeUnixNano: strconv.FormatInt(e.T, 10),
				Stream:       stream,
				Line:         e.Line,
			}
			if !e.Metadata.IsEmpty() {
				l.StructuredMetadata = e.Metadata.Map()
			}
			if !e.SpanID.IsEmpty() {
				l.SpanID = e.SpanID.String()
			}
			out = append(out, l)
		}
	}
	slices.SortStableFunc(out, func(a, b TraceLog) int { return a.Time.Compare(b.Time) })
	return out
}

func timeRange(td ptrace.Traces, logs []TraceLog) (lo, hi uint64) {
	widen := func(a, b uint64) {
		if a != 0 && (lo == 0 || a < lo) {
			lo = a
		}
		hi = max(hi, b)
	}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				widen(uint64(sp.StartTimestamp()), uint64(sp.EndTimestamp()))
			}
		}
	}
	if lo == 0 {
		for _, l := range logs {
			t := uint64(max(l.Time.UnixNano(), 0))
			widen(t, t)
		}
	}
	return lo, max(hi, lo)
}

// services lists the service.name of every resource in the trace, and the
// service_name of its log streams, sorted.
func services(td ptrace.Traces, logs []store.LogStream) []string {
	seen := map[string]bool{}
	for _, rs := range td.ResourceSpans().All() {
		if svc := traceService(rs.Resource()); svc != "" {
			seen[svc] = true
		}
	}
	for _, st := range logs {
		if v := st.Labels.Get("service_name"); v != "" && v != "unknown_service" {
			seen[v] = true
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	slices.SortFunc(out, cmp.Compare[string])
	return out
}
