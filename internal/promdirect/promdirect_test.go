package promdirect

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/promtest"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newEngine(maxSamples int) *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		MaxSamples: maxSamples, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
		EnableAtModifier: true, EnableNegativeOffset: true,
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
	})
}

// counters writes n series of counters over an hour: regular and irregular
// scrapes, resets, gaps, series that start or end inside the hour, NaN
// values, staleness markers, lone samples, and a name that is not a
// counter's.
func counters(t *testing.T, st storage.Appendable, n int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	app := st.Appender(context.Background())
	for i := range n {
		name := "http_requests_total"
		if i%7 == 3 {
			name = "queue_depth"
		}
		lset := labels.FromStrings(labels.MetricName, name, "job", fmt.Sprintf("job%d", i%3),
			"instance", fmt.Sprintf("i%d", i), "zone", fmt.Sprintf("z%d", i%2))
		interval := int64(15_000)
		if i%5 == 1 {
			interval = 10_000 + r.Int64N(20_000)
		}
		from := t0.UnixMilli()
		to := t0.Add(time.Hour).UnixMilli()
		switch i % 6 {
		case 2:
			from += r.Int64N(30 * 60_000)
		case 4:
			to -= r.Int64N(30 * 60_000)
		}
		v := r.Float64() * 100
		if i%11 == 5 {
			// One sample alone.
			_, err := app.Append(0, lset, from+r.Int64N(3_600_000), v)
			require.NoError(t, err)
			continue
		}
		for ts := from; ts <= to; ts += interval {
			if i%5 == 1 {
				ts += r.Int64N(3_000)
			}
			switch p := r.IntN(100); {
			case p < 3:
				v = r.Float64() * 5 // a reset
			case p < 5:
				continue // a missed scrape
			case p < 6 && i%4 == 0:
				_, err := app.Append(0, lset, ts, math.Float64frombits(value.StaleNaN))
				require.NoError(t, err)
				continue
			case p < 7 && i%9 == 0:
				_, err := app.Append(0, lset, ts, math.NaN())
				require.NoError(t, err)
				continue
			case p < 9:
				ts += 5 * 60_000 // a gap
			default:
				v += r.Float64() * 10
			}
			if ts > to {
				break
			}
			_, err := app.Append(0, lset, ts, v)
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
}

// ask makes the query: a range query, or with a step of 0 an instant
// query at start.
func ask(e promql.QueryEngine, q storage.Queryable, qs string, start, end time.Time, step time.Duration) (promql.Query, error) {
	if step == 0 {
		return e.NewInstantQuery(context.Background(), q, nil, qs, start)
	}
	return e.NewRangeQuery(context.Background(), q, nil, qs, start, end, step)
}

// answer is a query's result, points bit for bit, in the order given; a
// step of 0 asks an instant query at start.
func answer(t *testing.T, e promql.QueryEngine, q storage.Queryable, qs string, start, end time.Time, step time.Duration) string {
	t.Helper()
	qry, err := ask(e, q, qs, start, end, step)
	if err != nil {
		return "error: " + err.Error()
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		return "error: " + res.Err.Error()
	}
	var b strings.Builder
	warnings, infos := res.Warnings.AsStrings(qs, 0, 0)
	notes := append(warnings, infos...)
	slices.Sort(notes)
	fmt.Fprintf(&b, "annotations %q\n", notes)
	if v, ok := res.Value.(promql.Vector); ok {
		for _, s := range v {
			fmt.Fprintf(&b, "%s dropname=%v: %d=%x %v\n", s.Metric, s.DropName, s.T, math.Float64bits(s.F), s.H)
		}
		return b.String()
	}
	m, ok := res.Value.(promql.Matrix)
	require.True(t, ok, "%s: %T", qs, res.Value)
	for _, s := range m {
		fmt.Fprintf(&b, "%s dropname=%v:", s.Metric, s.DropName)
		for _, p := range s.Floats {
			fmt.Fprintf(&b, " %d=%x", p.T, math.Float64bits(p.F))
		}
		for _, p := range s.Histograms {
			fmt.Fprintf(&b, " %d=%s", p.T, p.H)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func evaluations(t *testing.T, reg *prometheus.Registry, which string) float64 {
	t.Helper()
	n, err := testutil.GatherAndCount(reg, "lumen_promql_direct_queries_total")
	require.NoError(t, err)
	require.Positive(t, n)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == which {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestAnswersAreTheEngines asks every shape evaluated here, over many
// windows, steps, offsets and groupings, as range and instant queries (a
// vector's order too), of the engine and of the direct
// evaluation, with one worker and with several: the same answers, every
// point's bits, the same annotations.
func TestAnswersAreTheEngines(t *testing.T) {
	st := teststorage.New(t)
	defer st.Close()
	counters(t, st, 300, 1)
	engine := newEngine(50_000_000)
	r := rand.New(rand.NewPCG(2, 3))
	ops := []string{"sum", "count", "min", "max", "avg"}
	groupings := []string{"", "by (job)", "by (job, zone)", "without (instance)", "by (nothing)", "without (zone, instance)", "by (__name__)", "by ()"}
	selectors := []string{`http_requests_total`, `{__name__=~"http_requests_total|queue_depth"}`, `http_requests_total{job="job1"}`, `queue_depth`, `absent_metric`}
	ranges := []string{"30s", "1m", "2m30s", "5m", "20m"}
	fns := []string{"rate", "increase", "irate", "sum_over_time", "count_over_time", "max_over_time", "min_over_time"}
	offsets := []string{"", " offset 1m", " offset -2m"}
	steps := []time.Duration{0, 7 * time.Second, 15 * time.Second, time.Minute, 4 * time.Minute, 10 * time.Minute} // 0: an instant query
	for _, workers := range []int{1, 4} {
		reg := prometheus.NewRegistry()
		direct := New(engine, nil, 50_000_000, time.Minute, workers, reg)
		var q storage.Queryable = st
		if workers > 1 {
			q = promtest.Concurrent{Queryable: st}
		}
		asked := 0
		for range 300 {
			qs := fmt.Sprintf("%s %s (%s(%s[%s]%s))", ops[r.IntN(len(ops))], groupings[r.IntN(len(groupings))],
				fns[r.IntN(len(fns))], selectors[r.IntN(len(selectors))], ranges[r.IntN(len(ranges))], offsets[r.IntN(len(offsets))])
			start := t0.Add(time.Duration(r.Int64N(int64(70*time.Minute))) - 5*time.Minute).Add(time.Duration(r.IntN(1000)) * time.Millisecond)
			end := start.Add(time.Duration(r.Int64N(int64(50 * time.Minute))))
			step := steps[r.IntN(len(steps))]
			want := answer(t, engine, st, qs, start, end, step)
			got := answer(t, direct, q, qs, start, end, step)
			require.Equal(t, want, got, "%s from %s to %s step %s, %d workers", qs, start, end, step, workers)
			asked++
		}
		require.Equal(t, float64(asked), evaluations(t, reg, "direct"), "every query was evaluated directly")
	}
}

// TestOtherQueriesGoToTheEngine: what is not an aggregation of rate or
// increase over a selector, or uses what is not evaluated here, is the
// engine's, and so is a query that finds a histogram.
func TestOtherQueriesGoToTheEngine(t *testing.T) {
	st := teststorage.New(t)
	defer st.Close()
	counters(t, st, 40, 4)
	app := st.Appender(context.Background())
	h := &histogram.Histogram{Count: 5, Sum: 10, Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{5}}
	for ts := t0.UnixMilli(); ts < t0.Add(time.Hour).UnixMilli(); ts += 15_000 {
		h = h.Copy()
		h.Count += 2
		h.Sum += 3
		h.PositiveBuckets[0] += 2
		_, err := app.AppendHistogram(0, labels.FromStrings(labels.MetricName, "http_requests_total", "job", "job0", "instance", "h"), ts, h, nil)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	engine := newEngine(50_000_000)
	reg := prometheus.NewRegistry()
	direct := New(engine, nil, 50_000_000, time.Minute, 2, reg)
	q := promtest.Concurrent{Queryable: st}
	start, end := t0.Add(10*time.Minute), t0.Add(50*time.Minute)
	for _, qs := range []string{
		`sum(rate(http_requests_total[1m] @ 600))`,
		`sum(rate(http_requests_total[1m] @ end()))`,
		`sum(rate(http_requests_total[1m+1m]))`,
		`sum(idelta(http_requests_total[1m]))`,
		`topk(2, rate(http_requests_total[1m]))`,
		`sum(rate(http_requests_total[1m])) by (job) * 2`,
		`rate(http_requests_total[1m])`,
		`sum(rate(http_requests_total[5m:1m]))`,
		`sum(rate(http_requests_total[1m]) > 0)`,
		`sum(rate(http_requests_total[1m] offset -0.0005))`, // not whole milliseconds
		`sum(rate(http_requests_total[60.0006]))`,
		`sum(rate(http_requests_total[`, // a parse error: the engine's to say
	} {
		want := answer(t, engine, st, qs, start, end, time.Minute)
		require.Equal(t, want, answer(t, direct, q, qs, start, end, time.Minute), qs)
	}
	require.Equal(t, 12.0, evaluations(t, reg, "engine"))
	require.Zero(t, evaluations(t, reg, "direct"))

	// The histogram series: taken, then handed to the engine.
	qs := `sum by (job) (rate(http_requests_total[2m]))`
	want := answer(t, engine, st, qs, start, end, time.Minute)
	require.Contains(t, want, "mix of histograms and floats", "the engine warns of job0's sum (a histogram and floats)")
	require.Equal(t, want, answer(t, direct, q, qs, start, end, time.Minute))
	require.Equal(t, 1.0, evaluations(t, reg, "fallback"))
	// Without it, evaluated here.
	qs = `sum by (job) (rate(http_requests_total{instance!="h"}[2m]))`
	require.Equal(t, answer(t, engine, st, qs, start, end, time.Minute), answer(t, direct, q, qs, start, end, time.Minute))
	require.Equal(t, 1.0, evaluations(t, reg, "direct"))
}

// TestStats: the samples counted are the engine's.
func TestStats(t *testing.T) {
	st := teststorage.New(t)
	defer st.Close()
	counters(t, st, 40, 7)
	engine := newEngine(50_000_000)
	direct := New(engine, nil, 50_000_000, time.Minute, 2, nil)
	for _, qs := range []string{`sum(rate(http_requests_total[5m]))`, `max by (job) (increase(http_requests_total[30s] offset 1m))`} {
		for _, step := range []time.Duration{0, 15 * time.Second, 2 * time.Minute} {
			samples := func(e promql.QueryEngine) (int64, int64) {
				start := t0.Add(10 * time.Minute)
				if step == 0 {
					start = t0.Add(30 * time.Minute)
				}
				qry, err := ask(e, st, qs, start, t0.Add(50*time.Minute), step)
				require.NoError(t, err)
				defer qry.Close()
				require.NoError(t, qry.Exec(context.Background()).Err)
				s := qry.Stats().Samples
				return s.TotalSamples, s.SamplesRead
			}
			wantTotal, wantRead := samples(engine)
			gotTotal, gotRead := samples(direct)
			require.Positive(t, wantTotal)
			require.Equal(t, wantTotal, gotTotal, "%s, step %s: samples in windows", qs, step)
			require.Equal(t, wantRead, gotRead, "%s, step %s: samples read", qs, step)
		}
	}
}

// TestSampleLimit: a query that could come near the engine's sample limit
// is the engine's, which refuses it as it would.
func TestSampleLimit(t *testing.T) {
	st := teststorage.New(t)
	defer st.Close()
	counters(t, st, 40, 5)
	engine := newEngine(1000)
	reg := prometheus.NewRegistry()
	direct := New(engine, nil, 1000, time.Minute, 2, reg)
	qs := `sum without (instance) (rate(http_requests_total[5m]))`
	start, end := t0.Add(10*time.Minute), t0.Add(50*time.Minute)
	want := answer(t, engine, st, qs, start, end, 15*time.Second)
	require.Contains(t, want, "query processing would load too many samples")
	require.Equal(t, want, answer(t, direct, st, qs, start, end, 15*time.Second))
	require.Equal(t, 1.0, evaluations(t, reg, "fallback"))
}

// TestCancelAndTimeout: a canceled query and one past the timeout end with
// the engine's errors.
func TestCancelAndTimeout(t *testing.T) {
	st := teststorage.New(t)
	defer st.Close()
	counters(t, st, 40, 6)
	engine := newEngine(50_000_000)
	qs := `sum(rate(http_requests_total[5m]))`
	start, end := t0, t0.Add(time.Hour)

	direct := New(engine, nil, 50_000_000, time.Minute, 2, nil)
	qry, err := direct.NewRangeQuery(context.Background(), st, nil, qs, start, end, time.Second)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := qry.Exec(ctx)
	require.ErrorAs(t, res.Err, new(promql.ErrQueryCanceled))
	qry.Close()

	direct = New(engine, nil, 50_000_000, time.Nanosecond, 2, nil)
	qry, err = direct.NewRangeQuery(context.Background(), st, nil, qs, start, end, time.Second)
	require.NoError(t, err)
	res = qry.Exec(context.Background())
	// Past the deadline while selecting ("expanding series: context
	// deadline exceeded", as the engine says then) or while evaluating.
	require.True(t, errors.Is(res.Err, context.DeadlineExceeded) || errors.As(res.Err, new(promql.ErrQueryTimeout)), "%v", res.Err)
	qry.Close()

	// Canceled before it runs: it does not.
	direct = New(engine, nil, 50_000_000, time.Minute, 2, nil)
	qry, err = direct.NewRangeQuery(context.Background(), st, nil, qs, start, end, time.Second)
	require.NoError(t, err)
	qry.Cancel()
	res = qry.Exec(context.Background())
	require.True(t, errors.Is(res.Err, context.Canceled) || errors.As(res.Err, new(promql.ErrQueryCanceled)), "%v", res.Err)
	qry.Close()
}

// BenchmarkSumRate: sum by (job) (rate(x[1m])) over 10k series of an hour
// at 15 s, 30 minutes at a 60-s step, of the engine and evaluated here (one
// worker: the engine evaluates on one core too).
//
//	go test -run '^$' -bench SumRate -benchtime 20x ./internal/promdirect
func BenchmarkSumRate(b *testing.B) {
	st := teststorage.New(b)
	defer st.Close()
	app := st.Appender(context.Background())
	for i := range 10_000 {
		lset := labels.FromStrings(labels.MetricName, "http_requests_total", "job", fmt.Sprintf("job%d", i%10), "instance", fmt.Sprintf("i%d", i))
		v := 0.0
		for ts := t0.UnixMilli(); ts < t0.Add(time.Hour).UnixMilli(); ts += 15_000 {
			v += float64(i%13 + 1)
			if _, err := app.Append(0, lset, ts, v); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	benchEngines(b, st, `sum by (job) (rate(http_requests_total[1m]))`)
}

// panicky selects series whose iterators panic.
type panicky struct{ storage.Queryable }

func (p panicky) ConcurrentSeries() bool { return true }

func (p panicky) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := p.Queryable.Querier(mint, maxt)
	return panickyQuerier{q}, err
}

type panickyQuerier struct{ storage.Querier }

func (p panickyQuerier) Select(context.Context, bool, *storage.SelectHints, ...*labels.Matcher) storage.SeriesSet {
	var ss []storage.Series
	for i := range 300 {
		ss = append(ss, panickySeries{labels.FromStrings(labels.MetricName, "x_total", "i", fmt.Sprint(i))})
	}
	return promtest.SeriesSet(ss)
}

type panickySeries struct{ lset labels.Labels }

func (p panickySeries) Labels() labels.Labels                        { return p.lset }
func (p panickySeries) Iterator(chunkenc.Iterator) chunkenc.Iterator { panic("a broken chunk") }

// TestPanicIsTheQuerysError: a panic while reading series (on the workers
// or not) ends the query with an error, as the engine's recovery does, not
// the process.
func TestPanicIsTheQuerysError(t *testing.T) {
	st := teststorage.New(t)
	defer st.Close()
	for _, workers := range []int{1, 2} {
		direct := New(newEngine(50_000_000), nil, 50_000_000, time.Minute, workers, nil)
		got := answer(t, direct, panicky{st}, `sum(rate(x_total[1m]))`, t0, t0.Add(time.Hour), time.Minute)
		require.Equal(t, "error: unexpected error: a broken chunk", got)
	}
}

// TestOverflowAsTheEngine: sums and averages past float64's range (the
// engine's incremental mean once a sum would overflow, Inf in a sum over
// time), and NaN everywhere in some windows, are the engine's.
func TestOverflowAsTheEngine(t *testing.T) {
	st := teststorage.New(t)
	defer st.Close()
	app := st.Appender(context.Background())
	for i := range 40 {
		lset := labels.FromStrings(labels.MetricName, "huge_total", "job", fmt.Sprintf("job%d", i%2), "instance", fmt.Sprintf("i%d", i))
		for k := range 240 {
			v := math.MaxFloat64 / float64(1+i%5) * (0.5 + float64(k%7)/14)
			switch {
			case i%13 == 4 && k%9 == 0:
				v = math.NaN()
			case i%11 == 3 && k%17 == 0:
				v = math.Inf(1)
			case i%7 == 6:
				v = -v
			}
			_, err := app.Append(0, lset, t0.Add(time.Duration(k)*15*time.Second).UnixMilli(), v)
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	engine := newEngine(50_000_000)
	reg := prometheus.NewRegistry()
	direct := New(engine, nil, 50_000_000, time.Minute, 1, reg)
	asked := 0
	for _, op := range []string{"sum", "avg", "min", "max"} {
		for _, fn := range []string{"rate", "increase", "irate", "sum_over_time", "max_over_time"} {
			for _, g := range []string{"", "by (job)"} {
				qs := fmt.Sprintf("%s %s (%s(huge_total[2m]))", op, g, fn)
				for _, step := range []time.Duration{0, 45 * time.Second} {
					want := answer(t, engine, st, qs, t0.Add(10*time.Minute), t0.Add(50*time.Minute), step)
					require.Equal(t, want, answer(t, direct, st, qs, t0.Add(10*time.Minute), t0.Add(50*time.Minute), step), "%s, step %s", qs, step)
					asked++
				}
			}
		}
	}
	require.Equal(t, float64(asked), evaluations(t, reg, "direct"))
}

// buckets writes classic histograms: n series of cumulative buckets (le
// 0.1, 0.5, 1, 5, +Inf) over an hour, with resets, missed scrapes, buckets
// that are not monotonic at times (the engine then forces them, and says
// so), a bucket whose le is not a number, and one histogram without +Inf.
func buckets(t *testing.T, st storage.Appendable, n int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed+1))
	app := st.Appender(context.Background())
	les := []string{"0.1", "0.5", "1", "5", "+Inf"}
	for i := range n {
		counts := make([]float64, len(les))
		for ts := t0.UnixMilli(); ts <= t0.Add(time.Hour).UnixMilli(); ts += 15_000 {
			if r.IntN(50) == 0 {
				continue
			}
			if r.IntN(100) == 0 {
				clear(counts)
			}
			add := 0.0
			for j := range les {
				add += r.Float64() * 3
				counts[j] += add
			}
			for j, le := range les {
				if i%9 == 8 && le == "+Inf" {
					continue
				}
				v := counts[j]
				if i%5 == 2 && j == 2 && r.IntN(4) == 0 {
					v -= 2 // a bucket below the one before it
				}
				name := "req_duration_seconds_bucket"
				if i%17 == 16 && j == 1 {
					le = "0.5x"
				}
				lset := labels.FromStrings(labels.MetricName, name, "le", le, "job", fmt.Sprintf("job%d", i%3), "instance", fmt.Sprintf("i%d", i))
				_, err := app.Append(0, lset, ts+int64(j), v)
				require.NoError(t, err)
			}
		}
	}
	require.NoError(t, app.Commit())
}

// sortedLines sorts an instant answer's lines: the engine's order of
// histogram_quantile's series is its map's.
func sortedLines(a string) string {
	lines := strings.Split(a, "\n")
	slices.Sort(lines[1:])
	return strings.Join(lines, "\n")
}

// TestHistogramQuantileAsTheEngine: histogram_quantile of a sum by le of
// rate or increase of classic buckets, range and instant, as the engine
// answers it (an instant vector's order aside: the engine's is none).
func TestHistogramQuantileAsTheEngine(t *testing.T) {
	st := teststorage.New(t)
	defer st.Close()
	buckets(t, st, 60, 8)
	engine := newEngine(50_000_000)
	reg := prometheus.NewRegistry()
	r := rand.New(rand.NewPCG(9, 10))
	for _, workers := range []int{1, 3} {
		direct := New(engine, nil, 50_000_000, time.Minute, workers, reg)
		var q storage.Queryable = st
		if workers > 1 {
			q = promtest.Concurrent{Queryable: st}
		}
		for range 80 {
			qs := fmt.Sprintf("histogram_quantile(%s, sum by (%s) (%s(req_duration_seconds_bucket%s[%s])))",
				[]string{"0", "0.5", "0.9", "0.99", "1"}[r.IntN(5)],
				[]string{"le", "le, job", "job, le", "instance, le"}[r.IntN(4)],
				[]string{"rate", "increase"}[r.IntN(2)],
				[]string{"", `{job="job1"}`, `{instance=~"i1.*"}`}[r.IntN(3)],
				[]string{"1m", "5m", "30s"}[r.IntN(3)])
			start := t0.Add(time.Duration(r.Int64N(int64(60 * time.Minute))))
			end := start.Add(time.Duration(r.Int64N(int64(30 * time.Minute))))
			step := []time.Duration{0, 15 * time.Second, time.Minute, 7 * time.Minute}[r.IntN(4)]
			want := answer(t, engine, st, qs, start, end, step)
			got := answer(t, direct, q, qs, start, end, step)
			if step == 0 {
				want, got = sortedLines(want), sortedLines(got)
			}
			require.Equal(t, want, got, "%s from %s to %s step %s, %d workers", qs, start, end, step, workers)
		}
	}
	// Those whose buckets had to be made monotonic at some step went to
	// the engine.
	direct, fallback := evaluations(t, reg, "direct"), evaluations(t, reg, "fallback")
	require.Equal(t, 160.0, direct+fallback)
	require.Greater(t, direct, 40.0)
	require.Positive(t, fallback)
	require.Zero(t, evaluations(t, reg, "engine"))
}

// BenchmarkHistogramQuantile: the 99th percentile by job of 1,000
// histograms of 10 buckets (10k series of an hour at 15 s), 30 minutes at a
// 60-s step, of the engine and evaluated here (one worker).
//
//	go test -run '^$' -bench HistogramQuantile -benchtime 20x ./internal/promdirect
func BenchmarkHistogramQuantile(b *testing.B) {
	st := teststorage.New(b)
	defer st.Close()
	app := st.Appender(context.Background())
	les := []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"}
	for i := range 1_000 {
		for j, le := range les {
			lset := labels.FromStrings(labels.MetricName, "http_request_duration_seconds_bucket", "job", fmt.Sprintf("job%d", i%10), "instance", fmt.Sprintf("i%d", i), "le", le)
			v := 0.0
			for ts := t0.UnixMilli(); ts < t0.Add(time.Hour).UnixMilli(); ts += 15_000 {
				v += float64(j + i%3 + 1)
				if _, err := app.Append(0, lset, ts, v); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	benchEngines(b, st, `histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))`)
}

// TestHistogramQuantileSampleLimit: histogram_quantile holds more at once
// in the engine than the sum under it; near the limit the engine answers,
// here refusing as it would.
func TestHistogramQuantileSampleLimit(t *testing.T) {
	st := teststorage.New(t)
	defer st.Close()
	app := st.Appender(context.Background())
	for k := range 500 {
		_, err := app.Append(0, labels.FromStrings(labels.MetricName, "one_bucket", "le", "+Inf"), t0.Add(time.Duration(k)*10*time.Second).UnixMilli(), float64(k))
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	engine := newEngine(1000)
	reg := prometheus.NewRegistry()
	direct := New(engine, nil, 1000, time.Minute, 1, reg)
	qs := `histogram_quantile(0.5, sum by (le) (rate(one_bucket[20s])))`
	start := t0.Add(time.Minute)
	end := start.Add(399 * 10 * time.Second)
	want := answer(t, engine, st, qs, start, end, 10*time.Second)
	require.Contains(t, want, "too many samples")
	require.Equal(t, want, answer(t, direct, st, qs, start, end, 10*time.Second))
	require.Equal(t, 1.0, evaluations(t, reg, "fallback"))
}

// benchEngines times qs over st's hour, 30 minutes at a 60-s step, of the
// engine and evaluated here (one worker: the engine evaluates on one core
// too); its answer must be 10 series.
func benchEngines(b *testing.B, st storage.Queryable, qs string) {
	engine := newEngine(50_000_000)
	start, end := t0.Add(29*time.Minute), t0.Add(59*time.Minute)
	for _, c := range []struct {
		name string
		e    promql.QueryEngine
	}{{"engine", engine}, {"direct", New(engine, nil, 50_000_000, time.Minute, 1, nil)}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				qry, err := c.e.NewRangeQuery(context.Background(), st, nil, qs, start, end, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if res := qry.Exec(context.Background()); res.Err != nil || len(res.Value.(promql.Matrix)) != 10 {
					b.Fatal(res.Err, res.Value)
				}
				qry.Close()
			}
		})
	}
}
