package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/lumenobs/lumen/ingest/logfields"
	"github.com/lumenobs/lumen/ingest/otlp"
	"github.com/lumenobs/lumen/ingest/spanmetrics"
	"github.com/lumenobs/lumen/internal/auth"
	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/promdirect"
	"github.com/lumenobs/lumen/internal/replica"
	"github.com/lumenobs/lumen/internal/telemetry"
	"github.com/lumenobs/lumen/internal/tenant"
	"github.com/lumenobs/lumen/query"
	"github.com/lumenobs/lumen/query/ruler"
	"github.com/lumenobs/lumen/store"
)

// goUntilStopped runs run in a goroutine until the returned stop is
// called; stop returns once run has.
func goUntilStopped(run func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); run(ctx) }()
	return func() { cancel(); <-done }
}

// instanceOf is the host:port of an http(s) URL, for the instance label.
func instanceOf(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return u
}

// TenantsConfig turns tenants on: every signal stored, indexed and
// queried per tenant (docs/security.md).
type TenantsConfig struct {
	// Enabled: requests are their tenant's (X-Scope-OrgID, or the tenant a
	// token is bound to); off, everything is the default tenant's.
	Enabled bool `yaml:"enabled"`
	// Default is the tenant of requests that name none, whose store is
	// the data dir itself (where a store written before tenants is).
	Default string `yaml:"default"`
	// MaxTenants bounds the tenants with a store; a request for a new one
	// past it is refused (400, a limit).
	MaxTenants int `yaml:"max_tenants"`
	// Limits are a tenant's own store limits (the keys of limits), over
	// the server's.
	Limits map[string]yaml.Node `yaml:"limits"`
	// Rules are a tenant's own rules (the default tenant's are the
	// top-level rule_files and logql_rule_files); a tenant with rules is
	// opened at start, so that they are evaluated.
	Rules map[string]TenantRules `yaml:"rules"`
}

// TenantRules are one tenant's rule files and ready-made rule sets.
type TenantRules struct {
	RuleFiles      []string `yaml:"rule_files"`
	LogQLRuleFiles []string `yaml:"logql_rule_files"`
	Builtin        []string `yaml:"builtin"`
}

// DefaultTenantsConfig: off; "default"; at most 64.
func DefaultTenantsConfig() TenantsConfig {
	return TenantsConfig{Default: "default", MaxTenants: 64}
}

// tenantsDir holds the stores of the tenants but the default one.
const tenantsDir = "tenants"

// limitsOf is the store limits of tenant id: base, with its overrides.
func (c TenantsConfig) limitsOf(id string, base store.Limits) (store.Limits, error) {
	n, ok := c.Limits[id]
	if !ok {
		return base, nil
	}
	l := base
	if err := n.Decode(&l); err != nil {
		return base, fmt.Errorf("tenants.limits.%s: %w", id, err)
	}
	return l, l.Validate()
}

// Validate reports the first setting that cannot work.
func (c TenantsConfig) Validate(base store.Limits) error {
	if err := tenant.ValidID(c.Default); err != nil {
		return fmt.Errorf("tenants.default: %w", err)
	}
	if c.MaxTenants < 1 {
		return fmt.Errorf("tenants.max_tenants %d is not positive", c.MaxTenants)
	}
	for id := range c.Limits {
		if err := tenant.ValidID(id); err != nil {
			return fmt.Errorf("tenants.limits: %w", err)
		}
		if _, err := c.limitsOf(id, base); err != nil {
			return err
		}
	}
	for id, r := range c.Rules {
		if err := tenant.ValidID(id); err != nil {
			return fmt.Errorf("tenants.rules: %w", err)
		}
		if id == c.Default {
			return fmt.Errorf("tenants.rules.%s: the default tenant's rules are the top-level rule_files, logql_rule_files and rules.builtin", id)
		}
		if !c.Enabled {
			return fmt.Errorf("tenants.rules.%s: tenants.enabled is off", id)
		}
		if err := ruler.Check(r.RuleFiles, r.LogQLRuleFiles, r.Builtin); err != nil {
			return fmt.Errorf("tenants.rules.%s: %w", id, err)
		}
	}
	return nil
}

