package query

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
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

	"github.com/lumenobs/lumen/internal/limits"
	"github.com/lumenobs/lumen/internal/promcache"
	"github.com/lumenobs/lumen/internal/promdirect"
	"github.com/lumenobs/lumen/internal/promsplit"
	"github.com/lumenobs/lumen/internal/telemetry"
)

// This file is the one place that calls Prometheus' web/api/v1.NewAPI: its
// signature moves between Prometheus minors.

// PromConfig configures the Prometheus-compatible query API.
type PromConfig struct {
	// CORSOrigins are the origins (scheme://host[:port]) a browser may read
	// answers from across sites (Access-Control-Allow-Origin); none by
	// default. Prometheus allows every origin unless told otherwise
	// (--web.cors.origin); Lumen, which holds logs as well, allows none.
	// Set from http.trusted_origins.
	CORSOrigins []string `yaml:"-"`
	// Timeout bounds one query's time, its wait for a slot included.
	Timeout time.Duration `yaml:"timeout"`
	// MaxSamples bounds the samples one query may load at once.
	MaxSamples int `yaml:"max_samples"`
	// LookbackDelta is how far back an instant vector looks for a sample.
	LookbackDelta time.Duration `yaml:"lookback_delta"`
	// MaxConcurrent bounds the queries (query, query_range) evaluated at
	// once; MaxQueued more wait for a slot (up to Timeout), and past them
	// a query is a 503 (errorType unavailable) with Retry-After.
	MaxConcurrent int `yaml:"max_concurrent"`
	MaxQueued     int `yaml:"max_queued"`
	// MaxQueryLength bounds end - start of a range query; 0: no bound.
	MaxQueryLength time.Duration `yaml:"max_query_length"`
	// RemoteReadConcurrency bounds the remote-read requests served at once
	// (more wait), as Prometheus' --storage.remote.read-concurrent-limit;
	// RemoteReadSampleLimit bounds the samples one returns, as
	// --storage.remote.read-sample-limit.
	RemoteReadConcurrency int `yaml:"remote_read_concurrency"`
	RemoteReadSampleLimit int `yaml:"remote_read_sample_limit"`
	// RangeQueryParts is how many parts, over consecutive runs of its
	// steps, a range query of at least 16 steps is asked in at once
	// (internal/promsplit): 0 is one per core (GOMAXPROCS), 1 never splits.
	// The answer is the same; each part holds one of the max_concurrent
	// slots' worth of engine work on a core of its own.
	RangeQueryParts int `yaml:"range_query_parts"`
	// ResultsCacheBytes bounds the range-query answers kept to answer the
	// same query again (internal/promcache): only steps older than
	// ResultsCacheHorizon, dropped when the store's data before the horizon
	// changes. 0 keeps none.
	ResultsCacheBytes   int64         `yaml:"results_cache_bytes"`
	ResultsCacheHorizon time.Duration `yaml:"results_cache_horizon"`
	// DirectEvaluation evaluates a query or rule that aggregates (sum,
	// count, min, max, avg, by or without) rate(), increase(), irate() or
	// sum/count/max/min_over_time() over one selector series by series on
	// range_query_parts cores, with the engine's arithmetic, instead of
	// through the engine (internal/promdirect). The answer is the same, to
	// the bit; false leaves every query to the engine.
	DirectEvaluation bool `yaml:"direct_evaluation"`
}

// DefaultPromConfig returns Prometheus' own defaults, but for
// MaxConcurrent: Prometheus' 20 assumes a server of its own, Lumen's
// queries share the process with ingest and the other APIs.
func DefaultPromConfig() PromConfig {
	return PromConfig{Timeout: 2 * time.Minute, MaxSamples: 50_000_000, LookbackDelta: 5 * time.Minute, MaxConcurrent: 4, MaxQueued: 100,
		RemoteReadConcurrency: 10, RemoteReadSampleLimit: 50_000_000, ResultsCacheBytes: 32 << 20, ResultsCacheHorizon: 5 * time.Minute, DirectEvaluation: true}
}

