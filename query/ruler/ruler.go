package ruler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/strutil"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/telemetry"
	"github.com/lumenobs/lumen/query/logql"
)

// TracesURLAnnotation is the annotation every alert sent carries: a link
// to the alert in Lumen's UI, with the traces (exemplars) and log lines
// of its firing window.
const TracesURLAnnotation = "lumen_traces_url"

// Options are one tenant's ruler's.
type Options struct {
	// Tenant, when not empty, is added to every alert sent as the label
	// tenant (tenants are on).
	Tenant string
	// PromFiles and LogQLFiles are globs of rule files in Prometheus'
	// format, with PromQL and LogQL expressions.
	PromFiles, LogQLFiles []string
	Config                Config
	// ExternalURL is Lumen's UI from outside, without a trailing slash.
	ExternalURL string
	// Engine evaluates PromQL over Queryable; Logs is read for LogQL;
	// Appendable takes recording rules' samples and ALERTS /
	// ALERTS_FOR_STATE.
	Engine        promql.QueryEngine
	Queryable     storage.Queryable
	Appendable    storage.Appendable
	Logs          logql.Reader
	LogQLMaxLines int
	// LogQL, when set, evaluates the LogQL rules instead of Logs (the
	// remote logs backend: Loki's ruler evaluating remotely).
	LogQL logql.Executor
	// Notifier, if not nil, sends the alerts.
	Notifier *Notifier
	Log      *zap.Logger
	Reg      prometheus.Registerer
}

// Ruler is one tenant's rules: a PromQL and a LogQL rule manager.
type Ruler struct {
	o      Options
	prom   *rules.Manager
	logs   *rules.Manager
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	loaded    string // hash of the rule files last read
	reloads   prometheus.Gauge
	reloadsAt prometheus.Gauge
}

// New builds a tenant's ruler and loads its rules; Run starts them.
func New(o Options) (*Ruler, error) {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Ruler{o: o, ctx: ctx, cancel: cancel}
	r.reloads = prometheus.NewGauge(prometheus.GaugeOpts{Name: "lumen_rules_config_last_reload_successful",
		Help: "Whether the last load of the rule files succeeded (1) or kept the rules before it (0)."})
	r.reloadsAt = prometheus.NewGauge(prometheus.GaugeOpts{Name: "lumen_rules_config_last_reload_success_timestamp_seconds",
		Help: "When the rule files were last loaded successfully."})
	metrics := rules.NewGroupMetrics(o.Reg) // one set for both managers
	if err := telemetry.Register(o.Reg, r.reloads, r.reloadsAt); err != nil {
		cancel()
		return nil, err
	}
	base := func(lang Lang, query rules.QueryFunc) *rules.ManagerOptions {
		mo := &rules.ManagerOptions{
			NameValidationScheme:   model.UTF8Validation,
			ExternalURL:            mustURL(o.ExternalURL),
			QueryFunc:              query,
			NotifyFunc:             r.notify(lang),
			Context:                ctx,
			Appendable:             o.Appendable,
			Queryable:              o.Queryable,
			Logger:                 telemetry.Slog(o.Log.Named("rules").With(zap.String("lang", string(lang)))),
			OutageTolerance:        o.Config.OutageTolerance,
			ForGracePeriod:         o.Config.ForGracePeriod,
			ResendDelay:            o.Config.ResendDelay,
			GroupLoader:            newLoader(lang, telemetry.Slog(o.Log.Named("rules"))),
			DefaultRuleQueryOffset: func() time.Duration { return o.Config.QueryOffset },
			MaxConcurrentEvals:     o.Config.MaxConcurrentEvals,
			ConcurrentEvalsEnabled: o.Config.MaxConcurrentEvals > 1,
			Metrics:                metrics,
		}
		if lang == LogQL {
			// The dependency analysis walks PromQL syntax trees; LogQL
			// rules of a group are evaluated in order.
			mo.RuleDependencyController = noDependencies{}
			mo.ConcurrentEvalsEnabled = false
		}
		return mo
	}
	r.prom = rules.NewManager(base(PromQL, rules.EngineQueryFunc(o.Engine, o.Queryable)))
	r.logs = rules.NewManager(base(LogQL, r.logqlQuery))
	if err := r.Reload(); err != nil {
		cancel()
		return nil, err
	}
	return r, nil
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// noDependencies leaves every rule's dependencies unknown.
type noDependencies struct{}

func (noDependencies) AnalyseRules([]rules.Rule) {}

// Run starts evaluating, and watching the rule files (Config.
// ReloadInterval); Stop ends both.
func (r *Ruler) Run() {
	for _, m := range []*rules.Manager{r.prom, r.logs} {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); m.Run() }()
	}
	if r.o.Config.ReloadInterval > 0 {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.Watch(r.ctx, r.o.Config.ReloadInterval) }()
	}
}

