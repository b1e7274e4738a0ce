package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/labels"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/store/wlog"
)

// The log head: every stream's newest lines, in memory until they fill a
// block (LogBlockBytes) or a checkpoint cuts them, made durable first by one
// write-ahead record per request in the log WAL (data/logwal, generations
// as for metrics). A block per (stream, cut) gives zstd enough like lines to
// compress well, which a block per request would not. See docs/logs-store.md.
type logHead struct {
	db  *DB
	log *zap.Logger

	mu      sync.RWMutex
	byHash  map[uint64][]*memStream
	byRef   map[uint64]*memStream
	nextRef atomic.Uint64

	// state.mu is held shared by every commit and exclusively by a
	// checkpoint's switch of generation and by close.
	state    headState
	wal      *walLog
	walBytes atomic.Int64
	// headBytes is the size of every stream's open lines; past
	// LogHeadBytes the largest streams are cut (flushing), which bounds
	// the head's memory whatever the number of streams.
	headBytes atomic.Int64
	flushing  atomic.Bool
	// removed counts idle streams removed from the head.
	removed atomic.Uint64
	// checkpointing is set while a checkpoint runs, so that a full WAL
	// starts one at a time.
	checkpointing atomic.Bool

	tail tailHub
}

type memStream struct {
	ref  uint64
	lset labels.Labels
	// defined is set once the WAL generation being written defines the
	// stream.
	defined defined
	// lastWrite is when (wall clock, unix ns) lines were last written to
	// the stream, or it was made.
	lastWrite atomic.Int64

	mu      sync.Mutex
	entries []LogEntry
	bytes   int
	head    *atomic.Int64 // the head's headBytes
	// part is the partition the stream's labels and postings were last
	// written to, so they are written once per partition.
	part string
	// pending holds blocks cut but not yet in a partition: queries read
	// them here until they are, so a line is never out of sight. A block
	// whose write failed stays, marked, and goes into the next cut.
	pending []*cutBlock
}

// cutBlock is a stream's entries on their way to a partition.
type cutBlock struct {
	s       *memStream
	entries []LogEntry // sorted, without duplicates
	failed  bool
}

// cutLocked takes the stream's open entries, and those of blocks that
// failed to be written, as a block, pending until written.
func (s *memStream) cutLocked() *cutBlock {
	es := s.entries
	s.pending = slices.DeleteFunc(s.pending, func(c *cutBlock) bool {
		if c.failed {
			es = append(es, c.entries...)
		}
		return c.failed
	})
	if len(es) == 0 {
		return nil
	}
	es = sortEntries(es)
	if s.head != nil {
		s.head.Add(-int64(s.bytes))
	}
	s.entries, s.bytes = nil, 0
	c := &cutBlock{s: s, entries: es}
	s.pending = append(s.pending, c)
	return c
}

// visibleLocked calls f with every line of the stream still in memory:
// open, and cut but not yet written.
func (s *memStream) visibleLocked(f func(e *LogEntry) bool) {
	for i := range s.entries {
		if !f(&s.entries[i]) {
			return
		}
	}
	for _, c := range s.pending {
		for i := range c.entries {
			if !f(&c.entries[i]) {
				return
			}
		}
	}
}

func (h *logHead) get(lset labels.Labels) *memStream {
	for _, s := range h.byHash[lset.Hash()] {
		if labels.Equal(s.lset, lset) {
			return s
		}
	}
	return nil
}