// Validate reports the first setting that cannot work.
func (c PromConfig) Validate() error {
	if c.Timeout <= 0 || c.MaxSamples <= 0 || c.LookbackDelta <= 0 || c.MaxConcurrent <= 0 || c.RemoteReadConcurrency <= 0 || c.RemoteReadSampleLimit <= 0 {
		return fmt.Errorf("promql: timeout %s, max_samples %d, lookback_delta %s, max_concurrent %d, remote_read_concurrency %d and remote_read_sample_limit %d must be positive",
			c.Timeout, c.MaxSamples, c.LookbackDelta, c.MaxConcurrent, c.RemoteReadConcurrency, c.RemoteReadSampleLimit)
	}
	if c.MaxQueued < 0 || c.MaxQueryLength < 0 || c.RangeQueryParts < 0 || c.ResultsCacheBytes < 0 {
		return fmt.Errorf("promql: max_queued %d, max_query_length %s, range_query_parts %d and results_cache_bytes %d must not be negative",
			c.MaxQueued, c.MaxQueryLength, c.RangeQueryParts, c.ResultsCacheBytes)
	}
	if c.ResultsCacheBytes > 0 && c.ResultsCacheHorizon <= 0 {
		return fmt.Errorf("promql: results_cache_horizon %s must be positive when results_cache_bytes is set", c.ResultsCacheHorizon)
	}
	return nil
}

// remoteReadMaxBytesInFrame is Prometheus' default size of a streamed
// remote-read frame.
const remoteReadMaxBytesInFrame = 1 << 20

// PromAPI serves Prometheus' HTTP API (/api/v1/query, query_range, series,
// labels, label values, query_exemplars, metadata, status/buildinfo, read,
// …) with Prometheus' own handlers over Lumen's storage.
type PromAPI struct {
	router *route.Router
	cfg    PromConfig
	lim    *limits.Limiter
	m      *Metrics
}

// NewPromEngine is the PromQL engine of one tenant's API and rules.
func NewPromEngine(cfg PromConfig, log *zap.Logger, reg prometheus.Registerer) *promql.Engine {
	if log == nil {
		log = zap.NewNop()
	}
	return promql.NewEngine(promql.EngineOpts{
		Logger:               telemetry.Slog(log.Named("query.prometheus")),
		Reg:                  reg,
		MaxSamples:           cfg.MaxSamples,
		Timeout:              cfg.Timeout,
		LookbackDelta:        cfg.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		ActiveQueryTracker:   nil,
		// A subquery without a step ([5m:]) steps at the rule evaluation
		// interval, Prometheus' default of one minute.
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
	})
}

// RulesRetriever is what /api/v1/rules and /api/v1/alerts list: a rule
// manager's groups and alerting rules.
type RulesRetriever = v1.RulesRetriever

// AlertmanagerRetriever is what /api/v1/alertmanagers lists.
type AlertmanagerRetriever = v1.AlertmanagerRetriever

// PromSources are what the API lists besides the data: the rules (nil:
// none) and the Alertmanagers alerts go to (nil: none). Rules is given
// the request's context: WithLogQLRules marks the requests that list the
// LogQL rules (Loki's ruler API answers in Prometheus' shape).
type PromSources struct {
	Rules         func(ctx context.Context) RulesRetriever
	Alertmanagers AlertmanagerRetriever
}

type logqlRulesKey struct{}

// WithLogQLRules marks a request as asking for the LogQL rules.
func WithLogQLRules(ctx context.Context) context.Context {
	return context.WithValue(ctx, logqlRulesKey{}, true)
}

// WantsLogQLRules reports whether WithLogQLRules marked ctx.
func WantsLogQLRules(ctx context.Context) bool {
	v, _ := ctx.Value(logqlRulesKey{}).(bool)
	return v
}

