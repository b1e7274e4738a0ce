// Package traceremote reads spans from a remote traces backend's query API
// within a budget (internal/remoteapi): a trace by id — Jaeger v2's
// /api/v3/traces/{id} (OTLP JSON) or Tempo's /api/traces/{id} (protobuf) —,
// the candidates of a search, the services and their span names, and a
// proxy for the backend's own API.
package traceremote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	config_util "github.com/prometheus/common/config"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/remoteapi"
	"github.com/lumenobs/lumen/store"
)

// APIJaeger is the query API of Jaeger v2 (its query service's HTTP
// port): /api/v3/traces/{id}, /api/traces, /api/services…
const APIJaeger = "jaeger"

// APITempo is the query API of Tempo (its query frontend's HTTP port):
// /api/traces/{id}, /api/search (TraceQL), /api/v2/search/tag/…
const APITempo = "tempo"

// catalogLookback is how far back Tempo's tag values are asked for the
// services and span names (Tempo answers only its recent data without a
// window).
const catalogLookback = 24 * time.Hour

// Config is the backend and the budget of each read.
type Config struct {
	// URL is the base of the backend's query API (Jaeger's query port,
	// e.g. http://jaeger-query:16686).
	URL string
	// API is the API it speaks: APIJaeger or APITempo.
	API string
	// HTTP is the client's auth and TLS; Headers are sent with every read.
	HTTP    config_util.HTTPClientConfig
	Headers map[string]string
	// Timeout bounds one read; MaxConcurrent reads run at once;
	// MaxResponseBytes caps an answer's bytes.
	Timeout          time.Duration
	MaxConcurrent    int
	MaxResponseBytes int64
}

// Backend is one remote traces backend.
type Backend struct {
	cfg Config
	c   *remoteapi.Client
}

// New returns the backend of cfg.
func New(cfg Config) (*Backend, error) {
	if cfg.API != APIJaeger && cfg.API != APITempo {
		return nil, fmt.Errorf("traces backend %s: api %q: %s or %s", cfg.URL, cfg.API, APIJaeger, APITempo)
	}
	c, err := remoteapi.New(remoteapi.Config{Name: "traces backend", URL: cfg.URL, HTTP: cfg.HTTP, Headers: cfg.Headers,
		Timeout: cfg.Timeout, MaxConcurrent: cfg.MaxConcurrent, MaxResponseBytes: cfg.MaxResponseBytes})
	if err != nil {
		return nil, err
	}
	return &Backend{cfg: cfg, c: c}, nil
}

// API is the query API the backend speaks.
func (b *Backend) API() string { return b.cfg.API }

var jsonTraces ptrace.JSONUnmarshaler

// Trace reads the spans of trace id: fault.ErrNotFound when the backend
// has none, fault.ErrUnavailable (naming the backend) when it cannot be
// read.
func (b *Backend) Trace(ctx context.Context, id model.TraceID) (ptrace.Traces, error) {
	if b.cfg.API == APITempo {
		return b.tempoTrace(ctx, id)
	}
	body, err := b.getTrace(ctx, id, "/api/v3/traces/", "application/json")
	if err != nil {
		return ptrace.Traces{}, err
	}
	return decodeJaeger(body, b.cfg.URL, id)
}

// getTrace reads path+id in the format accept names: a 404 is
// fault.ErrNotFound, any other failure fault.ErrUnavailable.
func (b *Backend) getTrace(ctx context.Context, id model.TraceID, path, accept string) ([]byte, error) {
	body, err := b.c.Get(ctx, path+id.String(), nil, http.Header{"Accept": {accept}})
	if err != nil {
		var he *remoteapi.HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			return nil, fmt.Errorf("trace %s in the traces backend: %w", id, fault.ErrNotFound)
		}
		return nil, fmt.Errorf("%w: %w", fault.ErrUnavailable, err)
	}
	return body, nil
}

