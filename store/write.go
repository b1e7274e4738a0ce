package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/model"
)

// A batch is what one write request becomes: frames of up to FrameItems
// items each, sorted by trace id so that a trace's items sit together, and an
// index entry per (trace, frame).
type batch struct {
	kind     Kind
	seq      uint64
	frames   [][]byte
	index    []indexEntry
	lo, hi   uint64                     // event-time bounds of the whole batch
	perFrame map[model.TraceID]struct{} // traces in the frame being built
	search   *searchBatch
}

type indexEntry struct {
	id    model.TraceID
	frame uint16
}

func newBatch(kind Kind, seq uint64) *batch {
	return &batch{kind: kind, seq: seq, perFrame: map[model.TraceID]struct{}{}}
}

// item records one item of the frame being built.
func (b *batch) item(id model.TraceID, start, end uint64) {
	if start != 0 && (b.lo == 0 || start < b.lo) {
		b.lo = start
	}
	b.hi = max(b.hi, end)
	if !id.IsEmpty() {
		b.perFrame[id] = struct{}{}
	}
}

// endFrame closes the frame being built with its encoded value.
func (b *batch) endFrame(val []byte) {
	frame := uint16(len(b.frames))
	b.frames = append(b.frames, val)
	start := len(b.index)
	for id := range b.perFrame {
		b.index = append(b.index, indexEntry{id: id, frame: frame})
	}
	// Sorted keys make Badger's write cheaper and the result deterministic.
	slices.SortFunc(b.index[start:], func(x, y indexEntry) int { return bytes.Compare(x.id[:], y.id[:]) })
	clear(b.perFrame)
}

var tracesMarshaler ptrace.ProtoMarshaler

// WriteTraces stores the spans of td and returns once they are durable. A
// span whose trace id or span id is all zeros makes the whole request
// invalid and nothing is written. td is not changed.
func (db *DB) WriteTraces(ctx context.Context, td ptrace.Traces) error {
	if td.SpanCount() == 0 {
		return nil
	}
	req, err := traceRequestOf(td)
	if err != nil {
		return err
	}
	defer req.Release()
	return db.WriteTraceRequest(ctx, req)
}

// traceRequestOf is td marshalled and read in place.
func traceRequestOf(td ptrace.Traces) (*TraceRequest, error) {
	body, err := tracesMarshaler.MarshalTraces(td)
	if err != nil {
		return nil, fmt.Errorf("write traces: %w", err)
	}
	return ParseTraceRequest(body)
}

// WriteTraceRequest stores the spans of an OTLP ExportTraceServiceRequest
// read in place (ParseTraceRequest), as WriteTraces: never decoded into
// pdata. Nothing of it is kept after it returns.
func (db *DB) WriteTraceRequest(ctx context.Context, t *TraceRequest) error {
	req := t.r
	if req.spanCount() == 0 {
		return nil
	}
	if r := db.opts.RemoteTraces; r != nil {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("write traces: %w", err)
		}
		// The request as it came: the backend takes OTLP.
		return r.Write(ctx, req.body, req.spanCount())
	}
	if err := db.admitWrite(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write traces: %w", err)
	}
	facts, err := db.searchEntries(req)
	if err != nil {
		return err
	}
	src := &spanSource{req: req}
	b, err := db.buildBatch(KindSpans, db.nextSeq(), src)
	src.release()
	if err != nil {
		putEntries(facts.entries)
		return err
	}
	b.search = facts
	err = db.commit(b)
	putEntries(facts.entries)
	return err
}

// itemRef locates one span or log record of a request: its trace, its
// time range, and its resource, scope and position.
type itemRef struct {
	id         model.TraceID
	start, end uint64
	rs, ss, i  int
}

// frameSource is a request being cut into frames: spans or log records.
type frameSource interface {
	// refs lists every item of the request.
	refs() []itemRef
	// move moves an item into the frame being built, starting a frame
	// when none is open.
	move(r itemRef)
	// marshal encodes the frame being built and closes it, returning the
	// frame codec, the part of its payload stored as it is (codecSpanRaw
	// only) and the part to compress.
	marshal() (codec byte, raw, rest []byte, err error)
}

