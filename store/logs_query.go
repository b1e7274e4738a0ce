package store

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/labels"
	"golang.org/x/sync/errgroup"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/model"
)

// LogSelect says which lines a log query reads.
type LogSelect struct {
	// Matchers select streams by their labels; all must match.
	Matchers []*labels.Matcher
	// Start and End bound the lines' times, unix ns: Start <= t < End.
	Start, End int64
	// Keep, when set, drops the lines it returns false for as they are
	// read (a line filter), before they are gathered.
	Keep func(labels.Labels, *LogEntry) bool
	// MaxLines bounds the lines gathered; past it, SelectLogs fails with
	// ErrTooMuch. 0 means no bound.
	MaxLines int
	// Limit, when set, keeps only the Limit oldest lines (the Limit newest
	// with Backward) as they are read, so that what a query holds does
	// not depend on how many lines match (MaxLines then does not apply).
	Limit    int
	Backward bool
}

// ErrTooMuch is returned when a query would gather more than it may.
var ErrTooMuch = fmt.Errorf("%w: query reads too many lines", fault.ErrLimit)

// logGather collects lines by stream labels: the same stream can have
// several refs (several partitions, a restart) and is answered as one.
// With a limit, it keeps only the lines that limit would answer.
type logGather struct {
	byHash map[uint64][]*LogStream
	n, max int
	top    *topLines // nil without a limit
}

// topLines keeps the limit oldest (or newest) lines offered: a heap whose
// root is the line to give up first.
type topLines struct {
	limit   int
	newest  bool
	items   []topItem
	offered int
}

type topItem struct {
	lset labels.Labels
	e    LogEntry
}

func newTopLines(limit int, newest bool) *topLines { return &topLines{limit: limit, newest: newest} }

// worse reports whether a line at t would be given up before one at u.
func (h *topLines) worse(t, u int64) bool {
	if h.newest {
		return t < u
	}
	return t > u
}

func (h *topLines) Len() int           { return len(h.items) }
func (h *topLines) Less(i, j int) bool { return h.worse(h.items[i].e.T, h.items[j].e.T) }
func (h *topLines) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *topLines) Push(x any)         { h.items = append(h.items, x.(topItem)) }
func (h *topLines) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

// wants reports whether a line at t would be kept, before it is copied.
func (h *topLines) wants(t int64) bool {
	return len(h.items) < h.limit || h.worse(h.items[0].e.T, t)
}

// offer keeps the line if it is among the limit best so far.
func (h *topLines) offer(lset labels.Labels, e LogEntry) {
	h.offered++
	if !h.wants(e.T) {
		return
	}
	if len(h.items) < h.limit {
		heap.Push(h, topItem{lset, e})
		return
	}
	h.items[0] = topItem{lset, e}
	heap.Fix(h, 0)
}

func (g *logGather) stream(lset labels.Labels) *LogStream {
	h := lset.Hash()
	for _, s := range g.byHash[h] {
		if labels.Equal(s.Labels, lset) {
			return s
		}
	}
	s := &LogStream{Labels: lset}
	g.byHash[h] = append(g.byHash[h], s)
	return s
}

func (g *logGather) add(s *LogStream, e LogEntry) error {
	if g.top != nil {
		g.top.offer(s.Labels, e)
		return nil
	}
	g.n++
	if g.max > 0 && g.n > g.max {
		return fmt.Errorf("%w: more than %d lines match; narrow the selector, the filters or the time range", ErrTooMuch, g.max)
	}
	s.Entries = append(s.Entries, e)
	return nil
}

func (g *logGather) result() []LogStream {
	if g.top != nil {
		for _, it := range g.top.items {
			s := g.stream(it.lset)
			s.Entries = append(s.Entries, it.e)
		}
	}
	var out []LogStream
	for _, ss := range g.byHash {
		for _, s := range ss {
			if len(s.Entries) == 0 {
				continue
			}
			s.Entries = sortEntries(s.Entries)
			out = append(out, *s)
		}
	}
	slices.SortFunc(out, func(a, b LogStream) int { return labels.Compare(a.Labels, b.Labels) })
	return out
}

// overlaps reports whether partition p may hold lines in [start, end).
func overlaps(p *partition, start, end int64) bool {
	lo, hi := p.bounds()
	if hi == 0 {
		return false
	}
	return int64(lo) < end && int64(hi) >= start
}

