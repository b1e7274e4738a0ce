package ruler

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/limits"
	"github.com/lumenobs/lumen/store"
)

func TestLoaderReadsBothLanguages(t *testing.T) {
	l := newLoader(LogQL, slog.New(slog.DiscardHandler))
	rgs, errs := l.Load("testdata/logql.yml", false, model.UTF8Validation)
	require.Empty(t, errs)
	require.Len(t, rgs.Groups, 1)
	g := rgs.Groups[0]
	require.Equal(t, "shop-errors", g.Name)
	require.Equal(t, 10, g.Limit)
	e, err := l.Parse(g.Rules[1].Expr)
	require.NoError(t, err)
	require.Equal(t, g.Rules[1].Expr, e.String(), "the LogQL expression travels unchanged")

	// A LogQL file is no PromQL file, and the other way round.
	_, errs = newLoader(PromQL, slog.New(slog.DiscardHandler)).Load("testdata/logql.yml", false, model.UTF8Validation)
	require.NotEmpty(t, errs)
	require.Contains(t, errs[0].Error(), `testdata/logql.yml: 10:15: group "shop-errors", rule 1, "app:errors:count1m": could not parse expression`)
	_, errs = l.Load("testdata/promql.yml", false, model.UTF8Validation)
	require.NotEmpty(t, errs)

	// YAML errors rulefmt reports without a position get the value's.
	_, errs = l.Load("testdata/bad-duration.yml", false, model.UTF8Validation)
	require.Len(t, errs, 1, "the same error twice is said once")
	require.Contains(t, errs[0].Error(), `testdata/bad-duration.yml: 6:14: `)

	require.NoError(t, Check([]string{"testdata/promql.yml"}, []string{"testdata/logql.yml"}, Builtins()))
	groups, rules, err := Count(nil, nil, Builtins())
	require.NoError(t, err)
	require.Equal(t, 2, groups)
	require.Equal(t, 13, rules)
}

func TestExpand(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.yml", "b.yml"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("groups: []\n"), 0o600))
	}
	files, err := Expand([]string{filepath.Join(dir, "*.yml"), filepath.Join(dir, "a.yml")})
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yml")}, files, "each once, in order")
	_, err = Expand([]string{filepath.Join(dir, "*.yaml")})
	require.ErrorContains(t, err, "no file matches")
	_, err = Expand([]string{"[" + dir})
	require.Error(t, err)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	c := DefaultConfig()
	c.ExternalURL = "lumen:4320"
	require.ErrorContains(t, c.Validate(), "is not an http(s) URL")
	c = DefaultConfig()
	c.Builtin = []string{"nope"}
	require.ErrorContains(t, c.Validate(), `"nope" is none of lumen, spanmetrics`)
	a := DefaultAlertingConfig()
	a.Alertmanagers = []AlertmanagerConfig{{URL: "http://user:pw@am:9093"}}
	require.ErrorContains(t, a.Validate(), "holds credentials")
	a.Alertmanagers = []AlertmanagerConfig{{URL: "http://am:9093", BearerTokenFile: "t", BasicAuth: &BasicAuth{Username: "u", PasswordFile: "p"}}}
	require.ErrorContains(t, a.Validate(), "exclusive")
	a.Alertmanagers = []AlertmanagerConfig{{URL: "http://am:9093/prefix/"}}
	require.NoError(t, a.Validate())
	ac, addr, err := alertmanagerConfig(a.Alertmanagers[0])
	require.NoError(t, err)
	require.Equal(t, "am:9093", addr)
	require.Equal(t, "/prefix", ac.PathPrefix)
	require.Equal(t, "http", ac.Scheme)
}

// TestSelfMetricsIntoTheStore: what a registry gathers is written into a
// real store as a scrape would write it, histograms as their series.
func TestSelfMetricsIntoTheStore(t *testing.T) {
	db, err := store.Open(store.DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "things_total", Help: "h"}, []string{"kind"})
	c.WithLabelValues("a").Add(3)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "took_seconds", Help: "h", Buckets: []float64{0.1, 1}})
	h.Observe(0.05)
	h.Observe(0.5)
	reg.MustRegister(c, h)
	now := time.Now()
	target := labels.FromStrings("job", "lumen", "instance", "h:4320")
	require.NoError(t, WriteSelfMetrics(context.Background(), reg, db, target, now))
	q, err := db.Querier(now.Add(-time.Minute).UnixMilli(), now.Add(time.Minute).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	got := map[string]float64{}
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "lumen"))
	for ss.Next() {
		s := ss.At()
		it := s.Iterator(nil)
		require.NotEqual(t, 0, it.Next())
		_, v := it.At()
		got[s.Labels().String()] = v
	}
	require.NoError(t, ss.Err())
	require.Equal(t, map[string]float64{
		`{__name__="things_total", instance="h:4320", job="lumen", kind="a"}`:         3,
		`{__name__="took_seconds_bucket", instance="h:4320", job="lumen", le="0.1"}`:  1,
		`{__name__="took_seconds_bucket", instance="h:4320", job="lumen", le="1"}`:    2,
		`{__name__="took_seconds_bucket", instance="h:4320", job="lumen", le="+Inf"}`: 2,
		`{__name__="took_seconds_count", instance="h:4320", job="lumen"}`:             2,
		`{__name__="took_seconds_sum", instance="h:4320", job="lumen"}`:               0.55,
	}, got)
}

// FuzzParseRules: any rule file, read as PromQL or LogQL rules, is rules
// or errors, never a panic.
func FuzzParseRules(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.yml")
	require.NoError(f, err)
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		require.NoError(f, err)
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, logql bool) {
		lang := PromQL
		if logql {
			lang = LogQL
		}
		l := newLoader(lang, slog.New(slog.DiscardHandler))
		rgs, errs := l.parse(b, false, model.UTF8Validation)
		if len(errs) > 0 {
			return
		}
		for _, g := range rgs.Groups {
			for _, r := range g.Rules {
				_, err := l.Parse(r.Expr)
				require.NoError(t, err, "a rule that validated does not parse")
			}
		}
	})
}

// The evidence API is admitted like a query: turned away with 503 and
// Retry-After when its limiter has no slot, before the store is read, and
// the slot is freed once it is answered.
func TestEvidenceAdmitted(t *testing.T) {
	lim := limits.New("LogQL queries", 1, 0)
	read := 0
	h := EvidenceHandler(func(*http.Request) EvidenceSource {
		read++
		return EvidenceSource{}
	}, func(r *http.Request) (context.Context, func(), error) {
		release, err := lim.Acquire(r.Context())
		if err != nil {
			return nil, nil, err
		}
		return r.Context(), release, nil
	})
	hold, err := lim.Acquire(context.Background())
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/alert_evidence?lang=logql&expr=x", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), `"errorType":"unavailable"`)
	require.Contains(t, rec.Body.String(), "LogQL queries")
	require.Zero(t, read, "the store was read")
	hold()
	// With a slot: the request is read (and refused for its bad expression),
	// and its slot is back afterwards.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/alert_evidence?lang=logql&expr=x", nil))
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Equal(t, 1, read)
	again, err := lim.Acquire(context.Background())
	require.NoError(t, err, "the slot was not freed")
	again()
}
