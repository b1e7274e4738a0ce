package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/internal/model"
)

// Log keys in a day partition (see store/FORMAT.md):
//
//	KEY: 0x40 ref[8]                                       -> stream labels
//	KEY: 0x41 uvarint(len) name uvarint(len) value ref[8]  -> empty (posting)
//	KEY: 0x42 ref[8] mint[8] maxt[8] seq[8]                -> block
//	KEY: 0x43 trace_id[16] ref[8] mint[8] maxt[8] seq[8]   -> empty: the block holds lines of the trace
const (
	nsStream        byte = 0x40
	nsStreamPosting byte = 0x41
	nsLogBlock      byte = 0x42
	nsLogTrace      byte = 0x43
)

var streamIndex = labelIndex{sets: nsStream, postings: nsStreamPosting, what: "stream"}

// LogEntry is one log line of a stream.
type LogEntry struct {
	// T is the line's time, unix nanoseconds.
	T    int64
	Line string
	// Metadata is the line's structured metadata (Loki), or for OTLP
	// records their attributes, severity and ids.
	Metadata labels.Labels
	// TraceID and SpanID link the line to a trace: from OTLP fields, or
	// found in the metadata, the stream's labels or the line (logids).
	TraceID model.TraceID
	SpanID  model.SpanID
}

// LogStream is a set of lines that share their labels.
type LogStream struct {
	Labels  labels.Labels
	Entries []LogEntry
}

// blockRef names a block: its stream, its time range and its batch.
type blockRef struct {
	ref        uint64
	mint, maxt int64
	seq        uint64
}

const blockRefLen = 32

func (b blockRef) appendTo(k []byte) []byte {
	k = binary.BigEndian.AppendUint64(k, b.ref)
	k = binary.BigEndian.AppendUint64(k, sortableTime(b.mint))
	k = binary.BigEndian.AppendUint64(k, sortableTime(b.maxt))
	return binary.BigEndian.AppendUint64(k, b.seq)
}

func parseBlockRef(b []byte) blockRef {
	return blockRef{
		ref:  binary.BigEndian.Uint64(b[0:8]),
		mint: int64(binary.BigEndian.Uint64(b[8:16]) ^ (1 << 63)),
		maxt: int64(binary.BigEndian.Uint64(b[16:24]) ^ (1 << 63)),
		seq:  binary.BigEndian.Uint64(b[24:32]),
	}
}

func logBlockKey(b blockRef) []byte {
	return b.appendTo(append(make([]byte, 0, 1+blockRefLen), nsLogBlock))
}

func logBlockPrefix(ref uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{nsLogBlock}, ref)
}

func parseLogBlockKey(k []byte) (blockRef, error) {
	if len(k) != 1+blockRefLen || k[0] != nsLogBlock {
		return blockRef{}, fmt.Errorf("%w: log block key of %d bytes", ErrCorrupt, len(k))
	}
	return parseBlockRef(k[1:]), nil
}

func logTraceKey(id model.TraceID, b blockRef) []byte {
	k := make([]byte, 0, 1+16+blockRefLen)
	k = append(k, nsLogTrace)
	k = append(k, id[:]...)
	return b.appendTo(k)
}

func logTracePrefix(id model.TraceID) []byte { return append([]byte{nsLogTrace}, id[:]...) }

func parseLogTraceKey(k []byte) (blockRef, error) {
	if len(k) != 1+16+blockRefLen || k[0] != nsLogTrace {
		return blockRef{}, fmt.Errorf("%w: log trace key of %d bytes", ErrCorrupt, len(k))
	}
	return parseBlockRef(k[17:]), nil
}

// Block payload, compressed as a whole with zstd (frame codec 0x03). Entries
// are sorted by time; like things sit together so the compressor sees runs.
//
//	payload := uvarint(n) times flags ids metadata lengths lines
//	times   := n × uvarint(t − previous t)         the first against the block's mint
//	flags   := n × byte: 1 trace id, 2 span id, 4 metadata
//	ids     := trace_id[16] and/or span_id[8] of each flagged entry, in order
//	metadata:= labels (as for 0x40) of each entry flagged 4, in order
//	lengths := n × uvarint(len(line))
//	lines   := the lines, back to back
const codecZstdLogBlock byte = 3

const (
	flagTrace    byte = 1
	flagSpan     byte = 2
	flagMetadata byte = 4
)

// sortEntries orders entries by time, then line, and drops exact
// duplicates (same time, line, ids and metadata), as Loki drops a line
// pushed twice: a request retried after a lost answer, or a WAL replayed
// after its blocks were written, stores a line once.
func sortEntries(es []LogEntry) []LogEntry {
	slices.SortStableFunc(es, compareEntries)
	return slices.CompactFunc(es, func(a, b LogEntry) bool { return compareEntries(a, b) == 0 })
}