// SelectLogs returns the matching streams with their lines in the range,
// each stream's lines sorted by time (duplicates once), streams sorted by
// labels.
func (db *DB) SelectLogs(ctx context.Context, q LogSelect) ([]LogStream, error) {
	g := &logGather{byHash: map[uint64][]*LogStream{}, max: q.MaxLines}
	if q.Limit > 0 {
		g.top = newTopLines(q.Limit, q.Backward)
	}
	// The head first: a block written to a partition meanwhile is then
	// read twice (and kept once), never missed.
	for _, s := range db.logs.streams(q.Matchers) {
		out := g.stream(s.lset)
		var err error
		s.mu.Lock()
		s.visibleLocked(func(e *LogEntry) bool {
			if e.T < q.Start || e.T >= q.End || (q.Keep != nil && !q.Keep(s.lset, e)) {
				return true
			}
			err = g.add(out, *e)
			return err == nil
		})
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	parts, err := db.snapshot()
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		if !overlaps(p, q.Start, q.End) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("select logs: %w", err)
		}
		if err := db.selectPartition(ctx, p, q, g); err != nil {
			return nil, err
		}
	}
	return g.result(), nil
}

// streams returns the head's streams that match ms.
func (h *logHead) streams(ms []*labels.Matcher) []*memStream {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []*memStream
	for _, s := range h.byRef {
		if matchesAll(s.lset, ms) {
			out = append(out, s)
		}
	}
	return out
}

// partStream is a stream of a partition: its ref there and its labels.
type partStream struct {
	ref  uint64
	lset labels.Labels
}

// matchingStreams lists the streams of p that ms select.
func matchingStreams(p *partition, ms []*labels.Matcher) ([]partStream, error) {
	var out []partStream
	pv := p.postings.view()
	err := wrapRead(p.view(func(txn *badger.Txn) error {
		var sb labels.ScratchBuilder
		refs, err := streamIndex.candidateRefs(txn, pv, ms)
		if err != nil {
			return err
		}
		for _, ref := range refs {
			lset, err := streamIndex.labelsOf(txn, ref, &sb)
			if err != nil {
				return err
			}
			if matchesAll(lset, ms) {
				out = append(out, partStream{ref: ref, lset: lset})
			}
		}
		return nil
	}))
	return out, err
}

