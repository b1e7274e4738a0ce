package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/promremote"
	"github.com/lumenobs/lumen/internal/remotewrite"
	"github.com/lumenobs/lumen/internal/sendq"
	"github.com/lumenobs/lumen/store"
)

// StorageConfig chooses where each signal is kept (docs/scale-out.md).
type StorageConfig struct {
	Metrics MetricsStorage `yaml:"metrics"`
}

// The backends a signal may be kept in.
const (
	backendLocal  = "local"
	backendRemote = "remote"
)

// MetricsStorage is where metrics are kept: local (the store's own
// partitions, the default) or remote (a Prometheus remote-write receiver
// with a Prometheus query API: Mimir, Thanos, Cortex, VictoriaMetrics,
// Prometheus).
type MetricsStorage struct {
	Backend string              `yaml:"backend"`
	Remote  RemoteMetricsConfig `yaml:"remote"`
}

// RemoteMetricsConfig is the remote metrics backend.
type RemoteMetricsConfig struct {
	// WriteURL is its remote-write endpoint (e.g.
	// http://mimir:8080/api/v1/push); QueryURL the base of its Prometheus
	// API (e.g. http://mimir:8080/prometheus).
	WriteURL string `yaml:"write_url"`
	QueryURL string `yaml:"query_url"`
	// HTTPClient is the auth and TLS of both, as Prometheus' remote_write
	// takes them (basic_auth, authorization, oauth2, tls_config, proxy_url…).
	HTTPClient config_util.HTTPClientConfig `yaml:"http_client"`
	// Headers are sent with every write and read; with tenants,
	// TenantHeader carries the tenant's id (Mimir's and Cortex's
	// X-Scope-OrgID).
	Headers      map[string]string `yaml:"headers"`
	TenantHeader string            `yaml:"tenant_header"`
	// WriteTimeout bounds one remote-write request.
	WriteTimeout Duration `yaml:"write_timeout"`
	// QueryTimeout bounds one read; MaxConcurrentQueries run at once;
	// MaxResponseBytes caps one answer.
	QueryTimeout         Duration `yaml:"query_timeout"`
	MaxConcurrentQueries int      `yaml:"max_concurrent_queries"`
	MaxResponseBytes     ByteSize `yaml:"max_response_bytes"`
	// Queue is the durable queue of writes.
	Queue QueueConfig `yaml:"queue"`
}

// QueueConfig is a durable queue to a remote backend: what a client was
// told is stored is on disk until the backend took it.
type QueueConfig struct {
	// MaxBytes bounds the bytes queued: past it writes are refused with
	// 429 / RESOURCE_EXHAUSTED until the backend takes some.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// Senders is how many requests are sent at once.
	Senders int `yaml:"senders"`
	// MaxSamplesPerRequest cuts a write into requests of at most so many
	// samples (Prometheus' max_samples_per_send).
	MaxSamplesPerRequest int `yaml:"max_samples_per_request"`
	// MinBackoff and MaxBackoff bound the wait between retries of a
	// request, which is retried until the backend takes it.
	MinBackoff Duration `yaml:"min_backoff"`
	MaxBackoff Duration `yaml:"max_backoff"`
}

// DefaultStorageConfig keeps every signal locally.
func DefaultStorageConfig() StorageConfig {
	return StorageConfig{Metrics: MetricsStorage{Backend: backendLocal, Remote: RemoteMetricsConfig{
		WriteTimeout:         Duration(30 * time.Second),
		QueryTimeout:         Duration(2 * time.Minute),
		MaxConcurrentQueries: 20,
		MaxResponseBytes:     256 << 20,
		Queue: QueueConfig{MaxBytes: 1 << 30, Senders: 4, MaxSamplesPerRequest: 2000,
			MinBackoff: Duration(30 * time.Millisecond), MaxBackoff: Duration(5 * time.Second)},
	}}}
}