// NewPromAPI builds the API over q with engine. version is Lumen's,
// reported by /api/v1/status/buildinfo; m, if not nil, counts what its
// limits refuse.
func NewPromAPI(cfg PromConfig, engine promql.QueryEngine, q storage.SampleAndChunkQueryable, eq storage.ExemplarQueryable, src PromSources, log *zap.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer, m *Metrics, version string) *PromAPI {
	if log == nil {
		log = zap.NewNop()
	}
	slogger := telemetry.Slog(log.Named("query.prometheus"))
	rulesOf := func(ctx context.Context) v1.RulesRetriever {
		if src.Rules != nil {
			if r := src.Rules(ctx); r != nil {
				return r
			}
		}
		return noTargets{}
	}
	var ams v1.AlertmanagerRetriever = noTargets{}
	if src.Alertmanagers != nil {
		ams = src.Alertmanagers
	}
	started := time.Now()
	if cfg.RangeQueryParts != 1 {
		engine = &promsplit.Engine{QueryEngine: engine, Parts: cfg.RangeQueryParts}
	}
	if cfg.DirectEvaluation {
		engine = promdirect.New(engine, nil, cfg.MaxSamples, cfg.Timeout, cfg.RangeQueryParts, reg)
	}
	if src, ok := q.(promcache.Source); ok && cfg.ResultsCacheBytes > 0 {
		engine = promcache.New(engine, src, cfg.ResultsCacheHorizon, cfg.ResultsCacheBytes, nil, reg)
	}
	api := v1.NewAPI(
		engine,
		q,
		nil, nil, // appendables: remote write is served by ingest/promrw
		eq,
		func(context.Context) v1.ScrapePoolsRetriever { return noTargets{} },
		func(context.Context) v1.TargetRetriever { return noTargets{} },
		func(context.Context) v1.AlertmanagerRetriever { return ams },
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
		rulesOf,
		cfg.RemoteReadSampleLimit, cfg.RemoteReadConcurrency, remoteReadMaxBytesInFrame,
		false, // isAgent
		corsOrigin(cfg.CORSOrigins),
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
	return &PromAPI{router: router, cfg: cfg, lim: limits.New("PromQL queries", cfg.MaxConcurrent, cfg.MaxQueued), m: m}
}

// ServeHTTP serves the API's routes under /api/v1.
func (p *PromAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/v1/query", "/api/v1/query_range":
		p.query(w, r)
	default:
		p.router.ServeHTTP(w, r)
	}
}

// query hands an instant or range query to Prometheus' handler once its
// step and range pass and one of the API's slots is free, within the
// PromQL timeout.
func (p *PromAPI) query(w http.ResponseWriter, r *http.Request) {
	if err := p.checkRange(r); err != nil {
		p.fail(w, err)
		return
	}
	ctx, done, err := admit(r, p.lim, p.cfg.Timeout)
	if err != nil {
		p.fail(w, err)
		return
	}
	defer done()
	p.router.ServeHTTP(w, r.WithContext(ctx))
}

func (p *PromAPI) fail(w http.ResponseWriter, err error) {
	p.m.count(apiPrometheus, err)
	writeError(w, err)
}

// checkRange refuses a range query whose step is under a millisecond
// (Prometheus' engine divides by the step in milliseconds) or too fine for
// the range, or whose range is over MaxQueryLength. Parameters that do not
// parse are left to Prometheus' handler, which says what is wrong.
func (p *PromAPI) checkRange(r *http.Request) error {
	if r.URL.Path != "/api/v1/query_range" || r.ParseForm() != nil {
		return nil
	}
	start, okStart := promTime(r.FormValue("start"))
	end, okEnd := promTime(r.FormValue("end"))
	step, okStep := promDuration(r.FormValue("step"))
	if !okStart || !okEnd || !okStep || step <= 0 || end.Before(start) {
		return nil
	}
	if err := checkStep(r.FormValue("step"), step, start, end); err != nil {
		return err
	}
	return checkLength(start, end, p.cfg.MaxQueryLength)
}

// promTime parses a time as Prometheus' API does: unix seconds, RFC 3339,
// or its formatted minimum and maximum times.
func promTime(s string) (time.Time, bool) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1000)/1000*float64(time.Second))).UTC(), true
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	switch s {
	case v1.MinTime.Format(time.RFC3339Nano):
		return v1.MinTime, true
	case v1.MaxTime.Format(time.RFC3339Nano):
		return v1.MaxTime, true
	}
	return time.Time{}, false
}

// promDuration parses a step as Prometheus' API does: seconds or a
// Prometheus duration.
func promDuration(s string) (time.Duration, bool) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		d := f * float64(time.Second)
		return time.Duration(d), !math.IsNaN(d) && d < math.MaxInt64 && d > math.MinInt64
	}
	d, err := model.ParseDuration(s)
	return time.Duration(d), err == nil
}

// noTargets answers the API's questions about scraping (Lumen receives
// pushed data), and about rules and Alertmanagers when there are none.
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

// corsOrigin is the origins Prometheus' API answers across sites, as the
// regexp it takes: exactly those listed, none when none are (a nil one
// would fail every request that carries an Origin header).
func corsOrigin(origins []string) *regexp.Regexp {
	if len(origins) == 0 {
		return regexp.MustCompile(`^\b\B$`) // matches nothing
	}
	quoted := make([]string, len(origins))
	for i, o := range origins {
		quoted[i] = regexp.QuoteMeta(o)
	}
	return regexp.MustCompile(`^(?:` + strings.Join(quoted, "|") + `)$`)
}
