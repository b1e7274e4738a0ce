package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/model"
)

func TestKeysSortByTraceThenBatch(t *testing.T) {
	id := model.TraceID{0xab}
	a := traceIndexKey(id, frameRef{Kind: KindLogs, Seq: 1, Frame: 9})
	b := traceIndexKey(id, frameRef{Kind: KindLogs, Seq: 2, Frame: 0})
	require.Less(t, string(a), string(b))
	require.Equal(t, string(tracePrefix(id)), string(a[:17]))
	other := traceIndexKey(model.TraceID{0xab, 1}, frameRef{Kind: KindSpans})
	require.NotEqual(t, string(tracePrefix(id)), string(other[:17]))
}

func FuzzTraceIndexKey(f *testing.F) {
	f.Add([]byte{}, uint64(0), uint16(0), byte('S'))
	f.Add(make([]byte, 16), uint64(1)<<63, uint16(65535), byte('L'))
	f.Add([]byte("0123456789abcdef"), uint64(42), uint16(7), byte('x'))
	f.Fuzz(func(t *testing.T, raw []byte, seq uint64, frame uint16, kind byte) {
		// Decoding arbitrary bytes never panics and accepts only well-formed keys.
		if id, ref, err := parseTraceIndexKey(raw); err == nil {
			require.Equal(t, raw, traceIndexKey(id, ref))
		}
		if ref, err := parseFrameKey(raw); err == nil {
			require.Equal(t, raw, frameKey(ref))
		}
		// Varints may arrive in a longer form than we write; what they
		// decode to must survive a re-encoding.
		if lo, hi, err := parseBounds(raw); err == nil {
			lo2, hi2, err := parseBounds(encodeBounds(lo, hi))
			require.NoError(t, err)
			require.Equal(t, [2]uint64{lo, hi}, [2]uint64{lo2, hi2})
		}
		if seq, err := parseLogTraceTailKey(raw); err == nil {
			// A seq in a longer varint than written decodes the same.
			var tail model.TraceID
			copy(tail[16-logTraceTailLen:], raw[1:])
			got, err := parseLogTraceTailKey(logTraceTailKey(tail, seq))
			require.NoError(t, err)
			require.Equal(t, seq, got)
			require.Equal(t, raw[:1+logTraceTailLen], logTraceTailPrefix(tail))
		}
		if br, err := parseLogTraceKey(raw); err == nil {
			require.Equal(t, raw[17:], br.appendTo(nil))
		}
		if br, err := parseLogBlockSeq(seq, raw); err == nil {
			require.Equal(t, raw, br.appendTo(nil))
			require.Equal(t, seq, br.seq)
		}
		// Encoding round-trips.
		var id model.TraceID
		copy(id[:], raw)
		ref := frameRef{Kind: Kind(kind), Seq: seq, Frame: frame}
		gotID, gotRef, err := parseTraceIndexKey(traceIndexKey(id, ref))
		if !ref.Kind.valid() {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		require.NoError(t, err)
		require.Equal(t, id, gotID)
		require.Equal(t, ref, gotRef)
		gotRef, err = parseFrameKey(frameKey(ref))
		require.NoError(t, err)
		require.Equal(t, ref, gotRef)
		gotSeq, err := parseLogTraceTailKey(logTraceTailKey(id, seq))
		require.NoError(t, err)
		require.Equal(t, seq, gotSeq)
		require.Equal(t, logTraceTailPrefix(id), logTraceTailKey(id, seq)[:1+logTraceTailLen])
		br := blockRef{ref: uint64(frame), mint: int64(seq), maxt: -int64(seq), seq: seq}
		gotBR, err := parseLogBlockSeq(seq, br.appendTo(nil))
		require.NoError(t, err)
		require.Equal(t, br, gotBR)
		_, err = parseLogBlockSeq(seq+1, br.appendTo(nil))
		require.ErrorIs(t, err, ErrCorrupt, "a block's key naming another block")
		lo, hi, err := parseBounds(encodeBounds(seq, uint64(frame)))
		require.NoError(t, err)
		require.Equal(t, [2]uint64{seq, uint64(frame)}, [2]uint64{lo, hi})
	})
}

func FuzzFrameDecode(f *testing.F) {
	c, err := newCodec(LogCompressionFast)
	require.NoError(f, err)
	defer c.close()
	f.Add(c.encode(codecZstdOTLP, []byte("hello frames")))
	f.Add(c.encode(codecZstdColumns, []byte("columns")))
	f.Add(c.encodeSplit(codecSpanRaw, []byte("raw ids"), []byte("compressed rest")))
	f.Add([]byte{codecSpanRaw, 0xff, 0x01, 1, 2})
	f.Add([]byte{codecZstdOTLP})
	f.Add([]byte{9, 1, 2, 3})
	f.Add(appendS2(nil, []byte("an S2 record, an S2 record")))
	f.Add([]byte{codecS2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, val []byte) {
		codec, out, err := c.decode(val)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		re := c.encode(codec, out)
		switch codec {
		case codecS2:
			re = appendS2(nil, out)
		case codecSpanRaw: // the payload is raw then rest: split anywhere
			k := len(out) / 2
			re = c.encodeSplit(codec, out[:k], out[k:])
		}
		_, again, err := c.decode(re)
		require.NoError(t, err)
		require.Equal(t, out, again)
	})
}
