package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestOTelSDKMetricsThroughPromQL(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	exp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(s.cfg.OTLP.GRPCAddr), otlpmetricgrpc.WithInsecure())
	require.NoError(t, err)
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))),
		// db.client.duration as an exponential histogram: a native
		// histogram in Lumen.
		sdkmetric.WithView(sdkmetric.NewView(sdkmetric.Instrument{Name: "db.client.duration"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}})),
		sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("service.instance.id", "pod-1"), attribute.String("k8s.namespace.name", "shop"))),
	)
	meter := mp.Meter("shop/checkout")
	requests, err := meter.Int64Counter("http.server.requests", metric.WithUnit("{request}"))
	require.NoError(t, err)
	requests.Add(ctx, 5, metric.WithAttributes(attribute.String("http.route", "/cart")))
	queue, err := meter.Int64Gauge("queue.length")
	require.NoError(t, err)
	queue.Record(ctx, 7)
	latency, err := meter.Float64Histogram("http.server.duration", metric.WithUnit("ms"), metric.WithExplicitBucketBoundaries(10, 100))
	require.NoError(t, err)
	dbLatency, err := meter.Float64Histogram("db.client.duration", metric.WithUnit("ms"))
	require.NoError(t, err)
	for _, v := range []float64{5, 50, 500} {
		latency.Record(ctx, v)
		dbLatency.Record(ctx, v/10)
	}
	require.NoError(t, mp.ForceFlush(ctx))
	require.NoError(t, mp.Shutdown(ctx))

	at := time.Now().Add(time.Second).Unix()
	for _, tc := range []struct{ query, want string }{
		{`http_server_requests_total{job="checkout",instance="pod-1",http_route="/cart"}`, `"5"`},
		{`queue_length{job="checkout"}`, `"7"`},
		{`http_server_duration_milliseconds_count{job="checkout"}`, `"3"`},
		{`http_server_duration_milliseconds_sum{job="checkout"}`, `"555"`},
		{`http_server_duration_milliseconds_bucket{job="checkout",le="100"}`, `"2"`},
		{`target_info{job="checkout",k8s_namespace_name="shop"}`, `"1"`},
		{`histogram_count(db_client_duration_milliseconds{job="checkout"})`, `"3"`},
		{`histogram_sum(db_client_duration_milliseconds{job="checkout"})`, `"55.5"`},
	} {
		code, r := promGet(t, s, "/api/v1/query", url.Values{"query": {tc.query}, "time": {itoa(at)}})
		require.Equal(t, 200, code, r.Error)
		require.Contains(t, string(r.Data), tc.want, "%s -> %s", tc.query, r.Data)
	}
	require.InDelta(t, 0, metricValue(t, s, `lumen_ingest_items_rejected_total{reason="invalid",signal="metrics"}`), 0)
}

func itoa(n int64) string { return time.Unix(n, 0).UTC().Format(time.RFC3339) }

// TestOTLPExponentialHistogramsAreNativeHistograms: exponential histograms
// become native histograms; an invalid one (a count below its buckets' sum)
// is refused by name while the rest of the request is stored.
func TestOTLPExponentialHistogramsAreNativeHistograms(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "worker")
	sm := rm.ScopeMetrics().AppendEmpty()
	now := pcommon.NewTimestampFromTime(time.Now())
	g := sm.Metrics().AppendEmpty()
	g.SetName("jobs_waiting")
	dp := g.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(now)
	dp.SetIntValue(42)
	expHistogram := func(name string, count uint64) {
		e := sm.Metrics().AppendEmpty()
		e.SetName(name)
		e.SetUnit("s")
		edp := e.SetEmptyExponentialHistogram().DataPoints().AppendEmpty()
		e.ExponentialHistogram().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		edp.SetTimestamp(now)
		edp.SetCount(count)
		edp.SetSum(3)
		edp.SetScale(1)
		edp.Positive().SetOffset(-1)
		edp.Positive().BucketCounts().FromRaw([]uint64{1, 1})
	}
	expHistogram("job", 2)
	expHistogram("broken_job", 1)

	conn, err := grpc.NewClient(s.cfg.OTLP.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	_, err = pmetricotlp.NewGRPCClient(conn).Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(md))
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), "%v", err)
	require.Contains(t, st.Message(), "observation count should equal")
	require.Contains(t, st.Message(), "the rest stored")

	at := itoa(time.Now().Add(time.Second).Unix())
	for query, want := range map[string]string{
		`jobs_waiting{job="worker"}`:                 `"42"`,
		`histogram_count(job_seconds{job="worker"})`: `"2"`,
		`histogram_sum(job_seconds{job="worker"})`:   `"3"`,
		`histogram_quantile(1, job_seconds)`:         `"1.414213562373095"`,
		`count({__name__=~"broken.*"}) or vector(0)`: `"0"`,
	} {
		code, r := promGet(t, s, "/api/v1/query", url.Values{"query": {query}, "time": {at}})
		require.Equal(t, 200, code, r.Error)
		require.Contains(t, string(r.Data), want, "%s -> %s", query, r.Data)
	}
}

