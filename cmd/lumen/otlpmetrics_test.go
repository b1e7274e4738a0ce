package main

import (
	"context"
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
