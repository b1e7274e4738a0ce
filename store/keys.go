package store

import (
	"encoding/binary"
	"fmt"

	"github.com/lumenobs/lumen/internal/model"
)

// The key layout of one partition. store/FORMAT.md is the reference; the
// encoders below are its only implementation. All integers are big-endian so
// that byte order is numeric order.

// Namespaces: the first byte of every key.
const (
	nsMeta byte = 0x00 // KEY: 0x00 'm'                                     -> partition metadata (JSON)
	//                          KEY: 0x00 'b' seq[8]                              -> event-time bounds of a batch
	nsTraceIndex byte = 0x01 // KEY: 0x01 trace_id[16] kind[1] seq[8] frame[2]    -> empty
	nsFrame      byte = 0x02 // KEY: 0x02 kind[1] seq[8] frame[2]                 -> frame value
)

// Kind says which signal a frame holds.
type Kind byte

// The kinds of frame.
const (
	KindSpans Kind = 'S'
	KindLogs  Kind = 'L'
)

func (k Kind) valid() bool { return k == KindSpans || k == KindLogs }

const (
	traceIndexKeyLen = 1 + 16 + 1 + 8 + 2
	frameKeyLen      = 1 + 1 + 8 + 2
)

var metaKey = []byte{nsMeta, 'm'}

var boundsPrefix = []byte{nsMeta, 'b'}

// boundsKey keys the event-time bounds written with batch seq. Bounds are
// written only when they widen the partition's (rounded to the minute), so
// there are few of them; Open folds them into the partition's metadata.
func boundsKey(seq uint64) []byte {
	k := make([]byte, 2+8)
	copy(k, boundsPrefix)
	binary.BigEndian.PutUint64(k[2:], seq)
	return k
}

func encodeBounds(minNanos, maxNanos uint64) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64)
	b = binary.AppendUvarint(b, minNanos)
	return binary.AppendUvarint(b, maxNanos)
}

func parseBounds(b []byte) (minNanos, maxNanos uint64, err error) {
	minNanos, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, fmt.Errorf("%w: bounds value", ErrCorrupt)
	}
	maxNanos, m := binary.Uvarint(b[n:])
	if m <= 0 || n+m != len(b) {
		return 0, 0, fmt.Errorf("%w: bounds value", ErrCorrupt)
	}
	return minNanos, maxNanos, nil
}

// frameRef names one frame: the batch (seq) it was written in and its place
// in that batch.
type frameRef struct {
	Kind  Kind
	Seq   uint64
	Frame uint16
}

func tracePrefix(id model.TraceID) []byte {
	k := make([]byte, 17)
	k[0] = nsTraceIndex
	copy(k[1:], id[:])
	return k
}

func traceIndexKey(id model.TraceID, ref frameRef) []byte {
	k := make([]byte, traceIndexKeyLen)
	k[0] = nsTraceIndex
	copy(k[1:17], id[:])
	k[17] = byte(ref.Kind)
	binary.BigEndian.PutUint64(k[18:26], ref.Seq)
	binary.BigEndian.PutUint16(k[26:28], ref.Frame)
	return k
}

func parseTraceIndexKey(k []byte) (model.TraceID, frameRef, error) {
	var id model.TraceID
	if len(k) != traceIndexKeyLen || k[0] != nsTraceIndex {
		return id, frameRef{}, fmt.Errorf("%w: trace index key of %d bytes", ErrCorrupt, len(k))
	}
	copy(id[:], k[1:17])
	ref := frameRef{Kind: Kind(k[17]), Seq: binary.BigEndian.Uint64(k[18:26]), Frame: binary.BigEndian.Uint16(k[26:28])}
	if !ref.Kind.valid() {
		return id, frameRef{}, fmt.Errorf("%w: trace index key with kind %#x", ErrCorrupt, k[17])
	}
	return id, ref, nil
}

func frameKey(ref frameRef) []byte {
	k := make([]byte, frameKeyLen)
	k[0] = nsFrame
	k[1] = byte(ref.Kind)
	binary.BigEndian.PutUint64(k[2:10], ref.Seq)
	binary.BigEndian.PutUint16(k[10:12], ref.Frame)
	return k
}

func parseFrameKey(k []byte) (frameRef, error) {
	if len(k) != frameKeyLen || k[0] != nsFrame {
		return frameRef{}, fmt.Errorf("%w: frame key of %d bytes", ErrCorrupt, len(k))
	}
	ref := frameRef{Kind: Kind(k[1]), Seq: binary.BigEndian.Uint64(k[2:10]), Frame: binary.BigEndian.Uint16(k[10:12])}
	if !ref.Kind.valid() {
		return frameRef{}, fmt.Errorf("%w: frame key with kind %#x", ErrCorrupt, k[1])
	}
	return ref, nil
}