// getOrCreate returns the stream of lset and whether it is new.
// now (unix ns, the request's) marks the stream used.
func (h *logHead) getOrCreate(lset labels.Labels, now int64) (*memStream, error) {
	h.mu.RLock()
	s := h.get(lset)
	if s != nil {
		s.lastWrite.Store(now) // before h.mu is let go: see metricsHead.getOrCreate
	}
	h.mu.RUnlock()
	if s != nil {
		return s, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.get(lset); s != nil {
		s.lastWrite.Store(now)
		return s, nil
	}
	if lim := h.db.opts.Limits.MaxActiveStreams; lim > 0 && len(h.byRef) >= lim {
		return nil, fmt.Errorf("%w: the head holds %d streams, the limit (max_active_streams): new stream %s refused", ErrLimit, len(h.byRef), truncLabels(lset))
	}
	s = h.add(h.nextRef.Add(1), lset)
	s.lastWrite.Store(now)
	return s, nil
}

// add puts a new stream in the head's maps; h.mu is held.
func (h *logHead) add(ref uint64, lset labels.Labels) *memStream {
	s := &memStream{ref: ref, lset: lset, head: &h.headBytes}
	hash := lset.Hash()
	h.byHash[hash] = append(h.byHash[hash], s)
	h.byRef[s.ref] = s
	return s
}

// WriteLogStreams stores the streams' lines and returns once they are
// durable. Stream labels must be valid and non-empty (ingest checks them
// and answers 400); lines are kept as given.
func (db *DB) WriteLogStreams(ctx context.Context, streams []LogStream) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write logs: %w", err)
	}
	for i := range streams {
		if err := db.ValidateStream(streams[i].Labels); err != nil {
			return fmt.Errorf("stream %d: %w", i, err)
		}
	}
	if r := db.opts.RemoteLogs; r != nil {
		return r.Write(ctx, streams)
	}
	streams, refused, first := db.keepInTime(streams)
	notMade, firstNotMade, err := db.writeLogStreams(streams)
	if err != nil {
		return err
	}
	if notMade > 0 && first == nil {
		first = firstNotMade
	}
	if refused += notMade; refused > 0 {
		return fmt.Errorf("%d lines refused, the others stored; first: %w", refused, first)
	}
	return nil
}

// keepInTime leaves out the lines the time window refuses, counting them and
// keeping the first error; streams are copied only when one is refused.
func (db *DB) keepInTime(streams []LogStream) (kept []LogStream, refused int, first error) {
	window := db.TimeWindow()
	bad := func(st LogStream, e LogEntry) bool {
		err := window.Check(e.T)
		if err != nil && first == nil {
			first = fmt.Errorf("stream %s: line: %w", st.Labels, err)
		}
		return err != nil
	}
	for i, st := range streams {
		for j, e := range st.Entries {
			if !bad(st, e) {
				continue
			}
			if kept == nil {
				kept = slices.Clone(streams)
			}
			es := slices.Clone(st.Entries[:j])
			for _, e := range st.Entries[j:] {
				if bad(st, e) {
					refused++
				} else {
					es = append(es, e)
				}
			}
			kept[i].Entries = es
			break
		}
	}
	if kept == nil {
		return streams, 0, nil
	}
	return kept, refused, first
}

