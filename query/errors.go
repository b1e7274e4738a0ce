package query

import (
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/limits"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/query/logql"
	"github.com/lumenobs/lumen/query/traceql"
	"github.com/lumenobs/lumen/store"
)

// The error types of the JSON error envelope, as Prometheus names them.
const (
	errBadData     = "bad_data"
	errNotFound    = "not_found"
	errUnavailable = "unavailable"
	errInternal    = "internal"
	errCanceled    = "canceled"
	errTimeout     = "timeout"
)

type errorBody struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
}

// writeError answers err in Prometheus' error envelope, with the status
// httpStatus gives it.
func writeError(w http.ResponseWriter, err error) {
	code := httpStatus(w, err)
	writeJSON(w, code, errorBody{Status: "error", ErrorType: errorType(code), Error: err.Error()})
}

// errorType is the envelope's errorType for a status.
func errorType(code int) string {
	switch code {
	case http.StatusBadRequest:
		return errBadData
	case http.StatusNotFound:
		return errNotFound
	case http.StatusServiceUnavailable:
		return errUnavailable
	case 499:
		return errCanceled
	case http.StatusGatewayTimeout:
		return errTimeout
	}
	return errInternal
}

var (
	errBadRequest      = errors.New("bad request")
	errCanceledRequest = errors.New("request canceled")
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

// httpStatus is the one place where errors become HTTP statuses: every
// API answers an error with the status it gives. The query languages'
// errors are the client's (400) and a limiter that turned the query away
// answers 503 with Retry-After; the rest — the store's errors, a limit, a
// timeout, a client gone — as internal/fault classifies them for every
// API of Lumen.
func httpStatus(w http.ResponseWriter, err error) int {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, model.ErrInvalidTraceID),
		errors.Is(err, logql.ErrParse), errors.Is(err, traceql.ErrParse):
		return http.StatusBadRequest
	case errors.Is(err, limits.ErrBusy):
		w.Header().Set("Retry-After", "1")
		return http.StatusServiceUnavailable
	case errors.Is(err, errCanceledRequest):
		return fault.StatusClientClosed
	}
	c := fault.Classify(err)
	c.SetRetryAfter(w.Header())
	return c.HTTP
}

// failStatus is httpStatus, logging the failures that are the server's
// (the logger names the API); queries a limiter turned away are counted,
// not logged.
func failStatus(w http.ResponseWriter, log *zap.Logger, err error) int {
	code := httpStatus(w, err)
	if code >= 500 && !errors.Is(err, limits.ErrBusy) {
		log.Warn("query failed", zap.Error(err))
	}
	return code
}

// markTruncated tells a client, in the Lumen-Trace-Truncated header, that
// an oversized trace was answered in part (and why).
func markTruncated(w http.ResponseWriter, t store.Trace) {
	if t.Truncated != "" {
		w.Header().Set("Lumen-Trace-Truncated", t.Truncated)
	}
}

// Wrap instruments a handler under its route name.
type Wrap func(route string, h http.Handler) http.Handler

// Mux is where an API registers its routes: an *http.ServeMux, or the
// server's route table, which gives each route the scope it needs.
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// orPlain returns wrap, or one that leaves handlers as they are.
func orPlain(wrap Wrap) Wrap {
	if wrap == nil {
		return func(_ string, h http.Handler) http.Handler { return h }
	}
	return wrap
}
