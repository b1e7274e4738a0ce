package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lumenobs/lumen/internal/otlptest"
)

// requestTraces are requests of every shape the reader must take: several
// resources and scopes, resources and scopes without spans, attributes of
// every kind, the span frame codec's edge cases.
func requestTraces() map[string]ptrace.Traces {
	multi := ptrace.NewTraces()
	for r := range 3 {
		rs := multi.ResourceSpans().AppendEmpty()
		rs.SetSchemaUrl(fmt.Sprintf("https://schema/%d", r))
		if r != 1 {
			rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%d", r))
		}
		rs.Resource().Attributes().PutInt("k8s.pod.uid", int64(r))
		for s := range 2 {
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(fmt.Sprintf("scope-%d", s))
			ss.Scope().Attributes().PutBool("x", true)
			g := otlptest.New(uint64(10*r + s))
			g.Traces(3, 2).ResourceSpans().At(0).ScopeSpans().At(0).Spans().MoveAndAppendTo(ss.Spans())
		}
	}
	multi.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	return map[string]ptrace.Traces{
		"generated":         otlptest.New(1).Traces(50, 4),
		"several resources": multi,
		"edge cases":        edgeTraces(),
		"attributes":        attributeTraces(),
		"empty":             ptrace.NewTraces(),
	}
}

// TestSpanRequestReadsAsPdata: what a request read in place says of each
// span is what pdata decodes, and a frame of the whole request decodes to
// the request.
func TestSpanRequestReadsAsPdata(t *testing.T) {
	for name, td := range requestTraces() {
		t.Run(name, func(t *testing.T) {
			body, err := tracesMarshaler.MarshalTraces(td)
			require.NoError(t, err)
			checkRequestAsPdata(t, body)
		})
	}
}

// checkRequestAsPdata checks body, which pdata and ParseTraceRequest both
// take, read in place against pdata's decoding.
func checkRequestAsPdata(t *testing.T, body []byte) {
	t.Helper()
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(body)
	require.NoError(t, err)
	req, err := ParseTraceRequest(body)
	require.NoError(t, err)
	defer req.Release()
	require.Equal(t, td.SpanCount(), req.SpanCount())
	var want []RequestSpan
	eachServiceSpan(td, func(svc string, _ pcommon.Resource, sp ptrace.Span) {
		want = append(want, RequestSpan{TraceID: sp.TraceID(), SpanID: sp.SpanID(), ParentID: sp.ParentSpanID(), Service: svc,
			Name: sp.Name(), Kind: int32(sp.Kind()), Error: sp.Status().Code() == ptrace.StatusCodeError,
			Start: uint64(sp.StartTimestamp()), End: uint64(sp.EndTimestamp())})
	})
	var got []RequestSpan
	req.EachSpan(func(s *RequestSpan) { got = append(got, *s) })
	require.Equal(t, want, got)

	for _, codec := range spanFrameCodecs {
		s := spanFrameScratch{codec: codec}
		raw, rest, err := s.encodeSpans(req.r, nil)
		require.NoError(t, err)
		decoded, err := decodeSpanFrame(codec, append(slices.Clip(raw), rest...))
		require.NoError(t, err)
		requireSameTraces(t, td, decoded)
	}
}

// TestFramesOfARequestsSpans: frames cut from a request in any order hold
// exactly their spans, each under its own resource and scope.
func TestFramesOfARequestsSpans(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for name, td := range requestTraces() {
		body, err := tracesMarshaler.MarshalTraces(td)
		require.NoError(t, err)
		req, err := ParseTraceRequest(body)
		require.NoError(t, err)
		all := spanStrings(td)
		for round := range 20 {
			order := make([]int32, req.SpanCount())
			for i := range order {
				order[i] = int32(i)
			}
			rnd.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			order = order[:rnd.IntN(len(order)+1)]
			if len(order) == 0 {
				continue
			}
			var want []string
			for _, k := range order {
				want = append(want, all[k])
			}
			s := spanFrameScratch{codec: codecSpanRaw}
			raw, rest, err := s.encodeSpans(req.r, order)
			require.NoError(t, err)
			decoded, err := decodeSpanFrame(codecSpanRaw, append(slices.Clip(raw), rest...))
			require.NoError(t, err)
			require.ElementsMatch(t, want, spanStrings(decoded), "%s, round %d", name, round)
		}
		req.Release()
	}
}