// writeLogStreams writes lines whose streams and times are valid; the
// lines of new streams past MaxActiveStreams are refused (counted, the
// first error kept), the others written.
func (db *DB) writeLogStreams(streams []LogStream) (refused int, first, err error) {
	h := db.logs
	type target struct {
		s  *memStream
		es []LogEntry
	}
	var (
		targets = make([]target, 0, len(streams))
		n       int
		now     = db.opts.Now().UnixNano()
	)
	for _, st := range streams {
		if len(st.Entries) == 0 {
			continue
		}
		s, err := h.getOrCreate(st.Labels, now)
		if err != nil {
			refused += len(st.Entries)
			first = cmp.Or(first, err)
			continue
		}
		targets = append(targets, target{s: s, es: st.Entries})
		n += len(st.Entries)
	}
	if n == 0 {
		return refused, first, nil
	}
	if err := db.admitWrite(); err != nil {
		return 0, nil, err
	}
	h.state.mu.RLock()
	if h.state.closed {
		h.state.mu.RUnlock()
		return 0, nil, ErrClosed
	}
	// The record defines every stream it refers to that the generation
	// does not define yet: a stream made by a request that failed, or by
	// one still on its way, is defined here.
	var (
		defs  []walStream
		fresh []*memStream
	)
	for _, t := range targets {
		if !t.s.defined.ok.Load() && !slices.Contains(fresh, t.s) {
			fresh = append(fresh, t.s)
			defs = append(defs, walStream{ref: t.s.ref, lset: t.s.lset})
		}
	}
	rec := walRecordPool.Get().(*[]byte)
	*rec = appendLogWALRecord((*rec)[:0], defs, func(add func(ref uint64, e *LogEntry)) {
		for _, t := range targets {
			for i := range t.es {
				add(t.s.ref, &t.es[i])
			}
		}
	})
	size, err := h.wal.append(*rec)
	if cap(*rec) <= maxPooledRecord {
		walRecordPool.Put(rec)
	}
	if err != nil {
		h.state.mu.RUnlock()
		return 0, nil, err
	}
	for _, s := range fresh {
		s.defined.ok.Store(true)
	}
	var cut []*cutBlock
	for _, t := range targets {
		t.s.mu.Lock()
		added := 0
		for i := range t.es {
			t.s.entries = append(t.s.entries, t.es[i])
			added += len(t.es[i].Line) + 16
		}
		t.s.bytes += added
		h.headBytes.Add(int64(added))
		if t.s.bytes >= db.opts.LogBlockBytes {
			cut = append(cut, t.s.cutLocked())
		}
		t.s.mu.Unlock()
		h.tail.publish(t.s.lset, t.es)
	}
	// Started under closeMu so that close, which waits for the store's
	// goroutines, cannot miss it.
	if h.headBytes.Load() > db.opts.LogHeadBytes && h.flushing.CompareAndSwap(false, true) {
		db.wg.Go(func() {
			defer h.flushing.Store(false)
			if err := db.writeLogBlocks(h.cutLargest(db.opts.LogHeadBytes / 2)); err != nil {
				h.log.Warn("write log blocks; they stay in the WAL", zap.Error(err))
			}
		})
	}
	if h.walBytes.Add(int64(size)) > db.opts.LogWALBytes && h.checkpointing.CompareAndSwap(false, true) {
		db.wg.Go(func() {
			defer h.checkpointing.Store(false)
			if err := db.checkpointLogs(); err != nil && !errors.Is(err, ErrClosed) {
				h.log.Error("log checkpoint", zap.Error(err))
			}
		})
	}
	h.state.mu.RUnlock()
	// Blocks cut here are in the WAL too: if writing them fails, the
	// request has still been made durable, and replay writes them again.
	if err := db.writeLogBlocks(cut); err != nil {
		h.log.Warn("write log blocks; they stay in the WAL", zap.Error(err))
	}
	return refused, first, nil
}

// ValidateStreamLabels checks a stream's label set as Loki does: not empty,
// valid names (legacy Prometheus names), no duplicates.
func ValidateStreamLabels(ls labels.Labels) error {
	if ls.IsEmpty() {
		return errors.New("a stream needs at least one label")
	}
	var bad string
	ls.Range(func(l labels.Label) {
		if bad == "" && !ValidLabelName(l.Name) {
			bad = l.Name
		}
	})
	if bad != "" {
		return fmt.Errorf("invalid label name %q: names match [a-zA-Z_][a-zA-Z0-9_]*", bad)
	}
	if n, dup := ls.HasDuplicateLabelNames(); dup {
		return fmt.Errorf("duplicate label name %q", n)
	}
	return nil
}

// ValidLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]*.
func ValidLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || (i > 0 && '0' <= c && c <= '9')) {
			return false
		}
	}
	return true
}

// writeLogTraceKeys, when set, makes the trace index of blocks as earlier
// builds wrote it: 0x43 keys (tests of reading them).
var writeLogTraceKeys atomic.Bool

