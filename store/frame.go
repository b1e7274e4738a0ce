package store

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// A frame value is one codec byte followed by the payload.
const (
	codecZstdOTLP byte = 1 // zstd-compressed OTLP protobuf (ExportTraceServiceRequest / ExportLogsServiceRequest)
)

// maxFrameBytes bounds a frame's decompressed size, so that a corrupt value
// cannot make a read allocate without limit.
const maxFrameBytes = 256 << 20

type codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func newCodec() (*codec, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxFrameBytes))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &codec{enc: enc, dec: dec}, nil
}

func (c *codec) close() { c.dec.Close() }

// encode compresses an OTLP protobuf payload into a frame value.
func (c *codec) encode(payload []byte) []byte {
	dst := make([]byte, 1, 1+len(payload)/3)
	dst[0] = codecZstdOTLP
	return c.enc.EncodeAll(payload, dst)
}

// decode returns the OTLP protobuf payload of a frame value.
func (c *codec) decode(val []byte) ([]byte, error) {
	if len(val) < 2 {
		return nil, fmt.Errorf("%w: frame of %d bytes", ErrCorrupt, len(val))
	}
	if val[0] != codecZstdOTLP {
		return nil, fmt.Errorf("%w: frame codec %#x", ErrCorrupt, val[0])
	}
	out, err := c.dec.DecodeAll(val[1:], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: frame: %w", ErrCorrupt, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: frame with an empty payload", ErrCorrupt)
	}
	return out, nil
}
