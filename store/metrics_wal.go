package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// The metrics write-ahead log: one record per append request in a segment
// file of its own (a generation under data/wal, store/wlog), durable
// before the request is acknowledged. See docs/metrics-store.md.
//
//	record := 0x02 uvarint(new series) { uvarint(ref) labels }
//	               uvarint(samples) { uvarint(ref) sample }
//	sample := 0x00 varint(t) float64bits[8]
//	        | 0x01 uvarint(len) prompb.Histogram
//	        | 0x02 uvarint(len) xorChunk
//	        | 0x03 uvarint(len) decimalChunk
//
// A record defines (new series) every series its samples refer to that
// the generation has not defined yet; a generation's first record defines
// every series of the head. Samples keep the request's order. Histograms are Prometheus' remote-write
// protobuf message (prompb.Histogram, timestamp inside), integer or float.
// A sample of kind 0x02 is many: the float samples of an open head chunk
// (Prometheus' XOR chunk bytes), carried into a new generation by a
// checkpoint (checkpointFirst); it reads as its samples, in order. A sample
// of kind 0x03 is a held chunk's samples, carried the same way (a decimal
// chunk, as store/FORMAT.md describes for partitions; at most heldSamples).
// Type 0x01, written before native histograms were kept, has float samples
// only and no kind byte.
const (
	nsWAL            byte = 0x30
	walRecordSamples byte = 0x01
	walRecordV2      byte = 0x02
)

type walSample struct {
	ref uint64
	point
}

type walSeries struct {
	ref  uint64
	lset labels.Labels
}

const (
	walFloat        byte = 0x00
	walHistogram    byte = 0x01
	walXORChunk     byte = 0x02
	walDecimalChunk byte = 0x03
)

// walChunk is a head chunk's float samples: an open one's XOR chunk bytes
// (kind walXORChunk) or a held one's decimal chunk (walDecimalChunk).
type walChunk struct {
	ref  uint64
	kind byte
	data []byte
}

// encodeWALChunks is a record of no series and the chunks (dataBytes of
// chunk bytes in all, a hint), each a sample of its kind (0x02 or 0x03).
func encodeWALChunks(chunks []walChunk, dataBytes int) []byte {
	size := 16 + dataBytes + len(chunks)*(2*binary.MaxVarintLen64+1)
	b := append(make([]byte, 0, size), walRecordV2, 0)
	b = binary.AppendUvarint(b, uint64(len(chunks)))
	for _, c := range chunks {
		b = binary.AppendUvarint(b, c.ref)
		b = append(b, c.kind)
		b = binary.AppendUvarint(b, uint64(len(c.data)))
		b = append(b, c.data...)
	}
	return b
}

// appendXORSamples appends the samples of XOR chunk bytes data to out,
// refusing bytes that are not a chunk of increasing times.
func appendXORSamples(out []walSample, ref uint64, data []byte) ([]walSample, error) {
	if len(data) < 2 {
		return nil, errors.New("chunk too short")
	}
	c, err := chunkenc.FromData(chunkenc.EncXOR, data)
	if err != nil {
		return nil, fmt.Errorf("chunk: %w", err)
	}
	n := c.NumSamples()
	if n > chunkSamples {
		return nil, fmt.Errorf("chunk of %d samples, more than a head chunk holds (%d)", n, chunkSamples)
	}
	return appendChunkSamples(out, ref, c)
}

// appendChunkSamples appends the float samples of c to out, refusing a
// chunk that holds fewer than it says or whose times do not increase.
func appendChunkSamples(out []walSample, ref uint64, c chunkenc.Chunk) ([]walSample, error) {
	it := c.Iterator(nil)
	last := int64(math.MinInt64)
	for i := range c.NumSamples() {
		if it.Next() != chunkenc.ValFloat {
			return nil, errors.New("chunk holds fewer samples than it says")
		}
		t, v := it.At()
		if i > 0 && t <= last {
			return nil, errors.New("chunk times do not increase")
		}
		last = t
		out = append(out, walSample{ref: ref, point: point{t: t, v: v}})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("chunk: %w", err)
	}
	return out, nil
}

func encodeWALRecord(series []walSeries, samples []walSample) []byte {
	return appendWALRecord(make([]byte, 0, 16+len(series)*64+len(samples)*20), series, samples)
}