// writeLogBlocks writes cut blocks, with their streams' labels, postings
// and trace index, to the head partition in one batch.
func (db *DB) writeLogBlocks(cut []*cutBlock) error {
	cut = slices.DeleteFunc(cut, func(c *cutBlock) bool { return c == nil })
	if len(cut) == 0 {
		return nil
	}
	vals := make([][]byte, len(cut))
	refs := make([]blockRef, len(cut))
	var lo, hi int64
	for i, c := range cut {
		es := c.entries
		refs[i] = blockRef{ref: c.s.ref, mint: es[0].T, maxt: es[len(es)-1].T, seq: db.nextSeq()}
		vals[i] = db.codec.encodeBlock(codecZstdLogBlock, encodeBlock(es))
		if i == 0 || refs[i].mint < lo {
			lo = refs[i].mint
		}
		hi = max(hi, refs[i].maxt)
	}
	_, err := db.writeHead(func(p *partition, set func(k, v []byte)) {
		for i, c := range cut {
			c.s.mu.Lock()
			first := c.s.part != p.name
			c.s.part = p.name
			c.s.mu.Unlock()
			if first {
				set(streamIndex.setKey(c.s.ref), encodeLabels(nil, c.s.lset))
				c.s.lset.Range(func(l labels.Label) { set(streamIndex.postingKey(l.Name, l.Value, c.s.ref), nil) })
			}
			set(logBlockKey(refs[i]), vals[i])
			full := writeLogTraceKeys.Load()
			seen := map[[16]byte]struct{}{}
			for j := range c.entries {
				id := c.entries[j].TraceID
				if _, ok := seen[id]; ok || id.IsEmpty() {
					continue
				}
				if len(seen) == 0 && !full {
					set(logBlockSeqKey(refs[i].seq), refs[i].appendTo(make([]byte, 0, blockRefLen)))
				}
				seen[id] = struct{}{}
				if full {
					set(logTraceKey(id, refs[i]), nil)
				} else {
					set(logTraceTailKey(id, refs[i].seq), nil)
				}
			}
		}
		if bounds := p.widen(uint64(max(lo, 0)), uint64(max(hi, 0))); bounds != nil {
			set(boundsKey(db.nextSeq()), bounds)
		}
	})
	for _, c := range cut {
		c.s.mu.Lock()
		if err != nil {
			c.s.part = ""
			c.failed = true
		} else {
			c.s.pending = slices.DeleteFunc(c.s.pending, func(x *cutBlock) bool { return x == c })
		}
		c.s.mu.Unlock()
	}
	return err
}

// cutLargest cuts the streams with the most open bytes until the head
// holds at most target bytes. Their lines stay in the WAL until the next
// checkpoint; a replay writes them again and reads keep them once.
func (h *logHead) cutLargest(target int64) []*cutBlock {
	type sized struct {
		s *memStream
		n int
	}
	h.mu.RLock()
	all := make([]sized, 0, len(h.byRef))
	for _, s := range h.byRef {
		s.mu.Lock()
		all = append(all, sized{s, s.bytes})
		s.mu.Unlock()
	}
	h.mu.RUnlock()
	slices.SortFunc(all, func(a, b sized) int { return cmp.Compare(b.n, a.n) })
	var cut []*cutBlock
	for _, x := range all {
		if h.headBytes.Load() <= target || x.n == 0 {
			break
		}
		x.s.mu.Lock()
		if c := x.s.cutLocked(); c != nil {
			cut = append(cut, c)
		}
		x.s.mu.Unlock()
	}
	return cut
}

// cutAll cuts every stream's open entries, in ref order.
func (h *logHead) cutAll() []*cutBlock {
	h.mu.RLock()
	all := make([]*memStream, 0, len(h.byRef))
	for _, s := range h.byRef {
		all = append(all, s)
	}
	h.mu.RUnlock()
	slices.SortFunc(all, func(a, b *memStream) int { return cmp.Compare(a.ref, b.ref) })
	var cut []*cutBlock
	for _, s := range all {
		s.mu.Lock()
		if c := s.cutLocked(); c != nil {
			cut = append(cut, c)
		}
		s.mu.Unlock()
	}
	return cut
}

// openLogs builds the log head: stream refs continue after the largest in
// any partition; WAL generations left by a crash are replayed, their
// blocks written and the generations deleted.
func (db *DB) openLogs() error {
	h := &logHead{db: db, log: db.log.Named("logs"), byHash: map[uint64][]*memStream{}, byRef: map[uint64]*memStream{}}
	h.tail.init()
	db.logs = h
	for _, p := range db.parts {
		ref, err := maxSetRef(p, nsStream)
		if err != nil {
			return err
		}
		h.nextRef.Store(max(h.nextRef.Load(), ref))
	}
	h.wal = newWALLog(db, "log", logsWALDir)
	h.wal.s2 = true
	if err := h.wal.recover(h.replay, func() error { return db.writeLogBlocks(h.cutAll()) }, h.streamsRecord); err != nil {
		return err
	}
	db.every(db.opts.LogCheckpointInterval, nil, func() {
		if !h.checkpointing.CompareAndSwap(false, true) {
			return
		}
		defer h.checkpointing.Store(false)
		if err := db.checkpointLogs(); err != nil && !errors.Is(err, ErrClosed) {
			h.log.Error("log checkpoint", zap.Error(err))
		}
	})
	return nil
}

