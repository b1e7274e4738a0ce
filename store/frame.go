package store

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// A frame value is one codec byte followed by the payload.
const (
	codecZstdOTLP    byte = 1 // zstd-compressed OTLP protobuf (ExportTraceServiceRequest / ExportLogsServiceRequest)
	codecZstdColumns byte = 2 // zstd-compressed span frame: id and time columns, then OTLP protobuf (spancodec.go)
	// codecS2 (4) is an S2-compressed record of the log WAL: lines are
	// written there once more before their block is compressed, and S2
	// takes a fraction of the CPU of zstd's fastest level for them.
	codecS2 byte = 4
	// codecZstdSpanFields (5) is a span frame whose spans' fields, each
	// attribute by its key, are in columns after the protobuf
	// (spanfields.go).
	codecZstdSpanFields byte = 5
	// codecSpanRaw (6) is a span frame of codec 0x05 whose ids and
	// durations, which a compressor cannot shrink, are stored as they
	// are ahead of the zstd-compressed rest: codec uvarint(len(raw)) raw
	// zstd(rest); its payload is raw followed by rest (spancodec.go).
	codecSpanRaw byte = 6
)

// maxFrameBytes bounds a frame's decompressed size, so that a corrupt value
// cannot make a read allocate without limit.
const maxFrameBytes = 256 << 20

type codec struct {
	enc  *zstd.Encoder
	fast *zstd.Encoder // for short-lived values (the write-ahead logs): speed over ratio
	// blocks compresses log blocks: at zstd's fastest level, or at its
	// better-compression level with LogCompressionBetter.
	blocks *zstd.Encoder
	dec    *zstd.Decoder
}

// newCodec makes the store's codec; blockCompression is
// Options.LogCompression.
func newCodec(blockCompression string) (*codec, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	fast, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(1<<20))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	level := zstd.SpeedFastest
	if blockCompression == LogCompressionBetter {
		level = zstd.SpeedBetterCompression
	}
	blocks, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithWindowSize(2<<20))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxFrameBytes))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &codec{enc: enc, fast: fast, blocks: blocks, dec: dec}, nil
}

func (c *codec) close() { c.dec.Close() }

// encode compresses a payload into a frame value of the given codec.
func (c *codec) encode(codec byte, payload []byte) []byte {
	dst := make([]byte, 1, 1+len(payload)/3)
	dst[0] = codec
	return c.enc.EncodeAll(payload, dst)
}

// encodeSplit makes a frame value of codec (codecSpanRaw) whose payload is
// raw, stored as it is, followed by rest, compressed at zstd's fastest
// level: the ids, times and durations that make most of a span's bytes are
// raw already, and the columns left compress within 4 % of the default
// level for a tenth less of the ingest's CPU (docs/decisions.md).
func (c *codec) encodeSplit(codec byte, raw, rest []byte) []byte {
	dst := make([]byte, 1, 1+binary.MaxVarintLen64+len(raw)+len(rest)/3)
	dst[0] = codec
	dst = append(binary.AppendUvarint(dst, uint64(len(raw))), raw...)
	return c.fast.EncodeAll(rest, dst)
}

// encodeFast is encode at zstd's fastest level, for values that live only
// until the next flush: the write-ahead log is on every acknowledged request's
// path and is deleted once its samples are in chunks.
func (c *codec) encodeFast(codec byte, payload []byte) []byte {
	return c.appendFast(make([]byte, 0, 1+len(payload)/3), codec, payload)
}

// appendFast appends the frame value encodeFast makes to dst.
func (c *codec) appendFast(dst []byte, codec byte, payload []byte) []byte {
	return c.fast.EncodeAll(payload, append(dst, codec))
}

// appendS2 appends an S2 frame value (codecS2) of payload to dst.
func appendS2(dst, payload []byte) []byte {
	n := len(dst) + 1
	dst = slices.Grow(append(dst, codecS2), s2.MaxEncodedLen(len(payload)))
	return dst[:n+len(s2.Encode(dst[n:cap(dst)], payload))]
}

// encodeBlock compresses a log block into a frame value.
func (c *codec) encodeBlock(codec byte, payload []byte) []byte {
	dst := make([]byte, 1, 1+len(payload)/6)
	dst[0] = codec
	return c.blocks.EncodeAll(payload, dst)
}

// decode returns the codec and the decompressed payload of a frame value.
func (c *codec) decode(val []byte) (byte, []byte, error) { return c.decodeTo(nil, val) }

// decodeTo is decode, the payload in dst's memory when it is large enough
// (dst's contents are overwritten).
func (c *codec) decodeTo(dst, val []byte) (byte, []byte, error) {
	if len(val) < 2 {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes", ErrCorrupt, len(val))
	}
	var out []byte
	switch val[0] {
	case codecZstdOTLP, codecZstdColumns, codecZstdLogBlock, codecZstdSpanFields:
		var err error
		if out, err = c.dec.DecodeAll(val[1:], dst[:0]); err != nil {
			return 0, nil, fmt.Errorf("%w: frame: %w", ErrCorrupt, err)
		}
	case codecSpanRaw:
		n, w := binary.Uvarint(val[1:])
		if w <= 0 || n > uint64(len(val)-1-w) {
			return 0, nil, fmt.Errorf("%w: frame of %d bytes with %d raw", ErrCorrupt, len(val), n)
		}
		raw, rest := val[1+w:1+w+int(n)], val[1+w+int(n):]
		var err error
		if out, err = c.dec.DecodeAll(rest, append(dst[:0], raw...)); err != nil {
			return 0, nil, fmt.Errorf("%w: frame: %w", ErrCorrupt, err)
		}
	case codecS2:
		n, err := s2.DecodedLen(val[1:])
		if err != nil || n > maxFrameBytes {
			return 0, nil, fmt.Errorf("%w: S2 frame of %d bytes decoded: %v", ErrCorrupt, n, err) //nolint:errorlint // the codec's error is a detail
		}
		if out, err = s2.Decode(dst[:cap(dst)], val[1:]); err != nil {
			return 0, nil, fmt.Errorf("%w: S2 frame: %w", ErrCorrupt, err)
		}
	default:
		return 0, nil, fmt.Errorf("%w: frame codec %#x", ErrCorrupt, val[0])
	}
	if len(out) == 0 {
		return 0, nil, fmt.Errorf("%w: frame with an empty payload", ErrCorrupt)
	}
	return val[0], out, nil
}