// spanStrings is each span of td, in order, as the JSON of a request of
// it alone under its resource and scope.
func spanStrings(td ptrace.Traces) []string {
	var out []string
	var m ptrace.JSONMarshaler
	otlptest.EachSpanAlone(td, func(_ pcommon.SpanID, one ptrace.Traces) {
		b, _ := m.MarshalTraces(one)
		out = append(out, string(b))
	})
	return out
}

// TestTraceRequestRefusals: a request that is not an OTLP trace request,
// at any depth, or whose span lacks an id, is refused as invalid, naming
// what is wrong, and the store takes the next request.
func TestTraceRequestRefusals(t *testing.T) {
	good, err := tracesMarshaler.MarshalTraces(otlptest.New(1).Traces(2, 2))
	require.NoError(t, err)
	span := func(fields ...[]byte) []byte {
		sp := protowire.AppendTag(nil, 1, protowire.BytesType)
		sp = protowire.AppendBytes(sp, make16(1))
		sp = protowire.AppendTag(sp, 2, protowire.BytesType)
		sp = protowire.AppendBytes(sp, []byte{1, 2, 3, 4, 5, 6, 7, 8})
		for _, f := range fields {
			sp = append(sp, f...)
		}
		ss := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), sp)
		rs := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), ss)
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), rs)
	}
	field := func(num protowire.Number, typ protowire.Type, v []byte) []byte {
		return append(protowire.AppendTag(nil, num, typ), v...)
	}
	lenField := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	// An attribute whose value is an array holding a bool of the wrong
	// wire type: three messages down.
	badValue := lenField(9, append(lenField(1, []byte("http.method")), lenField(2, lenField(5, lenField(1, field(2, protowire.Fixed32Type, []byte{1, 0, 0, 0}))))...))
	for _, tc := range []struct {
		name, body, want string
	}{
		{"truncated", string(good[:len(good)-3]), "unexpected EOF"},
		{"resource_spans not a message", string(field(1, protowire.VarintType, []byte{1})), "ExportTraceServiceRequest field 1: wire type 0"},
		{"a trace id of 15 bytes", string(span(lenField(1, make([]byte, 15)))), "Span field 1: an id of 15 bytes"},
		{"an all-zero trace id", string(span(lenField(1, make([]byte, 16)))), "resource_spans[0].scope_spans[0].spans[0] has an all-zero trace_id"},
		{"no span id", string(span(lenField(2, nil))), "all-zero span_id"},
		{"start not fixed64", string(span(field(7, protowire.VarintType, []byte{5}))), "Span field 7: wire type 0, not 1"},
		{"a bad value deep in an attribute", string(span(badValue)), "AnyValue field 2: wire type 5, not 0"},
		{"a link id of 3 bytes", string(span(lenField(13, lenField(2, []byte{1, 2, 3})))), "Span.Link field 2: an id of 3 bytes"},
		{"a bad tag", "\x00\x01", "invalid field number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTraceRequest([]byte(tc.body))
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalid), "%v", err)
			require.Contains(t, err.Error(), tc.want)
			_, perr := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces([]byte(tc.body))
			if !strings.Contains(tc.want, "all-zero") {
				require.Error(t, perr, "pdata refuses it too")
			}
		})
	}
	db, err := Open(DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	req, err := ParseTraceRequest(good)
	require.NoError(t, err)
	require.NoError(t, db.WriteTraceRequest(context.Background(), req))
	req.Release()
}

func make16(b byte) []byte {
	id := make([]byte, 16)
	id[15] = b
	return id
}

