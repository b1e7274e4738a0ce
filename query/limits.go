package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/lumenobs/lumen/internal/limits"
	"github.com/lumenobs/lumen/query/logql"
	"github.com/lumenobs/lumen/query/traceql"
)

// Metrics counts the queries the APIs refuse. One is shared by every API
// of a server; a nil *Metrics counts nothing.
type Metrics struct {
	rejected *prometheus.CounterVec
}

// NewMetrics registers the query APIs' counters on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lumen_query_rejected_total",
		Help: "Queries refused by a limit, by API and reason (concurrency, step, range, limit, depth).",
	}, []string{"api", "reason"})}
	if reg != nil {
		reg.MustRegister(m.rejected)
	}
	return m
}

// The APIs, as the api label of lumen_query_rejected_total names them.
const (
	apiPrometheus = "prometheus"
	apiLoki       = "loki"
	apiTempo      = "tempo" // Tempo's search and Lumen's /api/v1/search
	apiJaeger     = "jaeger"
	apiTraces     = "traces" // the correlated /api/v1/traces/{trace_id}
)

// The reasons a query is refused, the reason label.
const (
	reasonConcurrency = "concurrency" // no slot: the queue was full or the wait ran out
	reasonStep        = "step"        // a step under 1 ms, or over 11,000 points
	reasonRange       = "range"       // a time range over the maximum query length
	reasonLimit       = "limit"       // limit= (or spss=) over its maximum
	reasonDepth       = "depth"       // a query nested too deeply to parse
)

// count counts err against api when a limit refused the query.
func (m *Metrics) count(api string, err error) {
	if m == nil || err == nil {
		return
	}
	if reason := limitReason(err); reason != "" {
		m.rejected.WithLabelValues(api, reason).Inc()
	}
}

// limitError is a query refused because it exceeds a limit.
type limitError struct {
	reason string
	err    error
}

func (e *limitError) Error() string { return e.err.Error() }
func (e *limitError) Unwrap() error { return e.err }

// overLimit returns a bad request (400) that exceeds the limit reason.
func overLimit(reason, format string, a ...any) error {
	return &limitError{reason: reason, err: fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, a...))}
}

func limitReason(err error) string {
	var le *limitError
	switch {
	case errors.As(err, &le):
		return le.reason
	case errors.Is(err, limits.ErrBusy):
		return reasonConcurrency
	case errors.Is(err, logql.ErrTooDeep), errors.Is(err, traceql.ErrTooDeep):
		return reasonDepth
	}
	return ""
}

// maxPoints is Prometheus' and Loki's bound on the points of one series
// in a range query.
const maxPoints = 11000

// checkStep refuses a step (param, as given) under a millisecond (the
// engines evaluate in milliseconds) or one that makes more than maxPoints
// points over [start, end], as Prometheus and Loki refuse it. step must be
// positive.
func checkStep(param string, step time.Duration, start, end time.Time) error {
	if step < time.Millisecond {
		return overLimit(reasonStep, "step=%q: the query resolution step must be at least 1ms", param)
	}
	if end.Sub(start)/step > maxPoints {
		return overLimit(reasonStep, "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")
	}
	return nil
}

// checkLength refuses a time range longer than limit (0: no bound), in
// the words of Loki's max_query_length.
func checkLength(start, end time.Time, limit time.Duration) error {
	if limit > 0 && end.Sub(start) > limit {
		return overLimit(reasonRange, "the query time range exceeds the limit (query length: %s, limit: %s)", model.Duration(end.Sub(start)), model.Duration(limit))
	}
	return nil
}

// admit waits for one of lim's slots, at most timeout after the request
// arrived. It returns the request's context bounded by that timeout, and
// done, which frees the slot; the error wraps limits.ErrBusy when no slot
// freed in time. A timeout of 0 does not bound the request.
func admit(r *http.Request, lim *limits.Limiter, timeout time.Duration) (ctx context.Context, done func(), err error) {
	ctx, cancel := context.WithCancel(r.Context())
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(r.Context(), timeout)
	}
	release, err := lim.Acquire(ctx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return ctx, func() { release(); cancel() }, nil
}
