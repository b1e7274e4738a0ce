package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lumenobs/lumen/ingest/logfields"
	"github.com/lumenobs/lumen/ingest/loki"
	"github.com/lumenobs/lumen/ingest/otlp"
	"github.com/lumenobs/lumen/ingest/promrw"
	"github.com/lumenobs/lumen/ingest/spanmetrics"
	"github.com/lumenobs/lumen/internal/auth"
	"github.com/lumenobs/lumen/internal/tlsconf"
	"github.com/lumenobs/lumen/query"
	"github.com/lumenobs/lumen/query/ruler"
	"github.com/lumenobs/lumen/store"
)

// Config is everything `lumen serve` can be told. Sources apply in order:
// defaults, the YAML file (--config or LUMEN_CONFIG), LUMEN_* environment
// variables, flags.
type Config struct {
	DataDir           string   `yaml:"data_dir"`
	HTTPAddr          string   `yaml:"http_addr"`
	Retention         Duration `yaml:"retention"`
	PartitionDuration Duration `yaml:"partition_duration"`
	MaxDiskBytes      ByteSize `yaml:"max_disk_bytes"`
	// MinFreeDiskBytes is the free-space floor under which writes are
	// refused (507); unset: 1 GiB or 5 % of the file system, whichever is
	// smaller; 0: none.
	MinFreeDiskBytes *ByteSize `yaml:"min_free_disk_bytes"`
	// DiskReserveBytes is the disk reserve, released when the disk is full
	// and the store must make a file; unset: what a writable partition
	// reserves at once and 16 MiB (96 MiB); 0: none.
	DiskReserveBytes *ByteSize `yaml:"disk_reserve_bytes"`
	// RejectOlderThan refuses samples and log lines older than this; 0:
	// the retention; negative: only those before 1970.
	RejectOlderThan Duration `yaml:"reject_older_than"`
	// Limits bound what the store's heads take in (docs/limits.md).
	Limits store.Limits `yaml:"limits"`
	// HeadIdleTimeout is how long a series or stream with nothing written
	// to it stays in memory.
	HeadIdleTimeout Duration `yaml:"head_idle_timeout"`
	// CheckpointInterval is how often the metrics and log heads write what
	// they hold and start a new WAL generation (which bounds the WAL and is
	// when idle series leave memory).
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// LogCompression is how log blocks are compressed: fast (zstd's
	// fastest level) or better (its better-compression level: about 8 %
	// less disk for about a third more CPU per line).
	LogCompression string `yaml:"log_compression"`
	// OutOfOrderWindow is how late a metric sample may arrive (relative to
	// its series' newest) and still be stored.
	OutOfOrderWindow Duration      `yaml:"out_of_order_window"`
	OTLP             otlp.Config   `yaml:"otlp"`
	RemoteWrite      promrw.Config `yaml:"remote_write"`
	LokiPush         loki.Config   `yaml:"loki_push"`
	// LogFields: the fields Loki 3 adds to log lines at ingest.
	LogFields   logfields.Config   `yaml:"log_fields"`
	SpanMetrics spanmetrics.Config `yaml:"span_metrics"`
	PromQL      query.PromConfig   `yaml:"promql"`
	LogQL       query.LokiConfig   `yaml:"logql"`
	Traces      query.TraceConfig  `yaml:"traces"`
	HTTP        HTTPConfig         `yaml:"http"`
	Log         LogConfig          `yaml:"log"`
	Pprof       bool               `yaml:"pprof"`
	// TLS is every listener's TLS (the HTTP port, OTLP gRPC and HTTP);
	// http.tls, otlp.grpc_tls and otlp.http_tls replace it for one.
	TLS tlsconf.Server `yaml:"tls"`
	// AuthFile, when set, is the tokens and users that may call Lumen and
	// their scopes (docs/security.md); unset: no authentication.
	AuthFile string `yaml:"auth_file"`
	// Tenants: every signal stored and queried per tenant (tenants.go).
	Tenants TenantsConfig `yaml:"tenants"`
	// RuleFiles are globs of rule files in Prometheus' format (PromQL);
	// LogQLRuleFiles in Loki ruler's (LogQL expressions): the default
	// tenant's rules (docs/alerting.md).
	RuleFiles      []string `yaml:"rule_files"`
	LogQLRuleFiles []string `yaml:"logql_rule_files"`
	// Rules is how rules are evaluated; Alerting where alerts go.
	Rules    ruler.Config         `yaml:"rules"`
	Alerting ruler.AlertingConfig `yaml:"alerting"`
	// AutoGoMemLimitRatio is the share of the container's (else the
	// machine's) memory given to Go as GOMEMLIMIT when it is not set, as
	// Prometheus' --auto-gomemlimit.ratio; 0 turns it off.
	AutoGoMemLimitRatio float64 `yaml:"auto_gomemlimit_ratio"`
	// GOGC is the garbage collector's target percentage when the GOGC
	// environment variable is not set: how far the heap may grow past
	// what the last collection left live before the next (Go's default is
	// 100, Prometheus' 75, VictoriaMetrics' 30). docs/memory.md.
	GOGC int `yaml:"gogc"`
	// Storage is where each signal is kept: locally or in a remote
	// backend (docs/scale-out.md).
	Storage StorageConfig `yaml:"storage"`
	// Replica, when set, names this server among replicas that share
	// remote backends: the series it makes itself (span metrics, the
	// service graph, recording rules, ALERTS, its own health) carry the
	// label lumen_replica with this value, so no two replicas write the
	// same series (docs/scale-out.md); empty: one server, no label.
	Replica string `yaml:"replica"`
	// GCMinHeap is the heap the collector lets grow to before collecting
	// however little is live (0: none): fewer collections while a small
	// heap answers queries. docs/memory.md.
	GCMinHeap       ByteSize `yaml:"gc_min_heap"`
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// HTTPConfig bounds the connections of the HTTP port (the UI, the query
// APIs, remote write and Loki push).
type HTTPConfig struct {
	// ReadTimeout bounds reading a request, headers and body: a client
	// that sends a body slower is cut off. ReadHeaderTimeout bounds the
	// headers alone.
	ReadTimeout       Duration `yaml:"read_timeout"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its answer; 0: the longest query timeout (promql, logql, traces)
	// plus a minute. Live tails are not bound by it.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout is how long a kept-alive connection may wait for its
	// next request.
	IdleTimeout    Duration `yaml:"idle_timeout"`
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// MaxConnections bounds the connections open at once; past it new ones
	// wait in the listen backlog until one closes.
	MaxConnections int `yaml:"max_connections"`
	// TrustedOrigins are the sites (scheme://host[:port]) whose pages may
	// send POSTs to the HTTP port from a browser; others are refused with
	// 403 (crossorigin.go). Clients that are not browsers are not affected.
	TrustedOrigins []string `yaml:"trusted_origins"`
	// AllowedHosts, when set, are the only Host names the HTTP port
	// answers (against DNS rebinding); empty: any.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// TLS, when set, replaces the shared tls block for this port.
	TLS *tlsconf.Server `yaml:"tls"`
	// MetricsAuth, with an auth file, makes /metrics need the read scope;
	// by default it stays open to scrapers, as /-/healthy and /-/ready do.
	MetricsAuth bool `yaml:"metrics_auth"`
}

// DefaultHTTPConfig returns the HTTP port's defaults.
func DefaultHTTPConfig() HTTPConfig {
	return HTTPConfig{
		ReadTimeout:       Duration(time.Minute),
		ReadHeaderTimeout: Duration(10 * time.Second),
		IdleTimeout:       Duration(2 * time.Minute),
		MaxHeaderBytes:    1 << 20,
		MaxConnections:    4096,
	}
}

// Validate reports the first setting that cannot work.
func (c HTTPConfig) Validate() error {
	if c.ReadTimeout <= 0 || c.ReadHeaderTimeout <= 0 || c.IdleTimeout <= 0 || c.MaxHeaderBytes <= 0 || c.MaxConnections <= 0 {
		return fmt.Errorf("http: read_timeout %s, read_header_timeout %s, idle_timeout %s, max_header_bytes %d and max_connections %d must be positive",
			c.ReadTimeout, c.ReadHeaderTimeout, c.IdleTimeout, c.MaxHeaderBytes, c.MaxConnections)
	}
	if _, err := browserGuard(c, http.NotFoundHandler()); err != nil {
		return err
	}
	if c.WriteTimeout < 0 {
		return fmt.Errorf("http: write_timeout %s is negative", c.WriteTimeout)
	}
	return c.TLS.Or(tlsconf.Server{}).Validate("http.tls")
}

// writeTimeout is the HTTP write timeout cfg asks for: the setting, or
// the longest query timeout plus a minute.
func (c Config) writeTimeout() time.Duration {
	if c.HTTP.WriteTimeout > 0 {
		return time.Duration(c.HTTP.WriteTimeout)
	}
	return max(c.PromQL.Timeout, c.LogQL.Timeout, c.Traces.Timeout) + time.Minute
}

// defaultQueryLength bounds the range of a PromQL or LogQL query whose
// max_query_length is 0: the retention plus an hour (so that "the last
// N days" of an N-day retention fits, aligned to its step), or Loki's 721h
// when everything is kept.
const defaultQueryLength = 721 * time.Hour

// queryLength is the bound on a query's range for a max_query_length.
func (c Config) queryLength(set time.Duration) time.Duration {
	switch {
	case set > 0:
		return set
	case c.Retention > 0:
		return time.Duration(c.Retention) + time.Hour
	}
	return defaultQueryLength
}

// minFreeDiskBytes is the store's floor option: 0 (the default) when
// unset, negative (none) when set to 0.
func (c Config) minFreeDiskBytes() int64 { return storeBytes(c.MinFreeDiskBytes) }

// diskReserveBytes is the store's reserve option, as minFreeDiskBytes.
func (c Config) diskReserveBytes() int64 { return storeBytes(c.DiskReserveBytes) }

// storeBytes is a store option where 0 means the default and negative
// none: 0 when b is unset, negative when it is set to 0.
func storeBytes(b *ByteSize) int64 {
	switch {
	case b == nil:
		return 0
	case *b == 0:
		return -1
	}
	return int64(*b)
}

// LogConfig configures Lumen's own logs.
type LogConfig struct {
	Format string `yaml:"format"` // console or json
	Level  string `yaml:"level"`  // debug, info, warn, error
}

// DefaultHTTPAddr is the port of the UI and every query API. It collides with
// none of Grafana (3000), Loki (3100), Tempo (3200), Prometheus (9090) and
// Jaeger (16686), so Lumen can run beside them.
const DefaultHTTPAddr = "0.0.0.0:4320"

// DefaultConfig is what `lumen serve` runs with when told nothing.
func DefaultConfig() Config {
	return Config{
		DataDir:             "./data",
		HTTPAddr:            DefaultHTTPAddr,
		Retention:           Duration(7 * 24 * time.Hour),
		PartitionDuration:   Duration(24 * time.Hour),
		OutOfOrderWindow:    Duration(10 * time.Minute),
		OTLP:                otlp.DefaultConfig(),
		RemoteWrite:         promrw.DefaultConfig(),
		LokiPush:            loki.DefaultConfig(),
		LogFields:           logfields.DefaultConfig(),
		SpanMetrics:         spanmetrics.DefaultConfig(),
		PromQL:              query.DefaultPromConfig(),
		LogQL:               query.DefaultLokiConfig(),
		Limits:              store.DefaultLimits(),
		HeadIdleTimeout:     Duration(store.DefaultHeadIdleTimeout),
		CheckpointInterval:  Duration(store.DefaultOptions("").MetricsCheckpointInterval),
		LogCompression:      store.LogCompressionFast,
		Traces:              query.DefaultTraceConfig(),
		HTTP:                DefaultHTTPConfig(),
		Tenants:             DefaultTenantsConfig(),
		Rules:               ruler.DefaultConfig(),
		Alerting:            ruler.DefaultAlertingConfig(),
		Log:                 LogConfig{Format: "console", Level: "info"},
		ShutdownTimeout:     Duration(30 * time.Second),
		AutoGoMemLimitRatio: 0.9,
		GOGC:                defaultGOGC,
		GCMinHeap:           defaultGCMinHeap,
		Storage:             DefaultStorageConfig(),
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("data_dir is empty")
	case c.HTTPAddr == "":
		return errors.New("http_addr is empty")
	case c.Retention < 0:
		return fmt.Errorf("retention %s is negative", c.Retention)
	case c.OutOfOrderWindow < 0:
		return fmt.Errorf("out_of_order_window %s is negative", c.OutOfOrderWindow)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("shutdown_timeout %s is not positive", c.ShutdownTimeout)
	}
	if c.LogCompression != store.LogCompressionFast && c.LogCompression != store.LogCompressionBetter {
		return fmt.Errorf("log_compression %q: %s or %s", c.LogCompression, store.LogCompressionFast, store.LogCompressionBetter)
	}
	if c.HeadIdleTimeout <= 0 || c.CheckpointInterval <= 0 {
		return fmt.Errorf("head_idle_timeout %s and checkpoint_interval %s must be positive", c.HeadIdleTimeout, c.CheckpointInterval)
	}
	for _, v := range []interface{ Validate() error }{c.PromQL, c.LogQL, c.Traces, c.HTTP, c.RemoteWrite, c.Limits, c.Storage} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	if err := c.SpanMetrics.Validate(); err != nil {
		return err
	}
	if c.GOGC < 1 || c.GOGC > 10000 {
		return fmt.Errorf("gogc %d is not between 1 and 10000", c.GOGC)
	}
	if c.AutoGoMemLimitRatio < 0 || c.AutoGoMemLimitRatio > 1 {
		return fmt.Errorf("auto_gomemlimit_ratio %g is not between 0 (off) and 1", c.AutoGoMemLimitRatio)
	}
	if err := c.LogFields.Validate(); err != nil {
		return err
	}
	if err := c.LokiPush.Validate(); err != nil {
		return err
	}
	if err := c.TLS.Validate("tls"); err != nil {
		return err
	}
	if err := c.Tenants.Validate(c.Limits); err != nil {
		return err
	}
	if err := c.Rules.Validate(); err != nil {
		return err
	}
	if err := c.Alerting.Validate(); err != nil {
		return err
	}
	if err := ruler.Check(c.RuleFiles, c.LogQLRuleFiles, nil); err != nil {
		return fmt.Errorf("rule files: %w", err)
	}
	if c.AuthFile != "" {
		f, err := auth.ReadFile(c.AuthFile)
		if err != nil {
			return err
		}
		if b := f.Bindings(); len(b) > 0 && !c.Tenants.Enabled {
			return fmt.Errorf("auth file %s binds tokens to tenants (%s) but tenants.enabled is off", c.AuthFile, strings.Join(b, ", "))
		}
	}
	return c.OTLP.Validate() // its own tls blocks; the shared one is checked above
}

// withListeners is c with each listener's TLS resolved (its own block,
// else the shared one).
func (c Config) withListeners() Config {
	h, g, o := c.HTTP.TLS.Or(c.TLS), c.OTLP.GRPCTLS.Or(c.TLS), c.OTLP.HTTPTLS.Or(c.TLS)
	c.HTTP.TLS, c.OTLP.GRPCTLS, c.OTLP.HTTPTLS = &h, &g, &o
	return c
}

// setting is one option of a configuration C that an environment variable
// and a flag can set.
type setting[C any] struct {
	flag, env, usage string
	set              func(*C, string) error
	boolean          bool // a flag that needs no value: --pprof means --pprof=true
}

// str sets a string field.
func str[C any](f func(*C) *string) func(*C, string) error {
	return func(c *C, v string) error { *f(c) = v; return nil }
}

// boolean sets a bool field.
func boolean[C any](f func(*C) *bool) func(*C, string) error {
	return func(c *C, v string) error {
		b, err := strconv.ParseBool(v)
		*f(c) = b
		return err
	}
}

func settings() []setting[Config] {
	return []setting[Config]{
		{"data-dir", "LUMEN_DATA_DIR", "directory of the store", str(func(c *Config) *string { return &c.DataDir }), false},
		{"replica", "LUMEN_REPLICA", "this server's name among replicas sharing remote backends: the series it makes itself carry lumen_replica=<name> (docs/scale-out.md)", str(func(c *Config) *string { return &c.Replica }), false},
		{"http-addr", "LUMEN_HTTP_ADDR", "address of the UI and the query APIs", str(func(c *Config) *string { return &c.HTTPAddr }), false},
		{"otlp-grpc-addr", "LUMEN_OTLP_GRPC_ADDR", "OTLP gRPC address (empty disables)", str(func(c *Config) *string { return &c.OTLP.GRPCAddr }), false},
		{"otlp-http-addr", "LUMEN_OTLP_HTTP_ADDR", "OTLP HTTP address (empty disables)", str(func(c *Config) *string { return &c.OTLP.HTTPAddr }), false},
		{"retention", "LUMEN_RETENTION", "how long data is kept, e.g. 7d, 36h (0 keeps everything)", func(c *Config, v string) error { return c.Retention.parse(v) }, false},
		{"partition-duration", "LUMEN_PARTITION_DURATION", "arrival-time span of one store partition, the unit retention drops", func(c *Config, v string) error { return c.PartitionDuration.parse(v) }, false},
		{"max-disk-bytes", "LUMEN_MAX_DISK_BYTES", "disk budget of the store, e.g. 50GiB (0: none); past it the oldest partitions are dropped", func(c *Config, v string) error { return c.MaxDiskBytes.parse(v) }, false},
		{"min-free-disk-bytes", "LUMEN_MIN_FREE_DISK_BYTES", "free-space floor of the data dir's file system: below it writes get 507 until space returns (default: 1GiB or 5% of the file system, whichever is smaller; 0: none)", optionalBytes(func(c *Config) **ByteSize { return &c.MinFreeDiskBytes }), false},
		{"disk-reserve-bytes", "LUMEN_DISK_RESERVE_BYTES", "disk reserve: a file in the data dir whose space is released when the disk is full and the store must make a file, so that it never meets a full disk it cannot answer (default: 112MiB; 0: none; none without a floor)", optionalBytes(func(c *Config) **ByteSize { return &c.DiskReserveBytes }), false},
		{"reject-older-than", "LUMEN_REJECT_OLDER_THAN", "refuse samples and log lines older than this, e.g. 14d (0: the retention; negative: only those before 1970)", func(c *Config, v string) error { return c.RejectOlderThan.parse(v) }, false},
		{"max-active-series", "LUMEN_MAX_ACTIVE_SERIES", "metric series in memory at once; a new one past it is refused (400) (0: none)", integer(func(c *Config) *int { return &c.Limits.MaxActiveSeries }), false},
		{"max-active-streams", "LUMEN_MAX_ACTIVE_STREAMS", "log streams in memory at once; a new one past it is refused (400) (0: none)", integer(func(c *Config) *int { return &c.Limits.MaxActiveStreams }), false},
		{"head-idle-timeout", "LUMEN_HEAD_IDLE_TIMEOUT", "how long a series or stream with nothing written to it stays in memory", func(c *Config, v string) error { return c.HeadIdleTimeout.parse(v) }, false},
		{"checkpoint-interval", "LUMEN_CHECKPOINT_INTERVAL", "how often the metrics and log heads are written and their WAL starts anew", func(c *Config, v string) error { return c.CheckpointInterval.parse(v) }, false},
		{"log-compression", "LUMEN_LOG_COMPRESSION", "how log blocks are compressed: fast, or better (about 8% less disk for about a third more CPU per line)", str(func(c *Config) *string { return &c.LogCompression }), false},
		{"log-format", "LUMEN_LOG_FORMAT", "console or json", str(func(c *Config) *string { return &c.Log.Format }), false},
		{"log-level", "LUMEN_LOG_LEVEL", "debug, info, warn or error", str(func(c *Config) *string { return &c.Log.Level }), false},
		{"tls-cert-file", "LUMEN_TLS_CERT_FILE", "TLS certificate (PEM) of every listener, read again when it changes", str(func(c *Config) *string { return &c.TLS.CertFile }), false},
		{"tls-key-file", "LUMEN_TLS_KEY_FILE", "TLS private key (PEM) of every listener", str(func(c *Config) *string { return &c.TLS.KeyFile }), false},
		{"tls-client-ca-file", "LUMEN_TLS_CLIENT_CA_FILE", "CA bundle client certificates must chain to: every client must present one (mTLS)", str(func(c *Config) *string { return &c.TLS.ClientCAFile }), false},
		{"auth-file", "LUMEN_AUTH_FILE", "tokens and basic-auth users with their scopes (read, write, admin); every route but health and the UI's files then needs one (docs/security.md)", str(func(c *Config) *string { return &c.AuthFile }), false},
		{"tenants", "LUMEN_TENANTS", "keep every signal per tenant: X-Scope-OrgID, or the tenant a token is bound to (docs/security.md)", boolean(func(c *Config) *bool { return &c.Tenants.Enabled }), true},
		{"rules", "LUMEN_RULES", "rule files (globs, comma-separated; the flag may be repeated) in Prometheus' format: recording and alerting rules in PromQL", appendList(func(c *Config) *[]string { return &c.RuleFiles }), false},
		{"logql-rules", "LUMEN_LOGQL_RULES", "rule files (globs, comma-separated; the flag may be repeated) in Loki ruler's format: recording and alerting rules in LogQL", appendList(func(c *Config) *[]string { return &c.LogQLRuleFiles }), false},
		{"alertmanager-url", "LUMEN_ALERTMANAGER_URL", "Alertmanager to send alerts to (comma-separated; the flag may be repeated), e.g. http://alertmanager:9093", alertmanagerURLs, false},
		{"alertmanager.url", "", "the same as --alertmanager-url, as Prometheus spells it", alertmanagerURLs, false},
		{"external-url", "LUMEN_EXTERNAL_URL", "URL Lumen's UI is reached at from outside: alerts link to it (default http://<hostname>:<HTTP port>)", str(func(c *Config) *string { return &c.Rules.ExternalURL }), false},
		{"rules-builtin", "LUMEN_RULES_BUILTIN", "ready-made rule sets to evaluate, comma-separated: spanmetrics (service error rate and p99 latency), lumen (Lumen's own health)", appendList(func(c *Config) *[]string { return &c.Rules.Builtin }), false},
		{"pprof", "LUMEN_PPROF", "serve /debug/pprof on the HTTP port", boolean(func(c *Config) *bool { return &c.Pprof }), true},
		{"auto-gomemlimit-ratio", "LUMEN_AUTO_GOMEMLIMIT_RATIO", "when GOMEMLIMIT is not set, set it to this share of the container's memory limit (else the machine's memory), as Prometheus does (0: off)", func(c *Config, v string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return fmt.Errorf("%q is not a number", v)
			}
			c.AutoGoMemLimitRatio = f
			return nil
		}, false},
		{"gogc", "LUMEN_GOGC", "the garbage collector's target percentage when GOGC is not set: lower keeps less memory for more CPU", func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%q is not a whole number", v)
			}
			c.GOGC = n
			return nil
		}, false},
		{"metrics-backend", "LUMEN_METRICS_BACKEND", "where metrics are kept: local (this store) or remote (storage.metrics.remote: a remote-write receiver with a Prometheus API)", str(func(c *Config) *string { return &c.Storage.Metrics.Backend }), false},
		{"metrics-remote-write-url", "LUMEN_METRICS_REMOTE_WRITE_URL", "the remote metrics backend's remote-write endpoint, e.g. http://mimir:8080/api/v1/push", str(func(c *Config) *string { return &c.Storage.Metrics.Remote.WriteURL }), false},
		{"metrics-remote-query-url", "LUMEN_METRICS_REMOTE_QUERY_URL", "the base of the remote metrics backend's Prometheus API, e.g. http://mimir:8080/prometheus", str(func(c *Config) *string { return &c.Storage.Metrics.Remote.QueryURL }), false},
		{"logs-backend", "LUMEN_LOGS_BACKEND", "where log lines are kept: local (this store) or remote (storage.logs.remote: Loki)", str(func(c *Config) *string { return &c.Storage.Logs.Backend }), false},
		{"logs-remote-push-url", "LUMEN_LOGS_REMOTE_PUSH_URL", "the remote logs backend's push endpoint, e.g. http://loki-gateway/loki/api/v1/push", str(func(c *Config) *string { return &c.Storage.Logs.Remote.PushURL }), false},
		{"logs-remote-query-url", "LUMEN_LOGS_REMOTE_QUERY_URL", "the base of the remote logs backend's Loki API, e.g. http://loki-gateway", str(func(c *Config) *string { return &c.Storage.Logs.Remote.QueryURL }), false},
		{"traces-backend", "LUMEN_TRACES_BACKEND", "where spans are kept: local (this store) or remote (storage.traces.remote: OTLP in, Jaeger's or Tempo's query API out)", str(func(c *Config) *string { return &c.Storage.Traces.Backend }), false},
		{"traces-remote-otlp-url", "LUMEN_TRACES_REMOTE_OTLP_URL", "the remote traces backend's OTLP/HTTP traces endpoint, e.g. http://jaeger-collector:4318/v1/traces", str(func(c *Config) *string { return &c.Storage.Traces.Remote.OTLPURL }), false},
		{"traces-remote-query-url", "LUMEN_TRACES_REMOTE_QUERY_URL", "the base of the remote traces backend's query API, e.g. http://jaeger-query:16686", str(func(c *Config) *string { return &c.Storage.Traces.Remote.QueryURL }), false},
		{"traces-remote-api", "LUMEN_TRACES_REMOTE_API", "the query API the remote traces backend speaks: jaeger (Jaeger v2, default) or tempo", str(func(c *Config) *string { return &c.Storage.Traces.Remote.API }), false},
		{"gc-min-heap", "LUMEN_GC_MIN_HEAP", "the heap the garbage collector lets grow to before collecting however little is live, when GOGC is not set, e.g. 256MiB (default 128MiB; 0: none; at most half of GOMEMLIMIT)", func(c *Config, v string) error {
			return c.GCMinHeap.parse(v)
		}, false},
		{"http-read-timeout", "LUMEN_HTTP_READ_TIMEOUT", "time to read a request, headers and body", func(c *Config, v string) error { return c.HTTP.ReadTimeout.parse(v) }, false},
		{"http-write-timeout", "LUMEN_HTTP_WRITE_TIMEOUT", "time to answer a request (0: the longest query timeout plus a minute)", func(c *Config, v string) error { return c.HTTP.WriteTimeout.parse(v) }, false},
		{"http-idle-timeout", "LUMEN_HTTP_IDLE_TIMEOUT", "how long a kept-alive connection may wait for its next request", func(c *Config, v string) error { return c.HTTP.IdleTimeout.parse(v) }, false},
		{"http-max-connections", "LUMEN_HTTP_MAX_CONNECTIONS", "connections open at once on the HTTP port", integer(func(c *Config) *int { return &c.HTTP.MaxConnections }), false},
		{"promql-max-concurrent", "LUMEN_PROMQL_MAX_CONCURRENT", "PromQL queries evaluated at once", integer(func(c *Config) *int { return &c.PromQL.MaxConcurrent }), false},
		{"promql-max-query-length", "LUMEN_PROMQL_MAX_QUERY_LENGTH", "longest PromQL range query, e.g. 30d (0: the retention plus an hour)", duration(func(c *Config) *time.Duration { return &c.PromQL.MaxQueryLength }), false},
		{"promql-results-cache-bytes", "LUMEN_PROMQL_RESULTS_CACHE_BYTES", "PromQL range-query answers kept to answer the same query again, steps older than promql.results_cache_horizon only, e.g. 64MiB (default 32MiB; 0: none)", func(c *Config, v string) error {
			var b ByteSize
			if err := b.parse(v); err != nil {
				return err
			}
			c.PromQL.ResultsCacheBytes = int64(b)
			return nil
		}, false},
		{"logql-max-concurrent", "LUMEN_LOGQL_MAX_CONCURRENT", "LogQL queries evaluated at once", integer(func(c *Config) *int { return &c.LogQL.MaxConcurrent }), false},
		{"logql-max-query-length", "LUMEN_LOGQL_MAX_QUERY_LENGTH", "longest LogQL range query, e.g. 30d (0: the retention plus an hour)", duration(func(c *Config) *time.Duration { return &c.LogQL.MaxQueryLength }), false},
		{"logql-max-tails", "LUMEN_LOGQL_MAX_TAILS", "live tails at once", integer(func(c *Config) *int { return &c.LogQL.MaxTails }), false},
		{"traces-max-concurrent", "LUMEN_TRACES_MAX_CONCURRENT", "trace searches (and trace lookups) each trace API serves at once", integer(func(c *Config) *int { return &c.Traces.MaxConcurrent }), false},
	}
}

// appendList adds the comma-separated items of a value to a list field
// (a repeated flag adds to the list).
func appendList[C any](f func(*C) *[]string) func(*C, string) error {
	return func(c *C, v string) error {
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				*f(c) = append(*f(c), item)
			}
		}
		return nil
	}
}

// alertmanagerURLs adds Alertmanagers by URL.
func alertmanagerURLs(c *Config, v string) error {
	var urls []string
	if err := appendList(func(*Config) *[]string { return &urls })(c, v); err != nil {
		return err
	}
	for _, u := range urls {
		c.Alerting.Alertmanagers = append(c.Alerting.Alertmanagers, ruler.AlertmanagerConfig{URL: u})
	}
	return nil
}

// optionalBytes sets a byte size whose absence means the default.
func optionalBytes(f func(*Config) **ByteSize) func(*Config, string) error {
	return func(c *Config, v string) error {
		var b ByteSize
		if err := b.parse(v); err != nil {
			return err
		}
		*f(c) = &b
		return nil
	}
}

// integer sets an int field.
func integer[C any](f func(*C) *int) func(*C, string) error {
	return func(c *C, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		*f(c) = n
		return nil
	}
}

// duration sets a time.Duration field; it takes a days suffix too ("30d").
func duration[C any](f func(*C) *time.Duration) func(*C, string) error {
	return func(c *C, v string) error {
		var d Duration
		if err := d.parse(v); err != nil {
			return err
		}
		*f(c) = time.Duration(d)
		return nil
	}
}

// loadConfig builds serve's configuration from defaults, the YAML file,
// the environment and the command line, in that order.
func loadConfig(args []string, env func(string) string, name string) (Config, error) {
	return load(args, env, name, DefaultConfig(), settings(), Config.Validate)
}

// load builds a configuration from cfg (the defaults), the YAML file
// (--config or LUMEN_CONFIG), the environment and the command line, in
// that order, and validates it.
func load[C any](args []string, env func(string) string, name string, cfg C, all []setting[C], validate func(C) error) (C, error) {
	var zero C
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	configPath := fs.String("config", env("LUMEN_CONFIG"), "YAML configuration file (env LUMEN_CONFIG)")
	type given struct {
		s setting[C]
		v string
	}
	var flags []given
	for _, s := range all {
		record := func(v string) error {
			flags = append(flags, given{s, v})
			return nil
		}
		help := s.usage
		if s.env != "" {
			help += " (env " + s.env + ")"
		}
		if s.boolean {
			fs.BoolFunc(s.flag, help, record)
		} else {
			fs.Func(s.flag, help, record)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return zero, usageError{usage(fs, name)}
		}
		return zero, fmt.Errorf("%w\n%s", err, usage(fs, name))
	}
	if fs.NArg() > 0 {
		return zero, fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), usage(fs, name))
	}
	if *configPath != "" {
		if err := readYAML(*configPath, &cfg); err != nil {
			return zero, err
		}
	}
	for _, s := range all {
		if v, ok := lookupEnv(env, s.env); ok && s.env != "" {
			if err := s.set(&cfg, v); err != nil {
				return zero, fmt.Errorf("%s=%q: %w", s.env, v, err)
			}
		}
	}
	for _, g := range flags {
		if err := g.s.set(&cfg, g.v); err != nil {
			return zero, fmt.Errorf("--%s=%q: %w", g.s.flag, g.v, err)
		}
	}
	if err := validate(cfg); err != nil {
		return zero, fmt.Errorf("configuration: %w", err)
	}
	return cfg, nil
}

func lookupEnv(env func(string) string, key string) (string, bool) {
	v := env(key)
	return v, v != ""
}

func readYAML(path string, cfg any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

type usageError struct{ text string }

func (u usageError) Error() string { return u.text }

func usage(fs *flag.FlagSet, name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: lumen %s [flags]\n\nFlags:\n", name)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(new(bytes.Buffer))
	return b.String()
}

// Duration is a time.Duration that also accepts a days suffix ("7d") and
// reads and writes as a string in YAML.
type Duration time.Duration

func (d *Duration) parse(s string) error {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(n * float64(24*time.Hour))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want e.g. 30s, 36h or 7d", s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return d.parse(n.Value) }

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize is a size in bytes that accepts units: 500MB, 50GiB, 1TB.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func (b *ByteSize) parse(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("size %q: want a number of bytes with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s)
	}
	*b = ByteSize(n * float64(mult))
	return nil
}

// UnmarshalYAML reads a size: a number of bytes or a string with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error { return b.parse(n.Value) }

// ruleSets are the rule files and ready-made sets of each tenant that has
// some: the default tenant's are the top-level ones; with tenants, the
// others' are tenants.rules.
func (c Config) ruleSets() map[string]TenantRules {
	sets := map[string]TenantRules{c.Tenants.Default: {RuleFiles: c.RuleFiles, LogQLRuleFiles: c.LogQLRuleFiles, Builtin: c.Rules.Builtin}}
	if c.Tenants.Enabled {
		for id, r := range c.Tenants.Rules {
			sets[id] = r
		}
	}
	return sets
}

// ruleSummary is what check-config says of the rule files: how many
// groups and rules each tenant's hold.
func ruleSummary(cfg Config) string {
	var b strings.Builder
	sets := cfg.ruleSets()
	ids := make([]string, 0, len(sets))
	for id := range sets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r := sets[id]
		groups, rules, err := ruler.Count(r.RuleFiles, r.LogQLRuleFiles, r.Builtin)
		if err != nil || groups == 0 {
			continue // errors are Validate's
		}
		fmt.Fprintf(&b, "rules of tenant %s: %d groups, %d rules\n", id, groups, rules)
	}
	return b.String()
}
