package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/promql"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"

	"github.com/lumenobs/lumen/ingest/logfields"
	"github.com/lumenobs/lumen/ingest/loki"
	"github.com/lumenobs/lumen/ingest/otlp"
	"github.com/lumenobs/lumen/ingest/promrw"
	"github.com/lumenobs/lumen/ingest/spanmetrics"
	"github.com/lumenobs/lumen/internal/auth"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/promremote"
	"github.com/lumenobs/lumen/internal/telemetry"
	"github.com/lumenobs/lumen/query"
	"github.com/lumenobs/lumen/query/lokiremote"
	"github.com/lumenobs/lumen/query/ruler"
	"github.com/lumenobs/lumen/query/traceremote"
	"github.com/lumenobs/lumen/store"
	"github.com/lumenobs/lumen/ui"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := loadConfig(args, os.Getenv, "serve")
		if err != nil {
			return helpOK(err, stdout)
		}
		return serve(ctx, cfg, stderr, nil)
	case "agent":
		cfg, err := loadAgentConfig(args, os.Getenv)
		if err != nil {
			return helpOK(err, stdout)
		}
		return runAgent(ctx, cfg, stderr, nil)
	case "migrate":
		o, rest, err := parseMigrate(args, time.Now())
		if err != nil {
			return helpOK(err, stdout)
		}
		cfg, err := loadConfig(rest, os.Getenv, "migrate")
		if err != nil {
			return helpOK(err, stdout)
		}
		return migrate(ctx, o, cfg, stdout)
	case "check-config":
		cfg, err := loadConfig(args, os.Getenv, "check-config")
		if err != nil {
			return helpOK(err, stdout)
		}
		fmt.Fprintf(stdout, "configuration is valid: data dir %s, HTTP %s, OTLP gRPC %s, OTLP HTTP %s, retention %s\n",
			cfg.DataDir, cfg.HTTPAddr, cfg.OTLP.GRPCAddr, cfg.OTLP.HTTPAddr, cfg.Retention)
		fmt.Fprint(stdout, ruleSummary(cfg))
		return nil
	case "version":
		fmt.Fprintf(stdout, "lumen %s (%s)\n", version, goVersion())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, topUsage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, topUsage)
	}
}

const topUsage = `Usage: lumen [command] [flags]

Commands:
  serve          ingest, store and query traces, logs and metrics (the default)
  agent          the node agent: container logs, OTLP from the node's pods and node
                 metrics, shipped to lumen serve through an on-disk buffer
  migrate        copy a local store's data into the remote backends the configuration
                 names (docs/scale-out.md)
  check-config   load the configuration, report what is wrong, and exit
  version        print the version

Run 'lumen serve -h' or 'lumen agent -h' for the flags.
`

func helpOK(err error, stdout io.Writer) error {
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprint(stdout, u.text)
		return nil
	}
	return err
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown go version"
}

