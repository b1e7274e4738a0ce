package otlp_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/lumenobs/lumen/ingest/otlp"
	"github.com/lumenobs/lumen/store"
)

// startedMetrics is one point of each OTLP metric kind, all started at st:
// a monotonic and a non-monotonic cumulative sum, a gauge, a classic and
// an exponential histogram, a summary.
func startedMetrics(st, at time.Time, n int) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "billing")
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	start, ts := pcommon.NewTimestampFromTime(st), pcommon.NewTimestampFromTime(at)
	sum := func(name string, monotonic bool) {
		m := ms.AppendEmpty()
		m.SetName(name)
		s := m.SetEmptySum()
		s.SetIsMonotonic(monotonic)
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		p := s.DataPoints().AppendEmpty()
		p.SetStartTimestamp(start)
		p.SetTimestamp(ts)
		p.SetIntValue(int64(n))
	}
	sum("invoices", true)
	sum("open_invoices", false)
	g := ms.AppendEmpty()
	g.SetName("backlog")
	gp := g.SetEmptyGauge().DataPoints().AppendEmpty()
	gp.SetStartTimestamp(start)
	gp.SetTimestamp(ts)
	gp.SetIntValue(int64(n))

	h := ms.AppendEmpty()
	h.SetName("charge_duration")
	h.SetUnit("s")
	hh := h.SetEmptyHistogram()
	hh.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	hp := hh.DataPoints().AppendEmpty()
	hp.SetStartTimestamp(start)
	hp.SetTimestamp(ts)
	hp.ExplicitBounds().FromRaw([]float64{0.1, 1})
	hp.BucketCounts().FromRaw([]uint64{uint64(n), uint64(n), 0})
	hp.SetCount(uint64(2 * n))
	hp.SetSum(float64(n))

	e := ms.AppendEmpty()
	e.SetName("refund_duration")
	e.SetUnit("s")
	eh := e.SetEmptyExponentialHistogram()
	eh.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	ep := eh.DataPoints().AppendEmpty()
	ep.SetStartTimestamp(start)
	ep.SetTimestamp(ts)
	ep.SetScale(1)
	ep.Positive().SetOffset(-1)
	ep.Positive().BucketCounts().FromRaw([]uint64{uint64(n), uint64(n)})
	ep.SetCount(uint64(2 * n))
	ep.SetSum(float64(n))

	sm := ms.AppendEmpty()
	sm.SetName("payload_bytes")
	sp := sm.SetEmptySummary().DataPoints().AppendEmpty()
	sp.SetStartTimestamp(start)
	sp.SetTimestamp(ts)
	sp.SetCount(uint64(n))
	sp.SetSum(float64(10 * n))
	q := sp.QuantileValues().AppendEmpty()
	q.SetQuantile(0.5)
	q.SetValue(10)
	return md
}

// TestStartTimesBecomeZeroes: OTLP cumulative counters, histograms
// (classic and exponential) and summaries' _sum and _count get a zero at
// their start time, through Prometheus' translator and the store's
// appender, so that increase() counts their first point; gauges,
// non-monotonic sums and quantiles do not. A later point with the same
// start adds no zero.
func TestStartTimesBecomeZeroes(t *testing.T) {
	db, err := store.Open(store.DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	cfg := otlp.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = "", freeAddr(t)
	startReceiver(t, cfg, db)

	st := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	for i, at := range []time.Time{st.Add(10 * time.Second), st.Add(20 * time.Second)} {
		b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(startedMetrics(st, at, 3*(i+1)))
		require.NoError(t, err)
		code, body, _ := post(t, "http://"+cfg.HTTPAddr+"/v1/metrics", b)
		require.Equal(t, http.StatusOK, code, body)
	}

	for name, want := range map[string][]string{
		"invoices_total":                         {"0=0", "10=3", "20=6"},
		"charge_duration_seconds_count":          {"0=0", "10=6", "20=12"},
		"charge_duration_seconds_sum":            {"0=0", "10=3", "20=6"},
		"payload_bytes_count":                    {"0=0", "10=3", "20=6"},
		"payload_bytes_sum":                      {"0=0", "10=30", "20=60"},
		"refund_duration_seconds":                {"0=h(0)", "10=h(6)", "20=h(12)"},
		"open_invoices":                          {"10=3", "20=6"},
		"backlog":                                {"10=3", "20=6"},
		"payload_bytes":                          {"10=10", "20=10"},
		`charge_duration_seconds_bucket{le="1"}`: {"0=0", "10=6", "20=12"},
	} {
		sel, err := parser.NewParser(parser.Options{}).ParseMetricSelector(name)
		require.NoError(t, err)
		require.Equal(t, want, samples(t, db, st, sel...), name)
	}

	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	first := st.Add(10 * time.Second)
	for expr, want := range map[string]float64{
		`increase(invoices_total[1m])`:                           3,
		`increase(charge_duration_seconds_count[1m])`:            6,
		`increase(charge_duration_seconds_bucket{le="0.1"}[1m])`: 3,
		`histogram_count(increase(refund_duration_seconds[1m]))`: 6,
		`increase(payload_bytes_count[1m])`:                      3,
	} {
		q, err := engine.NewInstantQuery(context.Background(), db, nil, expr, first)
		require.NoError(t, err)
		res := q.Exec(context.Background())
		require.NoError(t, res.Err)
		vec, err := res.Vector()
		require.NoError(t, err)
		require.Len(t, vec, 1, "%s: the first point alone makes an increase", expr)
		if vec[0].H != nil {
			require.InDelta(t, want, vec[0].H.Count, 1e-9, expr)
		} else {
			require.InDelta(t, want, vec[0].F, 1e-9, expr)
		}
		q.Close()
	}
}

// samples lists the samples of the one series matching ms, as
// "seconds=value" after base, a native histogram as "seconds=h(count)".
func samples(t *testing.T, db *store.DB, base time.Time, ms ...*labels.Matcher) []string {
	t.Helper()
	q, err := db.Querier(0, time.Now().Add(time.Hour).UnixMilli())
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
			case chunkenc.ValHistogram, chunkenc.ValFloatHistogram:
				_, h := it.AtFloatHistogram(nil)
				out = append(out, fmt.Sprintf("%g=h(%g)", at, h.Count))
			default:
				_, v := it.At()
				out = append(out, fmt.Sprintf("%g=%g", at, v))
			}
		}
	}
	require.NoError(t, set.Err())
	require.Equal(t, 1, n, "one series")
	return out
}
