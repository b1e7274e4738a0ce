package ruler

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/limits"
	"github.com/lumenobs/lumen/internal/logids"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/query/logql"
)

// What an alert's page shows besides its chart (GET
// /api/v1/alert_evidence): for a PromQL alert the exemplar traces of the
// series its expression reads, in its window and agreeing with its
// labels, erroring and slowest first; for a LogQL alert the lines its
// expression counts, newest first, each with its trace.

// EvidenceSource is what evidence is read from: one tenant's store.
type EvidenceSource struct {
	Exemplars storage.ExemplarQueryable
	Logs      logql.Reader
	// Trace reads one trace's spans (the exemplar's span gives its
	// duration and status).
	Trace         func(ctx context.Context, id model.TraceID) (ptrace.Traces, error)
	LogQLMaxLines int
	// LogQL, when set, finds the lines instead of Logs (the remote logs
	// backend).
	LogQL logql.Executor
}

// EvidenceTrace is one exemplar's trace.
type EvidenceTrace struct {
	TraceID   string            `json:"traceID"`
	SpanID    string            `json:"spanID,omitempty"`
	Service   string            `json:"service,omitempty"`
	Name      string            `json:"name,omitempty"`
	Duration  float64           `json:"durationSeconds"`
	Error     bool              `json:"error"`
	Timestamp int64             `json:"timestamp"` // unix ms, the exemplar's
	Value     float64           `json:"value"`
	Series    map[string]string `json:"series"`
	Found     bool              `json:"found"` // the span is in the store
}

// EvidenceLine is one line a LogQL alert counts.
type EvidenceLine struct {
	Timestamp string            `json:"timestamp"` // unix ns
	Line      string            `json:"line"`
	Labels    map[string]string `json:"labels"`
	TraceID   string            `json:"traceID,omitempty"`
}

// Evidence is the answer's data.
type Evidence struct {
	Traces []EvidenceTrace `json:"traces"`
	Lines  []EvidenceLine  `json:"lines"`
}

const (
	defaultEvidenceLimit = 20
	maxEvidenceLimit     = 500
	// maxExemplarsRead bounds the exemplars looked at (and the traces
	// read for their spans).
	maxExemplarsRead = 1000
	maxTracesRead    = 200
)

// Admit admits a request to the store (a slot of a query limiter and a
// timeout on its context), or refuses it; done is called once the request
// is answered.
type Admit func(*http.Request) (ctx context.Context, done func(), err error)

// EvidenceHandler serves GET /api/v1/alert_evidence: lang (promql,
// logql), expr, labels (the alert's, as {a="b"}), start and end (unix
// ms or s, RFC 3339; default the last hour), limit (20, at most 500).
// admit, when not nil, admits each request before the store is read.
func EvidenceHandler(src func(*http.Request) EvidenceSource, admit Admit) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var (
			ev  Evidence
			err error
		)
		if admit != nil {
			ctx, done, aerr := admit(r)
			if err = aerr; err == nil {
				defer done()
				r = r.WithContext(ctx)
			}
		}
		if err == nil {
			ev, err = evidence(r, src(r))
		}
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			// The request's errors are 400; the store's, a limit, a timeout
			// or a client gone as internal/fault classifies them for every
			// API.
			code, typ := http.StatusBadRequest, "bad_data"
			switch {
			case errors.Is(err, limits.ErrBusy):
				// Turned away by the limiter, as every query API answers it.
				w.Header().Set("Retry-After", "1")
				code, typ = http.StatusServiceUnavailable, "unavailable"
			case !errors.Is(err, errBadEvidence) && !errors.Is(err, logql.ErrParse):
				c := fault.Classify(err)
				c.SetRetryAfter(w.Header())
				code, typ = c.HTTP, "internal"
				switch {
				case c.HTTP == http.StatusBadRequest:
					typ = "bad_data" // a limit
				case c.Reason == "unavailable" || c.Reason == "timeout" || c.Reason == "canceled":
					typ = c.Reason
				}
			}
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": typ, "error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": ev})
	})
}

