package store

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

// seqChunks cuts samples at 15 s (with gaps) into chunks of XOR and decimal
// encodings, each with its times, in order.
func seqChunks(t *testing.T, r *rand.Rand, n int) []chunkenc.Chunk {
	var chunks []chunkenc.Chunk
	ts := int64(r.IntN(1000))
	for range n {
		size := 1 + r.IntN(300)
		times, values := make([]int64, size), make([]float64, size)
		for i := range size {
			ts += 15_000 + int64(r.IntN(3))*15_000*int64(r.IntN(2))
			times[i], values[i] = ts, float64(r.IntN(1000))/10
		}
		if r.IntN(2) == 0 {
			data, ok := encodeDecimalChunk(times, values)
			require.True(t, ok)
			l, err := parseDecimalChunk(data)
			require.NoError(t, err)
			chunks = append(chunks, &decimalChunk{data: data, n: l.n, mint: times[0], maxt: times[size-1], bounded: true})
			continue
		}
		xc := chunkenc.NewXORChunk()
		app, err := xc.Appender()
		require.NoError(t, err)
		for i := range times {
			app.Append(0, times[i], values[i])
		}
		chunks = append(chunks, &boundedChunk{Chunk: xc, mint: times[0], maxt: times[size-1]})
	}
	return chunks
}

// TestSeqIteratorAsChain: over chunks in order, any sequence of Next and
// Seek reads what Prometheus' chain iterator reads; chunks that overlap, or
// that do not know their times, are left to the chain iterator.
func TestSeqIteratorAsChain(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for round := range 300 {
		chunks := seqChunks(t, r, 2+r.IntN(5))
		its := make([]chunkenc.Iterator, len(chunks))
		for i, c := range chunks {
			its[i] = c.Iterator(nil)
		}
		want := storage.ChainSampleIteratorFromIterators(nil, its)
		var reuse chunkenc.Iterator
		if round%2 == 1 {
			reuse, _ = newSeqIterator(nil, chunks[:1])
		}
		got, ok := newSeqIterator(reuse, chunks)
		require.True(t, ok)
		_, end, _ := chunks[len(chunks)-1].(timeBounded).timeBounds()
		for op := 0; ; op++ {
			var w, g chunkenc.ValueType
			desc := "Next"
			if r.IntN(3) == 0 {
				at := int64(r.IntN(int(end + 60_000)))
				if r.IntN(2) == 0 { // a chunk's own first or last time, or next to it
					mint, maxt, _ := chunks[r.IntN(len(chunks))].(timeBounded).timeBounds()
					at = []int64{mint, maxt}[r.IntN(2)] + int64(r.IntN(3)) - 1
				}
				desc = fmt.Sprintf("Seek(%d)", at)
				w, g = want.Seek(at), got.Seek(at)
			} else {
				w, g = want.Next(), got.Next()
			}
			require.Equal(t, w, g, "round %d op %d %s", round, op, desc)
			if w == chunkenc.ValNone {
				break
			}
			wt, wv := want.At()
			gt, gv := got.At()
			require.Equal(t, wt, gt, "round %d op %d %s", round, op, desc)
			require.Equal(t, wv, gv)
			require.Equal(t, wt, got.AtT())
		}
		require.NoError(t, got.Err())
		require.Equal(t, chunkenc.ValNone, got.Seek(end+1))
	}

	chunks := seqChunks(t, r, 2)
	_, end, _ := chunks[0].(timeBounded).timeBounds()
	for name, tail := range map[string]chunkenc.Chunk{
		"overlapping":              &boundedChunk{Chunk: chunkenc.NewXORChunk(), mint: end, maxt: end + 1},
		"without times":            chunkenc.NewXORChunk(),
		"decimal, times not known": &decimalChunk{},
	} {
		_, ok := newSeqIterator(nil, []chunkenc.Chunk{chunks[0], tail})
		require.False(t, ok, name)
	}
}
