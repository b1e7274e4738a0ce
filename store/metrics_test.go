package store_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/store"
)

// sample is one float sample of a series.
type sample struct {
	lset labels.Labels
	t    int64
	v    float64
	h    *histogram.Histogram
	fh   *histogram.FloatHistogram
}

// scrapeData is 2 hours of 15 s scrapes of 40 series: counters of HTTP
// requests by job and instance, gauges of temperature, with a counter reset
// and a series that stops (staleness) half-way; classic histograms; native
// histograms (integer counters whose buckets grow and that reset, float
// gauge histograms) and a series that turns from floats into histograms.
func scrapeData(start time.Time) [][]sample {
	var rounds [][]sample
	counters := map[string]float64{}
	for i := range 480 {
		t := start.Add(time.Duration(i) * 15 * time.Second).UnixMilli()
		var round []sample
		for inst := range 10 {
			for _, job := range []string{"api", "web"} {
				ls := labels.FromStrings("__name__", "http_requests_total", "job", job, "instance", fmt.Sprintf("10.0.0.%d:9090", inst), "code", "200")
				k := ls.String()
				counters[k] += float64((inst+1)*(i%7+1)) + 0.5
				if job == "web" && inst == 3 && i == 200 {
					counters[k] = 0 // a counter reset
				}
				round = append(round, sample{lset: ls, t: t, v: counters[k]})
				if !(job == "api" && inst == 9 && i > 240) { // a target that goes away
					g := labels.FromStrings("__name__", "temperature_celsius", "job", job, "instance", fmt.Sprintf("10.0.0.%d:9090", inst))
					round = append(round, sample{lset: g, t: t, v: 20 + 10*math.Sin(float64(i+inst)/30)})
				}
			}
		}
		// A classic histogram per job: cumulative buckets, _sum, _count.
		for j, job := range []string{"api", "web"} {
			var cum float64
			for b, le := range []string{"0.05", "0.1", "0.5", "1", "+Inf"} {
				cum += float64((i*(b+1)+j)%5 + b)
				key := job + le
				counters[key] += cum
				round = append(round, sample{lset: labels.FromStrings("__name__", "request_duration_seconds_bucket", "job", job, "le", le), t: t, v: counters[key]})
			}
			counters[job+"sum"] += cum * 0.3
			round = append(round,
				sample{lset: labels.FromStrings("__name__", "request_duration_seconds_sum", "job", job), t: t, v: counters[job+"sum"]},
				sample{lset: labels.FromStrings("__name__", "request_duration_seconds_count", "job", job), t: t, v: counters[job+"+Inf"]})
		}
		round = append(round, nativeHistograms(t, i)...)
		rounds = append(rounds, round)
	}
	return rounds
}

// nativeHistograms returns round i's native histogram samples.
func nativeHistograms(t int64, i int) []sample {
	var out []sample
	for j, job := range []string{"api", "web"} {
		// An exponential (schema 1) counter histogram. Its observations
		// spread to a higher bucket after round 100 (the chunk is recoded
		// with a new bucket) and web's restarts at round 300.
		n := i
		if job == "web" && i >= 300 {
			n = i - 300
		}
		buckets := []int64{int64(n * (j + 1)), int64(n * 2), int64(n)}
		spans := []histogram.Span{{Offset: -2, Length: 3}}
		if i >= 100 {
			buckets = append(buckets, int64(n/3))
			spans = []histogram.Span{{Offset: -2, Length: 3}, {Offset: 2, Length: 1}}
		}
		var count, abs int64
		deltas := make([]int64, len(buckets))
		for k, b := range buckets {
			deltas[k] = b - abs
			abs = b
			count += b
		}
		h := &histogram.Histogram{
			Schema: 1, ZeroThreshold: 0.001, ZeroCount: uint64(n / 4),
			Count: uint64(count) + uint64(n/4), Sum: float64(count) * 0.37,
			PositiveSpans: spans, PositiveBuckets: deltas,
		}
		out = append(out, sample{lset: labels.FromStrings("__name__", "rpc_duration_seconds", "job", job), t: t, h: h})
		// A float gauge histogram that goes up and down.
		fill := 5 + 4*math.Sin(float64(i+j*7)/20)
		fh := &histogram.FloatHistogram{
			CounterResetHint: histogram.GaugeType, Schema: 0,
			Count: fill * 3, Sum: fill * 11.5,
			PositiveSpans:   []histogram.Span{{Offset: 0, Length: 3}},
			PositiveBuckets: []float64{fill, fill, fill},
		}
		out = append(out, sample{lset: labels.FromStrings("__name__", "queue_fill", "job", job), t: t, fh: fh})
	}
	// One series that is a float gauge for the first hour, then a
	// histogram.
	mixed := labels.FromStrings("__name__", "changing_kind", "job", "api")
	if i < 240 {
		out = append(out, sample{lset: mixed, t: t, v: float64(i % 13)})
	} else {
		out = append(out, sample{lset: mixed, t: t, h: &histogram.Histogram{
			Schema: 0, Count: uint64(i), Sum: float64(i),
			PositiveSpans: []histogram.Span{{Offset: 1, Length: 1}}, PositiveBuckets: []int64{int64(i)},
		}})
	}
	return out
}

