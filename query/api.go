// Package query serves Lumen's HTTP query APIs over the store.
package query

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/store"
)

// Reader is the part of the store the query APIs read.
type Reader interface {
	Trace(ctx context.Context, id model.TraceID) (store.Trace, error)
	TraceExemplars(ctx context.Context, id model.TraceID) ([]exemplar.QueryResult, error)
	Metadata(metric string, limit int) map[string][]metadata.Metadata
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
func (a *API) Register(mux *http.ServeMux, wrap Wrap) {
	wrap = orPlain(wrap)
	mux.Handle("GET /api/v1/traces/{trace_id}", wrap("/api/v1/traces/{trace_id}", http.HandlerFunc(a.trace)))
	// Prometheus answers metadata from its scrape targets; Lumen from what
	// remote write and OTLP sent.
	mux.Handle("GET /api/v1/metadata", wrap("/api/v1/metadata", http.HandlerFunc(a.metadata)))
}

type metadataEntry struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// metadata answers /api/v1/metadata in Prometheus' shape.
func (a *API) metadata(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			writeError(w, fmt.Errorf("%w: limit=%q is not a number", errBadRequest, s))
			return
		}
		limit = n
	}
	data := map[string][]metadataEntry{}
	for name, ms := range a.r.Metadata(r.URL.Query().Get("metric"), limit) {
		for _, m := range ms {
			data[name] = append(data[name], metadataEntry{Type: string(m.Type), Help: m.Help, Unit: m.Unit})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": data})
}
