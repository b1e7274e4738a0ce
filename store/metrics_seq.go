package store

import (
	"math"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// timeBounded is a chunk read for a query that knows its first and last
// samples' times (from its key, or from the head).
type timeBounded interface {
	timeBounds() (mint, maxt int64, ok bool)
}

// boundedChunk is a chunk of Prometheus' encodings with its times.
type boundedChunk struct {
	chunkenc.Chunk
	mint, maxt int64
}

func (c *boundedChunk) timeBounds() (int64, int64, bool) { return c.mint, c.maxt, true }

// seqIterator reads a series' chunks one after the other when each ends
// before the next begins (a series written in order: its partitions' chunks,
// its held chunk, its open chunk). A Seek passes over the chunks that end
// before its time without reading them — Prometheus' chain iterator, which
// merges chunks that may overlap, seeks in every one, and a long chunk
// (a held chunk of hours) is read sample by sample to find it has nothing
// at or after the time.
type seqIterator struct {
	chunks []chunkenc.Chunk
	maxts  []int64 // each chunk's last time; the last chunk's MaxInt64
	cur    int     // the chunk being read
	it     chunkenc.Iterator
	vt     chunkenc.ValueType // the current sample's, ValNone before the first and after the last
	spare  chunkenc.Iterator  // a finished chunk's iterator, to reuse
}

// newSeqIterator is a seqIterator over chunks (reusing it when it is one)
// if every chunk but the last knows its times and each ends before the next
// begins; false otherwise.
func newSeqIterator(it chunkenc.Iterator, chunks []chunkenc.Chunk) (*seqIterator, bool) {
	maxts := make([]int64, len(chunks))
	prev := int64(math.MinInt64)
	for i, c := range chunks {
		b, ok := c.(timeBounded)
		if !ok {
			return nil, false
		}
		mint, maxt, known := b.timeBounds()
		if !known || mint <= prev || maxt < mint {
			return nil, false
		}
		maxts[i], prev = maxt, maxt
	}
	maxts[len(maxts)-1] = math.MaxInt64
	s, ok := it.(*seqIterator)
	if !ok {
		s = &seqIterator{}
	}
	*s = seqIterator{chunks: chunks, maxts: maxts, spare: s.spare}
	return s, true
}

// next moves on to the next chunk.
func (s *seqIterator) next() {
	s.cur++
	if s.it != nil {
		s.spare, s.it = s.it, nil
	}
}

func (s *seqIterator) open() chunkenc.Iterator {
	if s.it == nil {
		s.it = s.chunks[s.cur].Iterator(s.spare)
		s.spare = nil
	}
	return s.it
}

func (s *seqIterator) Next() chunkenc.ValueType {
	for s.cur < len(s.chunks) {
		if s.vt = s.open().Next(); s.vt != chunkenc.ValNone {
			return s.vt
		}
		if s.it.Err() != nil {
			return chunkenc.ValNone
		}
		s.next()
	}
	s.vt = chunkenc.ValNone
	return s.vt
}

// Seek moves to the first sample at or after t; a current sample already
// there stays.
func (s *seqIterator) Seek(t int64) chunkenc.ValueType {
	if s.vt != chunkenc.ValNone && s.it.AtT() >= t {
		return s.vt
	}
	for s.cur < len(s.chunks) {
		if s.maxts[s.cur] < t {
			s.next() // wholly before t: not read
			continue
		}
		if s.vt = s.open().Seek(t); s.vt != chunkenc.ValNone {
			return s.vt
		}
		if s.it.Err() != nil {
			return chunkenc.ValNone
		}
		s.next()
	}
	s.vt = chunkenc.ValNone
	return s.vt
}

func (s *seqIterator) At() (int64, float64) { return s.it.At() }
func (s *seqIterator) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	return s.it.AtHistogram(h)
}
func (s *seqIterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return s.it.AtFloatHistogram(fh)
}
func (s *seqIterator) AtT() int64  { return s.it.AtT() }
func (s *seqIterator) AtST() int64 { return s.it.AtST() }

func (s *seqIterator) Err() error {
	if s.it != nil {
		return s.it.Err()
	}
	return nil
}
