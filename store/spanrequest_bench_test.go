package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/otlptest"
)

// BenchmarkSpanRequestBatch times what a trace write does before its
// commit, from the request's bytes: reading the request in place, its
// search index and its frames (compressed). One goroutine; per span.
//
//	go test ./store -run '^$' -bench BenchmarkSpanRequestBatch -benchtime 200x
func BenchmarkSpanRequestBatch(b *testing.B) {
	db, err := Open(DefaultOptions(b.TempDir()))
	require.NoError(b, err)
	defer db.Close()
	g := otlptest.New(1)
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i], err = tracesMarshaler.MarshalTraces(g.Traces(100, 10))
		require.NoError(b, err)
	}
	b.ReportAllocs()
	spans := 0
	for i := 0; b.Loop(); i++ {
		req := spanRequestPool.Get().(*spanRequest)
		require.NoError(b, req.parse(bodies[i%len(bodies)]))
		facts, err := db.searchEntries(req)
		require.NoError(b, err)
		src := &spanSource{req: req}
		_, err = db.buildBatch(KindSpans, 1, src)
		require.NoError(b, err)
		src.release()
		putEntries(facts.entries)
		spans += req.spanCount()
		req.release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(spans), "ns/span")
}
