package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/store"
)

// BenchmarkWriteTraces measures spans/s into the store and bytes on disk per
// span, for OTLP batches of 100 and 1000 spans with 10 attributes each, from 4
// concurrent writers (as a server sees them), every batch fsynced.
func BenchmarkWriteTraces(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		for _, spansPerTrace := range []int{2, 10} {
			b.Run(fmt.Sprintf("batch=%d/spans_per_trace=%d", batch, spansPerTrace), func(b *testing.B) {
				benchWrite(b, batch, spansPerTrace)
			})
		}
	}
}

func benchWrite(b *testing.B, batch, spansPerTrace int) {
	dir := b.TempDir()
	db, err := store.Open(store.DefaultOptions(dir))
	require.NoError(b, err)
	const writers = 4
	// Prebuild payloads: generating them is not the store's work. Copies
	// get fresh trace ids, so no trace repeats.
	pool := make([]ptrace.Traces, 64)
	g := otlptest.New(1)
	for i := range pool {
		pool[i] = g.Traces(batch/spansPerTrace, spansPerTrace)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var (
		mu   sync.Mutex
		next int
	)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 11))
			for {
				mu.Lock()
				if next >= b.N {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				td := ptrace.NewTraces()
				pool[i%len(pool)].CopyTo(td)
				otlptest.Renumber(td, rnd) // new traces every time, as in production
				if err := db.WriteTraces(context.Background(), td); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	spans := float64(b.N * batch)
	b.ReportMetric(spans/b.Elapsed().Seconds(), "spans/s")
	require.NoError(b, db.Close()) // flushes memtables: what stays on disk
	stats, err := openStats(dir)
	require.NoError(b, err)
	b.ReportMetric(float64(stats.DiskBytes)/spans, "disk_bytes/span")
}

func openStats(dir string) (store.Stats, error) {
	db, err := store.Open(store.DefaultOptions(dir))
	if err != nil {
		return store.Stats{}, err
	}
	defer db.Close()
	return db.Stats()
}

// BenchmarkTraceByID measures reading one trace (10 spans, and 5 log records)
// from a store holding 1M spans, written as batches of 1000 spans.
func BenchmarkTraceByID(b *testing.B) {
	const totalSpans, batch, spansPerTrace = 1_000_000, 1000, 10
	dir := b.TempDir()
	db, err := store.Open(store.DefaultOptions(dir))
	require.NoError(b, err)
	defer db.Close()
	g := otlptest.New(7)
	g.Start = time.Now().Add(-time.Hour)
	var ids []pcommon.TraceID
	for range totalSpans / batch {
		td := g.Traces(batch/spansPerTrace, spansPerTrace)
		tids := otlptest.TraceIDs(td)
		ids = append(ids, tids...)
		require.NoError(b, db.WriteTraces(context.Background(), td))
		require.NoError(b, db.WriteLogs(context.Background(), g.Logs(tids[:20], 5, 0)))
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		id := ids[rnd.IntN(len(ids))]
		t0 := time.Now()
		tr, err := db.Trace(context.Background(), model.TraceID(id))
		lat = append(lat, time.Since(t0))
		if err != nil || tr.Spans.SpanCount() != spansPerTrace {
			b.Fatalf("trace %s: %v, %d spans", id, err, tr.Spans.SpanCount())
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_µs")
}
