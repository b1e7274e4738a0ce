package spanmetrics

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/store"
)

// recording passes appends to the store and keeps the errors it answers.
type recording struct {
	storage.Appendable
	mu   sync.Mutex
	errs []error
}

func (r *recording) Appender(ctx context.Context) storage.Appender {
	return &recordingAppender{Appender: r.Appendable.Appender(ctx), r: r}
}

func (r *recording) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs
}

type recordingAppender struct {
	storage.Appender
	r *recording
}

func (a *recordingAppender) Append(ref storage.SeriesRef, ls labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	ref, err := a.Appender.Append(ref, ls, t, v)
	if err != nil {
		a.r.mu.Lock()
		a.r.errs = append(a.r.errs, fmt.Errorf("%s at %d: %w", ls, t, err))
		a.r.mu.Unlock()
	}
	return ref, err
}

// zeroSetup is a generator on a real store, on a clock ten minutes back.
func zeroSetup(t *testing.T, cfg Config, opts ...func(*store.Options)) (*Generator, *store.DB, *recording, *time.Time) {
	t.Helper()
	o := store.DefaultOptions(t.TempDir())
	for _, f := range opts {
		f(&o)
	}
	db, err := store.Open(o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	rec := &recording{Appendable: db}
	g := New(cfg, rec, nil)
	now := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	g.now = func() time.Time { return now }
	return g, db, rec, &now
}

// promQL answers expr at at: the value of its one element.
func promQL(t *testing.T, db *store.DB, expr string, at time.Time) float64 {
	t.Helper()
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	q, err := engine.NewInstantQuery(context.Background(), db, nil, expr, at)
	require.NoError(t, err)
	defer q.Close()
	res := q.Exec(context.Background())
	require.NoError(t, res.Err)
	vec, err := res.Vector()
	require.NoError(t, err)
	require.Len(t, vec, 1, "%s at %s: %s", expr, at, res)
	return vec[0].F
}

// rawSamples lists the samples of the series matching ms as
// "seconds=value", seconds after base.
func rawSamples(t *testing.T, db *store.DB, base time.Time, ms ...*labels.Matcher) []string {
	t.Helper()
	q, err := db.Querier(0, time.Now().UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), false, nil, ms...)
	var out []string
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != chunkenc.ValNone {
			ts, v := it.At()
			out = append(out, fmt.Sprintf("%g=%g", float64(ts-base.UnixMilli())/1000, v))
		}
	}
	require.NoError(t, set.Err())
	return out
}

func is(name, value string) *labels.Matcher {
	return labels.MustNewMatcher(labels.MatchEqual, name, value)
}

// TestNewSeriesCountFromTheirFirstFlush is the case: a new
// service's first 30 dispatches, then 20 more. Without a zero before each
// new series' first sample, increase() takes that sample as where counting
// began: the first flush alone shows nothing (one sample, no rate), and
// over the three flushes 20 later dispatches read ≈ 23.6 instead of 50.
func TestNewSeriesCountFromTheirFirstFlush(t *testing.T) {
	g, db, rec, now := zeroSetup(t, DefaultConfig())
	start := *now
	dispatch := func(n int, first byte) {
		for i := range n {
			tr := first + byte(i)
			g.Observe([]Span{sp(tr, 1, 0, "frontend", ptrace.SpanKindClient, false), sp(tr, 2, 1, "driver", ptrace.SpanKindServer, false)})
		}
	}
	flush := func() time.Time {
		*now = now.Add(15 * time.Second)
		require.NoError(t, g.Flush(context.Background()))
		return *now
	}
	dispatch(30, 1)
	t1 := flush()
	flush()
	dispatch(20, 100)
	t3 := flush()

	calls := `traces_spanmetrics_calls_total{service="driver"}`
	require.Equal(t, []string{"0=0", "15=30", "30=30", "45=50"}, rawSamples(t, db, start, is("__name__", "traces_spanmetrics_calls_total"), is("service", "driver")),
		"a zero one interval before the first flush")
	require.InDelta(t, 30, promQL(t, db, `increase(`+calls+`[1m])`, t1), 1e-9, "the first flush is seen whole")
	require.InDelta(t, 0.5, promQL(t, db, `rate(`+calls+`[1m])`, t1), 1e-9, "30 calls in the minute")
	for _, expr := range []string{
		`increase(` + calls + `[1m])`,
		`increase(traces_spanmetrics_duration_seconds_count{service="driver"}[1m])`,
		`increase(traces_spanmetrics_duration_seconds_bucket{service="driver", le="0.008"}[1m])`, // 5 ms spans
		`increase(traces_service_graph_request_total{client="frontend", server="driver"}[1m])`,
		`increase(traces_service_graph_request_server_seconds_count{client="frontend", server="driver"}[1m])`,
		`increase(traces_service_graph_request_client_seconds_bucket{client="frontend", server="driver", le="+Inf"}[1m])`,
	} {
		require.InDelta(t, 50, promQL(t, db, expr, t3), 1e-9, expr)
	}
	require.InDelta(t, 0.25, promQL(t, db, `increase(traces_spanmetrics_duration_seconds_sum{service="driver"}[1m])`, t3), 1e-9)
	require.InDelta(t, 0, promQL(t, db, `increase(traces_service_graph_request_failed_total[1m])`, t3), 1e-9,
		"a counter that stays 0 starts from its zero too")
	require.Empty(t, rec.errors(), "no sample refused: every zero is in order")
}