var errBadEvidence = errors.New("alert_evidence")

func evidence(r *http.Request, src EvidenceSource) (Evidence, error) {
	q := r.URL.Query()
	now := time.Now()
	end, ok := timeParam(q.Get("end"), now)
	if !ok {
		return Evidence{}, fmt.Errorf("%w: end %q is not a time", errBadEvidence, q.Get("end"))
	}
	start, ok := timeParam(q.Get("start"), end.Add(-time.Hour))
	if !ok || start.After(end) {
		return Evidence{}, fmt.Errorf("%w: start %q is not a time before end", errBadEvidence, q.Get("start"))
	}
	limit := defaultEvidenceLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || n > maxEvidenceLimit {
			return Evidence{}, fmt.Errorf("%w: limit %q is not between 1 and %d", errBadEvidence, s, maxEvidenceLimit)
		}
		limit = n
	}
	var alert labels.Labels
	if s := q.Get("labels"); s != "" && s != "{}" {
		var err error
		if alert, err = parser.NewParser(parser.Options{}).ParseMetric(s); err != nil {
			return Evidence{}, fmt.Errorf("%w: labels %q: %w", errBadEvidence, s, err)
		}
	}
	expr := q.Get("expr")
	if expr == "" {
		return Evidence{}, fmt.Errorf("%w: expr is empty", errBadEvidence)
	}
	ev := Evidence{Traces: []EvidenceTrace{}, Lines: []EvidenceLine{}}
	var err error
	switch Lang(q.Get("lang")) {
	case PromQL, "":
		ev.Traces, err = exemplarTraces(r.Context(), src, expr, alert, start, end, limit)
	case LogQL:
		ev.Lines, err = matchingLines(r.Context(), src, expr, alert, start, end, limit)
	default:
		return Evidence{}, fmt.Errorf("%w: lang %q is neither promql nor logql", errBadEvidence, q.Get("lang"))
	}
	return ev, err
}

// agrees: every label of the alert that series also has is the same.
func agrees(alert, series labels.Labels) bool {
	ok := true
	alert.Range(func(l labels.Label) {
		if l.Name == labels.AlertName || l.Name == "alertstate" {
			return
		}
		if v := series.Get(l.Name); v != "" && v != l.Value {
			ok = false
		}
	})
	return ok
}

