package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/httpsend"
	"github.com/lumenobs/lumen/internal/promremote"
	"github.com/lumenobs/lumen/internal/remotewrite"
	"github.com/lumenobs/lumen/internal/sendq"
	"github.com/lumenobs/lumen/query/lokiremote"
	"github.com/lumenobs/lumen/query/traceremote"
	"github.com/lumenobs/lumen/store"
	"github.com/lumenobs/lumen/store/lokipush"
)

// StorageConfig chooses where each signal is kept (docs/scale-out.md).
type StorageConfig struct {
	Metrics MetricsStorage `yaml:"metrics"`
	Logs    LogsStorage    `yaml:"logs"`
	Traces  TracesStorage  `yaml:"traces"`
}

// TracesStorage is where spans are kept: local (the store's own
// partitions, the default) or remote (a backend that takes OTLP and
// answers Jaeger's query API: Jaeger v2 on its distributed storages).
type TracesStorage struct {
	Backend string             `yaml:"backend"`
	Remote  RemoteTracesConfig `yaml:"remote"`
}

// RemoteTracesConfig is the remote traces backend.
type RemoteTracesConfig struct {
	// OTLPURL is its OTLP/HTTP traces endpoint (e.g.
	// http://jaeger-collector:4318/v1/traces); QueryURL the base of its
	// query API (e.g. http://jaeger-query:16686, http://tempo:3200), which
	// speaks API: jaeger or tempo.
	OTLPURL       string `yaml:"otlp_url"`
	QueryURL      string `yaml:"query_url"`
	API           string `yaml:"api"`
	RemoteBackend `yaml:",inline"`
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
	WriteURL      string `yaml:"write_url"`
	QueryURL      string `yaml:"query_url"`
	RemoteBackend `yaml:",inline"`
}

// RemoteBackend is what every remote backend's settings share.
type RemoteBackend struct {
	// HTTPClient is the auth and TLS of its writes and reads, as
	// Prometheus' configuration takes them (basic_auth, authorization,
	// oauth2, tls_config, proxy_url…).
	HTTPClient config_util.HTTPClientConfig `yaml:"http_client"`
	// Headers are sent with every write and read; with tenants,
	// TenantHeader carries the tenant's id (Mimir's, Cortex's and Loki's
	// X-Scope-OrgID).
	Headers      map[string]string `yaml:"headers"`
	TenantHeader string            `yaml:"tenant_header"`
	// WriteTimeout bounds one write request.
	WriteTimeout Duration `yaml:"write_timeout"`
	// QueryTimeout bounds one read; MaxConcurrentQueries run at once;
	// MaxResponseBytes caps one answer.
	QueryTimeout         Duration `yaml:"query_timeout"`
	MaxConcurrentQueries int      `yaml:"max_concurrent_queries"`
	MaxResponseBytes     ByteSize `yaml:"max_response_bytes"`
	// Queue is the durable queue of writes.
	Queue QueueConfig `yaml:"queue"`
}

// openQueue opens the durable queue of signal's writes under
// dir/queue/<signal>, sending with send.
func (r RemoteBackend) openQueue(ctx context.Context, signal sendq.Signal, dir string, send sendq.Send, log *zap.Logger, reg prometheus.Registerer) (*sendq.Queue, string, error) {
	mp, err := sendq.MeterProvider(reg)
	if err != nil {
		return nil, "", err
	}
	return r.openQueueNamed(ctx, signal, string(signal), dir, r.Queue.Senders, int64(r.Queue.MaxBytes), send, log, mp)
}

// openQueueNamed opens the durable queue name (dir/queue/<name>) of
// signal's writes, with senders requests sent at once and maxBytes queued
// at most.
func (r RemoteBackend) openQueueNamed(ctx context.Context, signal sendq.Signal, name, dir string, senders int, maxBytes int64, send sendq.Send,
	log *zap.Logger, mp metric.MeterProvider) (*sendq.Queue, string, error) {
	queueDir := sendq.Dir(dir, name)
	q, err := sendq.Open(ctx, name, signal, sendq.Config{
		Dir: queueDir, MaxBytes: maxBytes, Senders: senders, Timeout: time.Duration(r.WriteTimeout),
		InitialInterval: time.Duration(r.Queue.MinBackoff), MaxInterval: time.Duration(r.Queue.MaxBackoff),
	}, send, log.Named(name+"-queue"), mp)
	return q, queueDir, err
}

