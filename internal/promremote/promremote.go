// Package promremote reads metrics from a remote backend's Prometheus HTTP
// API (Mimir, Thanos Query, Cortex, VictoriaMetrics, Prometheus): a proxy
// for Lumen's own Prometheus API routes, and a storage.Queryable whose
// selections are asked of the backend as range-vector queries (raw
// samples), for the answers Lumen composes itself (the correlated trace
// answer's metrics). Every read has a budget: a timeout, a limit on reads
// at once and a cap on the answer's bytes; errors name the backend.
package promremote

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	config_util "github.com/prometheus/common/config"

	"github.com/lumenobs/lumen/internal/remoteapi"
)

// Config is the backend and the budget of each read.
type Config struct {
	// URL is the base of the backend's Prometheus API: /api/v1/query is
	// URL + "/api/v1/query" (e.g. http://mimir:8080/prometheus).
	URL string
	// HTTP is the client's auth and TLS, as Prometheus' configuration
	// takes them; Headers are sent with every read (e.g. X-Scope-OrgID).
	HTTP    config_util.HTTPClientConfig
	Headers map[string]string
	// Timeout bounds one read; MaxConcurrent reads run at once (more wait,
	// within their timeout); MaxResponseBytes caps an answer's bytes.
	Timeout          time.Duration
	MaxConcurrent    int
	MaxResponseBytes int64
}

// Backend is one remote Prometheus API.
type Backend struct {
	cfg Config
	c   *remoteapi.Client
	api v1.API
}

// New returns the backend of cfg.
func New(cfg Config) (*Backend, error) {
	c, err := remoteapi.New(remoteapi.Config{Name: "metrics backend", URL: cfg.URL, HTTP: cfg.HTTP, Headers: cfg.Headers,
		Timeout: cfg.Timeout, MaxConcurrent: cfg.MaxConcurrent, MaxResponseBytes: cfg.MaxResponseBytes})
	if err != nil {
		return nil, err
	}
	ac, err := api.NewClient(api.Config{Address: c.Base().String(), RoundTripper: c.RoundTripper()})
	if err != nil {
		return nil, fmt.Errorf("metrics backend %s: %w", cfg.URL, err)
	}
	return &Backend{cfg: cfg, c: c, api: v1.NewAPI(ac)}, nil
}

// ErrTooLarge is a read whose answer passes MaxResponseBytes.
var ErrTooLarge = remoteapi.ErrTooLarge

// Proxy serves Lumen's Prometheus read routes (prefix, e.g. /api/v1, is
// stripped and the rest asked of the backend's API) within the budget. A
// backend that cannot be reached, or answers too much, is a Prometheus API
// error naming it: 503 unavailable, 504 on the timeout, 502 past the cap.
func (b *Backend) Proxy(prefix string) http.Handler {
	return b.c.Proxy(func(p string) string { return "/api/v1" + strings.TrimPrefix(p, prefix) },
		func(w http.ResponseWriter, code int, kind, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, `{"status":"error","errorType":%q,"error":%q}`, kind, msg)
		})
}
