package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"
)

// Span frames (codec 0x02) keep a span's ids and times apart from the rest of
// it, so that the compressor sees like next to like: the OTLP protobuf holds
// everything but trace id, span id, parent span id, start and end time, event
// times and link ids, which go in columns ahead of it. See FORMAT.md.
//
//	payload := uvarint(spans) traceIDs spanIDs parents starts durations uvarint(len(proto)) proto eventTimes linkIDs
//	traceIDs   := uvarint(runs) { id[16] uvarint(run length) }   in span order
//	spanIDs    := { id[8] }
//	parents    := { uvarint(p) }   0: none; 1: id[8] follows; p>=2: the span at index p-2 of this frame
//	starts     := { varint(start - previous start) }              first against 0
//	durations  := { varint(end - start) }
//	proto      := an ExportTraceServiceRequest with all these fields zeroed
//	eventTimes := { varint(event time - span start) }             for every event of every span
//	linkIDs    := { trace_id[16] span_id[8] }                     for every link of every span
//
// Differences are taken modulo 2^64 and zigzag-encoded, so any uint64 times
// survive the round trip.

var errSpanFrame = errors.New("span frame")

// encodeSpanFrame encodes td as a span frame payload of codec (0x06, or
// 0x05 or 0x02 as earlier builds wrote): for 0x06, its raw part followed
// by the rest, as a read decompresses it. It zeroes the columnar fields
// in td.
func encodeSpanFrame(codec byte, td ptrace.Traces) ([]byte, error) {
	s := spanFrameScratch{codec: codec}
	raw, rest, err := s.encode(td)
	return append(raw, rest...), err
}

// spanFrameScratch is what encoding a span frame uses and can reuse: the
// frame's spans, their index by id, the payload (valid until the next
// encode).
type spanFrameScratch struct {
	spans  []ptrace.Span
	index  map[pcommon.SpanID]int
	buf    []byte
	raw    []byte
	fields spanSplitter
	// traces numbers a frame's trace ids (codec 0x06), traceIDs in that
	// order; runTraces is each run's.
	traces    map[pcommon.TraceID]int
	traceIDs  []pcommon.TraceID
	runTraces []int
	// durs are the frame's spans' durations (codec 0x06).
	durs []uint64
	// codec is the frame's: codecSpanRaw, or 0x05 or 0x02 as earlier
	// builds wrote (tests).
	codec byte
}

var spanFrameScratchPool = sync.Pool{New: func() any { return new(spanFrameScratch) }}

// release forgets the spans (so that they can be collected) and returns s
// to the pool.
func (s *spanFrameScratch) release() {
	clear(s.spans)
	s.spans = s.spans[:0]
	if cap(s.buf) > 4<<20 {
		s.buf = nil
	}
	if cap(s.raw) > 1<<20 {
		s.raw = nil
	}
	s.fields.forget()
	if cap(s.fields.proto) > 4<<20 {
		s.fields = spanSplitter{}
	}
	spanFrameScratchPool.Put(s)
}