// FuzzTraceRequest: whatever the bytes, a request read in place is one
// pdata decodes too, and says of it what pdata does (checkRequestAsPdata);
// a request pdata decodes is refused only for what the store refuses (an
// all-zero id) or where the check is stricter than pdata.
func FuzzTraceRequest(f *testing.F) {
	for _, td := range requestTraces() {
		body, err := tracesMarshaler.MarshalTraces(td)
		require.NoError(f, err)
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseTraceRequest(body)
		td, perr := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(body)
		if err == nil {
			req.Release()
			require.NoError(t, perr, "read in place, refused by pdata")
			checkRequestAsPdata(t, body)
			return
		}
		require.True(t, errors.Is(err, ErrInvalid), "%v", err)
		if perr != nil {
			return
		}
		msg := err.Error()
		if strings.Contains(msg, "all-zero") {
			require.True(t, hasZeroID(td), "%v", err)
			return
		}
		// pdata skips an unknown group by its first field, whatever
		// follows; the check wants the group whole.
		require.True(t, strings.Contains(msg, "too deep") || hasGroupTag(body), "pdata takes it: %v", err)
	})
}

// hasGroupTag reports whether b has a byte that could be the first of a
// group's start or end tag.
func hasGroupTag(b []byte) bool {
	return slices.ContainsFunc(b, func(c byte) bool {
		t := protowire.Type(c & 7)
		return t == protowire.StartGroupType || t == protowire.EndGroupType
	})
}

func hasZeroID(td ptrace.Traces) bool {
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				if sp.TraceID() == (pcommon.TraceID{}) || sp.SpanID() == (pcommon.SpanID{}) {
					return true
				}
			}
		}
	}
	return false
}

// TestAttributeTextAsPdata: an attribute value read in place as text is
// what pcommon's AsString gives for it, whatever its type.
func TestAttributeTextAsPdata(t *testing.T) {
	td := ptrace.NewTraces()
	sp := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID([16]byte{1})
	sp.SetSpanID([8]byte{1})
	a := sp.Attributes()
	a.PutStr("s", "shop")
	a.PutStr("empty", "")
	a.PutInt("i", -42)
	a.PutInt("big", 1<<62)
	a.PutBool("t", true)
	a.PutBool("f", false)
	a.PutDouble("d", 0.000001)
	a.PutDouble("e", 1e21)
	a.PutEmptyBytes("b").FromRaw([]byte{0, 1, 2, 250})
	sl := a.PutEmptySlice("sl")
	sl.AppendEmpty().SetStr("<a>")
	sl.AppendEmpty().SetInt(3)
	m := a.PutEmptyMap("m")
	m.PutStr("k", "v")
	m.PutEmptyMap("nested").PutBool("x", true)
	a.PutEmpty("none")
	body, err := tracesMarshaler.MarshalTraces(td)
	require.NoError(t, err)
	req, err := ParseTraceRequest(body)
	require.NoError(t, err)
	defer req.Release()
	var scratch []byte
	n := 0
	require.NoError(t, eachAttribute(req.r.spans[0].body, fieldSpanAttributes, func(key, value []byte) error {
		want, ok := a.Get(string(key))
		require.True(t, ok)
		var got string
		got, scratch, err = anyValueText(value, scratch)
		require.NoError(t, err)
		require.Equal(t, want.AsString(), got, "%s", key)
		slow, err := anyValueString(value)
		require.NoError(t, err)
		require.Equal(t, want.AsString(), slow, "%s", key)
		n++
		return nil
	}))
	require.Equal(t, a.Len(), n)
}

