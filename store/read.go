package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/model"
)

// Trace is everything stored for one trace id.
type Trace struct {
	// Spans holds the trace's spans, grouped as they were received.
	Spans ptrace.Traces
	// Logs holds the log lines that carry the trace id, by stream, each
	// stream's lines sorted by time.
	Logs []LogStream
	// Truncated, when not empty, says what was left out because the trace
	// is over MaxTraceBytes of spans or MaxTraceLogLines of lines.
	Truncated string
	// Warnings say what a remote backend that could not be read left out.
	Warnings []string
}

var (
	tracesUnmarshaler ptrace.ProtoUnmarshaler
	logsUnmarshaler   plog.ProtoUnmarshaler
)

// Trace returns the spans and log records stored for id, from every
// partition (the lines from the remote logs backend when there is one). It
// returns ErrNotFound when there are none.
func (db *DB) Trace(ctx context.Context, id model.TraceID) (Trace, error) {
	return db.trace(ctx, id, true)
}

// TraceSpans is Trace for the APIs that answer spans: lines kept in a
// remote backend are not read.
func (db *DB) TraceSpans(ctx context.Context, id model.TraceID) (Trace, error) {
	return db.trace(ctx, id, false)
}

func (db *DB) trace(ctx context.Context, id model.TraceID, remoteLogs bool) (Trace, error) {
	parts, err := db.snapshot()
	if err != nil {
		return Trace{}, err
	}
	out := Trace{Spans: ptrace.NewTraces()}
	legacy := plog.NewLogs()
	budget := db.traceBudget()
	var spansErr error // the remote traces backend could not be read
	if r := db.opts.RemoteTraces; r != nil {
		if out.Spans, spansErr = remoteTraceSpans(ctx, r, id); spansErr != nil {
			out.Spans = ptrace.NewTraces()
		}
	} else {
		for _, p := range parts {
			if err := ctx.Err(); err != nil {
				return Trace{}, fmt.Errorf("read trace %s: %w", id, err)
			}
			if err := db.readTrace(p, id, out.Spans, legacy, &budget); err != nil {
				return Trace{}, err
			}
		}
	}
	if budget < 0 {
		out.Truncated = fmt.Sprintf("spans over %d bytes (max_trace_bytes) were left out: %d spans shown", db.opts.Limits.MaxTraceBytes, out.Spans.SpanCount())
	}
	var cut bool
	switch r := db.opts.RemoteLogs; {
	case r == nil:
		if out.Logs, cut, err = db.traceLogs(ctx, parts, id); err != nil {
			return Trace{}, err
		}
	case remoteLogs:
		// A logs backend that cannot be read leaves the lines out, said
		// in the warnings: the spans are answered.
		var rerr error
		if out.Logs, cut, rerr = db.remoteTraceLogs(ctx, r, id, out.Spans); rerr != nil {
			if out.Spans.ResourceSpans().Len() == 0 {
				return Trace{}, fmt.Errorf("logs of trace %s: %w", id, rerr)
			}
			out.Warnings = append(out.Warnings, fmt.Sprintf("log lines left out: %v", rerr))
		}
	}
	if cut {
		out.Truncated = strings.TrimPrefix(out.Truncated+"; ", "; ") + fmt.Sprintf("log lines past %d (max_trace_log_lines) were left out", db.opts.Limits.MaxTraceLogLines)
	}
	if legacy.LogRecordCount() > 0 {
		g := &logGather{byHash: map[uint64][]*LogStream{}}
		for _, st := range append(OTLPLogStreams(legacy), out.Logs...) {
			dst := g.stream(st.Labels)
			for _, e := range st.Entries {
				_ = g.add(dst, e)
			}
		}
		out.Logs = g.result()
	}
	if spansErr != nil {
		// A traces backend that cannot be read leaves the spans out, said
		// in the warnings, when the lines are an answer.
		if len(out.Logs) == 0 {
			return Trace{}, fmt.Errorf("spans of trace %s: %w", id, spansErr)
		}
		out.Warnings = append(out.Warnings, fmt.Sprintf("spans left out: %v", spansErr))
	}
	if out.Spans.ResourceSpans().Len() == 0 && len(out.Logs) == 0 {
		return Trace{}, fmt.Errorf("trace %s: %w", id, ErrNotFound)
	}
	return out, nil
}

// traceBudget is the span bytes one trace read may take.
func (db *DB) traceBudget() int64 {
	if db.opts.Limits.MaxTraceBytes <= 0 {
		return math.MaxInt64
	}
	return db.opts.Limits.MaxTraceBytes
}