func exemplarTraces(ctx context.Context, src EvidenceSource, expr string, alert labels.Labels, start, end time.Time, limit int) ([]EvidenceTrace, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: expr: %w", errBadEvidence, err)
	}
	sel := parser.ExtractSelectors(e)
	out := []EvidenceTrace{}
	if len(sel) == 0 || src.Exemplars == nil {
		return out, nil
	}
	eq, err := src.Exemplars.ExemplarQuerier(ctx)
	if err != nil {
		return nil, err
	}
	res, err := eq.Select(start.UnixMilli(), end.UnixMilli(), sel...)
	if err != nil {
		return nil, err
	}
	type cand struct {
		series labels.Labels
		ex     exemplar.Exemplar
	}
	byTrace := map[string]cand{}
	read := 0
	for _, qr := range res {
		if !agrees(alert, qr.SeriesLabels) {
			continue
		}
		for _, ex := range qr.Exemplars {
			if read++; read > maxExemplarsRead {
				break
			}
			id := ex.Labels.Get("trace_id")
			if id == "" {
				id = ex.Labels.Get("traceID")
			}
			if id == "" {
				continue
			}
			// The newest exemplar of a trace stands for it.
			if c, ok := byTrace[id]; !ok || ex.Ts > c.ex.Ts {
				byTrace[id] = cand{qr.SeriesLabels, ex}
			}
		}
	}
	for id, c := range byTrace {
		t := EvidenceTrace{TraceID: id, SpanID: c.ex.Labels.Get("span_id"), Timestamp: c.ex.Ts, Value: c.ex.Value, Series: c.series.Map()}
		if t.SpanID == "" {
			t.SpanID = c.ex.Labels.Get("spanID")
		}
		t.Error = c.series.Get("status_code") == "STATUS_CODE_ERROR"
		if c.series.Get("le") != "" {
			t.Duration = c.ex.Value // a latency histogram's exemplar is the span's duration
		}
		out = append(out, t)
	}
	// Read the spans of the newest traces for their duration and status.
	sort.Slice(out, func(i, j int) bool { return out[i].Timestamp > out[j].Timestamp })
	for i := range out {
		if i >= maxTracesRead || src.Trace == nil {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		spanOf(ctx, src, &out[i])
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Error != out[j].Error {
			return out[i].Error
		}
		return out[i].Duration > out[j].Duration
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// spanOf fills t's service, name, duration and status from its span (its
// trace's root when the exemplar names no span).
func spanOf(ctx context.Context, src EvidenceSource, t *EvidenceTrace) {
	tid, err := model.ParseTraceID(t.TraceID)
	if err != nil {
		return
	}
	td, err := src.Trace(ctx, tid)
	if err != nil || td.SpanCount() == 0 {
		return
	}
	want := t.SpanID
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		svc, _ := rss.At(i).Resource().Attributes().Get("service.name")
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				s := spans.At(k)
				sid := s.SpanID()
				if (want != "" && hex.EncodeToString(sid[:]) != want) || (want == "" && !s.ParentSpanID().IsEmpty()) {
					continue
				}
				t.Found = true
				t.Service = svc.AsString()
				t.Name = s.Name()
				t.Duration = time.Duration(s.EndTimestamp() - s.StartTimestamp()).Seconds()
				t.Error = t.Error || s.Status().Code() == ptrace.StatusCodeError
				return
			}
		}
	}
}

// logExprs are the log queries inside a metric query.
func logExprs(e logql.Expr, out []*logql.LogExpr) []*logql.LogExpr {
	switch e := e.(type) {
	case *logql.LogExpr:
		out = append(out, e)
	case *logql.RangeAgg:
		out = append(out, e.Log)
	case *logql.VectorAgg:
		out = logExprs(e.Inner, out)
	case *logql.BinOp:
		out = logExprs(e.R, logExprs(e.L, out))
	case *logql.LabelReplace:
		out = logExprs(e.Inner, out)
	}
	return out
}

func matchingLines(ctx context.Context, src EvidenceSource, expr string, alert labels.Labels, start, end time.Time, limit int) ([]EvidenceLine, error) {
	e, err := logql.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: expr: %w", errBadEvidence, err)
	}
	out := []EvidenceLine{}
	for _, le := range logExprs(e, nil) {
		p := logql.Params{Start: start, End: end, Limit: maxEvidenceLimit, MaxLines: src.LogQLMaxLines}
		var res logql.Result
		if src.LogQL != nil {
			res, err = src.LogQL.Exec(ctx, le, p)
		} else {
			res, err = logql.Exec(ctx, src.Logs, le, p)
		}
		if err != nil {
			return nil, err
		}
		for _, s := range res.Streams {
			if !agrees(alert, s.Labels) {
				continue
			}
			for _, en := range s.Entries {
				l := EvidenceLine{Timestamp: strconv.FormatInt(en.T, 10), Line: en.Line, Labels: s.Labels.Map()}
				if ids := logids.Extract(labels.EmptyLabels(), s.Labels, en.Line); !ids.Trace.IsEmpty() {
					l.TraceID = ids.Trace.String()
				}
				out = append(out, l)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, _ := strconv.ParseInt(out[i].Timestamp, 10, 64)
		b, _ := strconv.ParseInt(out[j].Timestamp, 10, 64)
		return a > b
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
