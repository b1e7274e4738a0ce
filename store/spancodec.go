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

	"github.com/lumenobs/lumen/internal/model"
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
	spans  []int32 // the frame's spans, in its order
	index  map[[8]byte]int
	buf    []byte
	raw    []byte
	proto  []byte // the frame's ExportTraceServiceRequest
	fields spanSplitter
	// group is each scope's group in the frame being built (-1: none),
	// groups the frame's, next where each group's next span goes; sizes
	// the frame's spans' sizes in its protobuf.
	group  []int32
	groups []frameGroup
	next   []int32
	sizes  []int
	runs   [][2]int
	whole  []int32
	// traces numbers a frame's trace ids (codec 0x06), traceIDs in that
	// order; runTraces is each run's.
	traces    map[model.TraceID]int
	traceIDs  []model.TraceID
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
	s.spans = s.spans[:0]
	if cap(s.proto) > 4<<20 {
		s.proto = nil
	}
	if cap(s.buf) > 4<<20 {
		s.buf = nil
	}
	if cap(s.raw) > 1<<20 {
		s.raw = nil
	}
	s.fields.forget()
	if cap(s.fields.side) > 4<<20 {
		s.fields = spanSplitter{}
	}
	spanFrameScratchPool.Put(s)
}

// encode encodes td as a span frame of s.codec, in s.raw and s.buf (valid
// until the next encode): raw, the part stored as it is (codec 0x06 only),
// and rest, the part compressed.
func (s *spanFrameScratch) encode(td ptrace.Traces) (raw, rest []byte, err error) {
	req, err := traceRequestOf(td)
	if err != nil {
		return nil, nil, err
	}
	defer req.Release()
	return s.encodeSpans(req.r, nil)
}

