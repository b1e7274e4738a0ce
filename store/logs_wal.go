package store

import (
	"encoding/binary"
	"fmt"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/internal/model"
)

// A log WAL record, one per request (KEY: 0x30 seq[8] -> zstd(record), as
// in the metrics WAL but in data/logwal):
//
//	record := 0x01 uvarint(new streams) { uvarint(ref) labels }
//	          { uvarint(ref) varint(t) uvarint(len) line flags[1] [trace_id[16]] [span_id[8]] [labels] }
//
// Lines follow to the end of the record; flags are a block's (1 trace id,
// 2 span id, 4 metadata).
const logWALRecord byte = 0x01

type walStream struct {
	ref  uint64
	lset labels.Labels
}

type walEntry struct {
	ref uint64
	LogEntry
}

func encodeLogWALRecord(streams []walStream, entries func(add func(ref uint64, e *LogEntry))) []byte {
	return appendLogWALRecord(nil, streams, entries)
}

// appendLogWALRecord appends the record encodeLogWALRecord makes to b.
func appendLogWALRecord(b []byte, streams []walStream, entries func(add func(ref uint64, e *LogEntry))) []byte {
	b = append(b, logWALRecord)
	b = binary.AppendUvarint(b, uint64(len(streams)))
	for _, s := range streams {
		b = binary.AppendUvarint(b, s.ref)
		b = encodeLabels(b, s.lset)
	}
	if entries == nil {
		return b
	}
	entries(func(ref uint64, e *LogEntry) {
		b = binary.AppendUvarint(b, ref)
		b = binary.AppendVarint(b, e.T)
		b = binary.AppendUvarint(b, uint64(len(e.Line)))
		b = append(b, e.Line...)
		var f byte
		if !e.TraceID.IsEmpty() {
			f |= flagTrace
		}
		if !e.SpanID.IsEmpty() {
			f |= flagSpan
		}
		if !e.Metadata.IsEmpty() {
			f |= flagMetadata
		}
		b = append(b, f)
		if f&flagTrace != 0 {
			b = append(b, e.TraceID[:]...)
		}
		if f&flagSpan != 0 {
			b = append(b, e.SpanID[:]...)
		}
		if f&flagMetadata != 0 {
			b = encodeLabels(b, e.Metadata)
		}
	})
	return b
}

func decodeLogWALRecord(b []byte, sb *labels.ScratchBuilder) ([]walStream, []walEntry, error) {
	bad := func(what string) error { return fmt.Errorf("%w: log WAL record: %s", ErrCorrupt, what) }
	if len(b) == 0 || b[0] != logWALRecord {
		return nil, nil, bad("type")
	}
	b = b[1:]
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return nil, nil, bad("stream count")
	}
	b = b[w:]
	streams := make([]walStream, 0, n)
	for range n {
		ref, w := binary.Uvarint(b)
		if w <= 0 {
			return nil, nil, bad("stream ref")
		}
		lset, rest, err := decodeLabels(b[w:], sb)
		if err != nil {
			return nil, nil, fmt.Errorf("log WAL stream: %w", err)
		}
		streams = append(streams, walStream{ref: ref, lset: lset})
		b = rest
	}
	var entries []walEntry
	for len(b) > 0 {
		ref, w1 := binary.Uvarint(b)
		if w1 <= 0 {
			return nil, nil, bad("line ref")
		}
		t, w2 := binary.Varint(b[w1:])
		if w2 <= 0 {
			return nil, nil, bad("line time")
		}
		b = b[w1+w2:]
		l, w := binary.Uvarint(b)
		if w <= 0 || l >= uint64(len(b)-w) { // the flags byte follows
			return nil, nil, bad("line length")
		}
		e := walEntry{ref: ref, LogEntry: LogEntry{T: t, Line: string(b[w : w+int(l)])}}
		b = b[w+int(l):]
		f := b[0]
		b = b[1:]
		if f&^(flagTrace|flagSpan|flagMetadata) != 0 {
			return nil, nil, bad("flags")
		}
		if f&flagTrace != 0 {
			if len(b) < 16 {
				return nil, nil, bad("trace id")
			}
			e.TraceID, b = model.TraceID(b[:16]), b[16:]
		}
		if f&flagSpan != 0 {
			if len(b) < 8 {
				return nil, nil, bad("span id")
			}
			e.SpanID, b = model.SpanID(b[:8]), b[8:]
		}
		if f&flagMetadata != 0 {
			ls, rest, err := decodeLabels(b, sb)
			if err != nil {
				return nil, nil, fmt.Errorf("log WAL metadata: %w", err)
			}
			e.Metadata, b = ls, rest
		}
		entries = append(entries, e)
	}
	return streams, entries, nil
}
