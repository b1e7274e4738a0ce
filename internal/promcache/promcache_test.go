package promcache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/promcache"
	"github.com/lumenobs/lumen/internal/promsplit"
	"github.com/lumenobs/lumen/store"
)

// t0 is the store's now in these tests; data runs over the two hours
// before it.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	db     *store.DB
	now    atomic.Int64 // the store's clock, ns
	plain  promql.QueryEngine
	cached *promcache.Engine
	reg    *prometheus.Registry
}

func newFixture(t *testing.T, maxBytes int64) *fixture {
	f := &fixture{reg: prometheus.NewRegistry()}
	f.now.Store(t0.UnixNano())
	o := store.DefaultOptions(t.TempDir())
	o.Retention = 0
	o.Now = func() time.Time { return time.Unix(0, f.now.Load()) }
	db, err := store.Open(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	f.db = db
	opts := promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute, EnableAtModifier: true, EnableNegativeOffset: true}
	f.plain = promql.NewEngine(opts)
	// The cache over the engine Lumen serves: split range queries.
	f.cached = promcache.New(promsplit.New(promql.NewEngine(opts), nil), db, 10*time.Minute, maxBytes, nil, f.reg)
	app := db.Appender(context.Background())
	for i := range 30 {
		for s := range 480 {
			ts := t0.Add(-2 * time.Hour).Add(time.Duration(s) * 15 * time.Second).UnixMilli()
			_, err := app.Append(0, labels.FromStrings("__name__", "requests_total", "job", fmt.Sprint("j", i%3), "instance", fmt.Sprint(i)), ts, float64((s*(i+1))%700))
			require.NoError(t, err)
			_, err = app.Append(0, labels.FromStrings("__name__", "temperature", "instance", fmt.Sprint(i)), ts, float64(i)+float64(s%17)/3)
			require.NoError(t, err)
			if i < 3 {
				h := &histogram.Histogram{Count: uint64(10 + s), Sum: float64(s), Schema: 0, ZeroThreshold: 0.001,
					PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{int64(5 + s/2), 0}}
				h.Count = uint64(2 * (5 + s/2))
				_, err = app.AppendHistogram(0, labels.FromStrings("__name__", "latency_seconds", "instance", fmt.Sprint(i)), ts, h, nil)
				require.NoError(t, err)
			}
		}
	}
	require.NoError(t, app.Commit())
	return f
}

func (f *fixture) hits(t *testing.T) float64 {
	return value(t, f.reg, "lumen_promql_results_cache_steps_total", "hit")
}

// value is the named counter or gauge of reg, of the series whose result
// label is result ("": the only series).
func value(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := result == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == "result" && l.GetValue() == result)
			}
			if !match {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s{result=%q}", name, result)
	return 0
}

// answer asks e the range query and renders its answer, or its error.
func answer(t *testing.T, e promql.QueryEngine, q storage.Queryable, qs string, start, end time.Time, step time.Duration) string {
	qry, err := e.NewRangeQuery(context.Background(), q, nil, qs, start, end, step)
	if err != nil {
		return "error: " + err.Error()
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		return "error: " + res.Err.Error()
	}
	warnings, infos := res.Warnings.AsStrings(qs, 0, 0)
	return fmt.Sprintf("%s\nwarnings: %v\ninfos: %v", res.Value.String(), warnings, infos)
}

// same asks both engines and requires the same answer.
func (f *fixture) same(t *testing.T, qs string, start, end time.Time, step time.Duration) {
	t.Helper()
	want := answer(t, f.plain, f.db, qs, start, end, step)
	require.Equal(t, want, answer(t, f.cached, f.db, qs, start, end, step), "%s from %s to %s by %s", qs, start, end, step)
}

var queries = []string{
	`sum by (job) (rate(requests_total[1m]))`,
	`requests_total`,
	`max_over_time(rate(requests_total[2m])[10m:1m])`,
	`histogram_quantile(0.9, sum(rate(latency_seconds[5m])))`,
	`rate(latency_seconds[5m])`,
	`time() - timestamp(requests_total{instance="3"})`,
	`count(requests_total offset 20m) or vector(0)`,
	`absent(nothing_here)`,
}

// TestAnswersAreTheEngines: whatever the cache holds, a range query's answer
// is the engine's: asked again, slid forward by steps, widened, narrowed,
// after the clock moves, at other step phases.
func TestAnswersAreTheEngines(t *testing.T) {
	f := newFixture(t, 64<<20)
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, qs := range queries {
		for range 12 {
			step := []time.Duration{15 * time.Second, time.Minute, 90 * time.Second}[rnd.IntN(3)]
			end := t0.Add(-time.Duration(rnd.IntN(40)) * step)
			start := end.Add(-time.Duration(4+rnd.IntN(60)) * step)
			f.same(t, qs, start, end, step)
			f.same(t, qs, start, end, step)                                   // again: from the cache
			f.same(t, qs, start.Add(3*step), end.Add(3*step), step)           // slid: mostly from the cache
			f.same(t, qs, start.Add(-2*step), end, step)                      // earlier start: asked whole
			f.same(t, qs, start.Add(time.Second), end.Add(time.Second), step) // another phase
		}
	}
	require.Positive(t, f.hits(t))
}