// serve runs `lumen serve` until ctx is done. started, if not nil, is called
// once every listener is open.
func serve(ctx context.Context, cfg Config, stderr io.Writer, started func()) error {
	log, err := telemetry.NewLogger(cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log.Info("starting lumen", zap.String("version", version), zap.String("data_dir", cfg.DataDir),
		zap.String("http_addr", cfg.HTTPAddr), zap.String("otlp_grpc_addr", cfg.OTLP.GRPCAddr), zap.String("otlp_http_addr", cfg.OTLP.HTTPAddr))

	setMemoryLimit(log, cfg.AutoGoMemLimitRatio, memoryLimit)
	if percent, ours := setGCPercent(log, cfg.GOGC); ours {
		defer startGCMinHeap(log, int64(cfg.GCMinHeap), percent, debug.SetMemoryLimit(-1)).stop()
	}
	cfg = cfg.withListeners()
	warnExposed(log, cfg)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ingestMetrics := telemetry.NewIngest(reg)
	authn, err := openAuth(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	notifier, err := ruler.NewNotifier(cfg.Alerting, cfg.Rules.ExternalLabels, log, reg)
	if err != nil {
		return err
	}
	var ready atomic.Bool
	tenants, err := newTenantSet(cfg, log, reg, ingestMetrics, &ready, notifier)
	if err != nil {
		notifier.Stop()
		return err
	}
	defer func() {
		if err := tenants.close(); err != nil {
			log.Error("close store", zap.Error(err))
		}
		notifier.Stop() // after the rules: their last alerts are sent
	}()
	// Rule files are read again on SIGHUP, as Prometheus does.
	onSIGHUP(ctx, tenants.reloadRules, func() { log.Info("rule files reloaded on SIGHUP") })
	cfg.OTLP.Auth = authn
	if cfg.Tenants.Enabled {
		cfg.OTLP.DefaultTenant = cfg.Tenants.Default
	}
	var traces otlp.Writer = tenantWriter{tenants}
	rcv, err := otlp.New(cfg.OTLP, traces, log, ingestMetrics, version)
	if err != nil {
		return err
	}
	reg.MustRegister(counterFunc("lumen_ingest_otlp_admission_refused_total",
		"OTLP requests refused before decoding: past otlp.max_in_flight_bytes (HTTP) or otlp.max_in_flight_requests (gRPC).",
		func() float64 { return float64(rcv.Refused()) }))
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	ln = netutil.LimitListener(ln, cfg.HTTP.MaxConnections)
	guarded, err := browserGuard(cfg.HTTP, tenants.handler(authn))
	if err != nil {
		_ = ln.Close()
		return err
	}
	srv := newHTTPServer(cfg, guarded, log)
	if srv.TLSConfig, err = cfg.HTTP.TLS.Load(); err != nil {
		_ = ln.Close()
		return fmt.Errorf("http.tls: %w", err)
	}
	if err := rcv.Start(ctx); err != nil {
		_ = ln.Close()
		return err
	}
	httpErr := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			httpErr <- srv.ServeTLS(ln, "", "") // certificates from TLSConfig, reloaded as they change
			return
		}
		httpErr <- srv.Serve(ln)
	}()
	ready.Store(true)
	log.Info("lumen is ready", zap.String("http", ln.Addr().String()))
	if started != nil {
		started()
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-httpErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	// Stop accepting, let requests in progress finish (and be stored), then
	// the deferred Close flushes the store.
	ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	if err := rcv.Shutdown(sctx); err != nil {
		log.Error("stop otlp receiver", zap.Error(err))
	}
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("stop http server", zap.Error(err))
	}
	return runErr
}

// newHTTPServer returns the server of the HTTP port, its timeouts and
// header size bounded as cfg says.
func newHTTPServer(cfg Config, h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadTimeout:       time.Duration(cfg.HTTP.ReadTimeout),
		ReadHeaderTimeout: time.Duration(cfg.HTTP.ReadHeaderTimeout),
		WriteTimeout:      cfg.writeTimeout(),
		IdleTimeout:       time.Duration(cfg.HTTP.IdleTimeout),
		MaxHeaderBytes:    int(cfg.HTTP.MaxHeaderBytes),
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
}

// observingWriter counts the spans it stores into span metrics and the
// service graph.
type observingWriter struct {
	fieldWriter
	gen *spanmetrics.Generator
}

// fieldWriter adds the fields Loki 3 adds at ingest (service_name,
// detected_level: ingest/logfields) to every log line written, whether
// it came by Loki push or OTLP.
type fieldWriter struct {
	*store.DB
	det *logfields.Detector
}

func (w fieldWriter) WriteLogStreams(ctx context.Context, streams []store.LogStream) error {
	w.det.Apply(streams)
	return w.DB.WriteLogStreams(ctx, streams)
}

func (w fieldWriter) WriteLogs(ctx context.Context, ld plog.Logs) error {
	return w.WriteLogStreams(ctx, store.OTLPLogStreams(ld))
}