// validate reports the first setting at path that cannot work.
func (r RemoteBackend) validate(path string) error {
	switch {
	case r.WriteTimeout <= 0 || r.QueryTimeout <= 0:
		return fmt.Errorf("%s: write_timeout and query_timeout must be positive", path)
	case r.MaxConcurrentQueries < 1 || r.MaxResponseBytes < 1:
		return fmt.Errorf("%s: max_concurrent_queries and max_response_bytes must be positive", path)
	}
	if err := r.Queue.validate(path + ".queue"); err != nil {
		return err
	}
	if err := r.HTTPClient.Validate(); err != nil {
		return fmt.Errorf("%s.http_client: %w", path, err)
	}
	return nil
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
	// samples (Prometheus' max_samples_per_send); metrics only.
	MaxSamplesPerRequest int `yaml:"max_samples_per_request,omitempty"`
	// MaxRequestBytes cuts a write into requests of about so many bytes
	// before compression (Promtail's batchsize; Loki refuses a push past
	// its tenant's burst size); logs only.
	MaxRequestBytes ByteSize `yaml:"max_request_bytes,omitempty"`
	// MinBackoff and MaxBackoff bound the wait between retries of a
	// request, which is retried until the backend takes it.
	MinBackoff Duration `yaml:"min_backoff"`
	MaxBackoff Duration `yaml:"max_backoff"`
}

// validate reports the first setting of the queue at path that cannot work.
func (q QueueConfig) validate(path string) error {
	switch {
	case q.MaxBytes < 1<<20 || q.Senders < 1:
		return fmt.Errorf("%s: max_bytes (at least 1MiB) and senders must be positive", path)
	case q.MinBackoff <= 0 || q.MaxBackoff < q.MinBackoff:
		return fmt.Errorf("%s: min_backoff must be positive and at most max_backoff", path)
	}
	return nil
}

// LogsStorage is where log lines are kept: local (the store's own
// partitions, the default) or remote (Loki).
type LogsStorage struct {
	Backend string           `yaml:"backend"`
	Remote  RemoteLogsConfig `yaml:"remote"`
}

// RemoteLogsConfig is the remote logs backend: Loki.
type RemoteLogsConfig struct {
	// PushURL is its push endpoint (e.g.
	// http://loki-gateway/loki/api/v1/push); QueryURL the base of its API
	// (e.g. http://loki-gateway).
	PushURL       string `yaml:"push_url"`
	QueryURL      string `yaml:"query_url"`
	RemoteBackend `yaml:",inline"`
	// TraceSelector is the stream selector a trace's lines are looked for
	// in (`| trace_id="…"` follows it); $services stands for a regexp of
	// the trace's services.
	TraceSelector string `yaml:"trace_selector"`
	// TraceMargin widens a trace's time range on each side when its lines
	// are looked for; a trace without spans is looked for over
	// TraceLookback before now.
	TraceMargin   Duration `yaml:"trace_margin"`
	TraceLookback Duration `yaml:"trace_lookback"`
	// MaxEntriesPerQuery is the most lines asked for at once: Loki's
	// max_entries_limit_per_query.
	MaxEntriesPerQuery int `yaml:"max_entries_per_query"`
}

