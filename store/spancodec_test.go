package store

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/otlptest"
)

func cloneTraces(td ptrace.Traces) ptrace.Traces {
	out := ptrace.NewTraces()
	td.CopyTo(out)
	return out
}

func requireSameTraces(t *testing.T, want, got ptrace.Traces) {
	t.Helper()
	var m ptrace.JSONMarshaler
	wj, err := m.MarshalTraces(want)
	require.NoError(t, err)
	gj, err := m.MarshalTraces(got)
	require.NoError(t, err)
	require.JSONEq(t, string(wj), string(gj))
}

// edgeTraces holds what the columns must carry exactly: a parent outside the
// frame, times at the ends of the range, an end before the start, duplicate
// span ids, events before their span, and several links.
func edgeTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	add := func(tid byte, sid byte, parent pcommon.SpanID, start, end uint64) ptrace.Span {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{tid, 1})
		sp.SetSpanID(pcommon.SpanID{sid, 2})
		sp.SetParentSpanID(parent)
		sp.SetStartTimestamp(pcommon.Timestamp(start))
		sp.SetEndTimestamp(pcommon.Timestamp(end))
		sp.SetName("edge")
		return sp
	}
	add(1, 1, pcommon.SpanID{}, 0, 0)
	add(1, 2, pcommon.SpanID{9, 9, 9}, math.MaxUint64, 0) // parent elsewhere; end before start
	sp := add(1, 3, pcommon.SpanID{1, 2}, 5, math.MaxUint64)
	ev := sp.Events().AppendEmpty()
	ev.SetTimestamp(1) // before the span starts
	ev.SetName("early")
	sp.Events().AppendEmpty().SetTimestamp(math.MaxUint64)
	for i := range 3 {
		l := sp.Links().AppendEmpty()
		l.SetTraceID(pcommon.TraceID{byte(i), 7})
		l.SetSpanID(pcommon.SpanID{byte(i), 8})
	}
	add(2, 3, pcommon.SpanID{1, 2}, 7, 8) // duplicate span id, parent in frame
	add(1, 4, pcommon.SpanID{3, 2}, 7, 9) // a trace id run broken by another trace
	// A second resource and scope with no spans is kept too.
	td.ResourceSpans().AppendEmpty().Resource().Attributes().PutStr("service.name", "idle")
	return td
}

func TestSpanFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		td   ptrace.Traces
	}{
		{"generated, two spans per trace", otlptest.New(1).Traces(100, 2)},
		{"generated, one long trace", otlptest.New(2).Traces(1, 300)},
		{"edge cases", edgeTraces()},
		{"empty", ptrace.NewTraces()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := cloneTraces(tc.td)
			payload, err := encodeSpanFrame(tc.td)
			require.NoError(t, err)
			got, err := decodeSpanFrame(payload)
			require.NoError(t, err)
			requireSameTraces(t, want, got)
		})
	}
}

// TestSpanFrameScratchIsReused: one scratch encodes frame after frame —
// larger, smaller, with parents that were in an earlier frame's index — as
// fresh ones do, and a payload it made stays right until the next encode.
func TestSpanFrameScratchIsReused(t *testing.T) {
	s := spanFrameScratchPool.Get().(*spanFrameScratch)
	defer s.release()
	for i, td := range []ptrace.Traces{otlptest.New(1).Traces(100, 3), edgeTraces(), otlptest.New(1).Traces(10, 3), otlptest.New(2).Traces(1, 300), ptrace.NewTraces(), otlptest.New(3).Traces(5, 2)} {
		want, err := encodeSpanFrame(cloneTraces(td))
		require.NoError(t, err)
		got, err := s.encode(cloneTraces(td))
		require.NoError(t, err)
		require.Equal(t, want, got, "frame %d", i)
		decoded, err := decodeSpanFrame(got)
		require.NoError(t, err)
		requireSameTraces(t, td, decoded)
	}
}

// TestSpanFrameDecodesOneTrace: decoding one trace's spans (the others
// skipped in the protobuf) gives what decoding all and filtering gives.
func TestSpanFrameDecodesOneTrace(t *testing.T) {
	for _, td := range []ptrace.Traces{otlptest.New(1).Traces(100, 2), otlptest.New(4).Traces(7, 40), edgeTraces()} {
		payload, err := encodeSpanFrame(cloneTraces(td))
		require.NoError(t, err)
		all, err := decodeSpanFrame(payload)
		require.NoError(t, err)
		ids := otlptest.TraceIDs(all)
		require.NotEmpty(t, ids)
		for _, id := range ids {
			got, err := decodeSpanFrameOf(payload, &id)
			require.NoError(t, err)
			requireSameTraces(t, otlptest.FilterTrace(all, id), got)
		}
		absent := pcommon.TraceID{0xde, 0xad}
		got, err := decodeSpanFrameOf(payload, &absent)
		require.NoError(t, err)
		require.Equal(t, 0, got.SpanCount())
	}
}

func TestSpanFrameRejectsDamage(t *testing.T) {
	payload, err := encodeSpanFrame(edgeTraces())
	require.NoError(t, err)
	for cut := range len(payload) {
		_, err := decodeSpanFrame(payload[:cut])
		require.ErrorIs(t, err, ErrCorrupt, "truncated at %d of %d", cut, len(payload))
	}
	_, err = decodeSpanFrame(append(payload, 0))
	require.ErrorContains(t, err, "trailing bytes")
}

func FuzzSpanFrame(f *testing.F) {
	for _, td := range []ptrace.Traces{otlptest.New(3).Traces(3, 3), edgeTraces(), ptrace.NewTraces()} {
		payload, err := encodeSpanFrame(td)
		require.NoError(f, err)
		f.Add(payload)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, payload []byte) {
		td, err := decodeSpanFrame(payload)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		// One trace decoded alone is that trace of the whole.
		for _, id := range otlptest.TraceIDs(td) {
			one, err := decodeSpanFrameOf(payload, &id)
			require.NoError(t, err)
			requireSameTraces(t, otlptest.FilterTrace(td, id), one)
		}
		// Whatever decodes re-encodes to something that decodes the same.
		want := cloneTraces(td)
		again, err := encodeSpanFrame(td)
		require.NoError(t, err)
		got, err := decodeSpanFrame(again)
		require.NoError(t, err)
		requireSameTraces(t, want, got)
	})
}