// encodeSpans encodes the spans of req at order as a span frame of
// s.codec, in s.raw and s.buf (valid until the next encode). The frame
// holds them grouped by scope, the groups in the order of their first span
// in order, each group's spans in order. With order nil it holds the whole
// request as it is, resources and scopes without spans included.
func (s *spanFrameScratch) encodeSpans(req *spanRequest, order []int32) (raw, rest []byte, err error) {
	whole := order == nil
	if whole {
		order = slices.Grow(s.whole[:0], req.spanCount())
		for i := range req.spanCount() {
			order = append(order, int32(i))
		}
		s.whole = order
	}
	n := len(order)
	spans := s.frameOrder(req, order)
	if s.index == nil {
		s.index = make(map[[8]byte]int, n)
	}
	index := s.index
	clear(index)
	for i, k := range spans {
		if _, dup := index[req.spans[k].id]; !dup {
			index[req.spans[k].id] = i
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
	runs := s.runs[:0] // first span, length
	for i, k := range spans {
		if i > 0 && req.spans[k].trace == req.spans[spans[runs[len(runs)-1][0]]].trace {
			runs[len(runs)-1][1]++
			continue
		}
		runs = append(runs, [2]int{i, 1})
	}
	s.runs = runs
	if split {
		// Each trace id once, in the order first seen; the runs name
		// them by their place (a frame's spans are grouped by resource,
		// so a trace's spans make a run in each).
		if s.traces == nil {
			s.traces = make(map[model.TraceID]int, len(runs))
		}
		clear(s.traces)
		s.runTraces, s.traceIDs = s.runTraces[:0], s.traceIDs[:0]
		for _, r := range runs {
			id := req.spans[spans[r[0]]].trace
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
			id := req.spans[spans[r[0]]].trace
			a = append(a, id[:]...)
			a = binary.AppendUvarint(a, uint64(r[1]))
		}
	}
	for _, k := range spans {
		a = append(a, req.spans[k].id[:]...)
	}
	var tail []byte
	if split {
		// Link ids and durations join the raw part; run lengths start
		// the compressed one.
		links := 0
		for _, k := range spans {
			links += int(req.spans[k].links)
		}
		a = binary.AppendUvarint(a, uint64(links))
		for _, k := range spans {
			a = appendLinkIDs(a, &req.spans[k])
		}
		a = s.appendDurations(a, req, spans)
		b = binary.AppendUvarint(b, uint64(len(runs)))
		for i, r := range runs {
			b = binary.AppendUvarint(binary.AppendUvarint(b, uint64(s.runTraces[i])), uint64(r[1]))
		}
	} else {
		b = a
	}
	for _, k := range spans {
		p := req.spans[k].parent
		switch i, ok := index[p]; {
		case p == [8]byte{}:
			b = append(b, 0)
		case ok:
			b = binary.AppendUvarint(b, uint64(i)+2)
		default:
			b = append(b, 1)
			b = append(b, p[:]...)
		}
	}
	var prev uint64
	for _, k := range spans {
		start := req.spans[k].start
		b = binary.AppendVarint(b, int64(start-prev))
		prev = start
	}
	if !split {
		for _, k := range spans {
			sp := &req.spans[k]
			b = binary.AppendVarint(b, int64(sp.end-sp.start))
		}
	}
	for _, k := range spans {
		tail = appendEventTimes(tail, &req.spans[k])
	}
	if !split {
		for _, k := range spans {
			tail = appendLinkIDs(tail, &req.spans[k])
		}
	}

	// The frame's protobuf: with field columns, its spans empty and their
	// fields split into the columns straight from the request's bytes.
	columns := s.codec != codecZstdColumns
	s.proto = s.appendFrameProto(s.proto[:0], req, spans, whole, columns)
	if columns {
		s.fields.reset()
		for _, k := range spans {
			s.fields.splitRawSpan(&req.spans[k])
		}
		b = s.fields.appendColumns(b, s.proto)
	} else {
		b = binary.AppendUvarint(b, uint64(len(s.proto)))
		b = append(b, s.proto...)
	}
	s.buf = append(b, tail...)
	if !split {
		return nil, s.buf, nil
	}
	s.raw = a
	return s.raw, s.buf, nil
}

// frameOrder puts order's spans in frame order (see encodeSpans), in
// s.spans.
func (s *spanFrameScratch) frameOrder(req *spanRequest, order []int32) []int32 {
	if cap(s.group) < len(req.scopes) {
		s.group = make([]int32, len(req.scopes))
	}
	group := s.group[:len(req.scopes)]
	for i := range group {
		group[i] = -1
	}
	// Each scope's spans count, then each its first place.
	s.groups = s.groups[:0]
	for _, k := range order {
		sc := req.spans[k].scope
		if group[sc] < 0 {
			group[sc] = int32(len(s.groups))
			s.groups = append(s.groups, frameGroup{scope: sc})
		}
		s.groups[group[sc]].n++
	}
	at := int32(0)
	for i := range s.groups {
		s.groups[i].at, at = at, at+s.groups[i].n
	}
	spans := slices.Grow(s.spans[:0], len(order))[:len(order)]
	next := s.next[:0]
	for _, g := range s.groups {
		next = append(next, g.at)
	}
	for _, k := range order {
		g := group[req.spans[k].scope]
		spans[next[g]] = k
		next[g]++
	}
	s.next, s.spans = next, spans
	return spans
}

// frameGroup is the spans of one scope in a frame: n of them from at.
type frameGroup struct {
	scope int32
	at, n int32
}

// appendFrameProto appends the frame's ExportTraceServiceRequest: its
// groups, those of one resource in a row under one ResourceSpans — with
// whole, every resource and scope of the request, those without spans
// too — each span without the fields the columns hold (ids, times, event
// times and link ids) and without fields OTLP does not have, or, when
// empty, each span an empty message.
func (s *spanFrameScratch) appendFrameProto(b []byte, req *spanRequest, spans []int32, whole, empty bool) []byte {
	sizes := slices.Grow(s.sizes[:0], len(spans))[:len(spans)]
	for i, k := range spans {
		sizes[i] = 0
		if !empty {
			sizes[i] = int(req.spans[k].size)
		}
	}
	s.sizes = sizes
	groups := s.groups
	if whole {
		// The whole request's spans are in its order: a scope's are
		// where the request has them.
		groups = groups[:0]
		for sc := range req.scopes {
			groups = append(groups, frameGroup{scope: int32(sc), at: req.scopes[sc].first, n: req.scopes[sc].n})
		}
		s.groups = groups
	}
	appendResource := func(res int32, gs []frameGroup) {
		rh := req.res[res].hdr
		rsSize := rh[1] - rh[0]
		for _, gr := range gs {
			rsSize += protowire.SizeTag(fieldScopeSpans) + protowire.SizeBytes(scopeSize(req, gr, sizes))
		}
		b = protowire.AppendTag(b, fieldResourceSpans, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(rsSize))
		b = append(b, req.hdr[rh[0]:rh[1]]...)
		for _, gr := range gs {
			b = protowire.AppendTag(b, fieldScopeSpans, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(scopeSize(req, gr, sizes)))
			sh := req.scopes[gr.scope].hdr
			b = append(b, req.hdr[sh[0]:sh[1]]...)
			for i := gr.at; i < gr.at+gr.n; i++ {
				b = protowire.AppendTag(b, fieldSpans, protowire.BytesType)
				b = protowire.AppendVarint(b, uint64(sizes[i]))
				if !empty {
					b = appendStrippedSpan(b, &req.spans[spans[i]])
				}
			}
		}
	}
	// ofResource is the end of the run of groups from g of resource res.
	ofResource := func(g int, res int32) int {
		for g < len(groups) && req.scopes[groups[g].scope].res == res {
			g++
		}
		return g
	}
	if whole {
		g := 0
		for r := range req.res {
			e := ofResource(g, int32(r))
			appendResource(int32(r), groups[g:e])
			g = e
		}
		return b
	}
	for g := 0; g < len(groups); {
		res := req.scopes[groups[g].scope].res
		e := ofResource(g, res)
		appendResource(res, groups[g:e])
		g = e
	}
	return b
}

// scopeSize is the size of a group's ScopeSpans in the frame.
func scopeSize(req *spanRequest, g frameGroup, sizes []int) int {
	sh := req.scopes[g.scope].hdr
	n := sh[1] - sh[0]
	for _, sz := range sizes[g.at : g.at+g.n] {
		n += protowire.SizeTag(fieldSpans) + protowire.SizeBytes(sz)
	}
	return n
}

// spanFieldKept reports whether a span's field stays in the frame's
// protobuf: every OTLP field but the ids and times.
func spanFieldKept(num protowire.Number) bool {
	switch num {
	case fieldSpanTraceID, fieldSpanID, fieldSpanParent, fieldSpanStart, fieldSpanEnd:
		return false
	}
	return num >= fieldSpanTraceState && num <= fieldSpanFlags
}

// appendStrippedSpan appends sp's body without the fields spanFieldKept
// drops, its events without their times and its links without their ids:
// sp.size bytes.
func appendStrippedSpan(b []byte, sp *reqSpan) []byte {
	body := sp.body
	for len(body) > 0 {
		num, _, v, n := readField(body)
		field := body[:n]
		body = body[n:]
		switch {
		case num == fieldEvents:
			b = appendStripped(b, num, v, fieldEventTime, 0)
		case num == fieldLinks:
			b = appendStripped(b, num, v, fieldLinkTraceID, fieldLinkSpanID)
		case spanFieldKept(num):
			b = append(b, field...)
		}
	}
	return b
}

// strippedSize is the size of msg without its fields x and y (0: none).
func strippedSize(msg []byte, x, y protowire.Number) int {
	n := len(msg)
	for len(msg) > 0 {
		num, _, _, l := readField(msg)
		if l < 0 {
			return n
		}
		if num == x || num == y {
			n -= l
		}
		msg = msg[l:]
	}
	return n
}

// appendStripped appends field num holding msg without its fields x and y.
func appendStripped(b []byte, num protowire.Number, msg []byte, x, y protowire.Number) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(strippedSize(msg, x, y)))
	for len(msg) > 0 {
		n, _, _, l := readField(msg)
		if l < 0 {
			return b
		}
		if n != x && n != y {
			b = append(b, msg[:l]...)
		}
		msg = msg[l:]
	}
	return b
}