func appendRounds(t *testing.T, app storage.Appendable, rounds [][]sample) {
	t.Helper()
	for _, round := range rounds {
		a := app.Appender(context.Background())
		for _, s := range round {
			var err error
			if s.h != nil || s.fh != nil {
				_, err = a.AppendHistogram(0, s.lset, s.t, s.h, s.fh)
			} else {
				_, err = a.Append(0, s.lset, s.t, s.v)
			}
			require.NoError(t, err, "%s at %d", s.lset, s.t)
		}
		require.NoError(t, a.Commit())
	}
}

var promqlCases = []string{
	`http_requests_total`,
	`rate(http_requests_total[5m])`,
	`irate(http_requests_total[5m])`,
	`increase(http_requests_total{job="web"}[10m])`,
	`sum by (job) (rate(http_requests_total[5m]))`,
	`avg by (instance) (temperature_celsius)`,
	`max_over_time(temperature_celsius[10m])`,
	`topk(3, temperature_celsius)`,
	`http_requests_total offset 30m`,
	`temperature_celsius @ %d`,
	`max_over_time(rate(http_requests_total[5m])[30m:1m])`,
	`absent(nonexistent_metric)`,
	`absent(temperature_celsius{instance="10.0.0.9:9090",job="api"})`,
	`label_replace(temperature_celsius, "host", "$1", "instance", "(.*):.*")`,
	`temperature_celsius > on (job, instance) group_left sum by (job, instance) (rate(http_requests_total[5m]))`,
	`count({__name__=~"http.*|temp.*", instance!~"10.0.0.[0-4]:.*"})`,
	`temperature_celsius{job!="api"} / ignoring (job) group_left temperature_celsius{job="api"}`,
	`count(temperature_celsius)`,
	`histogram_quantile(0.9, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))`,
	`histogram_quantile(0.5, rate(request_duration_seconds_bucket{job="api"}[10m]))`,
	`rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])`,
	`quantile_over_time(0.9, temperature_celsius[15m])`,
	`deriv(temperature_celsius[10m])`,
	`sort_desc(avg_over_time(temperature_celsius[30m]))`,
	// Native histograms.
	`rpc_duration_seconds`,
	`histogram_quantile(0.9, sum by (job) (rate(rpc_duration_seconds[5m])))`,
	`histogram_quantile(0.99, rate(rpc_duration_seconds{job="web"}[10m]))`,
	`histogram_count(increase(rpc_duration_seconds[10m]))`,
	`histogram_sum(rate(rpc_duration_seconds[5m])) / histogram_count(rate(rpc_duration_seconds[5m]))`,
	`histogram_fraction(0, 2, rate(rpc_duration_seconds[5m]))`,
	`resets(rpc_duration_seconds[30m])`,
	`queue_fill`,
	`histogram_quantile(0.5, queue_fill)`,
	`histogram_avg(avg_over_time(queue_fill[10m]))`,
	`max by (job) (histogram_count(queue_fill))`,
	`changing_kind`,
	`count_over_time(changing_kind[20m])`,
}

// TestPromQLAgreesWithPrometheus loads the same samples into Lumen and into
// Prometheus' own TSDB and checks that Prometheus' PromQL engine gives the
// same answers over both.
// TestPromQLCompliance (promql_compliance_test.go) does the same for the
// query classes of the PromQL compliance tester, over demo-service data.
func TestPromQLAgreesWithPrometheus(t *testing.T) {
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	rounds := scrapeData(start)
	db := openStore(t, t.TempDir(), func(o *store.Options) { o.Retention = 0 })
	defer db.Close()
	ref := teststorage.New(t)
	defer ref.Close()
	appendRounds(t, db, rounds)
	appendRounds(t, ref, rounds)
	checkAgainst(t, db, ref, start)
}

