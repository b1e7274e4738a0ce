package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"go.opentelemetry.io/collector/pdata/plog"
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
	lo, hi   uint64 // event-time bounds of the whole batch
	perFrame map[model.TraceID]*indexValue
}

type indexEntry struct {
	id    model.TraceID
	frame uint16
	val   indexValue
}

func newBatch(kind Kind, seq uint64) *batch {
	return &batch{kind: kind, seq: seq, perFrame: map[model.TraceID]*indexValue{}}
}

// item records one item of the frame being built.
func (b *batch) item(id model.TraceID, start, end uint64) {
	if start != 0 && (b.lo == 0 || start < b.lo) {
		b.lo = start
	}
	b.hi = max(b.hi, end)
	if id.IsEmpty() {
		return
	}
	v := b.perFrame[id]
	if v == nil {
		v = &indexValue{}
		b.perFrame[id] = v
	}
	v.add(start, end)
}

// endFrame closes the frame being built with its encoded value.
func (b *batch) endFrame(val []byte) {
	frame := uint16(len(b.frames))
	b.frames = append(b.frames, val)
	start := len(b.index)
	for id, v := range b.perFrame {
		b.index = append(b.index, indexEntry{id: id, frame: frame, val: *v})
	}
	// Sorted keys make Badger's write cheaper and the result deterministic.
	slices.SortFunc(b.index[start:], func(x, y indexEntry) int { return bytes.Compare(x.id[:], y.id[:]) })
	clear(b.perFrame)
}

func (b *batch) items() int {
	n := 0
	for _, e := range b.index {
		n += int(e.val.Count)
	}
	return n
}

var (
	tracesMarshaler ptrace.ProtoMarshaler
	logsMarshaler   plog.ProtoMarshaler
)

// WriteTraces stores the spans of td and returns once they are durable. It
// takes ownership of td: spans are moved out of it. A span whose trace id is
// all zeros makes the whole request invalid and nothing is written.
func (db *DB) WriteTraces(ctx context.Context, td ptrace.Traces) error {
	if err := validateTraces(td); err != nil {
		return err
	}
	if td.SpanCount() == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write traces: %w", err)
	}
	b, err := db.spanBatch(td, db.nextSeq())
	if err != nil {
		return err
	}
	return db.commit(b)
}

func validateTraces(td ptrace.Traces) error {
	for i, rs := range td.ResourceSpans().All() {
		for j, ss := range rs.ScopeSpans().All() {
			for k, sp := range ss.Spans().All() {
				if sp.TraceID().IsEmpty() {
					return fmt.Errorf("%w: resource_spans[%d].scope_spans[%d].spans[%d] has an all-zero trace_id", ErrInvalid, i, j, k)
				}
				if sp.SpanID().IsEmpty() {
					return fmt.Errorf("%w: resource_spans[%d].scope_spans[%d].spans[%d] has an all-zero span_id", ErrInvalid, i, j, k)
				}
			}
		}
	}
	return nil
}

func (db *DB) spanBatch(td ptrace.Traces, seq uint64) (*batch, error) {
	b := newBatch(KindSpans, seq)
	var (
		cur ptrace.Traces
		dst ptrace.SpanSlice
		n   int
		has bool // dst is the current (resource, scope) in the current frame
	)
	flush := func() error {
		if n == 0 {
			return nil
		}
		payload, err := tracesMarshaler.MarshalTraces(cur)
		if err != nil {
			return fmt.Errorf("encode span frame: %w", err)
		}
		b.endFrame(db.codec.encode(payload))
		n, has = 0, false
		return nil
	}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			spans := ss.Spans()
			spans.Sort(func(x, y ptrace.Span) bool {
				a, b := x.TraceID(), y.TraceID()
				if c := bytes.Compare(a[:], b[:]); c != 0 {
					return c < 0
				}
				return x.StartTimestamp() < y.StartTimestamp()
			})
			has = false
			for _, sp := range spans.All() {
				if n >= db.opts.FrameItems {
					if err := flush(); err != nil {
						return nil, err
					}
				}
				if n == 0 {
					cur = ptrace.NewTraces()
				}
				if !has {
					nrs := cur.ResourceSpans().AppendEmpty()
					rs.Resource().CopyTo(nrs.Resource())
					nrs.SetSchemaUrl(rs.SchemaUrl())
					nss := nrs.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(nss.Scope())
					nss.SetSchemaUrl(ss.SchemaUrl())
					dst, has = nss.Spans(), true
				}
				b.item(model.TraceID(sp.TraceID()), uint64(sp.StartTimestamp()), uint64(sp.EndTimestamp()))
				sp.MoveTo(dst.AppendEmpty())
				n++
			}
		}
	}
	return b, flush()
}