// TestStaleSeriesComeBackFromZero: a key that takes no span for
// StaleAfter is no longer written; when it comes back its series start
// again from a zero, after their last sample, so increase() counts the
// spans of its return.
func TestStaleSeriesComeBackFromZero(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StaleAfter = time.Minute
	g, db, rec, now := zeroSetup(t, cfg)
	start := *now
	observe := func(n int) {
		for i := range n {
			g.Observe([]Span{sp(byte(i+1), 1, 0, "api", ptrace.SpanKindServer, false)})
		}
	}
	flush := func() {
		*now = now.Add(15 * time.Second)
		require.NoError(t, g.Flush(context.Background()))
	}
	observe(5)
	for range 5 { // written at 15…60 s; stale at 75 s
		flush()
	}
	require.Equal(t, uint64(1), g.Stats().Expired)
	*now = now.Add(5 * time.Second)
	observe(3)
	*now = now.Add(-5 * time.Second)
	flush() // 90 s
	back := *now
	flush()

	want := []string{"0=0", "15=5", "30=5", "45=5", "60=5", "75=0", "90=3", "105=3"}
	require.Equal(t, want, rawSamples(t, db, start, is("__name__", "traces_spanmetrics_calls_total"), is("service", "api")))
	require.Equal(t, want, rawSamples(t, db, start, is("__name__", "traces_spanmetrics_duration_seconds_count"), is("service", "api")))
	require.Equal(t, []string{"0=0", "15=5", "30=5", "45=5", "60=5", "75=0", "90=3", "105=3"},
		rawSamples(t, db, start, is("__name__", "traces_spanmetrics_duration_seconds_bucket"), is("service", "api"), is("le", "+Inf")))
	require.InDelta(t, 3, promQL(t, db, `increase(traces_spanmetrics_calls_total{service="api"}[30s])`, back), 1e-9)
	require.InDelta(t, 3, promQL(t, db, `increase(traces_spanmetrics_duration_seconds_count{service="api"}[30s])`, back), 1e-9)
	require.Empty(t, rec.errors())
}

// TestZeroRefusedIsLeftOut: a zero the store refuses — a sample of the
// series already stands at or after its time (written by something else,
// or the clock went back) — is left out, and the flush writes the rest.
func TestZeroRefusedIsLeftOut(t *testing.T) {
	g, db, _, now := zeroSetup(t, DefaultConfig(), func(o *store.Options) { o.MetricsOutOfOrderWindow = 0 })
	start := *now
	series := func(svc string) labels.Labels {
		return labels.FromStrings("__name__", "traces_spanmetrics_calls_total", "service", svc, "span_name", "op",
			"span_kind", "SPAN_KIND_SERVER", "status_code", "STATUS_CODE_UNSET")
	}
	app := db.Appender(context.Background())
	_, err := app.Append(0, series("later"), start.Add(20*time.Second).UnixMilli(), 99)
	require.NoError(t, err)
	_, err = app.Append(0, series("same"), start.Add(15*time.Second).UnixMilli(), 99)
	require.NoError(t, err)
	require.NoError(t, app.Commit())

	g.Observe([]Span{sp(1, 1, 0, "later", ptrace.SpanKindServer, false), sp(2, 1, 0, "same", ptrace.SpanKindServer, false), sp(3, 1, 0, "new", ptrace.SpanKindServer, false)})
	*now = now.Add(30 * time.Second)
	require.NoError(t, g.Flush(context.Background()), "the zero's refusal does not fail the flush")
	calls := func(svc string) []string {
		return rawSamples(t, db, start, is("__name__", "traces_spanmetrics_calls_total"), is("service", svc))
	}
	require.Equal(t, []string{"20=99", "30=1"}, calls("later"), "out of order: left out")
	require.Equal(t, []string{"15=99", "30=1"}, calls("same"), "a duplicate time: left out, not written over")
	require.Equal(t, []string{"15=0", "30=1"}, calls("new"))
}