func (w observingWriter) WriteTraces(ctx context.Context, td ptrace.Traces) error {
	spans := spanmetrics.Extract(td) // before the store takes td
	if err := w.DB.WriteTraces(ctx, td); err != nil {
		return err
	}
	w.gen.Observe(spans)
	return nil
}

func (w observingWriter) WriteTraceRequest(ctx context.Context, req *store.TraceRequest) error {
	spans := spanmetrics.FromRequest(req)
	if err := w.DB.WriteTraceRequest(ctx, req); err != nil {
		return err
	}
	w.gen.Observe(spans)
	return nil
}

// muxExtras are what a tenant's routes share with the rest of its stack.
type muxExtras struct {
	engine      *promql.Engine
	ruler       *ruler.Ruler // nil: no rules
	notifier    *ruler.Notifier
	reloadRules func() error
	// metricsBackend, when metrics are kept remotely, answers the
	// Prometheus API's queries.
	metricsBackend *promremote.Backend
	// logsBackend, when lines are kept remotely, answers the Loki API's
	// queries and finds an alert's lines.
	logsBackend *lokiremote.Backend
	// tracesBackend, when spans are kept remotely, answers the Jaeger
	// API's searches.
	tracesBackend *traceremote.Backend
}

// newMux is the routes of one tenant's store; its metrics are registered
// with reg, /metrics gathers gatherer (the whole server's).
func newMux(cfg Config, db *store.DB, reg prometheus.Registerer, gatherer prometheus.Gatherer, log *zap.Logger, im *telemetry.Ingest, ready *atomic.Bool, x muxExtras) (*routeTable, error) {
	routes := newRouteTable()
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lumen_http_request_duration_seconds",
		Help:    "Time to answer HTTP API requests, by route and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		// Also a native histogram, for scrapers that ask for protobuf.
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  100,
		NativeHistogramMinResetDuration: time.Hour,
	}, []string{"handler", "code"})
	if err := telemetry.Register(reg, durations); err != nil {
		return nil, err
	}
	wrap := func(route string, h http.Handler) http.Handler {
		return promhttp.InstrumentHandlerDuration(durations.MustCurryWith(prometheus.Labels{"handler": route}), h)
	}
	registerQueryAPIs(routes, cfg, db, reg, gatherer, log, wrap, x)
	rw, err := promrw.New(cfg.RemoteWrite, db, db, log, reg, im)
	if err != nil {
		return nil, err
	}
	routes.handle(auth.Write, "POST /api/v1/write", wrap("/api/v1/write", rw))
	lp, err := loki.New(cfg.LokiPush, fieldWriter{DB: db, det: logfields.New(cfg.LogFields)}, log, im)
	if err != nil {
		return nil, err
	}
	routes.handle(auth.Write, "POST /loki/api/v1/push", wrap("/loki/api/v1/push", lp))
	metricsScope := auth.Public // Lumen's own metrics: no data, no secrets
	if cfg.HTTP.MetricsAuth {
		metricsScope = auth.Read
	}
	routes.handle(metricsScope, "GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{Registry: reg}))
	routes.handleFunc(auth.Public, "GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "Lumen is Healthy.\n")
	})
	routes.handleFunc(auth.Public, "GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "Lumen is not ready.", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "Lumen is Ready.\n")
	})
	if cfg.Pprof {
		routes.handleFunc(auth.Admin, "GET /debug/pprof/", pprof.Index)
		routes.handleFunc(auth.Admin, "GET /debug/pprof/cmdline", pprof.Cmdline)
		routes.handleFunc(auth.Admin, "GET /debug/pprof/profile", pprof.Profile)
		routes.handleFunc(auth.Admin, "GET /debug/pprof/symbol", pprof.Symbol)
		routes.handleFunc(auth.Admin, "GET /debug/pprof/trace", pprof.Trace)
	}
	routes.handle(auth.Read, "GET /api/v1/tenants", tenantsInfo(cfg.Tenants))
	// Prometheus' reload: the rule files are read again (the auth file
	// reloads by itself).
	routes.handleFunc(auth.Admin, "POST /-/reload", func(w http.ResponseWriter, _ *http.Request) {
		if err := x.reloadRules(); err != nil {
			http.Error(w, "failed to reload rule files: "+err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "rule files reloaded\n")
	})
	// An alert's generatorURL (Prometheus' /graph link) opens the UI.
	routes.handle(auth.Public, "GET /graph", ruler.GraphRedirect())
	// The UI's files hold no data (every call it makes needs read); they
	// are served to anyone so that the UI can ask for a token.
	routes.handle(auth.Public, "GET /", ui.Handler())
	return routes, nil
}

