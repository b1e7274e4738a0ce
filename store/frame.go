package store

import (
	"fmt"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// A frame value is one codec byte followed by the payload.
const (
	codecZstdOTLP    byte = 1 // zstd-compressed OTLP protobuf (ExportTraceServiceRequest / ExportLogsServiceRequest)
	codecZstdColumns byte = 2 // zstd-compressed span frame: id and time columns, then OTLP protobuf (spancodec.go)
)

// maxFrameBytes bounds a frame's decompressed size, so that a corrupt value
// cannot make a read allocate without limit.
const maxFrameBytes = 256 << 20

type codec struct {
	enc   *zstd.Encoder
	fast  *zstd.Encoder // for short-lived values (the write-ahead logs): speed over ratio
	tight *zstd.Encoder // for log blocks: ratio over speed, written once and kept
	dec   *zstd.Decoder
}

func newCodec() (*codec, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	fast, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(1<<20))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	tight, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithWindowSize(2<<20))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxFrameBytes))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &codec{enc: enc, fast: fast, tight: tight, dec: dec}, nil
}

func (c *codec) close() { c.dec.Close() }

// encode compresses a payload into a frame value of the given codec.
func (c *codec) encode(codec byte, payload []byte) []byte {
	dst := make([]byte, 1, 1+len(payload)/3)
	dst[0] = codec
	return c.enc.EncodeAll(payload, dst)
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

// encodeTight is encode at zstd's better-compression level, for log
// blocks: lines are most of what the store keeps, and that level takes
// about 8 % off their size for less CPU than the rest of ingest.
func (c *codec) encodeTight(codec byte, payload []byte) []byte {
	dst := make([]byte, 1, 1+len(payload)/6)
	dst[0] = codec
	return c.tight.EncodeAll(payload, dst)
}

// decode returns the codec and the decompressed payload of a frame value.
func (c *codec) decode(val []byte) (byte, []byte, error) {
	if len(val) < 2 {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes", ErrCorrupt, len(val))
	}
	if val[0] != codecZstdOTLP && val[0] != codecZstdColumns && val[0] != codecZstdLogBlock {
		return 0, nil, fmt.Errorf("%w: frame codec %#x", ErrCorrupt, val[0])
	}
	out, err := c.dec.DecodeAll(val[1:], nil)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: frame: %w", ErrCorrupt, err)
	}
	if len(out) == 0 {
		return 0, nil, fmt.Errorf("%w: frame with an empty payload", ErrCorrupt)
	}
	return val[0], out, nil
}