// DefaultStorageConfig keeps every signal locally.
func DefaultStorageConfig() StorageConfig {
	backend := func(q QueueConfig) RemoteBackend {
		q.MaxBytes, q.Senders = 1<<30, 4
		q.MinBackoff, q.MaxBackoff = Duration(30*time.Millisecond), Duration(5*time.Second)
		return RemoteBackend{WriteTimeout: Duration(30 * time.Second), QueryTimeout: Duration(2 * time.Minute),
			MaxConcurrentQueries: 20, MaxResponseBytes: 256 << 20, Queue: q}
	}
	return StorageConfig{
		Metrics: MetricsStorage{Backend: backendLocal, Remote: RemoteMetricsConfig{
			RemoteBackend: backend(QueueConfig{MaxSamplesPerRequest: 2000}),
		}},
		Traces: TracesStorage{Backend: backendLocal, Remote: RemoteTracesConfig{
			API:           traceremote.APIJaeger,
			RemoteBackend: backend(QueueConfig{}),
		}},
		Logs: LogsStorage{Backend: backendLocal, Remote: RemoteLogsConfig{
			RemoteBackend:      backend(QueueConfig{MaxRequestBytes: 1 << 20}),
			TraceSelector:      `{service_name=~".+"}`,
			TraceMargin:        Duration(10 * time.Minute),
			TraceLookback:      Duration(24 * time.Hour),
			MaxEntriesPerQuery: 5000,
		}},
	}
}

// checkBackend reports a backend that is neither local nor remote; remote
// says whether it is remote.
func checkBackend(path, backend string) (remote bool, err error) {
	switch backend {
	case backendLocal:
		return false, nil
	case backendRemote:
		return true, nil
	}
	return false, fmt.Errorf("%s.backend %q: %s or %s", path, backend, backendLocal, backendRemote)
}

// Validate reports the first setting that cannot work.
func (c StorageConfig) Validate() error {
	if remote, err := checkBackend("storage.metrics", c.Metrics.Backend); err != nil {
		return err
	} else if remote {
		if err := c.Metrics.Remote.validate(); err != nil {
			return err
		}
	}
	if remote, err := checkBackend("storage.logs", c.Logs.Backend); err != nil {
		return err
	} else if remote {
		if err := c.Logs.Remote.validate(); err != nil {
			return err
		}
	}
	if remote, err := checkBackend("storage.traces", c.Traces.Backend); err != nil {
		return err
	} else if remote {
		return c.Traces.Remote.validate()
	}
	return nil
}

func (r RemoteTracesConfig) validate() error {
	switch {
	case r.OTLPURL == "" || r.QueryURL == "":
		return errors.New("storage.traces.remote: otlp_url and query_url are needed with the remote backend")
	case r.API != traceremote.APIJaeger && r.API != traceremote.APITempo:
		return fmt.Errorf("storage.traces.remote.api %q: %s (Jaeger v2's query API) or %s (Tempo's)", r.API, traceremote.APIJaeger, traceremote.APITempo)
	}
	return r.RemoteBackend.validate("storage.traces.remote")
}

func (r RemoteMetricsConfig) validate() error {
	switch {
	case r.WriteURL == "" || r.QueryURL == "":
		return errors.New("storage.metrics.remote: write_url and query_url are needed with the remote backend")
	case r.Queue.MaxSamplesPerRequest < 1:
		return errors.New("storage.metrics.remote.queue: max_samples_per_request must be positive")
	}
	return r.RemoteBackend.validate("storage.metrics.remote")
}

func (r RemoteLogsConfig) validate() error {
	switch {
	case r.PushURL == "" || r.QueryURL == "":
		return errors.New("storage.logs.remote: push_url and query_url are needed with the remote backend")
	case r.MaxEntriesPerQuery < 1:
		return errors.New("storage.logs.remote: max_entries_per_query must be positive")
	case !strings.HasPrefix(strings.TrimSpace(r.TraceSelector), "{"):
		return fmt.Errorf("storage.logs.remote.trace_selector %q: a stream selector, e.g. {service_name=~\"$services\"}", r.TraceSelector)
	case r.TraceMargin < 0 || r.TraceLookback <= 0:
		return errors.New("storage.logs.remote: trace_margin must not be negative, trace_lookback must be positive")
	case r.Queue.MaxRequestBytes < 1<<10:
		return errors.New("storage.logs.remote.queue: max_request_bytes must be at least 1KiB")
	}
	return r.RemoteBackend.validate("storage.logs.remote")
}

