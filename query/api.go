// Package query serves Lumen's HTTP query APIs over the store.
package query

import (
	"context"
	"net/http"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/store"
)

// Reader is the part of the store the query APIs read.
type Reader interface {
	Trace(ctx context.Context, id model.TraceID) (store.Trace, error)
	TraceExemplars(ctx context.Context, id model.TraceID) ([]exemplar.QueryResult, error)
	storage.Queryable
}

// API serves the query endpoints.
type API struct {
	r   Reader
	log *zap.Logger
}

// New returns the API over r.
func New(r Reader, log *zap.Logger) *API {
	if log == nil {
		log = zap.NewNop()
	}
	return &API{r: r, log: log.Named("query")}
}

// Register adds the API's routes to mux. wrap, if not nil, instruments each
// handler under its route name.
func (a *API) Register(mux *http.ServeMux, wrap func(route string, h http.Handler) http.Handler) {
	if wrap == nil {
		wrap = func(_ string, h http.Handler) http.Handler { return h }
	}
	mux.Handle("GET /api/v1/traces/{trace_id}", wrap("/api/v1/traces/{trace_id}", http.HandlerFunc(a.trace)))
}
