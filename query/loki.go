package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/store"
)

// LogReader is the part of the store the Loki API reads.
type LogReader interface {
	SelectLogs(ctx context.Context, q store.LogSelect) ([]store.LogStream, error)
	LogSeries(ctx context.Context, ms []*labels.Matcher, start, end int64) ([]labels.Labels, error)
	LogLabelNames(ctx context.Context, ms []*labels.Matcher, start, end int64) ([]string, error)
	LogLabelValues(ctx context.Context, name string, ms []*labels.Matcher, start, end int64) ([]string, error)
	TailLogs(ms []*labels.Matcher, buffer int) *store.LogTail
}

// LokiAPI serves Loki's query API (/loki/api/v1/…) over the log store.
type LokiAPI struct {
	r   LogReader
	log *zap.Logger
	now func() time.Time
}

// NewLoki returns the Loki API over r.
func NewLoki(r LogReader, log *zap.Logger) *LokiAPI {
	if log == nil {
		log = zap.NewNop()
	}
	return &LokiAPI{r: r, log: log.Named("query.loki"), now: time.Now}
}

// Register adds the Loki routes to mux; wrap instruments each handler.
func (a *LokiAPI) Register(mux *http.ServeMux, wrap func(route string, h http.Handler) http.Handler) {
	if wrap == nil {
		wrap = func(_ string, h http.Handler) http.Handler { return h }
	}
	for _, rt := range []struct {
		path string
		h    http.HandlerFunc
	}{
		{"/loki/api/v1/labels", a.labels},
		{"/loki/api/v1/label", a.labels},
		{"/loki/api/v1/label/{name}/values", a.labelValues},
		{"/loki/api/v1/series", a.series},
	} {
		h := wrap(rt.path, rt.h)
		mux.Handle("GET "+rt.path, h)
		mux.Handle("POST "+rt.path, h)
	}
}

// lokiError answers as Loki does: the status, and the message as text.
func (a *LokiAPI) lokiError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, store.ErrTooMuch):
		code = http.StatusBadRequest
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrClosed):
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, context.Canceled):
		code = 499
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	if code >= 500 {
		a.log.Warn("loki query failed", zap.Error(err))
	}
	http.Error(w, err.Error(), code)
}

// lokiTime parses a Loki time parameter: unix nanoseconds (or seconds, when
// 10 digits or fewer), fractional unix seconds, or RFC 3339.
func lokiTime(name, s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if strings.Contains(s, ".") {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			sec, frac := math.Modf(f)
			return time.Unix(int64(sec), int64(frac*1e9)), nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if len(strings.TrimPrefix(s, "-")) <= 10 {
			return time.Unix(n, 0), nil
		}
		return time.Unix(0, n), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: %s=%q is not a time: use unix nanoseconds, unix seconds or RFC 3339", errBadRequest, name, s)
}

// lokiRange reads start and end, Loki's defaults being the last hour.
func (a *LokiAPI) lokiRange(r *http.Request) (start, end time.Time, err error) {
	now := a.now()
	if end, err = lokiTime("end", r.FormValue("end"), now); err != nil {
		return
	}
	if start, err = lokiTime("start", r.FormValue("start"), end.Add(-time.Hour)); err != nil {
		return
	}
	if s := r.FormValue("since"); s != "" && r.FormValue("start") == "" {
		d, perr := parseLokiDuration(s)
		if perr != nil {
			return start, end, fmt.Errorf("%w: since=%q: %w", errBadRequest, s, perr)
		}
		start = end.Add(-d)
	}
	if end.Before(start) {
		err = fmt.Errorf("%w: end (%s) is before start (%s)", errBadRequest, end.UTC().Format(time.RFC3339Nano), start.UTC().Format(time.RFC3339Nano))
	}
	return
}

// parseLokiDuration takes Go durations and Prometheus ones (1d, 1w).
func parseLokiDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("not a duration: %w", err)
	}
	return time.Duration(d), nil
}

var selectorParser = parser.NewParser(parser.Options{})

// streamSelector parses a stream selector ({app="x"}), for the query=
// and match[]= parameters of the label and series endpoints.
func streamSelector(param, s string) ([]*labels.Matcher, error) {
	ms, err := selectorParser.ParseMetricSelector(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s=%q: %w", errBadRequest, param, s, err)
	}
	return ms, nil
}

type lokiResponse struct {
	Status string `json:"status"`
	Data   any    `json:"data"`
}

// selectorAndRange reads the optional query= selector and the range.
func (a *LokiAPI) selectorAndRange(r *http.Request) (ms []*labels.Matcher, start, end time.Time, err error) {
	if start, end, err = a.lokiRange(r); err != nil {
		return nil, start, end, err
	}
	if q := r.FormValue("query"); q != "" {
		ms, err = streamSelector("query", q)
	}
	return ms, start, end, err
}

func (a *LokiAPI) labels(w http.ResponseWriter, r *http.Request) {
	ms, start, end, err := a.selectorAndRange(r)
	if err == nil {
		var names []string
		if names, err = a.r.LogLabelNames(r.Context(), ms, start.UnixNano(), end.UnixNano()); err == nil {
			writeJSON(w, http.StatusOK, lokiResponse{Status: "success", Data: names})
			return
		}
	}
	a.lokiError(w, err)
}

func (a *LokiAPI) labelValues(w http.ResponseWriter, r *http.Request) {
	ms, start, end, err := a.selectorAndRange(r)
	if err == nil {
		var values []string
		if values, err = a.r.LogLabelValues(r.Context(), r.PathValue("name"), ms, start.UnixNano(), end.UnixNano()); err == nil {
			writeJSON(w, http.StatusOK, lokiResponse{Status: "success", Data: values})
			return
		}
	}
	a.lokiError(w, err)
}

func (a *LokiAPI) series(w http.ResponseWriter, r *http.Request) {
	start, end, err := a.lokiRange(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	if err := r.ParseForm(); err != nil {
		a.lokiError(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	matches := r.Form["match[]"]
	if len(matches) == 0 {
		matches = r.Form["match"]
	}
	if len(matches) == 0 {
		a.lokiError(w, fmt.Errorf("%w: match[] is required: give at least one stream selector", errBadRequest))
		return
	}
	seen := map[string]bool{}
	data := []map[string]string{}
	for _, m := range matches {
		ms, err := streamSelector("match[]", m)
		if err != nil {
			a.lokiError(w, err)
			return
		}
		series, err := a.r.LogSeries(r.Context(), ms, start.UnixNano(), end.UnixNano())
		if err != nil {
			a.lokiError(w, err)
			return
		}
		for _, ls := range series {
			if k := ls.String(); !seen[k] {
				seen[k] = true
				data = append(data, ls.Map())
			}
		}
	}
	writeJSON(w, http.StatusOK, lokiResponse{Status: "success", Data: data})
}
