package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/labels"
	"golang.org/x/sync/errgroup"
)

// LogChunk sums up a run of one stream's lines, as Loki's index sums up a
// chunk: Loki answers /index/stats and /index/volume from such sums, and
// scales a chunk that only partly overlaps the range by the share of its
// time span inside it. A chunk here is a block in a partition, a block
// cut but not yet written, or the lines still open in the head.
type LogChunk struct {
	// MinT and MaxT are the times of the chunk's first and last lines,
	// unix ns.
	MinT, MaxT int64
	Entries    int64
	// Bytes is the chunk's uncompressed size as Loki's chunks count it:
	// the lines' bytes, 8 bytes per structured-metadata pair (two 4-byte
	// symbol references) and each distinct metadata name or value once.
	Bytes int64
}

// LogStreamChunks is a stream's chunks that overlap a time range.
type LogStreamChunks struct {
	Labels labels.Labels
	Chunks []LogChunk
}

// LogChunks returns, for each stream that matches ms, the chunks whose
// time span overlaps [start, end] (both included), streams sorted by
// labels. The counts of a block come from its payload: each overlapping
// block is decompressed, but its lines are not copied.
func (db *DB) LogChunks(ctx context.Context, ms []*labels.Matcher, start, end int64) ([]LogStreamChunks, error) {
	g := chunkGather{byKey: map[string]*LogStreamChunks{}}
	for _, s := range db.logs.streams(ms) {
		s.mu.Lock()
		var open chunkSum
		for i := range s.entries {
			open.add(&s.entries[i])
		}
		cs := make([]LogChunk, 0, 1+len(s.pending))
		if c, ok := open.chunk(); ok {
			cs = append(cs, c)
		}
		for _, p := range s.pending {
			var sum chunkSum
			for i := range p.entries {
				sum.add(&p.entries[i])
			}
			if c, ok := sum.chunk(); ok {
				cs = append(cs, c)
			}
		}
		s.mu.Unlock()
		for _, c := range cs {
			if c.MaxT >= start && c.MinT <= end {
				g.add(s.lset, c)
			}
		}
	}
	parts, err := db.snapshot() // after the head: see SelectLogs
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		if !overlaps(p, start, end+1) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("log chunks: %w", err)
		}
		if err := db.partitionChunks(ctx, p, ms, start, end, &g); err != nil {
			return nil, err
		}
	}
	return g.result(), nil
}

type chunkGather struct {
	mu    sync.Mutex
	byKey map[string]*LogStreamChunks
}

func (g *chunkGather) add(lset labels.Labels, c LogChunk) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := lset.String()
	s, ok := g.byKey[k]
	if !ok {
		s = &LogStreamChunks{Labels: lset}
		g.byKey[k] = s
	}
	s.Chunks = append(s.Chunks, c)
}

func (g *chunkGather) result() []LogStreamChunks {
	out := make([]LogStreamChunks, 0, len(g.byKey))
	for _, s := range g.byKey {
		slices.SortFunc(s.Chunks, func(a, b LogChunk) int {
			if a.MinT != b.MinT {
				return cmp.Compare(a.MinT, b.MinT)
			}
			return cmp.Compare(a.MaxT, b.MaxT)
		})
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b LogStreamChunks) int { return labels.Compare(a.Labels, b.Labels) })
	return out
}

// chunkSum sums up lines as they are offered.
type chunkSum struct {
	c       LogChunk
	symbols map[string]struct{}
}

func (s *chunkSum) add(e *LogEntry) {
	if s.c.Entries == 0 || e.T < s.c.MinT {
		s.c.MinT = e.T
	}
	if s.c.Entries == 0 || e.T > s.c.MaxT {
		s.c.MaxT = e.T
	}
	s.c.Entries++
	s.c.Bytes += int64(len(e.Line)) + 8*int64(e.Metadata.Len())
	e.Metadata.Range(func(l labels.Label) {
		s.symbol(l.Name)
		s.symbol(l.Value)
	})
}

func (s *chunkSum) symbol(v string) {
	if s.symbols == nil {
		s.symbols = map[string]struct{}{}
	}
	if _, ok := s.symbols[v]; !ok {
		s.symbols[v] = struct{}{}
		s.c.Bytes += int64(len(v))
	}
}

func (s *chunkSum) chunk() (LogChunk, bool) { return s.c, s.c.Entries > 0 }

func (db *DB) partitionChunks(ctx context.Context, p *partition, ms []*labels.Matcher, start, end int64, g *chunkGather) error {
	streams, err := matchingStreams(p, ms)
	if err != nil || len(streams) == 0 {
		return err
	}
	// One worker per core, as SelectLogs: decompressing is the cost.
	var next atomic.Int64
	eg, ctx := errgroup.WithContext(ctx)
	for range min(runtime.GOMAXPROCS(0), len(streams)) {
		eg.Go(func() error {
			return wrapRead(p.view(func(txn *badger.Txn) error {
				for {
					i := int(next.Add(1) - 1)
					if i >= len(streams) {
						return nil
					}
					if err := ctx.Err(); err != nil {
						return fmt.Errorf("log chunks: %w", err)
					}
					if err := db.streamChunks(txn, streams[i].ref, start, end, func(c LogChunk) { g.add(streams[i].lset, c) }); err != nil {
						return err
					}
				}
			}))
		})
	}
	return eg.Wait()
}

// streamChunks calls f with the sums of each block of stream ref whose
// span overlaps [start, end].
func (db *DB) streamChunks(txn *badger.Txn, ref uint64, start, end int64, f func(LogChunk)) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: logBlockPrefix(ref)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		br, err := parseLogBlockKey(it.Item().Key())
		if err != nil {
			return err
		}
		if br.mint > end {
			break
		}
		if br.maxt < start {
			continue
		}
		val, err := it.Item().ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("%w: read log block: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
		}
		_, payload, err := db.codec.decode(val)
		if err != nil {
			return err
		}
		c, err := sumBlock(payload)
		if err != nil {
			return err
		}
		c.MinT, c.MaxT = br.mint, br.maxt
		f(c)
	}
	return nil
}

// sumBlock sums up a block payload (see encodeBlock) without building its
// lines: the entry count, the line lengths and the metadata, counted as
// Loki counts a chunk's (each distinct metadata string once, 8 bytes a
// pair; detected_level as a pair).
func sumBlock(b []byte) (LogChunk, error) {
	var c LogChunk
	p, err := splitBlock(b)
	if err != nil {
		return c, err
	}
	symbols := map[string]struct{}{}
	symbol := func(s string) {
		if _, ok := symbols[s]; !ok {
			symbols[s] = struct{}{}
			c.Bytes += int64(len(s))
		}
	}
	for _, l := range p.levels {
		c.Bytes += 8
		symbol(LevelLabel)
		symbol(blockLevels[l])
	}
	for md := p.metadata; len(md) > 0; { // checked by splitBlock
		pairs, w := binary.Uvarint(md)
		md = md[w:]
		c.Bytes += 8 * int64(pairs)
		for range 2 * pairs {
			l, w := binary.Uvarint(md)
			symbol(string(md[w : w+int(l)]))
			md = md[w+int(l):]
		}
	}
	n := int64(len(p.flags))
	if p.separated {
		c.Bytes += int64(len(p.lines)) - n // every line's '\n' is not its own
	} else {
		c.Bytes += int64(len(p.lines)) // every line's length, and nothing else
	}
	c.Entries = n
	return c, nil
}
