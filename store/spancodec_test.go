package store

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"

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

// spanFrameCodecs are the span frame payloads a store reads: with raw ids
// and durations (written now), with field columns and without (written by
// earlier builds).
var spanFrameCodecs = []byte{codecSpanRaw, codecZstdSpanFields, codecZstdColumns}

func TestSpanFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		td   ptrace.Traces
	}{
		{"generated, two spans per trace", otlptest.New(1).Traces(100, 2)},
		{"generated, one long trace", otlptest.New(2).Traces(1, 300)},
		{"edge cases", edgeTraces()},
		{"empty", ptrace.NewTraces()},
		{"attributes of every kind", attributeTraces()},
	} {
		for _, codec := range spanFrameCodecs {
			t.Run(fmt.Sprintf("%s, codec %d", tc.name, codec), func(t *testing.T) {
				want := cloneTraces(tc.td)
				payload, err := encodeSpanFrame(codec, cloneTraces(tc.td))
				require.NoError(t, err)
				got, err := decodeSpanFrame(codec, payload)
				require.NoError(t, err)
				requireSameTraces(t, want, got)
			})
		}
	}
}

// TestSpanFrameScratchIsReused: one scratch encodes frame after frame —
// larger, smaller, with parents that were in an earlier frame's index — as
// fresh ones do, and a payload it made stays right until the next encode.
func TestSpanFrameScratchIsReused(t *testing.T) {
	s := spanFrameScratchPool.Get().(*spanFrameScratch)
	defer s.release()
	s.codec = codecSpanRaw
	for i, td := range []ptrace.Traces{otlptest.New(1).Traces(100, 3), edgeTraces(), otlptest.New(1).Traces(10, 3), otlptest.New(2).Traces(1, 300), ptrace.NewTraces(), otlptest.New(3).Traces(5, 2)} {
		want, err := encodeSpanFrame(codecSpanRaw, cloneTraces(td))
		require.NoError(t, err)
		raw, rest, err := s.encode(cloneTraces(td))
		require.NoError(t, err)
		got := append(slices.Clip(raw), rest...)
		require.Equal(t, want, got, "frame %d", i)
		decoded, err := decodeSpanFrame(codecSpanRaw, got)
		require.NoError(t, err)
		requireSameTraces(t, td, decoded)
	}
}

// TestSpanFrameDecodesOneTrace: decoding one trace's spans (the others
// skipped in the protobuf) gives what decoding all and filtering gives.
func TestSpanFrameDecodesOneTrace(t *testing.T) {
	for _, td := range []ptrace.Traces{otlptest.New(1).Traces(100, 2), otlptest.New(4).Traces(7, 40), edgeTraces(), attributeTraces()} {
		for _, codec := range spanFrameCodecs {
			payload, err := encodeSpanFrame(codec, cloneTraces(td))
			require.NoError(t, err)
			all, err := decodeSpanFrame(codec, payload)
			require.NoError(t, err)
			requireSameTraces(t, td, all)
			ids := otlptest.TraceIDs(all)
			require.NotEmpty(t, ids)
			for _, id := range ids {
				got, err := decodeSpanFrameOf(codec, payload, &id)
				require.NoError(t, err)
				requireSameTraces(t, otlptest.FilterTrace(all, id), got)
			}
			absent := pcommon.TraceID{0xde, 0xad}
			got, err := decodeSpanFrameOf(codec, payload, &absent)
			require.NoError(t, err)
			require.Equal(t, 0, got.SpanCount())
		}
	}
}

func TestSpanFrameRejectsDamage(t *testing.T) {
	for _, td := range []ptrace.Traces{edgeTraces(), attributeTraces()} {
		for _, codec := range spanFrameCodecs {
			payload, err := encodeSpanFrame(codec, cloneTraces(td))
			require.NoError(t, err)
			for cut := range len(payload) {
				_, err := decodeSpanFrame(codec, payload[:cut])
				require.ErrorIs(t, err, ErrCorrupt, "codec %d, truncated at %d of %d", codec, cut, len(payload))
			}
			_, err = decodeSpanFrame(codec, append(payload, 0))
			require.ErrorContains(t, err, "trailing bytes")
		}
	}
}