// remoteSignal is a tenant's remote backend of one signal: the store's
// side (S), the APIs' reads (B), and the queue of its writes.
type remoteSignal[S, B any] struct {
	store   S
	backend B
	queues  []*sendq.Queue
}

// close closes the queue (what it holds stays on disk for the next
// start); nil-safe.
func (r *remoteSignal[S, B]) close() error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, q := range r.queues {
		errs = append(errs, q.Close(context.Background()))
	}
	return errors.Join(errs...)
}

// The remote backends of each signal.
type (
	remoteMetrics = remoteSignal[*store.RemoteMetrics, *promremote.Backend]
	remoteLogs    = remoteSignal[*store.RemoteLogs, *lokiremote.Backend]
	remoteTraces  = remoteSignal[*store.RemoteTraces, *traceremote.Backend]
)

// openRemoteMetrics opens tenant id's remote metrics backend (nil when
// metrics are local): its durable queue under dir/queue/metrics.
func openRemoteMetrics(ctx context.Context, cfg Config, id, dir string, log *zap.Logger, reg prometheus.Registerer) (*remoteMetrics, error) {
	if cfg.Storage.Metrics.Backend != backendRemote {
		return nil, nil
	}
	r := cfg.Storage.Metrics.Remote
	headers := tenantHeaders(cfg, r.Headers, r.TenantHeader, id)
	send, err := remotewrite.NewSend(remotewrite.Config{URL: r.WriteURL, HTTP: r.HTTPClient, Headers: headers, Timeout: time.Duration(r.WriteTimeout)})
	if err != nil {
		return nil, err
	}
	// One queue per sender, each sending one request at a time, a series
	// always in the same one (by its labels' hash), as Prometheus' shards
	// do: a series' samples reach the backend in the order they came (a
	// backend without an out-of-order window refuses an older sample after
	// a newer one, the whole request with it). The first keeps the name
	// of the single queue earlier versions had, so what it holds is sent.
	mp, err := sendq.MeterProvider(reg)
	if err != nil {
		return nil, err
	}
	rm := &remoteMetrics{}
	var dirs []string
	for i := range r.Queue.Senders {
		name := string(sendq.Metrics)
		if i > 0 {
			name += "-" + strconv.Itoa(i)
		}
		q, queueDir, err := r.openQueueNamed(ctx, sendq.Metrics, name, dir, 1, max(int64(r.Queue.MaxBytes)/int64(r.Queue.Senders), 1<<20), send, log, mp)
		if err != nil {
			return nil, errors.Join(err, rm.close())
		}
		rm.queues = append(rm.queues, q)
		dirs = append(dirs, queueDir)
	}
	b, err := promremote.New(promremote.Config{URL: r.QueryURL, HTTP: r.HTTPClient, Headers: headers, Timeout: time.Duration(r.QueryTimeout),
		MaxConcurrent: r.MaxConcurrentQueries, MaxResponseBytes: int64(r.MaxResponseBytes)})
	if err != nil {
		return nil, errors.Join(err, rm.close())
	}
	app := remotewrite.New(rm.queues, r.Queue.MaxSamplesPerRequest)
	log.Info("metrics kept in a remote backend", zap.String("write_url", r.WriteURL), zap.String("query_url", r.QueryURL),
		zap.Strings("queues", dirs))
	rm.store = &store.RemoteMetrics{Appendable: app, Queryable: b, Exemplars: b, Metadata: b.Metadata}
	rm.backend = b
	return rm, nil
}

// tenantHeaders are the headers sent to a backend: the configured ones,
// and with tenants the tenant's id in tenantHeader.
func tenantHeaders(cfg Config, configured map[string]string, tenantHeader, id string) map[string]string {
	headers := maps.Clone(configured)
	if cfg.Tenants.Enabled && tenantHeader != "" {
		if headers == nil {
			headers = map[string]string{}
		}
		headers[tenantHeader] = id
	}
	return headers
}