func (db *DB) selectPartition(ctx context.Context, p *partition, q LogSelect, g *logGather) error {
	type selected struct {
		partStream
		out []LogEntry
	}
	found, err := matchingStreams(p, q.Matchers)
	if err != nil {
		return err
	}
	streams := make([]*selected, len(found))
	for i, s := range found {
		streams[i] = &selected{partStream: s}
	}
	// Streams are read by one worker per core: decompressing blocks is
	// most of a query's time.
	var (
		next  atomic.Int64
		lines atomic.Int64
	)
	eg, ctx := errgroup.WithContext(ctx)
	workers := min(runtime.GOMAXPROCS(0), len(streams))
	// With a limit, each worker keeps its best lines across its streams,
	// no more: memory is workers × limit however many lines match.
	tops := make([]*topLines, workers)
	for w := range workers {
		if q.Limit > 0 {
			tops[w] = newTopLines(q.Limit, q.Backward)
		}
		top := tops[w]
		eg.Go(func() error {
			return wrapRead(p.view(func(txn *badger.Txn) error {
				var sb labels.ScratchBuilder
				for {
					i := int(next.Add(1) - 1)
					if i >= len(streams) {
						return nil
					}
					if err := ctx.Err(); err != nil {
						return fmt.Errorf("select logs: %w", err)
					}
					st := streams[i]
					if err := db.scanStream(txn, st.ref, q, &sb, func(e *LogEntry) error {
						if top != nil && !top.wants(e.T) {
							return nil // not among the lines the limit answers: not even filtered
						}
						if q.Keep != nil && !q.Keep(st.lset, e) {
							return nil
						}
						if top != nil {
							c := *e
							c.Line = strings.Clone(e.Line)
							top.offer(st.lset, c)
							return nil
						}
						if n := lines.Add(1); q.MaxLines > 0 && int(n)+g.n > q.MaxLines {
							return fmt.Errorf("%w: more than %d lines match; narrow the selector, the filters or the time range", ErrTooMuch, q.MaxLines)
						}
						e.Line = strings.Clone(e.Line)
						st.out = append(st.out, *e)
						return nil
					}); err != nil {
						return err
					}
				}
			}))
		})
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	for _, top := range tops {
		if top != nil {
			for _, it := range top.items {
				g.top.offer(it.lset, it.e)
			}
		}
	}
	for _, st := range streams {
		out := g.stream(st.lset)
		for _, e := range st.out {
			if err := g.add(out, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanStream calls f with each line of stream ref in [q.Start, q.End),
// block by block; a line is a view into its block (clone it to keep it).
func (db *DB) scanStream(txn *badger.Txn, ref uint64, q LogSelect, sb *labels.ScratchBuilder, f func(e *LogEntry) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: logBlockPrefix(ref)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		br, err := parseLogBlockKey(it.Item().Key())
		if err != nil {
			return err
		}
		if br.mint >= q.End {
			break
		}
		if br.maxt < q.Start {
			continue
		}
		es, err := db.readBlock(it.Item(), br, sb, nil)
		if err != nil {
			return err
		}
		for i := range es {
			if es[i].T < q.Start || es[i].T >= q.End {
				continue
			}
			if err := f(&es[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// wrapRead files errors that are neither corruption nor limits as the
// store being unavailable.
func wrapRead(err error) error {
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTooMuch) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
}

// readBlock reads and decompresses a block; its lines are views into the
// decompressed payload (decodeBlockView): clone those that are kept.
func (db *DB) readBlock(item *badger.Item, br blockRef, sb *labels.ScratchBuilder, only *model.TraceID) ([]LogEntry, error) {
	val, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: read log block: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
	}
	_, payload, err := db.codec.decode(val)
	if err != nil {
		return nil, err
	}
	return decodeBlockView(payload, br.mint, sb, only)
}

// LogSeries returns the label sets of the matching streams that have lines
// in [start, end), sorted.
func (db *DB) LogSeries(ctx context.Context, ms []*labels.Matcher, start, end int64) ([]labels.Labels, error) {
	seen := map[string]labels.Labels{}
	var sb labels.ScratchBuilder
	for _, s := range db.logs.streams(ms) {
		in := false
		s.mu.Lock()
		s.visibleLocked(func(e *LogEntry) bool {
			in = e.T >= start && e.T < end
			return !in
		})
		s.mu.Unlock()
		if in {
			seen[s.lset.String()] = s.lset
		}
	}
	parts, err := db.snapshot() // after the head: see SelectLogs
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		if !overlaps(p, start, end) {
			continue
		}
		pv := p.postings.view()
		err := wrapRead(p.view(func(txn *badger.Txn) error {
			refs, err := streamIndex.candidateRefs(txn, pv, ms)
			if err != nil {
				return err
			}
			for _, ref := range refs {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("log series: %w", err)
				}
				lset, err := streamIndex.labelsOf(txn, ref, &sb)
				if err != nil {
					return err
				}
				if _, ok := seen[lset.String()]; ok || !matchesAll(lset, ms) {
					continue
				}
				if ok, err := hasBlockIn(txn, ref, start, end); err != nil || !ok {
					if err != nil {
						return err
					}
					continue
				}
				seen[lset.String()] = lset
			}
			return nil
		}))
		if err != nil {
			return nil, err
		}
	}
	out := make([]labels.Labels, 0, len(seen))
	for _, ls := range seen {
		out = append(out, ls)
	}
	slices.SortFunc(out, labels.Compare)
	return out, nil
}

func hasBlockIn(txn *badger.Txn, ref uint64, start, end int64) (bool, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: logBlockPrefix(ref), PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		br, err := parseLogBlockKey(it.Item().Key())
		if err != nil {
			return false, err
		}
		if br.mint >= end {
			return false, nil
		}
		if br.maxt >= start {
			return true, nil
		}
	}
	return false, nil
}

// LogLabelNames returns the label names of streams with lines in
// [start, end), sorted.
func (db *DB) LogLabelNames(ctx context.Context, ms []*labels.Matcher, start, end int64) ([]string, error) {
	series, err := db.LogSeries(ctx, ms, start, end)
	if err != nil {
		return nil, err
	}
	seen := map[string]struct{}{}
	for _, ls := range series {
		ls.Range(func(l labels.Label) { seen[l.Name] = struct{}{} })
	}
	return sortedKeys(seen), nil
}

// LogLabelValues returns the values of name among matching streams with
// lines in [start, end), sorted.
func (db *DB) LogLabelValues(ctx context.Context, name string, ms []*labels.Matcher, start, end int64) ([]string, error) {
	series, err := db.LogSeries(ctx, ms, start, end)
	if err != nil {
		return nil, err
	}
	seen := map[string]struct{}{}
	for _, ls := range series {
		if v := ls.Get(name); v != "" {
			seen[v] = struct{}{}
		}
	}
	return sortedKeys(seen), nil
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, strings.Compare)
	return out
}

// logTraceRefs returns the blocks a partition's trace index names for id:
// those of 0x43 keys (earlier builds), and those of 0x44 keys — blocks with
// lines of the trace, and rarely of another whose id ends with the same 8
// bytes.
func logTraceRefs(txn *badger.Txn, id model.TraceID) ([]blockRef, error) {
	var refs []blockRef
	it := txn.NewIterator(badger.IteratorOptions{Prefix: logTracePrefix(id), PrefetchValues: false})
	for it.Rewind(); it.Valid(); it.Next() {
		br, err := parseLogTraceKey(it.Item().Key())
		if err != nil {
			it.Close()
			return nil, err
		}
		refs = append(refs, br)
	}
	it.Close()
	var seqs []uint64
	it = txn.NewIterator(badger.IteratorOptions{Prefix: logTraceTailPrefix(id), PrefetchValues: false})
	for it.Rewind(); it.Valid(); it.Next() {
		seq, err := parseLogTraceTailKey(it.Item().Key())
		if err != nil {
			it.Close()
			return nil, err
		}
		seqs = append(seqs, seq)
	}
	it.Close()
	for _, seq := range seqs {
		item, err := txn.Get(logBlockSeqKey(seq))
		if err != nil {
			return nil, fmt.Errorf("%w: log block %d named by trace %s: %v", ErrCorrupt, seq, id, err) //nolint:errorlint // Badger errors stay inside the store
		}
		var br blockRef
		err = item.Value(func(v []byte) error {
			br, err = parseLogBlockSeq(seq, v)
			return err
		})
		if err != nil {
			return nil, err
		}
		refs = append(refs, br)
	}
	return refs, nil
}

// traceLogs gathers the lines that carry id: from the blocks the partition's
// trace index names, and from the head.
func (db *DB) traceLogs(ctx context.Context, parts []*partition, id model.TraceID) ([]LogStream, bool, error) {
	g := &logGather{byHash: map[uint64][]*LogStream{}}
	if db.opts.Limits.MaxTraceLogLines > 0 {
		// The newest lines, as many as the cap: a trace that logs without
		// end costs no more to show.
		g.top = newTopLines(db.opts.Limits.MaxTraceLogLines, true)
	}
	// The head first, as in SelectLogs.
	for _, s := range db.logs.streams(nil) {
		s.mu.Lock()
		s.visibleLocked(func(e *LogEntry) bool {
			if e.TraceID == id {
				_ = g.add(g.stream(s.lset), *e)
			}
			return true
		})
		s.mu.Unlock()
	}
	var sb labels.ScratchBuilder
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return nil, false, fmt.Errorf("logs of trace %s: %w", id, err)
		}
		err := wrapRead(p.view(func(txn *badger.Txn) error {
			refs, err := logTraceRefs(txn, id)
			if err != nil {
				return err
			}
			for _, br := range refs {
				lset, err := streamIndex.labelsOf(txn, br.ref, &sb)
				if err != nil {
					return err
				}
				item, err := txn.Get(logBlockKey(br))
				if err != nil {
					return fmt.Errorf("%w: log block named by trace %s: %v", ErrCorrupt, id, err) //nolint:errorlint // Badger errors stay inside the store
				}
				es, err := db.readBlock(item, br, &sb, &id)
				if err != nil {
					return err
				}
				out := g.stream(lset)
				for _, e := range es {
					if e.TraceID == id {
						e.Line = strings.Clone(e.Line)
						_ = g.add(out, e)
					}
				}
			}
			return nil
		}))
		if err != nil {
			return nil, false, err
		}
	}
	cut := g.top != nil && g.top.offered > g.top.limit
	return g.result(), cut, nil
}