// Stop stops evaluating, after the evaluations in progress.
func (r *Ruler) Stop() {
	r.prom.Stop()
	r.logs.Stop()
	r.cancel()
	r.wg.Wait()
}

// Reload reads the rule files again (their globs expanded anew). When one
// has an error, the rules before stay and the error names each file,
// line, group and rule that is wrong.
func (r *Ruler) Reload() error {
	if err := r.reload(); err != nil {
		r.reloads.Set(0)
		r.o.Log.Error("rule files not loaded; the rules before stay", zap.Error(err))
		return err
	}
	r.reloads.Set(1)
	r.reloadsAt.SetToCurrentTime()
	return nil
}

func (r *Ruler) reload() error {
	sum := r.filesHash()
	if err := Check(r.o.PromFiles, r.o.LogQLFiles, r.o.Config.Builtin); err != nil {
		r.setLoaded(sum) // tried: not again until the files change
		return err
	}
	defer r.setLoaded(sum)
	prom, err := Expand(r.o.PromFiles)
	if err != nil {
		return err
	}
	for _, b := range r.o.Config.Builtin {
		prom = append(prom, builtinPrefix+b)
	}
	logs, err := Expand(r.o.LogQLFiles)
	if err != nil {
		return err
	}
	ext := labels.FromMap(r.o.Config.ExternalLabels)
	interval := r.o.Config.EvaluationInterval
	if err := r.prom.Update(interval, prom, ext, r.o.ExternalURL, nil); err != nil {
		return fmt.Errorf("promql rules: %w", err)
	}
	if err := r.logs.Update(interval, logs, ext, r.o.ExternalURL, nil); err != nil {
		return fmt.Errorf("logql rules: %w", err)
	}
	return nil
}

func (r *Ruler) setLoaded(sum string) {
	r.mu.Lock()
	r.loaded = sum
	r.mu.Unlock()
}