// eachNested calls fn with the value of each field num of a message.
func eachNested(msg []byte, num protowire.Number, fn func(v []byte)) {
	for len(msg) > 0 {
		n, _, v, l := readField(msg)
		if l < 0 {
			return
		}
		msg = msg[l:]
		if n == num {
			fn(v)
		}
	}
}

// appendLinkIDs appends the trace and span id of each link of a span.
func appendLinkIDs(b []byte, sp *reqSpan) []byte {
	if sp.links == 0 {
		return b
	}
	eachNested(sp.body, fieldLinks, func(link []byte) {
		var tid [16]byte
		var sid [8]byte
		eachNested(link, fieldLinkTraceID, func(id []byte) { _ = readID(tid[:], id, "") })
		eachNested(link, fieldLinkSpanID, func(id []byte) { _ = readID(sid[:], id, "") })
		b = append(append(b, tid[:]...), sid[:]...)
	})
	return b
}

// appendEventTimes appends each event's time less the span's start.
func appendEventTimes(b []byte, sp *reqSpan) []byte {
	if sp.events == 0 {
		return b
	}
	eachNested(sp.body, fieldEvents, func(ev []byte) {
		var t uint64
		eachNested(ev, fieldEventTime, func(x []byte) { t = binary.LittleEndian.Uint64(x) })
		b = binary.AppendVarint(b, int64(t-sp.start))
	})
	return b
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
func (s *spanFrameScratch) appendDurations(b []byte, req *spanRequest, spans []int32) []byte {
	durs := s.durs[:0]
	unit := maxDurationUnit
	for _, k := range spans {
		d := req.spans[k].end - req.spans[k].start
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
		num, typ, _, n := readField(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if err := fn(num, typ, b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// readField reads the first field of b: its number, wire type, value (a
// length-delimited field's payload, any other field's encoded value) and
// whole length, tag included; a negative length is protowire's error
// code. Tags and lengths under 128 take the short way.
func readField(b []byte) (num protowire.Number, typ protowire.Type, val []byte, n int) {
	if len(b) > 1 && b[0] < 0x80 && b[0] >= 8 {
		num, typ, n = protowire.Number(b[0]>>3), protowire.Type(b[0]&7), 1
	} else {
		num, typ, n = protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, nil, n
		}
	}
	rest := b[n:]
	switch typ {
	case protowire.BytesType:
		if len(rest) > 0 && rest[0] < 0x80 {
			l := int(rest[0])
			if l+1 > len(rest) {
				return 0, 0, nil, -1 // io.ErrUnexpectedEOF
			}
			return num, typ, rest[1 : 1+l], n + 1 + l
		}
		v, m := protowire.ConsumeBytes(rest)
		if m < 0 {
			return 0, 0, nil, m
		}
		return num, typ, v, n + m
	case protowire.Fixed64Type:
		if len(rest) < 8 {
			return 0, 0, nil, -1
		}
		return num, typ, rest[:8], n + 8
	case protowire.Fixed32Type:
		if len(rest) < 4 {
			return 0, 0, nil, -1
		}
		return num, typ, rest[:4], n + 4
	}
	m := protowire.ConsumeFieldValue(num, typ, rest)
	if m < 0 {
		return 0, 0, nil, m
	}
	return num, typ, rest[:m], n + m
}