// WriteLogs stores the log records of ld and returns once they are durable.
// It takes ownership of ld. Records that carry a trace id are indexed by it.
func (db *DB) WriteLogs(ctx context.Context, ld plog.Logs) error {
	if ld.LogRecordCount() == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write logs: %w", err)
	}
	b, err := db.logBatch(ld, db.nextSeq())
	if err != nil {
		return err
	}
	return db.commit(b)
}

// logTime is the time a record is filed under: when it happened, or when it
// was observed if the source did not say.
func logTime(lr plog.LogRecord) uint64 {
	if ts := lr.Timestamp(); ts != 0 {
		return uint64(ts)
	}
	return uint64(lr.ObservedTimestamp())
}

func (db *DB) logBatch(ld plog.Logs, seq uint64) (*batch, error) {
	b := newBatch(KindLogs, seq)
	var (
		cur plog.Logs
		dst plog.LogRecordSlice
		n   int
		has bool
	)
	flush := func() error {
		if n == 0 {
			return nil
		}
		payload, err := logsMarshaler.MarshalLogs(cur)
		if err != nil {
			return fmt.Errorf("encode log frame: %w", err)
		}
		b.endFrame(db.codec.encode(payload))
		n, has = 0, false
		return nil
	}
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			recs := sl.LogRecords()
			recs.Sort(func(x, y plog.LogRecord) bool {
				a, b := x.TraceID(), y.TraceID()
				if c := bytes.Compare(a[:], b[:]); c != 0 {
					return c < 0
				}
				return logTime(x) < logTime(y)
			})
			has = false
			for _, lr := range recs.All() {
				if n >= db.opts.FrameItems {
					if err := flush(); err != nil {
						return nil, err
					}
				}
				if n == 0 {
					cur = plog.NewLogs()
				}
				if !has {
					nrl := cur.ResourceLogs().AppendEmpty()
					rl.Resource().CopyTo(nrl.Resource())
					nrl.SetSchemaUrl(rl.SchemaUrl())
					nsl := nrl.ScopeLogs().AppendEmpty()
					sl.Scope().CopyTo(nsl.Scope())
					nsl.SetSchemaUrl(sl.SchemaUrl())
					dst, has = nsl.LogRecords(), true
				}
				ts := logTime(lr)
				b.item(model.TraceID(lr.TraceID()), ts, ts)
				lr.MoveTo(dst.AppendEmpty())
				n++
			}
		}
	}
	return b, flush()
}

// commit writes a batch to the head partition in one Badger write batch.
func (db *DB) commit(b *batch) error {
	p, err := db.acquireHead()
	if err != nil {
		return err
	}
	defer p.mu.RUnlock()
	wb := p.db.NewWriteBatch()
	defer wb.Cancel()
	set := func(k, v []byte) error {
		if err := wb.Set(k, v); err != nil {
			return fmt.Errorf("%w: partition %s: write: %v", ErrUnavailable, p.name, err) //nolint:errorlint // Badger errors stay inside the store
		}
		return nil
	}
	for i, f := range b.frames {
		if err := set(frameKey(frameRef{Kind: b.kind, Seq: b.seq, Frame: uint16(i)}), f); err != nil {
			return err
		}
	}
	for _, e := range b.index {
		if err := set(traceIndexKey(e.id, frameRef{Kind: b.kind, Seq: b.seq, Frame: e.frame}), e.val.encode()); err != nil {
			return err
		}
	}
	if bounds := p.widen(b.lo, b.hi); bounds != nil {
		if err := set(boundsKey(b.seq), bounds); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("%w: partition %s: commit: %v", ErrUnavailable, p.name, err) //nolint:errorlint // Badger errors stay inside the store
	}
	return nil
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