// tenantStack is one tenant's store and what writes to it and reads it.
type tenantStack struct {
	id       string
	db       *store.DB
	remote   *remoteMetrics // nil: metrics are kept locally
	logs     *remoteLogs    // nil: lines are kept locally
	traces   *remoteTraces  // nil: spans are kept locally
	writer   otlp.Writer    // adds log fields; counts span metrics
	routes   *routeTable
	stopGen  func()
	ruler    *ruler.Ruler // nil: the tenant has no rules
	stopSelf func()
}

// tenantSet opens each tenant's store and stack when first asked for,
// the default tenant's at start.
type tenantSet struct {
	cfg   Config
	log   *zap.Logger
	reg   *prometheus.Registry
	im    *telemetry.Ingest
	ready *atomic.Bool
	group *store.DiskGroup
	// notifier sends every tenant's alerts (nil: no Alertmanager);
	// externalURL is the UI's from outside.
	notifier    *ruler.Notifier
	externalURL string

	mu      sync.Mutex
	stacks  map[string]*tenantStack
	opening map[string]*opening
	empty   *tenantStack // forRead's, opened under emptyMu
	emptyMu sync.Mutex
	closed  bool
}

var errTooManyTenants = errors.New("too many tenants")

func newTenantSet(cfg Config, log *zap.Logger, reg *prometheus.Registry, im *telemetry.Ingest, ready *atomic.Bool, n *ruler.Notifier) (*tenantSet, error) {
	s := &tenantSet{cfg: cfg, log: log, reg: reg, im: im, ready: ready, stacks: map[string]*tenantStack{}, opening: map[string]*opening{},
		notifier: n, externalURL: cfg.Rules.ExternalURLOr(ruler.DefaultExternalURL(cfg.HTTPAddr, cfg.HTTP.TLS.Or(cfg.TLS).Enabled()))}
	if cfg.Tenants.Enabled && cfg.MaxDiskBytes > 0 {
		s.group = store.NewDiskGroup()
	}
	if _, err := s.get(s.defaultID()); err != nil {
		return nil, err
	}
	// A tenant with rules is opened now: its rules are evaluated whether
	// or not it is written to.
	for id := range cfg.Tenants.Rules {
		if _, err := s.get(id); err != nil {
			return nil, errors.Join(err, s.close())
		}
	}
	return s, nil
}

