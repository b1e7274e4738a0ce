package store

import (
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// point is one sample of a series: a float, an integer native histogram or a
// float native histogram (exactly one of v, h, fh is meaningful).
type point struct {
	t  int64
	v  float64
	h  *histogram.Histogram
	fh *histogram.FloatHistogram
}

func (p point) encoding() chunkenc.Encoding {
	switch {
	case p.h != nil:
		return chunkenc.EncHistogram
	case p.fh != nil:
		return chunkenc.EncFloatHistogram
	}
	return chunkenc.EncXOR
}

// same reports whether q carries the same value as p (a resent sample).
func (p point) same(q point) bool {
	switch {
	case p.h != nil:
		return q.h != nil && p.h.Equals(q.h)
	case p.fh != nil:
		return q.fh != nil && p.fh.Equals(q.fh)
	}
	return q.h == nil && q.fh == nil && math.Float64bits(p.v) == math.Float64bits(q.v)
}

// builtChunk is a finished chunk of one series.
type builtChunk struct {
	enc        chunkenc.Encoding
	mint, maxt int64
	data       []byte
}

// chunkBuilder appends points in time order to a chunk, starting a new chunk
// when the open one is full or the kind of sample changes. Native histograms
// go through Prometheus' own appenders, which start a new chunk on a counter
// reset or a schema change and recode the chunk when buckets appear — the
// same calls Prometheus' head makes.
type chunkBuilder struct {
	chunk      chunkenc.Chunk
	app        chunkenc.Appender
	mint, maxt int64
}

// chunkSpan is the longest time a chunk covers (ms): a sparse series' chunk
// is cut after 2 hours however few samples it holds, as Prometheus' head
// cuts chunks at its 2-hour block boundaries, so that an open chunk stays
// in the head, and its samples out of the partitions' time bounds, no
// longer than that.
const chunkSpan = int64(2 * time.Hour / time.Millisecond)

// Histogram chunks are cut by size as Prometheus cuts them: at about 1 KiB
// once they hold a few samples, or at chunkSamples.
const (
	histogramChunkBytes      = 1024
	histogramChunkMinSamples = 10
)

func (b *chunkBuilder) full() bool {
	n := b.chunk.NumSamples()
	if n >= chunkSamples {
		return true
	}
	return b.chunk.Encoding() != chunkenc.EncXOR && n >= histogramChunkMinSamples && len(b.chunk.Bytes()) >= histogramChunkBytes
}

// add appends p, which must be newer than every point added; it returns the
// chunks it finished, if any.
func (b *chunkBuilder) add(p point) []*builtChunk {
	var cut []*builtChunk
	var prev chunkenc.Appender
	enc := p.encoding()
	if b.chunk != nil && (b.chunk.Encoding() != enc || b.full() || p.t-b.mint >= chunkSpan) {
		if b.chunk.Encoding() == enc {
			prev = b.app // tells the new chunk whether a counter reset starts it
		}
		if c := b.finish(); c != nil {
			cut = append(cut, c)
		}
	}
	if b.chunk == nil {
		c, err := chunkenc.NewEmptyChunk(enc)
		if err != nil { // every encoding point returns has a chunk type
			panic(fmt.Sprintf("new %s chunk: %v", enc, err))
		}
		app, err := c.Appender()
		if err != nil { // an empty chunk always has an appender
			panic(fmt.Sprintf("%s appender: %v", enc, err))
		}
		b.chunk, b.app, b.mint = c, app, p.t
	}
	var (
		next    chunkenc.Chunk
		recoded bool
		app     chunkenc.Appender
	)
	switch enc {
	case chunkenc.EncHistogram:
		next, recoded, app, _ = b.app.AppendHistogram(prev, 0, p.t, p.h, false) // errors only when appendOnly
	case chunkenc.EncFloatHistogram:
		next, recoded, app, _ = b.app.AppendFloatHistogram(prev, 0, p.t, p.fh, false)
	default:
		b.app.Append(0, p.t, p.v)
	}
	if app != nil {
		b.app = app
	}
	switch {
	case next == nil:
	case recoded: // the same samples, with room for new buckets
		b.chunk = next
	default: // a counter reset or schema change: the open chunk is done
		cut = append(cut, &builtChunk{enc: b.chunk.Encoding(), mint: b.mint, maxt: b.maxt, data: b.chunk.Bytes()})
		b.chunk, b.mint = next, p.t
	}
	b.maxt = p.t
	return cut
}

// finish closes the open chunk and returns it, nil if there is none.
func (b *chunkBuilder) finish() *builtChunk {
	if b.chunk == nil || b.chunk.NumSamples() == 0 {
		b.chunk, b.app = nil, nil
		return nil
	}
	c := &builtChunk{enc: b.chunk.Encoding(), mint: b.mint, maxt: b.maxt, data: b.chunk.Bytes()}
	b.chunk, b.app = nil, nil
	return c
}

// has reports whether the open chunk holds a sample at t.
func (b *chunkBuilder) has(t int64) bool {
	return b.chunk != nil && t >= b.mint && t <= b.maxt && chunkHas(b.chunk, t)
}

// chunkHas reports whether c holds a sample at t.
func chunkHas(c chunkenc.Chunk, t int64) bool {
	it := c.Iterator(nil)
	for it.Next() != chunkenc.ValNone {
		switch ct := it.AtT(); {
		case ct == t:
			return true
		case ct > t:
			return false
		}
	}
	return false
}

// buildChunks encodes points sorted by time into as many chunks as they need.
func buildChunks(points []point) []*builtChunk {
	var b chunkBuilder
	var out []*builtChunk
	for _, p := range points {
		out = append(out, b.add(p)...)
	}
	if c := b.finish(); c != nil {
		out = append(out, c)
	}
	return out
}