// remoteMetricsRoutes are the Prometheus API's routes a remote metrics
// backend answers.
var remoteMetricsRoutes = []string{"query", "query_range", "series", "labels", "label/{name}/values", "query_exemplars", "metadata", "format_query", "parse_query"}

// registerQueryAPIs adds the query APIs to routes (the read scope),
// sharing one counter of the queries their limits refuse.
func registerQueryAPIs(routes *routeTable, cfg Config, db *store.DB, reg prometheus.Registerer, gatherer prometheus.Gatherer, log *zap.Logger, wrap query.Wrap, x muxExtras) {
	qm := query.NewMetrics(reg)
	logql, promql := cfg.LogQL, cfg.PromQL
	promql.CORSOrigins = cfg.HTTP.TrustedOrigins
	logql.TrustedOrigins = cfg.HTTP.TrustedOrigins
	logql.MaxQueryLength, promql.MaxQueryLength = cfg.queryLength(logql.MaxQueryLength), cfg.queryLength(promql.MaxQueryLength)
	read := routes.scoped(auth.Read)
	if x.metricsBackend != nil {
		query.New(db, cfg.Traces, qm, log).RegisterTraces(read, wrap)
	} else {
		query.New(db, cfg.Traces, qm, log).Register(read, wrap)
	}
	loki := query.NewLoki(db, logql, qm, log)
	if b := x.logsBackend; b != nil {
		// The backend's own answers to every Loki read route.
		proxy := b.Proxy()
		for _, path := range query.LokiReadRoutes {
			h := wrap(path+" (logs backend)", proxy)
			read.Handle("GET "+path, h)
			read.Handle("POST "+path, h)
		}
		read.Handle("GET /loki/api/v1/tail", wrap("/loki/api/v1/tail (logs backend)", loki.RemoteTail(b.DialTail)))
	} else {
		loki.Register(read, wrap)
	}
	tempo := query.NewTempo(db, store.DefaultSearchAttributes, version, cfg.Traces, qm, log)
	switch b := x.tracesBackend; {
	case b != nil && b.API() == traceremote.APIJaeger:
		// Jaeger's own answers to its API (Lumen's /jaeger/api/… is its
		// /api/…); Tempo's API and Lumen's search are Lumen's, over
		// Jaeger's reads.
		proxy := b.Proxy(func(p string) string { return strings.TrimPrefix(p, query.JaegerPrefix) })
		for _, path := range query.JaegerRoutes {
			read.Handle("GET "+query.JaegerPrefix+path, wrap(query.JaegerPrefix+path+" (traces backend)", proxy))
		}
		tempo.Register(read, wrap)
	case b != nil:
		// Tempo's own answers to its API; Jaeger's API and Lumen's search
		// are Lumen's, over Tempo's reads.
		proxy := b.Proxy(func(p string) string { return p })
		for _, path := range query.TempoRoutes {
			read.Handle("GET "+path, wrap(path+" (traces backend)", proxy))
		}
		tempo.RegisterSearch(read, wrap)
		query.NewJaeger(db, cfg.Traces, qm, log).Register(read, wrap)
	default:
		tempo.Register(read, wrap)
		query.NewJaeger(db, cfg.Traces, qm, log).Register(read, wrap)
	}
	// Every other /api/v1 route is Prometheus' own API; the more specific
	// routes take precedence. Its admin routes (off: they answer that
	// they are disabled) need the admin scope.
	var rules func(context.Context) query.RulesRetriever
	if x.ruler != nil {
		rules = func(ctx context.Context) query.RulesRetriever {
			if query.WantsLogQLRules(ctx) {
				return x.ruler.LogQL()
			}
			return x.ruler.PromQL()
		}
	}
	var ams query.AlertmanagerRetriever
	if x.notifier != nil {
		ams = x.notifier
	}
	prom := query.NewPromAPI(promql, x.engine, db, db, query.PromSources{Rules: rules, Alertmanagers: ams}, log, reg, gatherer, qm, version)
	promAPI := wrap("/api/v1 (prometheus)", prom)
	routes.handle(auth.Read, "GET /api/v1/", promAPI)
	routes.handle(auth.Read, "POST /api/v1/", promAPI)
	if b := x.metricsBackend; b != nil {
		// The backend's own answers: PromQL, series, labels, exemplars and
		// metadata (Lumen's rules, alerts and status stay Lumen's).
		proxy := wrap("/api/v1 (metrics backend)", b.Proxy("/api/v1"))
		for _, path := range remoteMetricsRoutes {
			routes.handle(auth.Read, "GET /api/v1/"+path, proxy)
			if path != "metadata" {
				routes.handle(auth.Read, "POST /api/v1/"+path, proxy)
			}
		}
	}
	routes.handle(auth.Admin, "POST /api/v1/admin/", promAPI)
	// Loki's ruler: its Prometheus-shaped rules and alerts of the LogQL
	// rules (what Grafana lists for a Loki), and its YAML read API.
	lokiRulesAPI := http.StripPrefix("/prometheus", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prom.ServeHTTP(w, r.WithContext(query.WithLogQLRules(r.Context())))
	}))
	routes.handle(auth.Read, "GET /prometheus/api/v1/rules", wrap("/prometheus/api/v1/rules", lokiRulesAPI))
	routes.handle(auth.Read, "GET /prometheus/api/v1/alerts", wrap("/prometheus/api/v1/alerts", lokiRulesAPI))
	lokiRules := wrap("/loki/api/v1/rules", ruler.LokiRules(func(*http.Request) *ruler.Ruler { return x.ruler }))
	routes.handle(auth.Read, "GET /loki/api/v1/rules", lokiRules)
	routes.handle(auth.Read, "GET /loki/api/v1/rules/{namespace}", lokiRules)
	routes.handle(auth.Read, "GET /loki/api/v1/rules/{namespace}/{group}", lokiRules)
	routes.handle(auth.Read, "GET /api/prom/rules", lokiRules) // Loki's older path
	routes.handle(auth.Read, "GET /api/v1/alert_evidence", wrap("/api/v1/alert_evidence", ruler.EvidenceHandler(func(*http.Request) ruler.EvidenceSource {
		src := ruler.EvidenceSource{Exemplars: db, Logs: db, LogQLMaxLines: cfg.LogQL.MaxLines,
			Trace: func(ctx context.Context, id model.TraceID) (ptrace.Traces, error) {
				t, err := db.TraceSpans(ctx, id)
				return t.Spans, err
			}}
		if x.logsBackend != nil {
			src.LogQL = x.logsBackend
		}
		return src
	}, loki.Admit)))
}

// registerStoreMetrics exposes the store's size, read when scraped.
func registerStoreMetrics(reg prometheus.Registerer, db *store.DB) error {
	stats := func() store.Stats { s, _ := db.Stats(); return s }
	cs := append([]prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lumen_store_disk_bytes",
			Help: "Bytes the store's files take on disk.",
		}, func() float64 { return float64(stats().DiskBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lumen_store_partitions",
			Help: "Time partitions in the store.",
		}, func() float64 { return float64(len(stats().Partitions)) }),
		newWALSkipCollector(db),
	}, headAndDiskMetrics(db)...)
	return telemetry.Register(reg, cs...)
}