func checkAgainst(t *testing.T, lumen, prom storage.Queryable, start time.Time) {
	t.Helper()
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute, EnableAtModifier: true, EnableNegativeOffset: true})
	for _, q := range promqlCases {
		if q == `temperature_celsius @ %d` {
			q = fmt.Sprintf(q, start.Add(45*time.Minute).Unix())
		}
		t.Run(q, func(t *testing.T) {
			if q == "http_requests_total" {
				got := instant(t, engine, lumen, q, start.Add(time.Hour))
				require.Equal(t, 20, strings.Count(got, `__name__="http_requests_total"`), "every series answers:\n%s", got)
			}
			if q == "rpc_duration_seconds" || q == "queue_fill" {
				got := instant(t, engine, lumen, q, start.Add(time.Hour))
				require.Equal(t, 2, strings.Count(got, "{count:"), "both histograms answer:\n%s", got)
			}
			for _, at := range []time.Duration{30 * time.Minute, 61 * time.Minute, 90 * time.Minute, 119 * time.Minute} {
				want := instant(t, engine, prom, q, start.Add(at))
				got := instant(t, engine, lumen, q, start.Add(at))
				require.Equal(t, want, got, "instant query at +%s", at)
			}
			want := rangeQuery(t, engine, prom, q, start, start.Add(2*time.Hour))
			got := rangeQuery(t, engine, lumen, q, start, start.Add(2*time.Hour))
			require.Equal(t, want, got, "range query")
		})
	}
}