func compareEntries(a, b LogEntry) int {
	if c := cmp.Compare(a.T, b.T); c != 0 {
		return c
	}
	if c := strings.Compare(a.Line, b.Line); c != 0 {
		return c
	}
	if c := bytes.Compare(a.TraceID[:], b.TraceID[:]); c != 0 {
		return c
	}
	if c := bytes.Compare(a.SpanID[:], b.SpanID[:]); c != 0 {
		return c
	}
	return labels.Compare(a.Metadata, b.Metadata)
}

// encodeBlock encodes sorted entries; mint is es[0].T.
func encodeBlock(es []LogEntry) []byte {
	size := 16
	for i := range es {
		size += len(es[i].Line) + 32
	}
	b := make([]byte, 0, size)
	b = binary.AppendUvarint(b, uint64(len(es)))
	prev := es[0].T
	for i := range es {
		b = binary.AppendUvarint(b, uint64(es[i].T-prev))
		prev = es[i].T
	}
	for i := range es {
		var f byte
		if !es[i].TraceID.IsEmpty() {
			f |= flagTrace
		}
		if !es[i].SpanID.IsEmpty() {
			f |= flagSpan
		}
		if !es[i].Metadata.IsEmpty() {
			f |= flagMetadata
		}
		b = append(b, f)
	}
	for i := range es {
		if !es[i].TraceID.IsEmpty() {
			b = append(b, es[i].TraceID[:]...)
		}
		if !es[i].SpanID.IsEmpty() {
			b = append(b, es[i].SpanID[:]...)
		}
	}
	for i := range es {
		if !es[i].Metadata.IsEmpty() {
			b = encodeLabels(b, es[i].Metadata)
		}
	}
	for i := range es {
		b = binary.AppendUvarint(b, uint64(len(es[i].Line)))
	}
	for i := range es {
		b = append(b, es[i].Line...)
	}
	return b
}

// decodeBlock decodes a block payload; mint is from its key.
func decodeBlock(b []byte, mint int64, sb *labels.ScratchBuilder) ([]LogEntry, error) {
	return decodeBlockLines(b, mint, sb, false, nil)
}

// decodeBlockView decodes a block payload with each line a view into b,
// not a copy: for a reader that filters lines and clones the few it
// keeps. b must not change while the lines are in use.
func decodeBlockView(b []byte, mint int64, sb *labels.ScratchBuilder, only *model.TraceID) ([]LogEntry, error) {
	return decodeBlockLines(b, mint, sb, true, only)
}

// decodeBlockLines decodes a block; with only set, the structured metadata
// of lines of other traces is skipped, not decoded (their Metadata is
// empty), as a trace's lookup reads just its own lines.
func decodeBlockLines(b []byte, mint int64, sb *labels.ScratchBuilder, view bool, only *model.TraceID) ([]LogEntry, error) {
	bad := func(what string) error { return fmt.Errorf("%w: log block: %s", ErrCorrupt, what) }
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > uint64(len(b)) {
		return nil, bad("entry count")
	}
	b = b[w:]
	es := make([]LogEntry, n)
	t := mint
	for i := range es {
		d, w := binary.Uvarint(b)
		if w <= 0 {
			return nil, bad("time")
		}
		t += int64(d)
		es[i].T = t
		b = b[w:]
	}
	if uint64(len(b)) < n {
		return nil, bad("flags")
	}
	flags := b[:n]
	b = b[n:]
	for i, f := range flags {
		if f&^(flagTrace|flagSpan|flagMetadata) != 0 {
			return nil, bad("flag")
		}
		if f&flagTrace != 0 {
			if len(b) < 16 {
				return nil, bad("trace id")
			}
			es[i].TraceID = model.TraceID(b[:16])
			b = b[16:]
		}
		if f&flagSpan != 0 {
			if len(b) < 8 {
				return nil, bad("span id")
			}
			es[i].SpanID = model.SpanID(b[:8])
			b = b[8:]
		}
	}
	for i, f := range flags {
		if f&flagMetadata != 0 {
			if only != nil && es[i].TraceID != *only {
				rest, err := skipLabels(b)
				if err != nil {
					return nil, fmt.Errorf("log block metadata: %w", err)
				}
				b = rest
				continue
			}
			ls, rest, err := decodeLabels(b, sb)
			if err != nil {
				return nil, fmt.Errorf("log block metadata: %w", err)
			}
			es[i].Metadata, b = ls, rest
		}
	}
	lens := make([]uint64, n)
	var total uint64
	for i := range lens {
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)) {
			return nil, bad("line length")
		}
		lens[i], total = l, total+l
		b = b[w:]
	}
	if total != uint64(len(b)) {
		return nil, bad("lines")
	}
	var all string
	if view {
		all = unsafe.String(unsafe.SliceData(b), len(b))
	} else {
		all = string(b) // one allocation for every line of the block
	}
	for i, l := range lens {
		es[i].Line, all = all[:l], all[l:]
	}
	return es, nil
}