// openRemoteLogs opens tenant id's remote logs backend (nil when lines are
// kept locally): its durable queue under dir/queue/logs.
func openRemoteLogs(ctx context.Context, cfg Config, id, dir string, log *zap.Logger, reg prometheus.Registerer) (*remoteLogs, error) {
	if cfg.Storage.Logs.Backend != backendRemote {
		return nil, nil
	}
	r := cfg.Storage.Logs.Remote
	headers := tenantHeaders(cfg, r.Headers, r.TenantHeader, id)
	send, err := lokipush.NewSend(httpsend.Config{URL: r.PushURL, HTTP: r.HTTPClient, Headers: headers, Timeout: time.Duration(r.WriteTimeout)})
	if err != nil {
		return nil, err
	}
	b, err := lokiremote.New(lokiremote.Config{URL: r.QueryURL, HTTP: r.HTTPClient, Headers: headers, Timeout: time.Duration(r.QueryTimeout),
		MaxConcurrent: r.MaxConcurrentQueries, MaxResponseBytes: int64(r.MaxResponseBytes),
		TraceSelector: r.TraceSelector, MaxEntries: r.MaxEntriesPerQuery})
	if err != nil {
		return nil, err
	}
	q, queueDir, err := r.openQueue(ctx, sendq.Logs, dir, send, log, reg)
	if err != nil {
		return nil, err
	}
	w := lokipush.New(q, int(r.Queue.MaxRequestBytes))
	log.Info("log lines kept in a remote backend", zap.String("push_url", r.PushURL), zap.String("query_url", r.QueryURL),
		zap.String("queue", queueDir))
	return &remoteLogs{
		store: &store.RemoteLogs{Write: w.Write, TraceLogs: b.TraceLogs,
			Margin: time.Duration(r.TraceMargin), Lookback: time.Duration(r.TraceLookback)},
		backend: b,
		queues:  []*sendq.Queue{q},
	}, nil
}

// openRemoteTraces opens tenant id's remote traces backend (nil when spans
// are kept locally): its durable queue under dir/queue/traces.
func openRemoteTraces(ctx context.Context, cfg Config, id, dir string, log *zap.Logger, reg prometheus.Registerer) (*remoteTraces, error) {
	if cfg.Storage.Traces.Backend != backendRemote {
		return nil, nil
	}
	r := cfg.Storage.Traces.Remote
	headers := tenantHeaders(cfg, r.Headers, r.TenantHeader, id)
	// As the Collector's otlphttp exporter sends: the specification's
	// retryable statuses.
	send, err := httpsend.New(httpsend.Config{What: "OTLP", URL: r.OTLPURL, ContentType: "application/x-protobuf", HTTP: r.HTTPClient,
		Headers: headers, Timeout: time.Duration(r.WriteTimeout), Retryable: httpsend.OTLPRetryable})
	if err != nil {
		return nil, err
	}
	b, err := traceremote.New(traceremote.Config{URL: r.QueryURL, API: r.API, HTTP: r.HTTPClient, Headers: headers,
		Timeout: time.Duration(r.QueryTimeout), MaxConcurrent: r.MaxConcurrentQueries, MaxResponseBytes: int64(r.MaxResponseBytes)})
	if err != nil {
		return nil, err
	}
	q, queueDir, err := r.openQueue(ctx, sendq.Traces, dir, send, log, reg)
	if err != nil {
		return nil, err
	}
	log.Info("spans kept in a remote backend", zap.String("otlp_url", r.OTLPURL), zap.String("query_url", r.QueryURL),
		zap.String("queue", queueDir))
	return &remoteTraces{
		store: &store.RemoteTraces{
			Write: func(ctx context.Context, body []byte, spans int) error {
				if err := q.Offer(ctx, body, spans); err != nil {
					if errors.Is(err, sendq.ErrFull) {
						return fmt.Errorf("%w: traces backend queue: %w", fault.ErrOverloaded, err)
					}
					return fmt.Errorf("traces backend queue: %w", err)
				}
				return nil
			},
			Trace:      b.Trace,
			Find:       b.Find,
			Services:   b.Services,
			Operations: b.Operations,
		},
		backend: b,
		queues:  []*sendq.Queue{q},
	}, nil
}
