// Package query serves Lumen's HTTP query APIs over the store.
package query

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/limits"
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

// TraceConfig bounds the trace APIs: the correlated trace
// (/api/v1/traces/{trace_id}) and the searches of Tempo (/api/search),
// Jaeger (/jaeger/api/traces) and Lumen (/api/v1/search).
type TraceConfig struct {
	// MaxConcurrent bounds the requests each of those APIs serves at once;
	// MaxQueued more wait for a slot (up to Timeout), and past them a
	// request is a 503 with Retry-After.
	MaxConcurrent int `yaml:"max_concurrent"`
	MaxQueued     int `yaml:"max_queued"`
	// Timeout bounds a request's time, its wait for a slot included.
	Timeout time.Duration `yaml:"timeout"`
	// MaxSearchLimit bounds limit= of Tempo's and Lumen's search: Tempo's
	// is lowered to it, as Tempo's max_result_limit does; Lumen's over it
	// is a 400.
	MaxSearchLimit int `yaml:"max_search_limit"`
	// MaxSpansPerSpanSet bounds Tempo's spss=; over it is a 400, as
	// Tempo's max_spans_per_span_set.
	MaxSpansPerSpanSet int `yaml:"max_spans_per_span_set"`
	// MaxJaegerLimit bounds limit= of Jaeger's search, which returns whole
	// traces: a higher limit is lowered to it.
	MaxJaegerLimit int `yaml:"max_jaeger_limit"`
}

// DefaultTraceConfig returns Tempo's defaults where it has them.
func DefaultTraceConfig() TraceConfig {
	return TraceConfig{MaxConcurrent: 4, MaxQueued: 100, Timeout: time.Minute, MaxSearchLimit: 1000, MaxSpansPerSpanSet: 100, MaxJaegerLimit: 1000}
}

// Validate reports the first setting that cannot work.
func (c TraceConfig) Validate() error {
	if c.MaxConcurrent <= 0 || c.Timeout <= 0 || c.MaxSearchLimit <= 0 || c.MaxSpansPerSpanSet <= 0 || c.MaxJaegerLimit <= 0 {
		return fmt.Errorf("traces: max_concurrent %d, timeout %s, max_search_limit %d, max_spans_per_span_set %d and max_jaeger_limit %d must be positive",
			c.MaxConcurrent, c.Timeout, c.MaxSearchLimit, c.MaxSpansPerSpanSet, c.MaxJaegerLimit)
	}
	if c.MaxQueued < 0 {
		return fmt.Errorf("traces: max_queued %d is negative", c.MaxQueued)
	}
	return nil
}

// API serves the query endpoints.
type API struct {
	r   Reader
	cfg TraceConfig
	lim *limits.Limiter
	m   *Metrics
	log *zap.Logger
}

// New returns the API over r; m, if not nil, counts what its limits
// refuse.
func New(r Reader, cfg TraceConfig, m *Metrics, log *zap.Logger) *API {
	if log == nil {
		log = zap.NewNop()
	}
	return &API{r: r, cfg: cfg, lim: limits.New("trace lookups", cfg.MaxConcurrent, cfg.MaxQueued), m: m, log: log.Named("query")}
}

// Register adds the API's routes to mux. wrap, if not nil, instruments each
// handler under its route name.
func (a *API) Register(mux Mux, wrap Wrap) {
	a.RegisterTraces(mux, wrap)
	// Prometheus answers metadata from its scrape targets; Lumen from what
	// remote write and OTLP sent.
	mux.Handle("GET /api/v1/metadata", orPlain(wrap)("/api/v1/metadata", http.HandlerFunc(a.metadata)))
}

// RegisterTraces adds the correlated trace route alone (a remote metrics
// backend answers metadata).
func (a *API) RegisterTraces(mux Mux, wrap Wrap) {
	wrap = orPlain(wrap)
	mux.Handle("GET /api/v1/traces/{trace_id}", wrap("/api/v1/traces/{trace_id}", http.HandlerFunc(a.trace)))
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
