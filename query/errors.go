package query

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"

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
)

type errorBody struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
}

// writeError is the one place where errors become HTTP statuses.
func writeError(w http.ResponseWriter, err error) {
	code, typ := http.StatusInternalServerError, errInternal
	switch {
	case errors.Is(err, model.ErrInvalidTraceID), errors.Is(err, errBadRequest):
		code, typ = http.StatusBadRequest, errBadData
	case errors.Is(err, store.ErrNotFound):
		code, typ = http.StatusNotFound, errNotFound
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrClosed):
		code, typ = http.StatusServiceUnavailable, errUnavailable
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, errCanceledRequest):
		code, typ = 499, errCanceled
	}
	writeJSON(w, code, errorBody{Status: "error", ErrorType: typ, Error: err.Error()})
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

// httpStatus is the status the Loki, Tempo and Jaeger APIs answer an
// error with; it sets Retry-After when the store is unavailable.
func httpStatus(w http.ResponseWriter, err error) int {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, model.ErrInvalidTraceID), errors.Is(err, store.ErrTooMuch),
		errors.Is(err, logql.ErrParse), errors.Is(err, traceql.ErrParse):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrClosed):
		w.Header().Set("Retry-After", "1")
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return 499
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// failStatus is httpStatus, logging the failures that are the server's
// (the logger names the API).
func failStatus(w http.ResponseWriter, log *zap.Logger, err error) int {
	code := httpStatus(w, err)
	if code >= 500 {
		log.Warn("query failed", zap.Error(err))
	}
	return code
}

// Wrap instruments a handler under its route name.
type Wrap func(route string, h http.Handler) http.Handler

// orPlain returns wrap, or one that leaves handlers as they are.
func orPlain(wrap Wrap) Wrap {
	if wrap == nil {
		return func(_ string, h http.Handler) http.Handler { return h }
	}
	return wrap
}