// maxSetRef returns the largest ref under the label-set namespace ns.
func maxSetRef(p *partition, ns byte) (uint64, error) {
	var ref uint64
	if p.db == nil {
		return 0, nil // left closed by a full disk: see DB.partitionOpened
	}
	err := p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{ns}, Reverse: true})
		defer it.Close()
		it.Seek([]byte{ns, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		if it.Valid() {
			k := it.Item().Key()
			if len(k) != 9 {
				return fmt.Errorf("%w: label set key of %d bytes", ErrCorrupt, len(k))
			}
			ref = binary.BigEndian.Uint64(k[1:])
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("partition %s: label set refs: %w", p.name, err)
	}
	return ref, nil
}

// replay reads one log WAL generation into the head, oldest record first;
// blocks that fill on the way are written.
func (h *logHead) replay(g wlog.Gen) error {
	var (
		sb    labels.ScratchBuilder
		cut   []*cutBlock
		lines int
	)
	counts, err := h.wal.replay(g, func(payload []byte, c *wlog.Counts) error {
		streams, entries, err := decodeLogWALRecord(payload, &sb)
		if err != nil {
			return err
		}
		for _, ws := range streams {
			if h.byRef[ws.ref] == nil {
				h.add(ws.ref, ws.lset).lastWrite.Store(h.db.opts.Now().UnixNano())
			}
			h.nextRef.Store(max(h.nextRef.Load(), ws.ref))
		}
		for _, we := range entries {
			s := h.byRef[we.ref]
			if s == nil {
				c.Skip(wlog.SkipUnknownSeries, 1)
				continue
			}
			s.entries = append(s.entries, we.LogEntry)
			s.bytes += len(we.Line) + 16
			h.headBytes.Add(int64(len(we.Line) + 16))
			if s.bytes >= h.db.opts.LogBlockBytes {
				cut = append(cut, s.cutLocked())
			}
		}
		lines += len(entries)
		return nil
	})
	if err != nil {
		return err
	}
	if counts.Records > 0 {
		h.log.Info("log WAL replayed", zap.Uint64("generation", g.N), zap.Int("records", counts.Records), zap.Int("lines", lines), zap.Int("streams", len(h.byRef)))
	}
	if err := h.db.writeLogBlocks(cut); err != nil {
		h.log.Error("write log blocks the WAL replayed; they stay in the head", zap.Error(err))
	}
	return nil
}

// streamsRecord is a record defining every stream in the head, the first
// of a new generation (nil when there are none), and what marks those
// streams defined once it is written.
func (h *logHead) streamsRecord() walFirst {
	h.mu.RLock()
	all := make([]*memStream, 0, len(h.byRef))
	streams := make([]walStream, 0, len(h.byRef))
	for _, s := range h.byRef {
		all = append(all, s)
		streams = append(streams, walStream{ref: s.ref, lset: s.lset})
	}
	h.mu.RUnlock()
	define := func() {
		for _, s := range all {
			s.defined.ok.Store(true)
		}
	}
	if len(streams) == 0 {
		return walFirst{define: define}
	}
	return walFirst{rec: encodeLogWALRecord(streams, nil), define: define}
}

// CheckpointLogs writes every stream's open lines as blocks and starts a
// new WAL generation, deleting the old one once the blocks are durable. It
// runs on a timer (LogCheckpointInterval) and when the WAL passes
// LogWALBytes; tests call it directly.
func (db *DB) CheckpointLogs() error { return db.checkpointLogs() }

func (db *DB) checkpointLogs() error {
	h := db.logs
	return checkpoint(&h.state, h.wal, h.removeIdle, h.streamsRecord, func() []*cutBlock {
		h.walBytes.Store(0)
		return h.cutAll()
	}, db.writeLogBlocks)
}

// closeLogs stops commits, writes every open block and, once they are
// durable, deletes the WAL.
func (db *DB) closeLogs() error {
	h := db.logs
	if h == nil {
		return nil
	}
	h.tail.closeAll()
	return shutdown(&h.state, h.wal, h.cutAll, db.writeLogBlocks)
}