// encode encodes td as a span frame of s.codec, in s.raw and s.buf (valid
// until the next encode): raw, the part stored as it is (codec 0x06 only),
// and rest, the part compressed. It zeroes the columnar fields in td.
func (s *spanFrameScratch) encode(td ptrace.Traces) (raw, rest []byte, err error) {
	n := td.SpanCount()
	spans := s.spans[:0]
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				spans = append(spans, sp)
			}
		}
	}
	s.spans = spans
	if s.index == nil {
		s.index = make(map[pcommon.SpanID]int, n)
	}
	index := s.index
	clear(index)
	for i, sp := range spans {
		if _, dup := index[sp.SpanID()]; !dup {
			index[sp.SpanID()] = i
		}
	}
	split := s.codec == codecSpanRaw
	b := slices.Grow(s.buf[:0], 64*n)
	a := b // the ids: the raw part's, with codec 0x06
	if split {
		a = slices.Grow(s.raw[:0], 12*n)
	}
	a = binary.AppendUvarint(a, uint64(n))

	// Trace ids, run-length encoded.
	var runs [][2]int // first span, length
	for i, sp := range spans {
		if i > 0 && sp.TraceID() == spans[runs[len(runs)-1][0]].TraceID() {
			runs[len(runs)-1][1]++
			continue
		}
		runs = append(runs, [2]int{i, 1})
	}
	if split {
		// Each trace id once, in the order first seen; the runs name
		// them by their place (a frame's spans are grouped by resource,
		// so a trace's spans make a run in each).
		if s.traces == nil {
			s.traces = make(map[pcommon.TraceID]int, len(runs))
		}
		clear(s.traces)
		s.runTraces, s.traceIDs = s.runTraces[:0], s.traceIDs[:0]
		for _, r := range runs {
			id := spans[r[0]].TraceID()
			k, ok := s.traces[id]
			if !ok {
				k = len(s.traceIDs)
				s.traces[id] = k
				s.traceIDs = append(s.traceIDs, id)
			}
			s.runTraces = append(s.runTraces, k)
		}
		a = binary.AppendUvarint(a, uint64(len(s.traceIDs)))
		for _, id := range s.traceIDs {
			a = append(a, id[:]...)
		}
	} else {
		a = binary.AppendUvarint(a, uint64(len(runs)))
		for _, r := range runs {
			id := spans[r[0]].TraceID()
			a = append(a, id[:]...)
			a = binary.AppendUvarint(a, uint64(r[1]))
		}
	}
	for _, sp := range spans {
		id := sp.SpanID()
		a = append(a, id[:]...)
	}
	var tail []byte
	if split {
		// Link ids and durations join the raw part; run lengths start
		// the compressed one.
		links := 0
		for _, sp := range spans {
			links += sp.Links().Len()
		}
		a = binary.AppendUvarint(a, uint64(links))
		for _, sp := range spans {
			for _, l := range sp.Links().All() {
				tid, sid := l.TraceID(), l.SpanID()
				a = append(append(a, tid[:]...), sid[:]...)
			}
		}
		a = s.appendDurations(a, spans)
		b = binary.AppendUvarint(b, uint64(len(runs)))
		for i, r := range runs {
			b = binary.AppendUvarint(binary.AppendUvarint(b, uint64(s.runTraces[i])), uint64(r[1]))
		}
	} else {
		b = a
	}
	for _, sp := range spans {
		p := sp.ParentSpanID()
		switch i, ok := index[p]; {
		case p.IsEmpty():
			b = append(b, 0)
		case ok:
			b = binary.AppendUvarint(b, uint64(i)+2)
		default:
			b = append(b, 1)
			b = append(b, p[:]...)
		}
	}
	var prev uint64
	for _, sp := range spans {
		start := uint64(sp.StartTimestamp())
		b = binary.AppendVarint(b, int64(start-prev))
		prev = start
	}
	if !split {
		for _, sp := range spans {
			b = binary.AppendVarint(b, int64(uint64(sp.EndTimestamp())-uint64(sp.StartTimestamp())))
		}
	}
	// Event times and link ids are read before the spans are cleared.
	for _, sp := range spans {
		for _, ev := range sp.Events().All() {
			tail = binary.AppendVarint(tail, int64(uint64(ev.Timestamp())-uint64(sp.StartTimestamp())))
		}
	}
	if !split {
		for _, sp := range spans {
			for _, l := range sp.Links().All() {
				tid, sid := l.TraceID(), l.SpanID()
				tail = append(tail, tid[:]...)
				tail = append(tail, sid[:]...)
			}
		}
	}

	for _, sp := range spans {
		sp.SetTraceID(pcommon.TraceID{})
		sp.SetSpanID(pcommon.SpanID{})
		sp.SetParentSpanID(pcommon.SpanID{})
		sp.SetStartTimestamp(0)
		sp.SetEndTimestamp(0)
		for _, ev := range sp.Events().All() {
			ev.SetTimestamp(0)
		}
		for _, l := range sp.Links().All() {
			l.SetTraceID(pcommon.TraceID{})
			l.SetSpanID(pcommon.SpanID{})
		}
	}
	proto, err := tracesMarshaler.MarshalTraces(td)
	if err != nil {
		return nil, nil, err
	}
	if s.codec == codecZstdColumns {
		b = binary.AppendUvarint(b, uint64(len(proto)))
		b = append(b, proto...)
	} else if b, err = s.fields.appendSplit(b, proto); err != nil {
		return nil, nil, fmt.Errorf("span frame columns: %w", err)
	}
	s.buf = append(b, tail...)
	if !split {
		return nil, s.buf, nil
	}
	s.raw = a
	return s.raw, s.buf, nil
}

// maxDurationUnit is the largest power of ten a frame's durations are
// stored in units of: 10^9 ns, a second.
const maxDurationUnit = 9