// readTrace appends the spans partition p holds for id to spans: one prefix
// scan of the trace's index keys, then one read per frame they name. Log
// frames, written by builds before the log store, go to logs. Each frame
// read takes its decoded size from budget; once it is spent (below zero),
// no more frames are read.
func (db *DB) readTrace(p *partition, id model.TraceID, spans ptrace.Traces, logs plog.Logs, budget *int64) error {
	err := p.view(func(txn *badger.Txn) error {
		var refs []frameRef
		it := txn.NewIterator(badger.IteratorOptions{Prefix: tracePrefix(id)})
		for it.Rewind(); it.Valid(); it.Next() {
			_, ref, err := parseTraceIndexKey(it.Item().Key())
			if err != nil {
				it.Close()
				return err
			}
			refs = append(refs, ref)
		}
		it.Close()
		for _, ref := range refs {
			if *budget < 0 {
				return nil
			}
			item, err := txn.Get(frameKey(ref))
			if err != nil {
				return fmt.Errorf("%w: frame %c/%d/%d named by trace %s: %v", ErrCorrupt, ref.Kind, ref.Seq, ref.Frame, id, err) //nolint:errorlint // Badger errors stay inside the store
			}
			// A span frame is decoded into a pooled buffer, inside
			// Badger's read of it: the trace's spans are copied out of
			// it (a frame holds a whole request, the trace a few spans of
			// it). Log frames of earlier builds keep their own memory.
			var buf *[]byte
			if ref.Kind == KindSpans {
				buf = payloadPool.Get().(*[]byte)
			}
			err = item.Value(func(val []byte) error {
				var dst []byte
				if buf != nil {
					dst = *buf
				}
				codec, payload, err := db.codec.decodeTo(dst, val)
				if err != nil {
					return err
				}
				*budget -= int64(len(payload))
				switch ref.Kind {
				case KindSpans:
					err = appendTraceSpans(codec, payload, id, spans)
					if cap(payload) <= maxPooledPayload {
						*buf = payload[:0]
					}
				case KindLogs:
					err = appendTraceLogs(payload, id, logs)
				}
				return err
			})
			if buf != nil {
				payloadPool.Put(buf)
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					err = fmt.Errorf("%w: read frame: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
				}
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
	}
	return err
}

// payloadPool holds buffers for span frames decoded to read a trace's
// spans out of them; buffers past maxPooledPayload are not kept.
var payloadPool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledPayload = 4 << 20

// appendTraceSpans appends the spans of trace id in a span frame's payload
// to dst. Nothing of dst refers to payload afterwards.
func appendTraceSpans(codec byte, payload []byte, id model.TraceID, dst ptrace.Traces) error {
	want := pcommon.TraceID(id)
	if isSpanFrame(codec) {
		td, err := decodeSpanFrameOf(codec, payload, &want)
		if err != nil {
			return err
		}
		td.ResourceSpans().MoveAndAppendTo(dst.ResourceSpans())
		return nil
	}
	td, err := decodeSpans(codec, payload)
	if err != nil {
		return err
	}
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(s ptrace.Span) bool { return s.TraceID() != want })
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
	td.ResourceSpans().MoveAndAppendTo(dst.ResourceSpans())
	return nil
}

// isSpanFrame reports whether frames of codec are span frames (columns
// and a protobuf, spancodec.go) rather than a plain OTLP protobuf.
func isSpanFrame(codec byte) bool {
	return codec == codecZstdColumns || codec == codecZstdSpanFields || codec == codecSpanRaw
}

// decodeSpans decodes a span frame of any codec.
func decodeSpans(codec byte, payload []byte) (ptrace.Traces, error) {
	if isSpanFrame(codec) {
		return decodeSpanFrame(codec, payload)
	}
	td, err := tracesUnmarshaler.UnmarshalTraces(payload)
	if err != nil {
		return ptrace.Traces{}, fmt.Errorf("%w: span frame: %w", ErrCorrupt, err)
	}
	return td, nil
}

func appendTraceLogs(payload []byte, id model.TraceID, dst plog.Logs) error {
	ld, err := logsUnmarshaler.UnmarshalLogs(payload)
	if err != nil {
		return fmt.Errorf("%w: log frame: %w", ErrCorrupt, err)
	}
	want := pcommon.TraceID(id)
	ld.ResourceLogs().RemoveIf(func(rl plog.ResourceLogs) bool {
		rl.ScopeLogs().RemoveIf(func(sl plog.ScopeLogs) bool {
			sl.LogRecords().RemoveIf(func(r plog.LogRecord) bool { return r.TraceID() != want })
			return sl.LogRecords().Len() == 0
		})
		return rl.ScopeLogs().Len() == 0
	})
	ld.ResourceLogs().MoveAndAppendTo(dst.ResourceLogs())
	return nil
}
