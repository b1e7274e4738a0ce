package store

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Held chunks. A partition keeps a key per chunk, and on long series of
// steady counters (a few bits a sample as decimal chunks) the keys, not
// the samples, are most of the bytes: 120-sample chunks took 0.090 bytes
// a sample on 10k series × 3,000 samples, 480-sample ones 0.037. An open
// XOR chunk of 480 samples would hold 4 KB of a noisy gauge in memory,
// though, so the open chunk stays at chunkSamples and a finished float
// chunk is instead folded into the series' held chunk: its samples and
// those held before re-encoded as one decimal chunk, kept in memory (and
// carried by each checkpoint into the new WAL generation, as the open
// chunk is) while it stays small — at most maxHeldChunkBytes, within the
// head's budget of maxHeldBytes — until it holds heldSamples or spans
// chunkSpan, or the series goes quiet for a checkpoint. A chunk whose
// samples are not all decimals, or would make the held one too large, is
// written as before (the held one first). Queries read held chunks as they
// read the head's other chunks.
const (
	heldSamples       = 4 * chunkSamples
	maxHeldChunkBytes = 256
	// maxHeldBytes bounds the held chunks' bytes in all: 64 MiB is 256
	// bytes for each of 256k series, and several times what 100k series
	// of steady counters hold (about 40 bytes each).
	maxHeldBytes = 64 << 20
)

// heldChunk is a series' held chunk: decimal, in-order samples older than
// the open chunk's.
type heldChunk struct {
	n int // samples; 0 when none is held
	builtChunk
}

// heldScratch is what folding a chunk into a held one decodes into.
var heldScratch = sync.Pool{New: func() any { return new(decimalScratch) }}

// finishLocked takes the chunks the open one finished: a float chunk is
// folded into the held chunk when the result stays small; what is not held
// is returned pending, to be written, after the held chunk it must follow.
// budget counts the held chunks' bytes; s.mu is held.
func (s *memSeries) finishLocked(cs []*builtChunk, budget *atomic.Int64) []*cutChunk {
	var out []*cutChunk
	for _, c := range cs {
		held := s.holdLocked(c, budget)
		if !held {
			out = append(out, s.releaseHeldLocked(budget)...)
			held = s.holdLocked(c, budget)
		}
		switch {
		case !held:
			out = append(out, s.pendLocked(c, false))
		case s.held.n == heldSamples:
			out = append(out, s.releaseHeldLocked(budget)...)
		}
	}
	return out
}

// holdLocked folds c into the held chunk and reports whether it did.
func (s *memSeries) holdLocked(c *builtChunk, budget *atomic.Int64) bool {
	if c.enc != chunkenc.EncXOR {
		return false
	}
	xc, err := chunkenc.FromData(chunkenc.EncXOR, c.data)
	if err != nil || s.held.n+xc.NumSamples() > heldSamples {
		return false
	}
	if s.held.n > 0 && (c.mint <= s.held.maxt || c.maxt-s.held.mint >= chunkSpan) {
		return false
	}
	sc := heldScratch.Get().(*decimalScratch)
	defer heldScratch.Put(sc)
	sc.ts, sc.vs = sc.ts[:0], sc.vs[:0]
	if s.held.n > 0 {
		_ = sc.readFloats(&decimalChunk{data: s.held.data, n: s.held.n}) // never fails
	}
	if sc.readFloats(xc) != nil || len(sc.ts) != s.held.n+xc.NumSamples() {
		return false
	}
	d, ok := sc.appendDecimalChunk(sc.out[:0], sc.ts, sc.vs)
	if ok {
		sc.out = d
	}
	grow := int64(len(d) - len(s.held.data))
	if !ok || len(d) > maxHeldChunkBytes || budget.Load()+grow > maxHeldBytes {
		return false
	}
	budget.Add(grow)
	mint := c.mint
	if s.held.n > 0 {
		mint = s.held.mint
	}
	s.held = heldChunk{n: len(sc.ts), builtChunk: builtChunk{enc: encDecimal, mint: mint, maxt: c.maxt, data: slices.Clone(d)}}
	return true
}

// releaseHeldLocked makes the held chunk pending, to be written, and
// returns it (none when nothing is held).
func (s *memSeries) releaseHeldLocked(budget *atomic.Int64) []*cutChunk {
	if s.held.n == 0 {
		return nil
	}
	c := s.held.builtChunk
	budget.Add(-int64(len(c.data)))
	s.held = heldChunk{}
	return []*cutChunk{s.pendLocked(&c, false)}
}

// has reports whether the held chunk holds a sample at t: a replay of
// two generations (a crash between a checkpoint's rotation and its
// deletion of the old one) reads the held samples again, older than the
// newest, and they must not come back as out-of-order ones.
func (c *heldChunk) has(t int64) bool {
	return c.n > 0 && t >= c.mint && t <= c.maxt && chunkHas(&decimalChunk{data: c.data, n: c.n}, t)
}

// appendDecimalSamples appends the samples of decimal chunk bytes data (a
// held chunk carried in the WAL) to out, refusing bytes that are not a
// decimal chunk of at most heldSamples increasing times.
func appendDecimalSamples(out []walSample, ref uint64, data []byte) ([]walSample, error) {
	l, err := parseDecimalChunk(data)
	if err != nil {
		return nil, fmt.Errorf("decimal chunk: %w", err)
	}
	if l.n == 0 || l.n > heldSamples {
		return nil, fmt.Errorf("decimal chunk of %d samples, not what a held chunk holds (1 to %d)", l.n, heldSamples)
	}
	return appendChunkSamples(out, ref, &decimalChunk{data: data, n: l.n})
}