var powersOfTen = [maxDurationUnit + 1]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// appendDurations appends the spans' durations (end − start, modulo 2^64)
// as codec 0x06 stores them: in units of the largest power of ten that
// divides them all (the clock's resolution: many SDKs give µs), less the
// shortest, bit-packed at the width the longest less the shortest needs.
//
//	durations := unit[1] uvarint(shortest) width[1] n × (duration/10^unit − shortest)[width bits]
func (s *spanFrameScratch) appendDurations(b []byte, spans []ptrace.Span) []byte {
	durs := s.durs[:0]
	unit := maxDurationUnit
	for _, sp := range spans {
		d := uint64(sp.EndTimestamp()) - uint64(sp.StartTimestamp())
		for unit > 0 && d%powersOfTen[unit] != 0 {
			unit--
		}
		durs = append(durs, d)
	}
	s.durs = durs
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for i, d := range durs {
		durs[i] = d / powersOfTen[unit]
		lo, hi = min(lo, durs[i]), max(hi, durs[i])
	}
	if len(durs) == 0 {
		lo = 0
	}
	w := bits.Len64(hi - lo)
	b = binary.AppendUvarint(append(b, byte(unit)), lo)
	bw := bitWriter{b: append(b, byte(w))}
	for _, d := range durs {
		bw.write(d-lo, w)
	}
	return bw.b
}

// readDurations reads n durations written by appendDurations.
func (r *columnReader) readDurations(n uint64) []uint64 {
	unit := r.bytes(1, "duration unit")[0]
	lo := r.uvarint("shortest duration")
	w := r.bytes(1, "duration width")[0]
	if unit > maxDurationUnit || w > 64 {
		r.fail("durations")
	}
	if r.err != nil {
		return nil
	}
	packed := r.bytes(int((n*uint64(w)+7)/8), "durations")
	out := make([]uint64, n)
	for i := range out {
		out[i] = (lo + readUint(packed, i*int(w), int(w))) * powersOfTen[unit]
	}
	return out
}

// columnReader reads the columns of a span frame, remembering the first error.
type columnReader struct {
	b   []byte
	err error
}

func (r *columnReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %w: truncated or malformed %s", ErrCorrupt, errSpanFrame, what)
	}
	r.b = nil
}

