package store

import (
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// BenchmarkDecimalSeek times a Seek to the last sample of a decimal chunk
// of 480 samples of a counter (what an instant query does to a series'
// held chunk): per sample passed.
//
//	go test ./store -run '^$' -bench BenchmarkDecimalSeek
func BenchmarkDecimalSeek(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	ts, vs := make([]int64, 480), make([]float64, 480)
	for i := range ts {
		ts[i], vs[i] = 1_795_000_000_000+int64(i)*15_000, float64(1000+37*i+r.IntN(40))
	}
	data, ok := encodeDecimalChunk(ts, vs)
	if !ok {
		b.Fatal("not decimal")
	}
	l, err := parseDecimalChunk(data)
	if err != nil {
		b.Fatal(err)
	}
	c := &decimalChunk{data: data, n: l.n}
	var it chunkenc.Iterator
	for b.Loop() {
		it = c.Iterator(it)
		if it.Seek(ts[len(ts)-1]) != chunkenc.ValFloat {
			b.Fatal("no sample")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ts)), "ns/sample")
}