// TestSearchEntriesAsFromPdata: the search index read from a request's
// bytes is the one its spans give decoded by pdata, one entry per span
// and term, merged.
func TestSearchEntriesAsFromPdata(t *testing.T) {
	db, err := Open(DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	shuffled := otlptest.New(3).Traces(40, 5)
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, rs := range shuffled.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			sp := ss.Spans()
			for i := range sp.Len() {
				j := rnd.IntN(sp.Len())
				a, b := ptrace.NewSpan(), ptrace.NewSpan()
				sp.At(i).CopyTo(a)
				sp.At(j).CopyTo(b)
				b.CopyTo(sp.At(i))
				a.CopyTo(sp.At(j))
			}
		}
	}
	cases := requestTraces()
	cases["spans of traces interleaved"] = shuffled
	// More distinct terms than the intern cache has slots: colliding terms
	// must each keep their own id.
	distinct := otlptest.New(5).Traces(300, 3)
	for _, rs := range distinct.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for i, sp := range ss.Spans().All() {
				sp.SetName(fmt.Sprintf("op-%d", i%700))
				sp.Attributes().PutStr("http.route", fmt.Sprintf("/r/%d", i))
				sp.Attributes().PutInt("http.response.status_code", int64(100+i%400))
				sp.Attributes().PutStr("server.address", strings.Repeat("h", 1+i%300))
			}
		}
	}
	cases["more distinct terms than the cache holds"] = distinct
	for name, td := range cases {
		t.Run(name, func(t *testing.T) {
			body, err := tracesMarshaler.MarshalTraces(td)
			require.NoError(t, err)
			req, err := ParseTraceRequest(body)
			require.NoError(t, err)
			defer req.Release()
			sb, err := db.searchEntries(req.r)
			require.NoError(t, err)
			got := map[string]bool{}
			for _, e := range sb.entries {
				got[fmt.Sprintf("%v %d %x %d %d %d", sb.terms[e.term], e.bucket, sb.traces[e.trace], e.start, e.minDur, e.maxDur)] = true
			}
			require.Len(t, got, len(sb.entries), "one entry per term, second and trace")

			type key struct {
				term   Term
				bucket uint64
				trace  pcommon.TraceID
			}
			want := map[key]*[3]uint64{}
			eachServiceSpan(td, func(svc string, res pcommon.Resource, sp ptrace.Span) {
				terms := []Term{{Kind: TermAll}, {TermService, svc, ""}, {TermName, svc, sp.Name()}}
				if sp.ParentSpanID().IsEmpty() {
					terms = append(terms, Term{TermRoot, svc, sp.Name()})
				}
				if sp.Status().Code() == ptrace.StatusCodeError {
					terms = append(terms, Term{Kind: TermError})
				}
				for k, v := range res.Attributes().All() {
					if slices.Contains(db.opts.SearchAttributes, k) && len(v.AsString()) <= maxIndexedValue {
						terms = append(terms, Term{TermResAttr, k, v.AsString()})
					}
				}
				for k, v := range sp.Attributes().All() {
					if slices.Contains(db.opts.SearchAttributes, k) && len(v.AsString()) <= maxIndexedValue {
						terms = append(terms, Term{TermSpanAttr, k, v.AsString()})
					}
				}
				start, end := uint64(sp.StartTimestamp()), uint64(sp.EndTimestamp())
				dur := end - min(end, start)
				for _, term := range terms {
					k := key{term, min(start/nsPerBucket, math.MaxUint32), sp.TraceID()}
					if w, ok := want[k]; ok {
						w[0], w[1], w[2] = min(w[0], start), min(w[1], dur), max(w[2], dur)
					} else {
						want[k] = &[3]uint64{start, dur, dur}
					}
				}
			})
			wantSet := map[string]bool{}
			for k, w := range want {
				wantSet[fmt.Sprintf("%v %d %x %d %d %d", k.term, k.bucket, k.trace, w[0], w[1], w[2])] = true
			}
			require.Equal(t, wantSet, got)
		})
	}
}

// eachServiceSpan calls fn with each span of td, its resource and the
// resource's service.name.
func eachServiceSpan(td ptrace.Traces, fn func(svc string, res pcommon.Resource, sp ptrace.Span)) {
	for _, rs := range td.ResourceSpans().All() {
		svc := ""
		if v, ok := rs.Resource().Attributes().Get("service.name"); ok {
			svc = v.AsString()
		}
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				fn(svc, rs.Resource(), sp)
			}
		}
	}
}

// TestKeySet: every key added is found, keys of the same hash included, and
// no other.
func TestKeySet(t *testing.T) {
	var s keySet
	var in, out []string
	for i := range 2000 {
		k := fmt.Sprintf("k%d.%s", i, strings.Repeat("x", i%7))
		if i%3 == 0 {
			s.add(k)
			in = append(in, k)
		} else {
			out = append(out, k)
		}
	}
	s.add(in[0]) // twice is once
	n := 0
	for _, b := range s {
		n += len(b)
	}
	require.Equal(t, len(in), n)
	for _, k := range in {
		require.True(t, s.has(k), k)
	}
	for _, k := range append(out, "", "k", "x") {
		require.False(t, s.has(k), k)
	}
}