func (r *columnReader) uvarint(what string) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *columnReader) varint(what string) int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *columnReader) bytes(n int, what string) []byte {
	if len(r.b) < n {
		r.fail(what)
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// decodeSpanFrame decodes a span frame payload of codec 0x02, 0x05 or 0x06.
func decodeSpanFrame(codec byte, payload []byte) (ptrace.Traces, error) {
	return decodeSpanFrameOf(codec, payload, nil)
}

// decodeSpanFrameOf decodes the spans of one trace (all of them when want
// is nil). The columns say which spans are the trace's; the others are
// skipped in the protobuf without being decoded, so reading a trace of a
// few spans from a frame of hundreds costs those few.
func decodeSpanFrameOf(codec byte, payload []byte, want *pcommon.TraceID) (ptrace.Traces, error) {
	r := &columnReader{b: payload}
	n := r.uvarint("span count")
	// Every span takes at least 8 bytes of span id: a count beyond that is
	// corrupt, and must not size an allocation.
	if r.err != nil || n > uint64(len(r.b))/8 {
		return ptrace.Traces{}, fmt.Errorf("%w: %w: span count %d for %d bytes", ErrCorrupt, errSpanFrame, n, len(payload))
	}
	split := codec == codecSpanRaw
	traceIDs := make([]pcommon.TraceID, 0, n)
	spanIDs := make([]pcommon.SpanID, n)
	readSpanIDs := func() {
		for i := range spanIDs {
			spanIDs[i] = pcommon.SpanID(r.bytes(8, "span id"))
		}
	}
	var (
		frameTraces []byte        // codec 0x06: the frame's trace ids, each once
		links       *columnReader // codec 0x06: every link's ids, in order
		ends        []uint64
	)
	if split {
		// The raw part: the trace ids, span ids, link ids, durations;
		// the runs start the compressed part.
		k := r.uvarint("trace count")
		if k > n {
			r.fail("trace count")
		}
		frameTraces = r.bytes(16*int(min(k, n)), "trace ids")
		readSpanIDs()
		nl := r.uvarint("link count")
		if nl > uint64(len(r.b))/24 {
			r.fail("link ids")
		}
		links = &columnReader{b: r.bytes(24*int(min(nl, uint64(len(r.b))/24)), "link ids")}
		ends = r.readDurations(n)
	}
	runs := r.uvarint("trace id runs")
	for i := uint64(0); i < runs && r.err == nil; i++ {
		var id pcommon.TraceID
		if split {
			k := r.uvarint("run's trace")
			if k >= uint64(len(frameTraces))/16 {
				r.fail("run's trace")
				break
			}
			id = pcommon.TraceID(frameTraces[16*k:])
		} else {
			id = pcommon.TraceID(r.bytes(16, "trace id"))
		}
		l := r.uvarint("trace id run")
		if l > n-uint64(len(traceIDs)) {
			r.fail("trace id run")
			break
		}
		for range l {
			traceIDs = append(traceIDs, id)
		}
	}
	if r.err == nil && uint64(len(traceIDs)) != n {
		r.fail("trace id runs")
	}
	if !split {
		readSpanIDs()
	}
	parents := make([]pcommon.SpanID, n)
	for i := range parents {
		switch p := r.uvarint("parent"); {
		case p == 0:
		case p == 1:
			parents[i] = pcommon.SpanID(r.bytes(8, "parent span id"))
		case p-2 < n:
			parents[i] = spanIDs[p-2]
		default:
			r.fail("parent index")
		}
	}
	starts := make([]uint64, n)
	var prev uint64
	for i := range starts {
		prev += uint64(r.varint("start"))
		starts[i] = prev
	}
	if r.err != nil {
		return ptrace.Traces{}, r.err
	}
	if split {
		for i := range ends {
			ends[i] += starts[i]
		}
	} else {
		ends = make([]uint64, n)
		for i := range ends {
			ends[i] = starts[i] + uint64(r.varint("duration"))
		}
	}
	if r.err != nil {
		return ptrace.Traces{}, r.err
	}
	plen := r.uvarint("protobuf length")
	proto := r.bytes(int(min(plen, uint64(len(r.b))+1)), "protobuf")
	if r.err != nil {
		return ptrace.Traces{}, r.err
	}
	var cols *spanColumns
	if codec != codecZstdColumns {
		cols = getSpanColumns()
		defer putSpanColumns(cols) // the protobuf below is a copy, decoded before the return
		if err := readSpanColumns(r, n, cols); err != nil {
			return ptrace.Traces{}, err
		}
	}
	keep := func(i int) bool { return want == nil || traceIDs[i] == *want }
	// The protobuf's spans, in order: how many events and links each has
	// (to walk the columns that follow), and, when filtering or putting
	// fields back from their columns, a protobuf of the kept spans only.
	counts, kept, err := scanSpans(proto, int(n), keep, cols, want == nil)
	if err == nil && cols != nil {
		err = cols.finish()
	}
	if err != nil {
		return ptrace.Traces{}, fmt.Errorf("%w: %w: %w", ErrCorrupt, errSpanFrame, err)
	}
	if uint64(len(counts)) != n {
		return ptrace.Traces{}, fmt.Errorf("%w: %w: protobuf holds %d spans, columns %d", ErrCorrupt, errSpanFrame, len(counts), n)
	}
	if want == nil && cols == nil {
		kept = proto
	}
	td, err := tracesUnmarshaler.UnmarshalTraces(kept)
	if err != nil {
		return ptrace.Traces{}, fmt.Errorf("%w: %w: %w", ErrCorrupt, errSpanFrame, err)
	}
	var all []ptrace.Span
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				all = append(all, sp)
			}
		}
	}
	next := 0 // the decoded span that frame span i is, when kept
	idx := make([]int, n)
	for i := range idx {
		idx[i] = -1
		if keep(i) {
			if next >= len(all) {
				return ptrace.Traces{}, fmt.Errorf("%w: %w: kept spans disagree with the protobuf", ErrCorrupt, errSpanFrame)
			}
			idx[i] = next
			sp := all[next]
			next++
			sp.SetTraceID(traceIDs[i])
			sp.SetSpanID(spanIDs[i])
			sp.SetParentSpanID(parents[i])
			sp.SetStartTimestamp(pcommon.Timestamp(starts[i]))
			sp.SetEndTimestamp(pcommon.Timestamp(ends[i]))
		}
	}
	if next != len(all) {
		return ptrace.Traces{}, fmt.Errorf("%w: %w: kept spans disagree with the protobuf", ErrCorrupt, errSpanFrame)
	}
	for i, c := range counts {
		if idx[i] < 0 {
			for range c.events {
				r.varint("event time")
			}
			continue
		}
		sp := all[idx[i]]
		if sp.Events().Len() != c.events {
			return ptrace.Traces{}, fmt.Errorf("%w: %w: event count", ErrCorrupt, errSpanFrame)
		}
		for _, ev := range sp.Events().All() {
			ev.SetTimestamp(pcommon.Timestamp(uint64(sp.StartTimestamp()) + uint64(r.varint("event time"))))
		}
	}
	lr := r
	if split {
		lr = links
	}
	for i, c := range counts {
		if idx[i] < 0 {
			lr.bytes(24*c.links, "link ids")
			continue
		}
		for _, l := range all[idx[i]].Links().All() {
			l.SetTraceID(pcommon.TraceID(lr.bytes(16, "link trace id")))
			l.SetSpanID(pcommon.SpanID(lr.bytes(8, "link span id")))
		}
	}
	if split && r.err == nil && lr.err == nil && len(lr.b) != 0 {
		lr.fail("link ids")
	}
	if r.err != nil {
		return ptrace.Traces{}, r.err
	}
	if lr.err != nil {
		return ptrace.Traces{}, lr.err
	}
	if len(r.b) != 0 {
		return ptrace.Traces{}, fmt.Errorf("%w: %w: %d trailing bytes", ErrCorrupt, errSpanFrame, len(r.b))
	}
	return td, nil
}

