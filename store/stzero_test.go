package store_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/store"
)

// samplesOf lists the samples of the series named name as "seconds=value"
// (times relative to base), a native histogram as "seconds=h(count/schema)".
func samplesOf(t *testing.T, db *store.DB, base time.Time, ms ...*labels.Matcher) []string {
	t.Helper()
	q, err := db.Querier(0, math.MaxInt64/2)
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), false, nil, ms...)
	var out []string
	n := 0
	for set.Next() {
		n++
		it := set.At().Iterator(nil)
		for typ := it.Next(); typ != chunkenc.ValNone; typ = it.Next() {
			at := float64(it.AtT()-base.UnixMilli()) / 1000
			switch typ {
			case chunkenc.ValHistogram:
				_, h := it.AtHistogram(nil)
				out = append(out, fmt.Sprintf("%g=h(%d/%d)", at, h.Count, h.Schema))
			case chunkenc.ValFloatHistogram:
				_, h := it.AtFloatHistogram(nil)
				out = append(out, fmt.Sprintf("%g=h(%g/%d)", at, h.Count, h.Schema))
			default:
				_, v := it.At()
				out = append(out, fmt.Sprintf("%g=%g", at, v))
			}
		}
	}
	require.NoError(t, set.Err())
	require.LessOrEqual(t, n, 1, "one series")
	return out
}

func nameIs(n string) *labels.Matcher { return labels.MustNewMatcher(labels.MatchEqual, "__name__", n) }

func typed(typ model.MetricType) storage.AppendV2Options {
	return storage.AppendV2Options{Metadata: metadata.Metadata{Type: typ}}
}

// TestStartTimeZeroes: through the AppenderV2 (the OTLP translator's), a
// cumulative series' sample with a start time comes after a zero at that
// start time, as Prometheus' head writes it with created-timestamp zero
// ingestion — once per start, never over or among the series' samples, not
// for gauges, a summary's quantiles or staleness markers — so that
// increase() counts the first sample.
func TestStartTimeZeroes(t *testing.T) {
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	clk := &clock{t: base}
	db := openStore(t, t.TempDir(), func(o *store.Options) { o.Now = clk.Now })
	defer db.Close()
	ms := func(s float64) int64 { return base.Add(time.Duration(s * float64(time.Second))).UnixMilli() }
	native := func(count uint64) *histogram.Histogram {
		return &histogram.Histogram{Schema: 1, Count: count, Sum: float64(count), ZeroThreshold: 0.001,
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{int64(count)}}
	}
	write := func(st, at float64, v float64, h *histogram.Histogram) {
		t.Helper()
		app := db.AppenderV2(context.Background())
		for _, s := range []struct {
			ls  labels.Labels
			typ model.MetricType
		}{
			{labels.FromStrings("__name__", "jobs_total"), model.MetricTypeCounter},
			{labels.FromStrings("__name__", "queue_length"), model.MetricTypeGauge},
			{labels.FromStrings("__name__", "rpc_seconds", "quantile", "0.5"), model.MetricTypeSummary},
			{labels.FromStrings("__name__", "rpc_seconds_count"), model.MetricTypeSummary},
			{labels.FromStrings("__name__", "req_seconds_bucket", "le", "+Inf"), model.MetricTypeHistogram},
			{labels.FromStrings("__name__", "delta_total"), model.MetricTypeUnknown},
		} {
			_, err := app.Append(0, s.ls, ms(st), ms(at), v, nil, nil, typed(s.typ))
			require.NoError(t, err, s.ls.String())
		}
		if h != nil {
			_, err := app.Append(0, labels.FromStrings("__name__", "req_native_seconds"), ms(st), ms(at), 0, h, nil, typed(model.MetricTypeHistogram))
			require.NoError(t, err)
		}
		require.NoError(t, app.Commit())
	}
	write(1, 11, 5, native(5))
	write(1, 21, 8, native(8))                               // the same start: no second zero
	write(25, 31, 2, native(2))                              // a restart of the counter: a zero at its new start
	write(15, 41, 3, native(3))                              // a start before the newest sample: no zero among the samples
	write(51, 51, 4, native(4))                              // a start at the sample's own time: nothing before it
	write(0, 61, 6, native(6))                               // no start time
	write(65, 71, math.Float64frombits(value.StaleNaN), nil) // a staleness marker needs no zero

	cumulative := []string{"1=0", "11=5", "21=8", "25=0", "31=2", "41=3", "51=4", "61=6", "71=NaN"}
	for _, n := range []string{"jobs_total", "rpc_seconds_count", "req_seconds_bucket"} {
		require.Equal(t, cumulative, samplesOf(t, db, base, nameIs(n)), n)
	}
	plain := []string{"11=5", "21=8", "31=2", "41=3", "51=4", "61=6", "71=NaN"}
	for _, n := range []string{"queue_length", "rpc_seconds", "delta_total"} {
		require.Equal(t, plain, samplesOf(t, db, base, nameIs(n)), "%s: no zero for a gauge, a quantile or an untyped (delta) series", n)
	}
	require.Equal(t, []string{"1=h(0/1)", "11=h(5/1)", "21=h(8/1)", "25=h(0/1)", "31=h(2/1)", "41=h(3/1)", "51=h(4/1)", "61=h(6/1)"},
		samplesOf(t, db, base, nameIs("req_native_seconds")), "an empty histogram of the same schema")

	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	for expr, want := range map[string]string{
		`increase(jobs_total[30s])`:                          "{} => 5 @[%d]",
		`histogram_count(increase(req_native_seconds[30s]))`: "{} => 5 @[%d]",
	} {
		require.Equal(t, fmt.Sprintf(want, ms(11)), instant(t, engine, db, expr, time.UnixMilli(ms(11))),
			"%s: the first sample counts whole, from the zero at its start", expr)
	}
}