// Find asks the backend for the newest traces with a span meeting q
// (Jaeger's /api/v3/traces search; Tempo's TraceQL search, then each
// trace by id): their spans in one answer, none found an empty one.
func (b *Backend) Find(ctx context.Context, q store.RemoteFind) (ptrace.Traces, error) {
	if b.cfg.API == APITempo {
		return b.tempoFind(ctx, q)
	}
	v := url.Values{
		"query.service_name":   {q.Service},
		"query.start_time_min": {time.Unix(0, int64(q.Start)).UTC().Format(time.RFC3339Nano)},
		"query.start_time_max": {time.Unix(0, int64(q.End)).UTC().Format(time.RFC3339Nano)},
		"query.num_traces":     {strconv.Itoa(max(q.Limit, 1))},
	}
	if q.Operation != "" {
		v.Set("query.operation_name", q.Operation)
	}
	if len(q.Attributes) > 0 {
		b, err := json.Marshal(q.Attributes)
		if err != nil {
			return ptrace.Traces{}, fmt.Errorf("traces backend search: %w", err)
		}
		v.Set("query.attributes", string(b))
	}
	body, err := b.c.Get(ctx, "/api/v3/traces", v, http.Header{"Accept": {"application/json"}})
	if err != nil {
		var he *remoteapi.HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			return ptrace.NewTraces(), nil
		}
		if errors.As(err, &he) && he.Status/100 == 4 {
			return ptrace.Traces{}, fmt.Errorf("%w: %w", fault.ErrInvalid, err)
		}
		return ptrace.Traces{}, fmt.Errorf("%w: %w", fault.ErrUnavailable, err)
	}
	var a struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(body, &a); err != nil || len(a.Result) == 0 {
		return ptrace.Traces{}, fmt.Errorf("%w: traces backend %s: search: answer without a result: %.200s", fault.ErrUnavailable, b.cfg.URL, body)
	}
	td, err := jsonTraces.UnmarshalTraces(a.Result)
	if err != nil {
		return ptrace.Traces{}, fmt.Errorf("%w: traces backend %s: search: %w", fault.ErrUnavailable, b.cfg.URL, err)
	}
	return td, nil
}

// Services lists the services the backend knows (Jaeger's
// /api/v3/services; Tempo's values of resource.service.name over the last
// catalogLookback).
func (b *Backend) Services(ctx context.Context) ([]string, error) {
	if b.cfg.API == APITempo {
		return b.tempoTagValues(ctx, "resource.service.name", "")
	}
	body, err := b.c.Get(ctx, "/api/v3/services", nil, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", fault.ErrUnavailable, err)
	}
	return decodeServices(body, b.cfg.URL)
}

// Operations lists a service's span names (Jaeger's /api/v3/operations;
// Tempo's values of name in the service's spans).
func (b *Backend) Operations(ctx context.Context, service string) ([]string, error) {
	if b.cfg.API == APITempo {
		return b.tempoTagValues(ctx, "name", "{ resource.service.name = "+strconv.Quote(service)+" }")
	}
	body, err := b.c.Get(ctx, "/api/v3/operations", url.Values{"service": {service}}, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", fault.ErrUnavailable, err)
	}
	return decodeOperations(body, b.cfg.URL)
}

// decodeServices reads {"services": [name…]}.
func decodeServices(body []byte, url string) ([]string, error) {
	var a struct {
		Services []string `json:"services"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("%w: traces backend %s: services: %w: %.200s", fault.ErrUnavailable, url, err, body)
	}
	return a.Services, nil
}

// decodeOperations reads {"operations": [{"name": …, "spanKind": …}…]}.
func decodeOperations(body []byte, url string) ([]string, error) {
	var a struct {
		Operations []struct {
			Name string `json:"name"`
		} `json:"operations"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("%w: traces backend %s: operations: %w: %.200s", fault.ErrUnavailable, url, err, body)
	}
	out := make([]string, 0, len(a.Operations))
	for _, o := range a.Operations {
		out = append(out, o.Name)
	}
	return out, nil
}

// decodeJaeger reads Jaeger's /api/v3 answer: {"result": TracesData in
// OTLP JSON}; an answer without spans is not found.
func decodeJaeger(body []byte, url string, id model.TraceID) (ptrace.Traces, error) {
	var a struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return ptrace.Traces{}, fmt.Errorf("%w: traces backend %s: trace %s: %w", fault.ErrUnavailable, url, id, err)
	}
	if len(a.Result) == 0 {
		return ptrace.Traces{}, fmt.Errorf("trace %s in the traces backend: %w", id, fault.ErrNotFound)
	}
	td, err := jsonTraces.UnmarshalTraces(a.Result)
	if err != nil {
		return ptrace.Traces{}, fmt.Errorf("%w: traces backend %s: trace %s: %w", fault.ErrUnavailable, url, id, err)
	}
	if td.SpanCount() == 0 {
		return ptrace.Traces{}, fmt.Errorf("trace %s in the traces backend: %w", id, fault.ErrNotFound)
	}
	return td, nil
}

// Proxy passes a request on to the backend's own API: path maps the
// request's path to the backend's. Errors are the backend's answer, or,
// when it cannot be read, 503 / 504 / 502 as JSON naming it.
func (b *Backend) Proxy(path func(string) string) http.Handler {
	return b.c.Proxy(path, func(w http.ResponseWriter, code int, _, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"code": code, "msg": msg}}})
	})
}