type spanCounts struct{ events, links int }

// Field numbers of the OTLP trace protobuf messages the scan walks.
const (
	fieldResourceSpans = 1 // ExportTraceServiceRequest.resource_spans
	fieldScopeSpans    = 2 // ResourceSpans.scope_spans
	fieldSpans         = 2 // ScopeSpans.spans
	fieldEvents        = 11
	fieldLinks         = 13
)

// scanSpans walks an ExportTraceServiceRequest at the wire level: it counts
// every span's events and links and, for spans keep accepts, copies them
// (with their resource and scope, and their fields from cols when the
// frame has field columns) into a smaller request; groups left
// without spans are left out unless whole (every span kept: the request
// as it was).
func scanSpans(proto []byte, n int, keep func(int) bool, cols *spanColumns, whole bool) ([]spanCounts, []byte, error) {
	counts := make([]spanCounts, 0, n) // n, the frame's span count: a hint
	var out, body []byte
	err := eachField(proto, func(num protowire.Number, typ protowire.Type, field []byte) error {
		if num != fieldResourceSpans || typ != protowire.BytesType {
			return nil
		}
		rs, _ := protowire.ConsumeBytes(field[protowire.SizeTag(num):])
		var rsOut []byte
		kept := false
		err := eachField(rs, func(num protowire.Number, typ protowire.Type, field []byte) error {
			if num != fieldScopeSpans || typ != protowire.BytesType {
				rsOut = append(rsOut, field...) // resource, schema_url
				return nil
			}
			ss, _ := protowire.ConsumeBytes(field[protowire.SizeTag(num):])
			var ssOut []byte
			spans := 0
			err := eachField(ss, func(num protowire.Number, typ protowire.Type, field []byte) error {
				if num != fieldSpans || typ != protowire.BytesType {
					ssOut = append(ssOut, field...) // scope, schema_url
					return nil
				}
				span, _ := protowire.ConsumeBytes(field[protowire.SizeTag(num):])
				var c spanCounts
				if err := eachField(span, func(num protowire.Number, _ protowire.Type, _ []byte) error {
					switch num {
					case fieldEvents:
						c.events++
					case fieldLinks:
						c.links++
					}
					return nil
				}); err != nil {
					return err
				}
				i := len(counts)
				switch {
				case cols != nil:
					var more spanCounts
					var err error
					if body, more, err = cols.appendSpan(append(body[:0], span...), i, keep(i)); err != nil {
						return err
					}
					c.events += more.events
					c.links += more.links
					if keep(i) {
						ssOut = protowire.AppendTag(ssOut, fieldSpans, protowire.BytesType)
						ssOut = protowire.AppendBytes(ssOut, body)
						spans++
					}
				case keep(i):
					ssOut = append(ssOut, field...)
					spans++
				}
				counts = append(counts, c)
				return nil
			})
			if err != nil {
				return err
			}
			if spans > 0 || whole {
				rsOut = protowire.AppendTag(rsOut, fieldScopeSpans, protowire.BytesType)
				rsOut = protowire.AppendBytes(rsOut, ssOut)
				kept = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		if kept || whole {
			out = protowire.AppendTag(out, fieldResourceSpans, protowire.BytesType)
			out = protowire.AppendBytes(out, rsOut)
		}
		return nil
	})
	return counts, out, err
}

// eachField calls fn with every field of a message: its number, wire type
// and whole encoding (tag included).
func eachField(b []byte, fn func(protowire.Number, protowire.Type, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		if err := fn(num, typ, b[:n+m]); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}