// TestStartTimeZeroAfterRestart: a series the head holds no sample of (here
// after a restart) may have stored samples the head does not know of, so a
// start time before what the store held when this run first appended gets
// no zero — none over a sample stored at it — while a series that starts
// after it does.
func TestStartTimeZeroAfterRestart(t *testing.T) {
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	clk := &clock{t: base}
	dir := t.TempDir()
	open := func() *store.DB { return openStore(t, dir, func(o *store.Options) { o.Now = clk.Now }) }
	ms := func(s int) int64 { return base.Add(time.Duration(s) * time.Second).UnixMilli() }
	counter := typed(model.MetricTypeCounter)
	write := func(db *store.DB, n string, st, at int, v float64) {
		t.Helper()
		app := db.AppenderV2(context.Background())
		_, err := app.Append(0, labels.FromStrings("__name__", n), ms(st), ms(at), v, nil, nil, counter)
		require.NoError(t, err)
		require.NoError(t, app.Commit())
	}
	db := open()
	// A client that takes a series' first point as its start: the first
	// point's start is its own time, later points start there.
	write(db, "scraped_total", 1, 1, 5)
	write(db, "scraped_total", 1, 11, 8)
	require.NoError(t, db.Close())

	clk.Add(time.Minute)
	db = open()
	defer db.Close()
	write(db, "scraped_total", 1, 71, 12)
	clk.Add(time.Second)
	write(db, "fresh_total", 62, 72, 3)
	require.Equal(t, []string{"1=5", "11=8", "71=12"}, samplesOf(t, db, base, nameIs("scraped_total")),
		"no zero over the sample stored at the start time")
	require.Equal(t, []string{"62=0", "72=3"}, samplesOf(t, db, base, nameIs("fresh_total")))
}

// TestAppendSTZeroSample: the Appender's start-time calls (remote-write 2.0
// created timestamps) follow the same rules and say why a zero is refused.
func TestAppendSTZeroSample(t *testing.T) {
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	clk := &clock{t: base}
	db := openStore(t, t.TempDir(), func(o *store.Options) { o.Now = clk.Now })
	defer db.Close()
	ls := labels.FromStrings("__name__", "rw_total")
	at := func(s int) int64 { return base.Add(time.Duration(s) * time.Second).UnixMilli() }

	app := db.Appender(context.Background())
	_, err := app.AppendSTZeroSample(0, ls, at(10), at(10))
	require.ErrorIs(t, err, storage.ErrSTNewerThanSample)
	_, err = app.AppendSTZeroSample(0, ls, at(10), -base.UnixMilli()-1)
	require.ErrorIs(t, err, storage.ErrTooOldSample, "outside the store's time window")
	_, err = app.AppendSTZeroSample(0, ls, at(10), at(5))
	require.NoError(t, err)
	_, err = app.Append(0, ls, at(10), 4)
	require.NoError(t, err)
	_, err = app.AppendSTZeroSample(0, ls, at(20), at(5))
	require.ErrorIs(t, err, storage.ErrOutOfOrderST, "a start the request already wrote")
	require.NoError(t, app.Commit())

	app = db.Appender(context.Background())
	_, err = app.AppendSTZeroSample(0, ls, at(20), at(10))
	require.ErrorIs(t, err, storage.ErrOutOfOrderST, "not after the newest sample")
	h := &histogram.Histogram{Schema: 3, Count: 1, Sum: 1, PositiveSpans: []histogram.Span{{Length: 1}}, PositiveBuckets: []int64{1}}
	hls := labels.FromStrings("__name__", "rw_seconds")
	_, err = app.AppendHistogramSTZeroSample(0, hls, at(20), at(15), nil, nil)
	require.ErrorIs(t, err, store.ErrInvalid)
	_, err = app.AppendHistogramSTZeroSample(0, hls, at(20), at(15), h, nil)
	require.NoError(t, err)
	_, err = app.AppendHistogram(0, hls, at(20), h, nil)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	require.Equal(t, []string{"5=0", "10=4"}, samplesOf(t, db, base, nameIs("rw_total")))
	require.Equal(t, []string{"15=h(0/3)", "20=h(1/3)"}, samplesOf(t, db, base, nameIs("rw_seconds")))
}