// TestOTLPCumulativeSeriesCountTheirFirstPoint: a new cumulative counter
// or histogram from the OTel SDK carries its start time; Lumen writes a
// zero there (Prometheus' created-timestamp zero ingestion), so increase()
// over a range that covers the first export counts that export whole —
// without it, one sample makes no increase at all. Gauges get no zero.
func TestOTLPCumulativeSeriesCountTheirFirstPoint(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	provider := func(service string) *sdkmetric.MeterProvider {
		exp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(s.cfg.OTLP.GRPCAddr), otlpmetricgrpc.WithInsecure())
		require.NoError(t, err)
		return sdkmetric.NewMeterProvider(
			sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))),
			sdkmetric.WithView(sdkmetric.NewView(sdkmetric.Instrument{Name: "db.client.duration"},
				sdkmetric.Stream{Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}})),
			sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
	}
	// A series the head holds no sample of gets its zero only if it starts
	// after what the store held when this run first wrote metrics (a
	// previous run's samples): one write first, so that the test does not
	// depend on the store being empty.
	warm := provider("warm-up")
	up, err := warm.Meter("warm-up").Int64Gauge("warm.up")
	require.NoError(t, err)
	up.Record(ctx, 1)
	require.NoError(t, warm.Shutdown(ctx)) // exports once
	time.Sleep(5 * time.Millisecond)

	mp := provider("fresh")
	meter := mp.Meter("fresh")
	requests, err := meter.Int64Counter("http.server.requests", metric.WithUnit("{request}"))
	require.NoError(t, err)
	latency, err := meter.Float64Histogram("http.server.duration", metric.WithUnit("ms"), metric.WithExplicitBucketBoundaries(10, 100))
	require.NoError(t, err)
	dbLatency, err := meter.Float64Histogram("db.client.duration", metric.WithUnit("ms"))
	require.NoError(t, err)
	queue, err := meter.Int64Gauge("queue.length")
	require.NoError(t, err)
	time.Sleep(5 * time.Millisecond) // the points' times after their start, in milliseconds
	requests.Add(ctx, 5)
	for _, v := range []float64{5, 50, 500} {
		latency.Record(ctx, v)
		dbLatency.Record(ctx, v/10)
	}
	queue.Record(ctx, 7)
	require.NoError(t, mp.Shutdown(ctx)) // one export: each series' first point

	// at queries expr at the time of the one sample series has.
	at := func(expr, series string) string {
		t.Helper()
		ts := singleValue(t, s, `timestamp(`+series+`)`, itoa(time.Now().Add(time.Second).Unix()))
		return singleValue(t, s, fmt.Sprintf(expr, series), ts)
	}
	for _, tc := range []struct{ expr, series, want string }{
		{`increase(%s[1m])`, `http_server_requests_total{job="fresh"}`, "5"},
		{`count_over_time(%s[1m])`, `http_server_requests_total{job="fresh"}`, "2"},
		{`increase(%s[1m])`, `http_server_duration_milliseconds_count{job="fresh"}`, "3"},
		{`increase(%s[1m])`, `http_server_duration_milliseconds_sum{job="fresh"}`, "555"},
		{`increase(%s[1m])`, `http_server_duration_milliseconds_bucket{job="fresh",le="100"}`, "2"},
		{`histogram_count(increase(%s[1m]))`, `db_client_duration_milliseconds{job="fresh"}`, "3"},
		{`histogram_sum(increase(%s[1m]))`, `db_client_duration_milliseconds{job="fresh"}`, "55.5"},
		{`count_over_time(%s[1m])`, `queue_length{job="fresh"}`, "1"},
	} {
		require.Equal(t, tc.want, at(tc.expr, tc.series), tc.expr, tc.series)
	}
}

// singleValue runs an instant query at a time and returns the value of its
// one element.
func singleValue(t *testing.T, s *server, query, at string) string {
	t.Helper()
	code, r := promGet(t, s, "/api/v1/query", url.Values{"query": {query}, "time": {at}})
	require.Equal(t, 200, code, r.Error)
	var data struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &data))
	require.Len(t, data.Result, 1, "%s at %s: %s", query, at, r.Data)
	return data.Result[0].Value[1].(string)
}
