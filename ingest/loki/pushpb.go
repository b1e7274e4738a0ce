package loki

import (
	"time"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lumenobs/lumen/store"
)

// Loki's PushRequest, as github.com/grafana/loki/pkg/push defines it:
//
//	PushRequest      { repeated Stream streams = 1; }
//	Stream           { string labels = 1; repeated Entry entries = 2; uint64 hash = 3; }
//	Entry            { Timestamp timestamp = 1; string line = 2;
//	                   repeated LabelPair structuredMetadata = 3; repeated LabelPair parsed = 4; }
//	LabelPair        { string name = 1; string value = 2; }
//	Timestamp        { int64 seconds = 1; int32 nanos = 2; }
const (
	pushStreams = 1

	streamLabels  = 1
	streamEntries = 2
	streamHash    = 3

	entryTimestamp = 1
	entryLine      = 2
	entryMetadata  = 3
	entryParsed    = 4
)

// The range of times a Timestamp may hold (0001-01-01 to 10000-01-01), as
// the push package checks it.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300800
)

// noTimestamp is the time of an entry without a timestamp field: the zero
// time.Time, as the push package leaves it.
var noTimestamp = time.Time{}.UnixNano()

// decodePush decodes a PushRequest in one pass over raw, copying each
// stream's lines into one allocation. ok is false for anything it does not
// read exactly as push.PushRequest.Unmarshal would (an error, an unknown
// field, a timestamp out of range): the caller then decodes raw with that
// Unmarshal, which decides what is wrong. Nothing returned refers to raw.
func decodePush(raw []byte) (out []stream, ok bool) {
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 || num != pushStreams || typ != protowire.BytesType {
			return nil, false
		}
		raw = raw[n:]
		msg, n := protowire.ConsumeBytes(raw)
		if n < 0 {
			return nil, false
		}
		raw = raw[n:]
		s, ok := decodeStream(msg)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func decodeStream(b []byte) (stream, bool) {
	var (
		s     = stream{Entries: []store.LogEntry{}}
		lines [][]byte // views into b, copied once the stream is read
		total int
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return s, false
		}
		b = b[n:]
		switch {
		case num == streamLabels && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return s, false
			}
			s.labels, b = string(v), b[n:]
		case num == streamEntries && typ == protowire.BytesType:
			msg, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return s, false
			}
			b = b[n:]
			e, line, ok := decodeEntry(msg)
			if !ok {
				return s, false
			}
			s.Entries = append(s.Entries, e)
			lines = append(lines, line)
			total += len(line)
		case num == streamHash && typ == protowire.VarintType:
			_, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return s, false
			}
			b = b[n:]
		default:
			return s, false
		}
	}
	// One string holds the stream's lines: they are cut into the same
	// block, so none keeps another stream's lines alive.
	buf := make([]byte, 0, total)
	for _, l := range lines {
		buf = append(buf, l...)
	}
	all := unsafe.String(unsafe.SliceData(buf), len(buf))
	for i, l := range lines {
		s.Entries[i].Line, all = all[:len(l)], all[len(l):]
	}
	return s, true
}

// decodeEntry decodes an entry; its line is returned apart, as a view.
func decodeEntry(b []byte) (store.LogEntry, []byte, bool) {
	e := store.LogEntry{T: noTimestamp}
	var (
		line []byte
		md   labels.ScratchBuilder
		hasM bool
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return e, nil, false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return e, nil, false
		}
		b = b[n:]
		switch num {
		case entryTimestamp:
			t, ok := decodeTimestamp(v)
			if !ok {
				return e, nil, false
			}
			e.T = t
		case entryLine:
			line = v
		case entryMetadata, entryParsed:
			name, value, ok := decodeLabelPair(v)
			if !ok {
				return e, nil, false
			}
			if num == entryMetadata {
				md.Add(name, value)
				hasM = true
			}
		default:
			return e, nil, false
		}
	}
	if hasM {
		md.Sort()
		e.Metadata = md.Labels()
	}
	return e, line, true
}

// decodeTimestamp is the unix ns of a Timestamp message; false when the
// push package would refuse it.
func decodeTimestamp(b []byte) (int64, bool) {
	var sec, nanos int64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.VarintType {
			return 0, false
		}
		b = b[n:]
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
		switch num {
		case 1:
			sec = int64(v)
		case 2:
			nanos = int64(int32(v))
		default:
			return 0, false
		}
	}
	if sec < minTimestampSeconds || sec >= maxTimestampSeconds || nanos < 0 || nanos >= 1e9 {
		return 0, false
	}
	// time.Time's UnixNano, without building the time.
	return sec*1e9 + nanos, true
}

// decodeLabelPair decodes a LabelPair; its strings are copies.
func decodeLabelPair(b []byte) (name, value string, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType || (num != 1 && num != 2) {
			return "", "", false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", "", false
		}
		b = b[n:]
		if num == 1 {
			name = string(v)
		} else {
			value = string(v)
		}
	}
	return name, value, true
}
