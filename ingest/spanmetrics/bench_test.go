package spanmetrics

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/store"
)

// BenchmarkObserve times span metrics and the service graph on requests of
// 1,000 spans (100 traces of 10 spans over 5 services), a stream of new
// traces as under load: per span.
//
//	go test ./ingest/spanmetrics -run '^$' -bench BenchmarkObserve -benchtime 400x
func BenchmarkObserve(b *testing.B) {
	o := store.DefaultOptions(b.TempDir())
	db, err := store.Open(o)
	require.NoError(b, err)
	defer db.Close()
	g := New(DefaultConfig(), db, nil)
	gen := otlptest.New(1)
	var marshaler ptrace.ProtoMarshaler
	b.ReportAllocs()
	spans := 0
	for b.Loop() {
		b.StopTimer()
		body, err := marshaler.MarshalTraces(gen.Traces(100, 10))
		require.NoError(b, err)
		req, err := store.ParseTraceRequest(body)
		require.NoError(b, err)
		b.StartTimer()
		g.Observe(FromRequest(req))
		spans += req.SpanCount()
		req.Release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(spans), "ns/span")
}