// reloadRules reads every open tenant's rule files again; a tenant whose
// files have an error keeps its rules before.
func (s *tenantSet) reloadRules() error {
	s.mu.Lock()
	var rulers []*ruler.Ruler
	for _, st := range s.stacks {
		if st.ruler != nil {
			rulers = append(rulers, st.ruler)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, r := range rulers {
		errs = append(errs, r.Reload())
	}
	return errors.Join(errs...)
}

func (s *tenantSet) defaultID() string { return s.cfg.Tenants.Default }

// get is tenant id's stack, opened now when it is not yet.
func (s *tenantSet) get(id string) (*tenantStack, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, store.ErrClosed
	}
	if st, ok := s.stacks[id]; ok {
		s.mu.Unlock()
		return st, nil
	}
	if o, ok := s.opening[id]; ok {
		s.mu.Unlock()
		<-o.done
		return o.st, o.err
	}
	if len(s.stacks)+len(s.opening) >= s.cfg.Tenants.MaxTenants {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: tenant %q would be one more than tenants.max_tenants (%d)", errTooManyTenants, id, s.cfg.Tenants.MaxTenants)
	}
	// Opened outside the lock (a store's open replays its WALs): the other
	// tenants' requests go on meanwhile; this tenant's wait for it.
	o := &opening{done: make(chan struct{})}
	s.opening[id] = o
	s.mu.Unlock()
	o.st, o.err = s.open(id)
	s.mu.Lock()
	delete(s.opening, id)
	if o.err == nil && s.closed { // closed while it opened
		s.mu.Unlock()
		if err := o.st.close(); err != nil {
			s.log.Error("close store", zap.Error(err))
		}
		o.st, o.err = nil, store.ErrClosed
		close(o.done)
		return nil, o.err
	}
	if o.err == nil {
		s.stacks[id] = o.st
	}
	s.mu.Unlock()
	close(o.done)
	return o.st, o.err
}

// opening is a tenant's stack being opened: done closes when st or err
// is set.
type opening struct {
	done chan struct{}
	st   *tenantStack
	err  error
}

// close stops the stack's rules and span metrics, then closes its store.
func (st *tenantStack) close() error {
	if st.ruler != nil {
		st.ruler.Stop()
	}
	st.stopSelf()
	st.stopGen()
	if err := errors.Join(st.db.Close(), st.remote.close(), st.logs.close(), st.traces.close()); err != nil {
		return fmt.Errorf("close store of tenant %q: %w", st.id, err)
	}
	return nil
}

// open builds tenant id's stack: its store (the data dir for the default
// tenant, data/tenants/<id> for the others), its writers and its routes,
// its metrics labelled with the tenant when there are tenants.
func (s *tenantSet) open(id string) (*tenantStack, error) {
	cfg := s.cfg
	log := s.log
	reg := prometheus.Registerer(s.reg)
	if cfg.Tenants.Enabled {
		log = log.With(zap.String("tenant", id))
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"tenant": id}, s.reg)
	}
	// One disk reserve serves the whole process: the default tenant's,
	// released for whichever store meets the full disk.
	so := store.DefaultOptions(filepath.Join(cfg.DataDir, tenantsDir, id))
	so.DiskReserveBytes = -1
	if id == s.defaultID() {
		so = store.DefaultOptions(cfg.DataDir)
		so.ExcludeDir = tenantsDir
		so.DiskReserveBytes = cfg.diskReserveBytes()
	}
	so.Retention = time.Duration(cfg.Retention)
	so.PartitionDuration = time.Duration(cfg.PartitionDuration)
	so.MaxDiskBytes = int64(cfg.MaxDiskBytes)
	if id != emptyDir {
		so.DiskGroup = s.group
	}
	so.MinFreeDiskBytes = cfg.minFreeDiskBytes()
	so.RejectOlderThan = time.Duration(cfg.RejectOlderThan)
	limits, err := cfg.Tenants.limitsOf(id, cfg.Limits)
	if err != nil {
		return nil, err
	}
	so.Limits = limits
	so.HeadIdleTimeout = time.Duration(cfg.HeadIdleTimeout)
	so.MetricsCheckpointInterval = time.Duration(cfg.CheckpointInterval)
	so.LogCheckpointInterval = time.Duration(cfg.CheckpointInterval)
	so.LogCompression = cfg.LogCompression
	so.MetricsOutOfOrderWindow = time.Duration(cfg.OutOfOrderWindow)
	so.Logger = log.Named("store")
	remote, err := openRemoteMetrics(context.Background(), cfg, id, so.Dir, log, reg)
	if err != nil {
		return nil, fmt.Errorf("metrics backend of tenant %q: %w", id, err)
	}
	if remote != nil {
		so.RemoteMetrics = remote.store
	}
	rlogs, err := openRemoteLogs(context.Background(), cfg, id, so.Dir, log, reg)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("logs backend of tenant %q: %w", id, err), remote.close())
	}
	if rlogs != nil {
		so.RemoteLogs = rlogs.store
	}
	rtraces, err := openRemoteTraces(context.Background(), cfg, id, so.Dir, log, reg)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("traces backend of tenant %q: %w", id, err), remote.close(), rlogs.close())
	}
	if rtraces != nil {
		so.RemoteTraces = rtraces.store
	}
	db, err := store.Open(so)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open store of tenant %q: %w", id, err), remote.close(), rlogs.close(), rtraces.close())
	}
	closeStore := func() {
		_ = db.Close()
		_ = remote.close()
		_ = rlogs.close()
		_ = rtraces.close()
	}
	if err := registerStoreMetrics(reg, db); err != nil {
		closeStore()
		return nil, err
	}
	// What this server makes itself is written as this replica's.
	own := replica.Appendable(db, cfg.Replica)
	st := &tenantStack{id: id, db: db, remote: remote, logs: rlogs, traces: rtraces, stopGen: func() {}, stopSelf: func() {}}
	fields := fieldWriter{DB: db, det: logfields.New(cfg.LogFields)}
	st.writer = fields
	if cfg.SpanMetrics.Enabled {
		gen := spanmetrics.New(cfg.SpanMetrics, own, log)
		if err := telemetry.Register(reg, spanMetricsMetrics(gen)...); err != nil {
			closeStore()
			return nil, err
		}
		st.writer = observingWriter{fieldWriter: fields, gen: gen}
		// Stopped before the store closes: the last counts are written.
		st.stopGen = goUntilStopped(gen.Run)
	}
	engine := query.NewPromEngine(cfg.PromQL, log, reg)
	var ruleEngine promql.QueryEngine = engine
	if cfg.PromQL.DirectEvaluation {
		// A recording rule's sum by (…) (rate(…)) over many series too.
		ruleEngine = promdirect.New(engine, nil, cfg.PromQL.MaxSamples, cfg.PromQL.Timeout, cfg.PromQL.RangeQueryParts, reg)
	}
	rs := s.cfg.ruleSets()[id]
	if id != emptyDir && (len(rs.RuleFiles) > 0 || len(rs.LogQLRuleFiles) > 0 || len(rs.Builtin) > 0) {
		rc := cfg.Rules
		rc.Builtin = rs.Builtin
		o := ruler.Options{PromFiles: rs.RuleFiles, LogQLFiles: rs.LogQLRuleFiles, Config: rc, ExternalURL: s.externalURL,
			Engine: ruleEngine, Queryable: db, Appendable: own, Logs: db, LogQLMaxLines: cfg.LogQL.MaxLines,
			Notifier: s.notifier, Log: log, Reg: reg}
		if rlogs != nil {
			o.LogQL = rlogs.backend
		}
		if cfg.Tenants.Enabled {
			o.Tenant = id
		}
		if st.ruler, err = ruler.New(o); err != nil {
			st.stopGen()
			closeStore()
			return nil, fmt.Errorf("rules of tenant %q: %w", id, err)
		}
	}
	x := muxExtras{engine: engine, ruler: st.ruler, notifier: s.notifier, reloadRules: s.reloadRules}
	if remote != nil {
		x.metricsBackend = remote.backend
	}
	if rlogs != nil {
		x.logsBackend = rlogs.backend
	}
	if rtraces != nil {
		x.tracesBackend = rtraces.backend
	}
	if st.routes, err = newMux(cfg, db, reg, s.reg, log, s.im, s.ready, x); err != nil {
		if st.ruler != nil {
			st.ruler.Stop()
		}
		st.stopGen()
		closeStore()
		return nil, err
	}
	if st.ruler != nil {
		st.ruler.Run()
		if slices.Contains(rs.Builtin, "lumen") {
			// Lumen's own metrics, for the rules that watch it.
			target := labels.FromStrings("job", "lumen", "instance", instanceOf(s.externalURL))
			st.stopSelf = goUntilStopped(func(ctx context.Context) {
				ruler.SelfMetrics(ctx, s.reg, own, cfg.Rules.EvaluationInterval, target, log)
			})
		}
	}
	if id != s.defaultID() {
		s.log.Info("tenant opened", zap.String("tenant", id))
	}
	return st, nil
}