// buildBatch cuts a request into frames. Items are ordered by trace id across
// the whole request, whatever resource they come from, so a trace's items
// share as few frames as possible; inside a frame they keep their resource
// and scope.
func (db *DB) buildBatch(kind Kind, seq uint64, src frameSource) (*batch, error) {
	refs := src.refs()
	slices.SortFunc(refs, func(a, b itemRef) int {
		if c := bytes.Compare(a.id[:], b.id[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.start, b.start)
	})
	b := newBatch(kind, seq)
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		codec, raw, rest, err := src.marshal()
		if err != nil {
			return fmt.Errorf("encode frame: %w", err)
		}
		if codec == codecSpanRaw {
			b.endFrame(db.codec.encodeSplit(codec, raw, rest))
		} else {
			b.endFrame(db.codec.encode(codec, rest))
		}
		n = 0
		return nil
	}
	for i, r := range refs {
		if db.frameFull(n, i > 0 && refs[i-1].id == r.id) {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		b.item(r.id, r.start, r.end)
		src.move(r)
		n++
	}
	return b, flush()
}

// frameFull reports whether the frame being built, holding n items, should
// be closed before the next item. A frame is not cut inside a trace until it
// holds twice its size, so that most traces sit in one frame.
func (db *DB) frameFull(n int, sameTrace bool) bool {
	if n >= 2*db.opts.FrameItems {
		return true
	}
	return n >= db.opts.FrameItems && !sameTrace
}

// spanSource cuts a request read in place into frames.
type spanSource struct {
	req     *spanRequest
	cur     []int32           // the open frame's spans
	scratch *spanFrameScratch // a payload is compressed before the next frame is encoded
}

// release returns what the frames were encoded with.
func (s *spanSource) release() {
	if s.scratch != nil {
		s.scratch.release()
		s.scratch = nil
	}
}

func (s *spanSource) refs() []itemRef {
	out := make([]itemRef, len(s.req.spans))
	for i := range s.req.spans {
		sp := &s.req.spans[i]
		out[i] = itemRef{id: sp.trace, start: sp.start, end: sp.end, i: i}
	}
	return out
}

func (s *spanSource) move(r itemRef) { s.cur = append(s.cur, int32(r.i)) }

// writeSpanCodec, when set, makes span frames of that codec (0x02 or 0x05)
// as earlier builds wrote them (tests of reading them).
var writeSpanCodec atomic.Uint32

func (s *spanSource) marshal() (byte, []byte, []byte, error) {
	if s.scratch == nil {
		s.scratch = spanFrameScratchPool.Get().(*spanFrameScratch)
	}
	codec := byte(writeSpanCodec.Load())
	if codec == 0 {
		codec = codecSpanRaw
	}
	s.scratch.codec = codec
	raw, rest, err := s.scratch.encodeSpans(s.req, s.cur)
	s.cur = s.cur[:0]
	return codec, raw, rest, err
}

// writeHead runs fill on one Badger write batch of the head partition and
// commits it, durably when SyncWrites is on. fill's writes are checked once:
// the first that fails fails the whole batch. It returns the partition's name.
func (db *DB) writeHead(fill func(p *partition, set func(k, v []byte))) (string, error) {
	p, err := db.acquireHead()
	if err != nil {
		return "", err
	}
	defer p.mu.RUnlock()
	var kvs [][]byte
	size := 0
	fill(p, func(k, v []byte) {
		kvs = append(kvs, k, v)
		size += len(k) + len(v)
	})
	// Badger writes through memory maps of files it has not reserved: a
	// batch that does not fit above half the floor would fault, so it
	// waits (in the head and the WAL) for space instead. Twice its size:
	// the value log and the memtable's own log.
	if err := db.disk.admitFlush(2 * int64(size)); err != nil {
		p.boundsUnsure.Store(true)
		return "", err
	}
	if err := writeBatch(p, kvs); err != nil {
		p.boundsUnsure.Store(true)
		if errors.Is(err, ErrDiskFull) {
			// Badger may have failed to make its next memtable, after
			// which it must not be written again: the partition is
			// reopened before the next write, once there is room.
			p.awaitingSpace.Store(true)
		}
		return "", err
	}
	db.wrote(size)
	return p.name, nil
}

// writeBatch writes key-value pairs (k0, v0, k1, v1, …) to p in one batch.
func writeBatch(p *partition, kvs [][]byte) error {
	// A batch with postings marks the partition's cached postings as
	// being written before any of its keys can be committed (a large
	// batch commits parts of itself as it is filled) and again once it is
	// committed (or failed, part of it perhaps): see postingsCache.
	for i := 0; i < len(kvs); i += 2 {
		if k := kvs[i]; len(k) > 0 && (k[0] == nsPosting || k[0] == nsStreamPosting) {
			defer p.postings.writing()()
			break
		}
	}
	wb := p.db.NewWriteBatch()
	defer wb.Cancel()
	for i := 0; i < len(kvs); i += 2 {
		if k := kvs[i]; len(k) > 0 && k[0] == nsChunkOOO {
			// Before the commit: a read that can see the chunk sees this.
			p.outOfOrder.Store(true)
		}
		if err := wb.Set(kvs[i], kvs[i+1]); err != nil {
			return partitionWriteError(p, "write", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return partitionWriteError(p, "commit", err)
	}
	return nil
}

// partitionWriteError wraps a failed partition write as the store's: a
// full disk (Badger reserves its files before it maps them, so a full disk
// is this error, not a fault) or unavailable.
func partitionWriteError(p *partition, op string, err error) error {
	kind := ErrUnavailable
	if isDiskFull(err) {
		kind = ErrDiskFull
	}
	return fmt.Errorf("%w: partition %s: %s: %v", kind, p.name, op, err) //nolint:errorlint // Badger errors stay inside the store
}

// commit writes a batch of frames and its index to the head partition.
func (db *DB) commit(b *batch) error {
	_, err := db.writeHead(func(p *partition, set func(k, v []byte)) {
		for i, f := range b.frames {
			set(frameKey(frameRef{Kind: b.kind, Seq: b.seq, Frame: uint16(i)}), f)
		}
		for _, e := range b.index {
			set(traceIndexKey(e.id, frameRef{Kind: b.kind, Seq: b.seq, Frame: e.frame}), nil)
		}
		if b.search != nil {
			db.writeSearch(p, set, b.seq, b.search)
		}
		if bounds := p.widen(b.lo, b.hi); bounds != nil {
			set(boundsKey(b.seq), bounds)
		}
	})
	return err
}

// restoreSeq makes the next batch sequence number larger than any stored in p.
func (db *DB) restoreSeq(p *partition) error {
	return p.db.View(func(txn *badger.Txn) error {
		for _, kind := range []Kind{KindSpans, KindLogs} {
			prefix := []byte{nsFrame, byte(kind)}
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
			it.Seek(append(slices.Clone(prefix), 0xff))
			if it.Valid() {
				ref, err := parseFrameKey(it.Item().Key())
				if err != nil {
					it.Close()
					return fmt.Errorf("partition %s: %w", p.name, err)
				}
				if ref.Seq > db.lastSeq.Load() {
					db.lastSeq.Store(ref.Seq)
				}
			}
			it.Close()
		}
		return nil
	})
}
