package query

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/notifications"
	v1 "github.com/prometheus/prometheus/web/api/v1"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/telemetry"
)

// This file is the one place that calls Prometheus' web/api/v1.NewAPI: its
// signature moves between Prometheus minors.

// PromConfig configures the Prometheus-compatible query API.
type PromConfig struct {
	// Timeout bounds one query's evaluation.
	Timeout time.Duration `yaml:"timeout"`
	// MaxSamples bounds the samples one query may load at once.
	MaxSamples int `yaml:"max_samples"`
	// LookbackDelta is how far back an instant vector looks for a sample.
	LookbackDelta time.Duration `yaml:"lookback_delta"`
	// MaxConcurrent bounds the queries evaluated at once.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// DefaultPromConfig returns Prometheus' own defaults.
func DefaultPromConfig() PromConfig {
	return PromConfig{Timeout: 2 * time.Minute, MaxSamples: 50_000_000, LookbackDelta: 5 * time.Minute, MaxConcurrent: 20}
}

// PromAPI serves Prometheus' HTTP API (/api/v1/query, query_range, series,
// labels, label values, query_exemplars, metadata, status/buildinfo, …) with
// Prometheus' own handlers over Lumen's storage.
type PromAPI struct {
	router *route.Router
}

// NewPromAPI builds the API over q. version is Lumen's, reported by
// /api/v1/status/buildinfo.
func NewPromAPI(cfg PromConfig, q storage.SampleAndChunkQueryable, eq storage.ExemplarQueryable, log *zap.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer, version string) *PromAPI {
	if log == nil {
		log = zap.NewNop()
	}
	slogger := telemetry.Slog(log.Named("query.prometheus"))
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:               slogger,
		Reg:                  reg,
		MaxSamples:           cfg.MaxSamples,
		Timeout:              cfg.Timeout,
		LookbackDelta:        cfg.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		ActiveQueryTracker:   nil,
	})
	started := time.Now()
	api := v1.NewAPI(
		engine,
		q,
		nil, nil, // appendables: remote write is served by ingest/promrw
		eq,
		func(context.Context) v1.ScrapePoolsRetriever { return noTargets{} },
		func(context.Context) v1.TargetRetriever { return noTargets{} },
		func(context.Context) v1.AlertmanagerRetriever { return noTargets{} },
		func() config.Config { return config.DefaultConfig },
		map[string]string{},
		v1.GlobalURLOptions{},
		func(f http.HandlerFunc) http.HandlerFunc { return f },
		nil,   // TSDB admin stats: Lumen's store is not a Prometheus TSDB
		"",    // db dir
		false, // enableAdmin
		false, // enableSearch
		0,     // maxSearchLimit
		slogger,
		func(context.Context) v1.RulesRetriever { return noTargets{} },
		0, 0, 0, // remote read limits
		false, // isAgent
		nil,   // CORS origin
		func() (v1.RuntimeInfo, error) {
			host, _ := os.Hostname()
			cwd, _ := os.Getwd()
			return v1.RuntimeInfo{StartTime: started, CWD: cwd, Hostname: host, ServerTime: time.Now(), GoroutineCount: runtime.NumGoroutine(), GOMAXPROCS: runtime.GOMAXPROCS(0)}, nil
		},
		&v1.PrometheusVersion{Version: version, GoVersion: runtime.Version()},
		func() []notifications.Notification { return nil },
		func() (<-chan notifications.Notification, func(), bool) { return nil, func() {}, false },
		gatherer,
		reg,
		nil,   // stats renderer
		false, // remote write: served by ingest/promrw
		nil,
		false, false, false, // OTLP: served by ingest/otlp
		false, // ST zero ingestion
		cfg.LookbackDelta,
		false, // type and unit labels
		false, // append metadata
		nil,   // override error code
		nil,   // feature registry
		v1.OpenAPIOptions{},
		parser.NewParser(parser.Options{}),
	)
	router := route.New()
	api.Register(router.WithPrefix("/api/v1"))
	return &PromAPI{router: router}
}

// ServeHTTP serves the API's routes under /api/v1.
func (p *PromAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.router.ServeHTTP(w, r) }

// noTargets answers the API's questions about scraping, alerting and rules:
// Lumen receives pushed data and evaluates no rules.
type noTargets struct{}

func (noTargets) ScrapePools() []string                                 { return nil }
func (noTargets) TargetsActive() map[string][]*scrape.Target            { return nil }
func (noTargets) TargetsDropped() map[string][]*scrape.Target           { return nil }
func (noTargets) TargetsDroppedCounts() map[string]int                  { return nil }
func (noTargets) ScrapePoolConfig(string) (*config.ScrapeConfig, error) { return nil, nil }
func (noTargets) Alertmanagers() []*url.URL                             { return nil }
func (noTargets) DroppedAlertmanagers() []*url.URL                      { return nil }
func (noTargets) RuleGroups() []*rules.Group                            { return nil }
func (noTargets) AlertingRules() []*rules.AlertingRule                  { return nil }