// TestPastChangesAreSeen: a sample written at a time the cache holds (a new
// series backfilled, an out-of-order one), and partitions dropped, make the
// next answer the engine's over the new data.
func TestPastChangesAreSeen(t *testing.T) {
	f := newFixture(t, 64<<20)
	qs := `sum by (job) (requests_total)`
	start, end, step := t0.Add(-90*time.Minute), t0, time.Minute
	f.same(t, qs, start, end, step)
	hits := f.hits(t)
	f.same(t, qs, start, end, step)
	require.Greater(t, f.hits(t), hits, "asked again, the old steps come from the cache")

	// A new series, backfilled an hour back.
	app := f.db.Appender(context.Background())
	for s := range 20 {
		_, err := app.Append(0, labels.FromStrings("__name__", "requests_total", "job", "j9", "instance", "late"), t0.Add(-time.Hour).Add(time.Duration(s)*15*time.Second).UnixMilli(), 5)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	before := answer(t, f.plain, f.db, qs, start, end, step)
	require.Contains(t, before, "j9")
	f.same(t, qs, start, end, step)

	// An out-of-order sample of an existing series, older than the horizon
	// but inside the store's out-of-order window of its newest sample.
	app = f.db.Appender(context.Background())
	_, err := app.Append(0, labels.FromStrings("__name__", "requests_total", "job", "j9", "instance", "late"), t0.Add(-time.Hour).Add(7*time.Second).UnixMilli(), 1000)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	f.same(t, qs, start, end, step)

	// Samples newer than the horizon do not touch what is kept.
	f.same(t, qs, start, end, step)
	hits = f.hits(t)
	app = f.db.Appender(context.Background())
	_, err = app.Append(0, labels.FromStrings("__name__", "requests_total", "job", "j9", "instance", "late"), t0.Add(-time.Minute).UnixMilli(), 7)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	f.same(t, qs, start, end, step)
	require.Greater(t, f.hits(t), hits)

}

// TestWhatIsNeverKept: queries that name a time besides their steps', and
// answers with annotations, are answered by the engine every time and never
// kept.
func TestWhatIsNeverKept(t *testing.T) {
	f := newFixture(t, 64<<20)
	start, end, step := t0.Add(-90*time.Minute), t0, time.Minute
	for _, qs := range []string{
		`requests_total @ 1772362800`,
		`requests_total @ end()`,
		`rate(requests_total[5m] @ start())`,
		`requests_total offset -10m`,
		`rate(requests_total[1m:15s] offset -5m)`,
		`vector(step())`,
		`rate(temperature[5m])`, // a gauge's name: an info annotation
		`sum(requests_total) and on() vector(1) > 0 or rate(temperature[1m])`,
	} {
		f.same(t, qs, start, end, step)
		f.same(t, qs, start, end, step)
	}
	require.Zero(t, value(t, f.reg, "lumen_promql_results_cache_stores_total", ""))
	require.Zero(t, f.hits(t))
	require.Equal(t, 16.0, value(t, f.reg, "lumen_promql_results_cache_uncacheable_total", ""))
}

// TestBounded: past its bound the least recently used answers leave; the
// answers stay the engine's.
func TestBounded(t *testing.T) {
	const bound = 16 << 10
	f := newFixture(t, bound)
	start, end, step := t0.Add(-90*time.Minute), t0, time.Minute
	for i := range 40 {
		qs := fmt.Sprintf(`requests_total{instance="%d"} * %d`, i%30, i)
		f.same(t, qs, start, end, step)
		require.LessOrEqual(t, value(t, f.reg, "lumen_promql_results_cache_bytes", ""), float64(bound))
	}
	require.Less(t, value(t, f.reg, "lumen_promql_results_cache_entries", ""), 40.0)
	// Too large for a quarter of the bound: asked, answered, not kept.
	stores := value(t, f.reg, "lumen_promql_results_cache_stores_total", "")
	f.same(t, `requests_total`, start, end, step)
	require.Equal(t, stores, value(t, f.reg, "lumen_promql_results_cache_stores_total", ""))
}

// TestConcurrentAsks: queries asked at once, filling and reading the same
// entries, each get the engine's answer.
func TestConcurrentAsks(t *testing.T) {
	f := newFixture(t, 1<<20)
	step := time.Minute
	want := map[int]string{}
	for k := range 6 {
		want[k] = answer(t, f.plain, f.db, queries[k%3], t0.Add(-time.Hour+time.Duration(k)*step), t0, step)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 4 {
		wg.Go(func() {
			for i := range 12 {
				k := (g + i) % 6
				if got := answer(t, f.cached, f.db, queries[k%3], t0.Add(-time.Hour+time.Duration(k)*step), t0, step); got != want[k] {
					errs <- fmt.Sprintf("%s from step %d differs", queries[k%3], k)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	require.Positive(t, f.hits(t))
}