func instant(t *testing.T, e *promql.Engine, q storage.Queryable, expr string, at time.Time) string {
	t.Helper()
	qry, err := e.NewInstantQuery(context.Background(), q, nil, expr, at)
	require.NoError(t, err)
	defer qry.Close()
	res := qry.Exec(context.Background())
	require.NoError(t, res.Err)
	// PromQL does not order the elements of an instant vector (aggregations
	// come out in hash order): compare them as a set.
	lines := strings.Split(res.String(), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func rangeQuery(t *testing.T, e *promql.Engine, q storage.Queryable, expr string, from, to time.Time) string {
	t.Helper()
	qry, err := e.NewRangeQuery(context.Background(), q, nil, expr, from, to, time.Minute)
	require.NoError(t, err)
	defer qry.Close()
	res := qry.Exec(context.Background())
	require.NoError(t, res.Err)
	return res.String()
}

// TestMetricsReplayedAfterACrash: every kind of sample (floats, integer and
// float native histograms, a series that changes kind) comes back from the
// WAL after a crash, with the same PromQL answers.
func TestMetricsReplayedAfterACrash(t *testing.T) {
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	rounds := scrapeData(start)
	dir := t.TempDir()
	db := openStore(t, dir, func(o *store.Options) { o.Retention = 0 })
	appendRounds(t, db, rounds)
	db.Abandon(t)

	db = openStore(t, dir, func(o *store.Options) { o.Retention = 0 })
	defer db.Close()
	ref := teststorage.New(t)
	defer ref.Close()
	appendRounds(t, ref, rounds)
	checkAgainst(t, db, ref, start)
}

// reopenedMidway writes the first 300 rounds, closes and reopens the store
// (series continue under new refs), then writes the rest: data in
// partitions and in the head.
func reopenedMidway(t *testing.T, dir string, rounds [][]sample) *store.DB {
	t.Helper()
	db := openStore(t, dir, func(o *store.Options) { o.Retention = 0 })
	appendRounds(t, db, rounds[:300])
	require.NoError(t, db.Close())
	db = openStore(t, dir, func(o *store.Options) { o.Retention = 0 })
	appendRounds(t, db, rounds[300:])
	return db
}

func TestMetricsAfterReopen(t *testing.T) {
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	rounds := scrapeData(start)
	dir := t.TempDir()
	db := reopenedMidway(t, dir, rounds)
	ref := teststorage.New(t)
	defer ref.Close()
	appendRounds(t, ref, rounds)
	checkAgainst(t, db, ref, start)
	require.NoError(t, db.Close())

	db = openStore(t, dir, func(o *store.Options) { o.Retention = 0 })
	defer db.Close()
	checkAgainst(t, db, ref, start)
}

func TestAppendRefusesOutOfOrderAndDuplicates(t *testing.T) {
	db := openStore(t, t.TempDir(), func(o *store.Options) { o.MetricsOutOfOrderWindow = 0 })
	defer db.Close()
	ls := labels.FromStrings("__name__", "up", "job", "x")
	a := db.Appender(context.Background())
	_, err := a.Append(0, ls, 2000, 1)
	require.NoError(t, err)
	require.NoError(t, a.Commit())

	a = db.Appender(context.Background())
	_, err = a.Append(0, ls, 1000, 1)
	require.ErrorIs(t, err, storage.ErrOutOfOrderSample, "with no window, every older sample is refused")
	_, err = a.Append(0, ls, 2000, 1)
	require.NoError(t, err, "the same sample again is ignored")
	_, err = a.Append(0, ls, 2000, 5)
	require.ErrorIs(t, err, storage.ErrDuplicateSampleForTimestamp)
	_, err = a.Append(0, ls, 3000, 1)
	require.NoError(t, err)
	_, err = a.Append(0, ls, 3000, 2)
	require.ErrorIs(t, err, storage.ErrOutOfOrderSample, "twice in one request")
	_, err = a.Append(0, labels.EmptyLabels(), 3000, 2)
	require.ErrorIs(t, err, store.ErrInvalid)
	_, err = a.Append(0, ls, time.Now().Add(time.Hour).UnixMilli(), 1)
	require.ErrorIs(t, err, storage.ErrOutOfBounds)
	require.ErrorContains(t, err, "ahead of the server's clock")
	// Staleness markers and infinities are values Prometheus sends.
	_, err = a.Append(0, ls, 4000, math.Float64frombits(value.StaleNaN))
	require.NoError(t, err)
	_, err = a.Append(0, ls, 5000, math.Inf(1))
	require.NoError(t, err)
	require.NoError(t, a.Commit())
}

// TestOutOfOrderWithinTheWindow: late samples within the window are kept,
// merged in time order with the rest, through flushes and restarts; older
// ones are refused as too old.
func TestOutOfOrderWithinTheWindow(t *testing.T) {
	dir := t.TempDir()
	db := openStore(t, dir, func(o *store.Options) { o.MetricsOutOfOrderWindow = 10 * time.Minute })
	ls := labels.FromStrings("__name__", "late_total", "job", "x")
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	at := func(i int) int64 { return start.Add(time.Duration(i) * time.Second).UnixMilli() }
	write := func(is ...int) {
		a := db.Appender(context.Background())
		for _, i := range is {
			_, err := a.Append(0, ls, at(i), float64(i))
			require.NoError(t, err, "sample %d", i)
		}
		require.NoError(t, a.Commit())
	}
	// Even seconds in order (0..1198), then the odd ones of the last 10
	// minutes (601..1199) late, in reverse: 300 late samples make two full
	// out-of-order chunks and a partial one.
	var even, odd []int
	for i := 0; i < 1200; i += 2 {
		even = append(even, i)
	}
	for i := 1199; i > 600; i -= 2 {
		odd = append(odd, i)
	}
	write(even...)
	write(odd...)
	a := db.Appender(context.Background())
	_, err := a.Append(0, ls, at(595), 595)
	require.ErrorIs(t, err, storage.ErrTooOldSample, "older than the window")
	require.ErrorContains(t, err, "out-of-order window (10m0s)")
	require.NoError(t, a.Rollback())

	check := func(db *store.DB) {
		t.Helper()
		engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
		q, err := engine.NewRangeQuery(context.Background(), db, nil, `late_total`, time.UnixMilli(at(600)), time.UnixMilli(at(1199)), time.Second)
		require.NoError(t, err)
		res := q.Exec(context.Background())
		require.NoError(t, res.Err)
		m, err := res.Matrix()
		require.NoError(t, err)
		require.Len(t, m, 1)
		require.Len(t, m[0].Floats, 600)
		for k, p := range m[0].Floats {
			require.Equal(t, at(600+k), p.T)
			require.Equal(t, float64(600+k), p.F, "sample %d", 600+k)
		}
	}
	check(db)
	require.NoError(t, db.Close())
	db = openStore(t, dir)
	defer db.Close()
	check(db)
}

// TestSelectWithLimit: a limited selection is the first series of the full,
// sorted one that have samples in the range — over reopened partitions and
// the head alike — with the same samples.
func TestSelectWithLimit(t *testing.T) {
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	db := reopenedMidway(t, t.TempDir(), scrapeData(start))
	defer db.Close()

	read := func(set storage.SeriesSet) []string {
		var out []string
		for set.Next() {
			s := set.At()
			var b strings.Builder
			b.WriteString(s.Labels().String())
			it := s.Iterator(nil)
			n := 0
			for it.Next() != 0 {
				n++
			}
			fmt.Fprintf(&b, " %d samples", n)
			out = append(out, b.String())
		}
		require.NoError(t, set.Err())
		return out
	}
	for _, window := range [][2]time.Duration{{0, 2 * time.Hour}, {70 * time.Minute, 80 * time.Minute}, {110 * time.Minute, 3 * time.Hour}} {
		mint, maxt := start.Add(window[0]).UnixMilli(), start.Add(window[1]).UnixMilli()
		q, err := db.Querier(mint, maxt)
		require.NoError(t, err)
		for _, ms := range [][]*labels.Matcher{
			{labels.MustNewMatcher(labels.MatchRegexp, "__name__", "http_requests_total|temperature_celsius")},
			{labels.MustNewMatcher(labels.MatchEqual, "job", "web"), labels.MustNewMatcher(labels.MatchNotRegexp, "__name__", "http_.+")},
		} {
			all := read(q.Select(context.Background(), true, &storage.SelectHints{Start: mint, End: maxt}, ms...))
			require.NotEmpty(t, all)
			for _, limit := range []int{1, 3, len(all), len(all) + 5} {
				got := read(q.Select(context.Background(), true, &storage.SelectHints{Start: mint, End: maxt, Limit: limit}, ms...))
				require.Equal(t, all[:min(limit, len(all))], got, "limit %d, %v", limit, ms)
			}
		}
		require.NoError(t, q.Close())
	}
}

// TestNegativeNameMatcher: negative matchers on the metric name (checked on
// each candidate's labels, as the postings cannot say what lacks a value)
// select the right series over many candidates, in partitions and the head.
func TestNegativeNameMatcher(t *testing.T) {
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var rounds [][]sample
	for r := range 4 {
		var round []sample
		for n := range 10 {
			for i := range 20 {
				for _, job := range []string{"api", "web"} {
					lset := labels.FromStrings("__name__", fmt.Sprintf("m_%d", n), "job", job, "instance", fmt.Sprint(i))
					round = append(round, sample{lset: lset, t: start.Add(time.Duration(r) * time.Minute).UnixMilli(), v: float64(r)})
				}
			}
		}
		rounds = append(rounds, round)
	}
	dir := t.TempDir()
	db := openStore(t, dir, func(o *store.Options) { o.Retention = 0 })
	appendRounds(t, db, rounds[:2])
	require.NoError(t, db.Close())
	db = openStore(t, dir, func(o *store.Options) { o.Retention = 0 })
	defer db.Close()
	appendRounds(t, db, rounds[2:])

	q, err := db.Querier(start.UnixMilli(), start.Add(time.Hour).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	for _, tc := range []struct {
		ms   []*labels.Matcher
		want func(name, job string) bool
	}{
		{[]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "api"), labels.MustNewMatcher(labels.MatchNotRegexp, "__name__", "m_[0-4]")},
			func(name, job string) bool { return job == "api" && name >= "m_5" }},
		{[]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "web"), labels.MustNewMatcher(labels.MatchNotEqual, "__name__", "m_3")},
			func(name, job string) bool { return job == "web" && name != "m_3" }},
		{[]*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "job", "api|web"), labels.MustNewMatcher(labels.MatchNotRegexp, "__name__", "m_.+")},
			func(string, string) bool { return false }},
	} {
		set := q.Select(context.Background(), true, nil, tc.ms...)
		got := map[string]int{}
		for set.Next() {
			l := set.At().Labels()
			require.True(t, tc.want(l.Get("__name__"), l.Get("job")), "%s selected by %v", l, tc.ms)
			it := set.At().Iterator(nil)
			for it.Next() != 0 {
				got[l.String()]++
			}
		}
		require.NoError(t, set.Err())
		n := 0
		for name := range 10 {
			for _, job := range []string{"api", "web"} {
				if tc.want(fmt.Sprintf("m_%d", name), job) {
					n += 20
				}
			}
		}
		require.Len(t, got, n, "%v", tc.ms)
		for k, samples := range got {
			require.Equal(t, 4, samples, "%s: samples from the partition and the head", k)
		}
	}
}