// close stops every tenant's span metrics, then closes its store.
func (s *tenantSet) close() error {
	s.mu.Lock()
	s.closed = true
	stacks := make([]*tenantStack, 0, len(s.stacks)+1)
	for _, st := range s.stacks {
		stacks = append(stacks, st)
	}
	if s.empty != nil {
		stacks = append(stacks, s.empty)
	}
	s.mu.Unlock()
	var errs []error
	for _, st := range stacks {
		errs = append(errs, st.close())
	}
	return errors.Join(errs...)
}

// tailPath is the live tail's route: a tail of a tenant that has written
// nothing yet opens its store, so that it sees the lines when they come.
const tailPath = "/loki/api/v1/tail"

// emptyDir holds the store that answers reads of tenants that have
// written nothing (no tenant ID holds '#').
const emptyDir = "#empty"

// forRead is tenant id's stack for a read: its store when it has one (on
// disk or open), else an empty store's, so that reading a tenant that has
// written nothing makes no store for it.
func (s *tenantSet) forRead(id string) (*tenantStack, error) {
	s.mu.Lock()
	st, ok := s.stacks[id]
	s.mu.Unlock()
	if ok {
		return st, nil
	}
	if _, err := os.Stat(filepath.Join(s.cfg.DataDir, tenantsDir, id)); err == nil {
		return s.get(id)
	}
	// Opened once, under its own lock: the other tenants' lookups do not
	// wait for it.
	s.emptyMu.Lock()
	defer s.emptyMu.Unlock()
	s.mu.Lock()
	st, closed := s.empty, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return nil, store.ErrClosed
	case st != nil:
		return st, nil
	}
	st, err := s.open(emptyDir)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // closed while it opened
		return nil, errors.Join(store.ErrClosed, st.close())
	}
	s.empty = st
	return st, nil
}