// appendWALRecord appends the record of series and samples to b.
func appendWALRecord(b []byte, series []walSeries, samples []walSample) []byte {
	b = append(b, walRecordV2)
	b = binary.AppendUvarint(b, uint64(len(series)))
	for _, s := range series {
		b = binary.AppendUvarint(b, s.ref)
		b = encodeLabels(b, s.lset)
	}
	b = binary.AppendUvarint(b, uint64(len(samples)))
	for _, s := range samples {
		b = binary.AppendUvarint(b, s.ref)
		var hp prompb.Histogram
		switch {
		case s.h != nil:
			hp = prompb.FromIntHistogram(s.t, s.h)
		case s.fh != nil:
			hp = prompb.FromFloatHistogram(s.t, s.fh)
		default:
			b = append(b, walFloat)
			b = binary.AppendVarint(b, s.t)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(s.v))
			continue
		}
		b = append(b, walHistogram)
		b = binary.AppendUvarint(b, uint64(hp.Size()))
		n := len(b)
		b = append(b, make([]byte, hp.Size())...)
		_, _ = hp.MarshalToSizedBuffer(b[n:]) // sized above: cannot fail
	}
	return b
}

func decodeWALRecord(b []byte, sb *labels.ScratchBuilder) ([]walSeries, []walSample, error) {
	bad := func(what string) error { return fmt.Errorf("%w: metrics WAL record: %s", ErrCorrupt, what) }
	if len(b) == 0 || (b[0] != walRecordSamples && b[0] != walRecordV2) {
		return nil, nil, bad("type")
	}
	typ := b[0]
	b = b[1:]
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return nil, nil, bad("series count")
	}
	b = b[w:]
	series := make([]walSeries, 0, n)
	for range n {
		ref, w := binary.Uvarint(b)
		if w <= 0 {
			return nil, nil, bad("series ref")
		}
		lset, rest, err := decodeLabels(b[w:], sb)
		if err != nil {
			return nil, nil, err
		}
		series = append(series, walSeries{ref: ref, lset: lset})
		b = rest
	}
	n, w = binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return nil, nil, bad("sample count")
	}
	b = b[w:]
	samples := make([]walSample, 0, n)
	for range n {
		ref, w := binary.Uvarint(b)
		if w <= 0 {
			return nil, nil, bad("sample ref")
		}
		b = b[w:]
		kind := walFloat
		if typ == walRecordV2 {
			if len(b) == 0 {
				return nil, nil, bad("sample kind")
			}
			kind, b = b[0], b[1:]
		}
		switch kind {
		case walFloat:
			t, w := binary.Varint(b)
			if w <= 0 || len(b) < w+8 {
				return nil, nil, bad("sample")
			}
			v := math.Float64frombits(binary.BigEndian.Uint64(b[w:]))
			samples = append(samples, walSample{ref: ref, point: point{t: t, v: v}})
			b = b[w+8:]
		case walXORChunk, walDecimalChunk:
			l, w := binary.Uvarint(b)
			if w <= 0 || l > uint64(len(b)-w) {
				return nil, nil, bad("chunk length")
			}
			read := appendXORSamples
			if kind == walDecimalChunk {
				read = appendDecimalSamples
			}
			var err error
			if samples, err = read(samples, ref, b[w:w+int(l)]); err != nil {
				return nil, nil, bad(err.Error())
			}
			b = b[w+int(l):]
		case walHistogram:
			l, w := binary.Uvarint(b)
			if w <= 0 || l > uint64(len(b)-w) {
				return nil, nil, bad("histogram length")
			}
			var hp prompb.Histogram
			if err := hp.Unmarshal(b[w : w+int(l)]); err != nil {
				return nil, nil, bad("histogram: " + err.Error())
			}
			p := point{t: hp.Timestamp}
			if hp.IsFloatHistogram() {
				p.fh = hp.ToFloatHistogram()
			} else {
				p.h = hp.ToIntHistogram()
			}
			samples = append(samples, walSample{ref: ref, point: p})
			b = b[w+int(l):]
		default:
			return nil, nil, bad("sample kind")
		}
	}
	if len(b) != 0 {
		return nil, nil, bad("trailing bytes")
	}
	return series, samples, nil
}