func FuzzSpanFrame(f *testing.F) {
	for _, td := range []ptrace.Traces{otlptest.New(3).Traces(3, 3), edgeTraces(), ptrace.NewTraces(), attributeTraces()} {
		for _, codec := range spanFrameCodecs {
			payload, err := encodeSpanFrame(codec, cloneTraces(td))
			require.NoError(f, err)
			f.Add(codec, payload)
		}
	}
	f.Add(codecZstdSpanFields, []byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(codecSpanRaw, []byte{1, 1, 15: 0, 8: 0, 0, 0, 64})
	f.Fuzz(func(t *testing.T, codec byte, payload []byte) {
		if !slices.Contains(spanFrameCodecs, codec) {
			codec = spanFrameCodecs[int(codec)%len(spanFrameCodecs)]
		}
		td, err := decodeSpanFrame(codec, payload)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		// One trace decoded alone is that trace of the whole.
		for _, id := range otlptest.TraceIDs(td) {
			one, err := decodeSpanFrameOf(codec, payload, &id)
			require.NoError(t, err)
			requireSameTraces(t, otlptest.FilterTrace(td, id), one)
		}
		// Whatever decodes re-encodes, in every codec, to something that
		// decodes the same.
		for _, c := range spanFrameCodecs {
			again, err := encodeSpanFrame(c, cloneTraces(td))
			require.NoError(t, err)
			got, err := decodeSpanFrame(c, again)
			require.NoError(t, err)
			requireSameTraces(t, td, got)
		}
	})
}

// attributeTraces holds spans whose attributes take every kind of value,
// in orders and shapes that differ from span to span: an empty key, keys
// shared and not, none at all, maps and lists, and event, link, resource
// and scope attributes (which stay in the protobuf).
func attributeTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "attrs")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().Attributes().PutBool("scoped", true)
	for i := range 12 {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{byte(i % 3), 5})
		sp.SetSpanID(pcommon.SpanID{byte(i), 6})
		sp.SetName(fmt.Sprintf("op-%d", i%4))
		a := sp.Attributes()
		switch i % 4 {
		case 0:
			a.PutStr("http.route", fmt.Sprintf("/r/%d", i))
			a.PutInt("size", int64(i*1000-5000))
			a.PutDouble("ratio", float64(i)/7)
			a.PutBool("ok", i%8 == 0)
			a.PutEmptyBytes("raw").FromRaw([]byte{byte(i), 0, 0xff})
		case 1:
			a.PutInt("size", int64(i))
			a.PutStr("http.route", "/first-then") // another order
			a.PutStr("", "empty key")
			a.PutEmpty("nothing")
			a.PutStr("blank", "")
		case 2:
			m := a.PutEmptyMap("nested")
			m.PutStr("inner", "v")
			m.PutEmptySlice("list").AppendEmpty().SetInt(int64(i))
			l := a.PutEmptySlice("values")
			l.AppendEmpty().SetStr("a")
			l.AppendEmpty().SetDouble(1.5)
			ev := sp.Events().AppendEmpty()
			ev.SetName("e")
			ev.Attributes().PutStr("event.attr", "x")
			lk := sp.Links().AppendEmpty()
			lk.SetTraceID(pcommon.TraceID{9})
			lk.Attributes().PutStr("link.attr", "y")
		case 3: // no attributes
			sp.SetDroppedAttributesCount(uint32(i))
		}
	}
	return td
}