// handler serves the HTTP port: a request is authenticated for its
// route's scope (every tenant's routes are the same), given its tenant,
// and served by that tenant's routes. Routes that need no credential are
// the default tenant's.
func (s *tenantSet) handler(a *auth.Authenticator) http.Handler {
	def, _ := s.get(s.defaultID())
	return def.routes.handlerWith(a, func(w http.ResponseWriter, r *http.Request, scope auth.Scope, p auth.Principal, authed bool) {
		if scope == auth.Public || !s.cfg.Tenants.Enabled {
			def.routes.mux.ServeHTTP(w, r.WithContext(tenant.With(r.Context(), def.id)))
			return
		}
		id, terr := tenant.Resolve(tenant.FromRequest(r), p.TenantPrincipal(), authed, s.defaultID())
		if terr != nil {
			http.Error(w, terr.Msg, terr.Status)
			return
		}
		var st *tenantStack
		var err error
		if scope == auth.Read && r.URL.Path != tailPath {
			st, err = s.forRead(id)
		} else { // writes, and live tails: they wait for lines to come
			st, err = s.get(id)
		}
		if err != nil {
			fault.HTTPError(w, tenantUnavailable(err))
			return
		}
		st.routes.mux.ServeHTTP(w, r.WithContext(tenant.With(r.Context(), id)))
	})
}

// tenantWriter is the OTLP receiver's writer: each request goes to its
// tenant's store (the tenant the receiver's authentication put in its
// context; the default tenant without).
type tenantWriter struct{ set *tenantSet }

func (w tenantWriter) stack(ctx context.Context) (*tenantStack, error) {
	id, ok := tenant.From(ctx)
	if !ok {
		id = w.set.defaultID()
	}
	return w.set.get(id)
}

func (w tenantWriter) WriteTraces(ctx context.Context, td ptrace.Traces) error {
	st, err := w.stack(ctx)
	if err != nil {
		return tenantUnavailable(err)
	}
	return st.writer.WriteTraces(ctx, td)
}

func (w tenantWriter) WriteTraceRequest(ctx context.Context, req *store.TraceRequest) error {
	st, err := w.stack(ctx)
	if err != nil {
		return tenantUnavailable(err)
	}
	return st.writer.WriteTraceRequest(ctx, req)
}

func (w tenantWriter) WriteLogs(ctx context.Context, ld plog.Logs) error {
	st, err := w.stack(ctx)
	if err != nil {
		return tenantUnavailable(err)
	}
	return st.writer.WriteLogs(ctx, ld)
}

func (w tenantWriter) AppenderV2(ctx context.Context) storage.AppenderV2 {
	st, err := w.stack(ctx)
	if err != nil {
		return failedAppender{tenantUnavailable(err)}
	}
	return st.writer.AppenderV2(ctx)
}

// tenantUnavailable is a tenant's store that cannot be had, as the
// store's own refusals are: too many tenants is a limit (400), anything
// else the server's (503).
func tenantUnavailable(err error) error {
	if errors.Is(err, errTooManyTenants) {
		return fmt.Errorf("%w: %w", store.ErrLimit, err)
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// failedAppender refuses every sample with err.
type failedAppender struct{ err error }

func (a failedAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AppendV2Options) (storage.SeriesRef, error) {
	return 0, a.err
}
func (a failedAppender) Commit() error   { return a.err }
func (a failedAppender) Rollback() error { return nil }

// tenantsInfo answers /api/v1/tenants, for the UI: whether there are
// tenants, the request's, and those its credentials may choose among
// (null: any, named with X-Scope-OrgID).
func tenantsInfo(cfg TenantsConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := tenant.From(r.Context())
		if !ok {
			id = cfg.Default
		}
		p, authed := auth.FromContext(r.Context())
		allowed := tenant.Allowed(p.TenantPrincipal(), authed)
		if !cfg.Enabled {
			allowed = []string{cfg.Default}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{
			"enabled": cfg.Enabled, "tenant": id, "default": cfg.Default, "allowed": allowed}})
	})
}