// filesHash sums the names and contents of the files the globs name now.
func (r *Ruler) filesHash() string {
	h := sha256.New()
	for _, globs := range [][]string{r.o.PromFiles, r.o.LogQLFiles} {
		for _, g := range globs {
			m, _ := filepath.Glob(g)
			for _, f := range m {
				b, err := os.ReadFile(f)
				fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
				if err == nil {
					h.Write(b)
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Watch reloads the rules when their files change (a file edited, added
// to or removed from a glob, a Kubernetes ConfigMap updated), checking
// every interval until ctx is done.
func (r *Ruler) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		loaded := r.loaded
		r.mu.Unlock()
		if r.filesHash() != loaded {
			if err := r.Reload(); err == nil {
				r.o.Log.Info("rule files changed: reloaded")
			}
		}
	}
}

// PromQL is the PromQL rules (Prometheus' /api/v1/rules and alerts).
func (r *Ruler) PromQL() *rules.Manager { return r.prom }

// LogQL is the LogQL rules (Loki's ruler API).
func (r *Ruler) LogQL() *rules.Manager { return r.logs }

// logqlQuery evaluates a LogQL metric query at t, as Loki's ruler does.
func (r *Ruler) logqlQuery(ctx context.Context, qs string, t time.Time) (promql.Vector, error) {
	e, err := logql.Parse(qs)
	if err != nil {
		return nil, err
	}
	p := logql.Params{Start: t, End: t, MaxLines: r.o.LogQLMaxLines}
	var res logql.Result
	if r.o.LogQL != nil {
		res, err = r.o.LogQL.Exec(ctx, e, p)
	} else {
		res, err = logql.Exec(ctx, r.o.Logs, e, p)
	}
	if err != nil {
		return nil, err
	}
	switch res.Type {
	case logql.ResultScalar:
		return promql.Vector{{T: res.Scalar.T, F: res.Scalar.V, Metric: labels.EmptyLabels()}}, nil
	case logql.ResultVector:
		v := make(promql.Vector, 0, len(res.Series))
		for _, s := range res.Series {
			for _, p := range s.Points {
				v = append(v, promql.Sample{Metric: s.Metric, T: p.T, F: p.V})
			}
		}
		return v, nil
	default:
		return nil, errors.New("rule result is not a vector or scalar")
	}
}

// notify sends alerts as Prometheus' rules.SendAlerts does, with the
// tenant label, a generatorURL that opens Lumen's UI on the expression,
// and the link to the alert's traces and lines.
func (r *Ruler) notify(lang Lang) rules.NotifyFunc {
	return func(_ context.Context, expr string, alerts ...*rules.Alert) {
		if r.o.Notifier == nil || len(alerts) == 0 {
			return
		}
		res := make([]*notifier.Alert, 0, len(alerts))
		for _, alert := range alerts {
			lset := alert.Labels
			if r.o.Tenant != "" {
				lset = labels.NewBuilder(lset).Set("tenant", r.o.Tenant).Labels()
			}
			// The link's window ends now, or when the alert resolved; the
			// alert ends then, or when it is no longer valid.
			end, endsAt := time.Now(), alert.ValidUntil
			if !alert.ResolvedAt.IsZero() {
				end, endsAt = alert.ResolvedAt, alert.ResolvedAt
			}
			ann := labels.NewBuilder(alert.Annotations)
			ann.Set(TracesURLAnnotation, r.o.ExternalURL+AlertLink(lang, expr, alert.Labels, alert.ActiveAt, end, r.o.Tenant))
			res = append(res, &notifier.Alert{
				StartsAt:     alert.FiredAt,
				EndsAt:       endsAt,
				Labels:       lset,
				Annotations:  ann.Labels(),
				GeneratorURL: r.o.ExternalURL + GeneratorPath(lang, expr),
			})
		}
		r.o.Notifier.Send(res...)
	}
}

// GeneratorPath is the path of an alert's generatorURL: Prometheus'
// /graph link for PromQL (Lumen redirects it to its metrics page), the
// logs page for LogQL.
func GeneratorPath(lang Lang, expr string) string {
	if lang == LogQL {
		return "/#/logs?" + url.Values{"q": {expr}}.Encode()
	}
	return strutil.TableLinkForExpression(expr)
}

// AlertLink is the UI's page of one alert: its expression charted over
// [start, end] and its evidence (exemplar traces, or matching lines).
func AlertLink(lang Lang, expr string, lset labels.Labels, start, end time.Time, tenant string) string {
	v := url.Values{
		"lang":   {string(lang)},
		"expr":   {expr},
		"labels": {lset.String()},
		"from":   {fmt.Sprint(start.Add(-5 * time.Minute).UnixMilli())},
		"to":     {fmt.Sprint(end.Add(time.Minute).UnixMilli())},
	}
	if tenant != "" {
		v.Set("tenant", tenant)
	}
	return "/#/alert?" + v.Encode()
}