// TestSpanColumnsKeepFieldsAsTheyAre: every field of a span goes to a
// column; attributes by key when their key field is first, last (as pdata
// writes it) or absent, and as they are (the column of field 9) when
// written otherwise — a key between other fields, two key fields —; the
// request reads back the same, attributes in their order.
func TestSpanColumnsKeepFieldsAsTheyAre(t *testing.T) {
	str := func(s string) []byte { // AnyValue{string_value: s}
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte(s))
	}
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	keyValue := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	key := func(k string) []byte { return field(nil, fieldKeyValueKey, []byte(k)) }
	value := func(v string) []byte { return field(nil, 2, str(v)) }
	span := func(name string, kvs ...[]byte) []byte {
		b := field(nil, 5, []byte(name))
		for _, kv := range kvs {
			b = field(b, fieldSpanAttributes, kv)
		}
		return b
	}
	spans := [][]byte{
		span("key between", keyValue(key("a"), value("1")), keyValue(value("2"), key("b"), field(nil, 7, []byte("x"))), keyValue(key("c"), value("3"))),
		span("two keys", keyValue(key("x"), key("y"), value("4"))),
		span("key first or last", keyValue(key("a"), value("5")), keyValue(value("6"), key("c"))),
		span("empty key", keyValue(value("7")), keyValue(key("a"), value("8"))),
	}
	var ss, full []byte
	var a spanSplitter
	a.reset()
	for _, sp := range spans {
		ss = field(ss, fieldSpans, nil)
		full = field(full, fieldSpans, sp)
		a.splitRawSpan(&reqSpan{body: sp})
	}
	b := a.appendColumns(nil, field(nil, fieldResourceSpans, field(nil, fieldScopeSpans, ss)))
	r := &columnReader{b: b}
	rest := r.bytes(int(r.uvarint("length")), "protobuf")
	attrs := &spanColumns{}
	require.NoError(t, readSpanColumns(r, uint64(len(spans)), attrs))
	require.Empty(t, r.b)
	columns := func(i int) (keys []string) {
		sh := attrs.spans[i]
		for _, k := range attrs.shapes[attrs.shapeAt[sh]:attrs.shapeAt[sh+1]] {
			if attrs.fields[k] == 0 {
				keys = append(keys, "attribute "+string(attrs.keys[k]))
			} else {
				keys = append(keys, fmt.Sprint("field ", attrs.fields[k]))
			}
		}
		return keys
	}
	require.Equal(t, []string{"field 5", "attribute a", "field 9", "attribute c"}, columns(0), "a key between other fields")
	require.Equal(t, []string{"field 5", "field 9"}, columns(1), "two key fields")
	require.Equal(t, []string{"field 5", "attribute a", "attribute c"}, columns(2))
	require.Equal(t, []string{"field 5", "attribute ", "attribute a"}, columns(3))

	_, back, err := scanSpans(rest, 0, func(int) bool { return true }, attrs, true)
	require.NoError(t, err)
	require.NoError(t, attrs.finish())
	want, err := tracesUnmarshaler.UnmarshalTraces(field(nil, fieldResourceSpans, field(nil, fieldScopeSpans, full)))
	require.NoError(t, err)
	got, err := tracesUnmarshaler.UnmarshalTraces(back)
	require.NoError(t, err)
	requireSameTraces(t, want, got)
	first := got.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes()
	var order []string
	for k := range first.All() {
		order = append(order, k)
	}
	require.Equal(t, []string{"a", "b", "c"}, order)
}

// BenchmarkSpanFrame encodes and compresses frames of 250 generated spans
// (25 traces of 10), and decompresses and decodes them, in each codec; it
// reports the compressed bytes a span and the time a span.
func BenchmarkSpanFrame(b *testing.B) {
	c, err := newCodec("")
	require.NoError(b, err)
	frames := make([]ptrace.Traces, 20)
	g := otlptest.New(42)
	for i := range frames {
		frames[i] = g.Traces(25, 10)
	}
	for _, codec := range spanFrameCodecs {
		s := spanFrameScratch{codec: codec}
		vals := make([][]byte, len(frames))
		b.Run(fmt.Sprintf("codec %d/encode", codec), func(b *testing.B) {
			bytes, spans := 0, 0
			tds := make([]ptrace.Traces, len(frames))
			for i := 0; b.Loop(); i++ {
				k := i % len(frames)
				if k == 0 { // the encoder zeroes the columnar fields
					b.StopTimer()
					for j := range tds {
						tds[j] = cloneTraces(frames[j])
					}
					b.StartTimer()
				}
				raw, rest, err := s.encode(tds[k])
				require.NoError(b, err)
				if codec == codecSpanRaw {
					vals[k] = c.encodeSplit(codec, raw, rest)
				} else {
					vals[k] = c.encode(codec, rest)
				}
				bytes, spans = bytes+len(vals[k]), spans+250
			}
			b.ReportMetric(float64(bytes)/float64(spans), "B/span")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(spans), "ns/span")
		})
		b.Run(fmt.Sprintf("codec %d/decode", codec), func(b *testing.B) {
			spans := 0
			for i := 0; b.Loop(); i++ {
				_, payload, err := c.decode(vals[i%len(vals)])
				require.NoError(b, err)
				_, err = decodeSpanFrame(codec, payload)
				require.NoError(b, err)
				spans += 250
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(spans), "ns/span")
		})
	}
}
