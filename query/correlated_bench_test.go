package query

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/store"
)

// BenchmarkCorrelatedTrace times a trace's correlated answer (its spans,
// log lines and the series around it) over a store holding 200 traces of
// 10 spans in 4 services and, for every service and span name they have,
// span-metric series as Lumen derives them (calls, duration count, sum
// and 10 buckets) sampled every 15 s for the 10 minutes before, beside
// an up series per service. It reports the time and allocations of an
// answer, taken in-process, without the network.
func BenchmarkCorrelatedTrace(b *testing.B) {
	db, err := store.Open(store.DefaultOptions(b.TempDir()))
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, db.Close()) })
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	g := otlptest.New(5)
	g.Start = now.Add(-time.Minute)
	td := g.Traces(200, 10)
	ids := otlptest.TraceIDs(td)
	ops := map[[2]string]bool{}
	for _, rs := range td.ResourceSpans().All() {
		svc := traceService(rs.Resource())
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				ops[[2]string{svc, sp.Name()}] = true
			}
		}
	}
	require.NoError(b, db.WriteTraces(ctx, td))
	app := db.Appender(ctx)
	for at := now.Add(-10 * time.Minute); !at.After(now); at = at.Add(15 * time.Second) {
		add := func(v float64, kv ...string) {
			_, err := app.Append(0, labels.FromStrings(kv...), at.UnixMilli(), v)
			require.NoError(b, err)
		}
		for op := range ops {
			red := []string{"service", op[0], "span_name", op[1], "span_kind", "SPAN_KIND_SERVER", "status_code", "STATUS_CODE_UNSET"}
			for _, name := range []string{"traces_spanmetrics_calls_total", "traces_spanmetrics_duration_seconds_count", "traces_spanmetrics_duration_seconds_sum"} {
				add(float64(at.Unix()%1000), append([]string{"__name__", name}, red...)...)
			}
			for i := range 10 {
				add(float64(i), append([]string{"__name__", "traces_spanmetrics_duration_seconds_bucket", "le", strconv.Itoa(1 << i)}, red...)...)
			}
		}
		for i := range g.Services {
			add(1, "__name__", "up", "job", "svc-"+strconv.Itoa(i), "service", "svc-"+strconv.Itoa(i))
		}
	}
	require.NoError(b, app.Commit())

	api := New(db, DefaultTraceConfig(), NewMetrics(prometheus.NewRegistry()), nil)
	mux := http.NewServeMux()
	api.Register(mux, nil)
	b.ReportAllocs()
	series := 0
	for i := 0; b.Loop(); i++ {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/traces/"+ids[i%len(ids)].String(), nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("%d: %s", rec.Code, rec.Body.String())
		}
		if i == 0 {
			var resp TraceResponse
			require.NoError(b, json.Unmarshal(rec.Body.Bytes(), &resp))
			require.NotNil(b, resp.Metrics)
			require.Equal(b, 10, resp.SpanCount)
			series = len(resp.Metrics.Series)
		}
	}
	b.ReportMetric(float64(series), "series/answer")
}