// Validate reports the first setting that cannot work.
func (c StorageConfig) Validate() error {
	m := c.Metrics
	switch m.Backend {
	case backendLocal:
		return nil
	case backendRemote:
	default:
		return fmt.Errorf("storage.metrics.backend %q: %s or %s", m.Backend, backendLocal, backendRemote)
	}
	r := m.Remote
	switch {
	case r.WriteURL == "" || r.QueryURL == "":
		return errors.New("storage.metrics.remote: write_url and query_url are needed with the remote backend")
	case r.WriteTimeout <= 0 || r.QueryTimeout <= 0:
		return errors.New("storage.metrics.remote: write_timeout and query_timeout must be positive")
	case r.MaxConcurrentQueries < 1 || r.MaxResponseBytes < 1:
		return errors.New("storage.metrics.remote: max_concurrent_queries and max_response_bytes must be positive")
	case r.Queue.MaxBytes < 1<<20 || r.Queue.Senders < 1 || r.Queue.MaxSamplesPerRequest < 1:
		return errors.New("storage.metrics.remote.queue: max_bytes (at least 1MiB), senders and max_samples_per_request must be positive")
	case r.Queue.MinBackoff <= 0 || r.Queue.MaxBackoff < r.Queue.MinBackoff:
		return errors.New("storage.metrics.remote.queue: min_backoff must be positive and at most max_backoff")
	}
	if err := r.HTTPClient.Validate(); err != nil {
		return fmt.Errorf("storage.metrics.remote.http_client: %w", err)
	}
	return nil
}

// remoteMetrics is a tenant's remote metrics backend: the store's side,
// the API's proxy, and what closes its queue.
type remoteMetrics struct {
	store   *store.RemoteMetrics
	backend *promremote.Backend
	queue   *sendq.Queue
}

// openRemoteMetrics opens tenant id's remote metrics backend (nil when
// metrics are local): its durable queue under dir/queue/metrics.
func openRemoteMetrics(ctx context.Context, cfg Config, id, dir string, log *zap.Logger, reg prometheus.Registerer) (*remoteMetrics, error) {
	if cfg.Storage.Metrics.Backend != backendRemote {
		return nil, nil
	}
	r := cfg.Storage.Metrics.Remote
	headers := maps.Clone(r.Headers)
	if cfg.Tenants.Enabled && r.TenantHeader != "" {
		if headers == nil {
			headers = map[string]string{}
		}
		headers[r.TenantHeader] = id
	}
	send, err := remotewrite.NewSend(remotewrite.Config{URL: r.WriteURL, HTTP: r.HTTPClient, Headers: headers, Timeout: time.Duration(r.WriteTimeout)})
	if err != nil {
		return nil, err
	}
	mp, err := sendq.MeterProvider(reg)
	if err != nil {
		return nil, err
	}
	queueDir := sendq.Dir(dir, "metrics")
	q, err := sendq.Open(ctx, "metrics", sendq.Metrics, sendq.Config{
		Dir: queueDir, MaxBytes: int64(r.Queue.MaxBytes), Senders: r.Queue.Senders, Timeout: time.Duration(r.WriteTimeout),
		InitialInterval: time.Duration(r.Queue.MinBackoff), MaxInterval: time.Duration(r.Queue.MaxBackoff),
	}, send, log.Named("metrics-queue"), mp)
	if err != nil {
		return nil, err
	}
	b, err := promremote.New(promremote.Config{URL: r.QueryURL, HTTP: r.HTTPClient, Headers: headers, Timeout: time.Duration(r.QueryTimeout),
		MaxConcurrent: r.MaxConcurrentQueries, MaxResponseBytes: int64(r.MaxResponseBytes)})
	if err != nil {
		_ = q.Close(ctx)
		return nil, err
	}
	app := remotewrite.New(q, r.Queue.MaxSamplesPerRequest)
	log.Info("metrics kept in a remote backend", zap.String("write_url", r.WriteURL), zap.String("query_url", r.QueryURL),
		zap.String("queue", queueDir))
	return &remoteMetrics{
		store:   &store.RemoteMetrics{Appendable: app, Queryable: b, Exemplars: b, Metadata: b.Metadata},
		backend: b,
		queue:   q,
	}, nil
}

// close closes the queue (what it holds stays on disk for the next
// start); nil-safe.
func (r *remoteMetrics) close() error {
	if r == nil {
		return nil
	}
	return r.queue.Close(context.Background())
}
