package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lumenobs/lumen/internal/model"
)

// A spanRequest is an ExportTraceServiceRequest (or TracesData, the same
// message) read in place: where each resource, scope and span is in the
// request's bytes, and the fields of each span that writing it needs (ids,
// times, name, status). Span frames are cut from these bytes and the
// search index read from them, without decoding the request into pdata
// and marshalling each frame again (docs/decisions.md).
type spanRequest struct {
	// body is the request as it came.
	body []byte
	// hdr holds each resource's and scope's own fields (all but their
	// scope_spans or spans), one after the other.
	hdr    []byte
	res    []reqResource
	scopes []reqScope
	spans  []reqSpan
}

// reqResource is a ResourceSpans of the request.
type reqResource struct {
	hdr      [2]int // its fields but scope_spans, as hdr[hdr[0]:hdr[1]]
	resource []byte // its Resource message (nil when it has none)
	service  string // its service.name, as AsString gives it
}

// reqScope is a ScopeSpans of the request.
type reqScope struct {
	res   int32  // its resource
	hdr   [2]int // its fields but spans
	first int32  // its first span in spans, and how many it has
	n     int32
}

// reqSpan is a span of the request.
type reqSpan struct {
	trace      model.TraceID
	id, parent [8]byte
	start, end uint64
	body       []byte // the Span message
	name       []byte
	scope      int32
	size       int32 // its size in a frame's protobuf
	events     int32 // how many events and links it has
	links      int32
	kind       int32
	err        bool // status code ERROR
}

// OTLP field numbers read in place, beyond spancodec.go's.
const (
	fieldRSResource     = 1 // ResourceSpans.resource
	fieldResourceAttrs  = 1 // Resource.attributes
	fieldSpanTraceID    = 1
	fieldSpanID         = 2
	fieldSpanTraceState = 3
	fieldSpanParent     = 4
	fieldSpanName       = 5
	fieldSpanKind       = 6
	fieldSpanStart      = 7
	fieldSpanEnd        = 8
	fieldSpanStatus     = 15
	fieldSpanFlags      = 16
	fieldStatusCode     = 3
	fieldEventTime      = 1 // Event.time_unix_nano
	fieldLinkTraceID    = 1
	fieldLinkSpanID     = 2
	statusCodeError     = 2
)

var spanRequestPool = sync.Pool{New: func() any { return new(spanRequest) }}

// release forgets the request's bytes and returns r to the pool.
func (r *spanRequest) release() {
	r.body = nil
	clear(r.res)
	clear(r.spans)
	if cap(r.spans) > 1<<16 {
		r.spans = nil
	}
	spanRequestPool.Put(r)
}

// spanCount is the request's number of spans.
func (r *spanRequest) spanCount() int { return len(r.spans) }

// parse reads b, which must stay unchanged while r is used. A request that
// is not an ExportTraceServiceRequest, or whose span has an all-zero trace
// or span id, is ErrInvalid, naming where. Once checkWire has taken b, its
// fields are of the wire types and ids of the lengths the reading below
// takes them for.
func (r *spanRequest) parse(b []byte) error {
	r.body, r.hdr, r.res, r.scopes, r.spans = b, r.hdr[:0], r.res[:0], r.scopes[:0], r.spans[:0]
	if err := checkWire(b, &wTraceRequest, 0); err != nil {
		return fmt.Errorf("%w: not an OTLP trace request: %w", ErrInvalid, err)
	}
	err := eachField(b, func(num protowire.Number, _ protowire.Type, field []byte) error {
		if num != fieldResourceSpans {
			return nil
		}
		return r.parseResource(payload(num, field), len(r.res))
	})
	if err != nil {
		return wrapInvalid(err, "not an OTLP trace request")
	}
	return nil
}

// payload is a length-delimited field's value.
func payload(num protowire.Number, field []byte) []byte {
	v, _ := protowire.ConsumeBytes(field[protowire.SizeTag(num):])
	return v
}

func (r *spanRequest) parseResource(b []byte, i int) error {
	r.res = append(r.res, reqResource{})
	start := len(r.hdr)
	// Its own fields first, so that they sit together in hdr, then its
	// scopes.
	err := eachField(b, func(num protowire.Number, _ protowire.Type, field []byte) error {
		switch num {
		case fieldScopeSpans:
			return nil
		case fieldRSResource:
			r.res[i].resource = payload(num, field)
		}
		r.hdr = append(r.hdr, field...)
		return nil
	})
	if err != nil {
		return wrapInvalid(err, "resource_spans[%d]", i)
	}
	res := &r.res[i]
	res.hdr = [2]int{start, len(r.hdr)}
	svc, err := resourceService(res.resource)
	if err != nil {
		return wrapInvalid(err, "resource_spans[%d].resource", i)
	}
	res.service = svc
	j := 0
	return eachField(b, func(num protowire.Number, _ protowire.Type, field []byte) error {
		if num != fieldScopeSpans {
			return nil
		}
		j++
		return r.parseScope(payload(num, field), i, j-1)
	})
}

func (r *spanRequest) parseScope(b []byte, i, j int) error {
	s := int32(len(r.scopes))
	r.scopes = append(r.scopes, reqScope{res: int32(i), first: int32(len(r.spans))})
	start := len(r.hdr)
	k := 0
	err := eachField(b, func(num protowire.Number, _ protowire.Type, field []byte) error {
		if num != fieldSpans {
			r.hdr = append(r.hdr, field...)
			return nil
		}
		sp := reqSpan{scope: s, body: payload(num, field)}
		if err := sp.parse(); err != nil {
			return wrapInvalid(err, "resource_spans[%d].scope_spans[%d].spans[%d]", i, j, k)
		}
		if sp.trace.IsEmpty() {
			return fmt.Errorf("%w: resource_spans[%d].scope_spans[%d].spans[%d] has an all-zero trace_id", ErrInvalid, i, j, k)
		}
		if sp.id == ([8]byte{}) {
			return fmt.Errorf("%w: resource_spans[%d].scope_spans[%d].spans[%d] has an all-zero span_id", ErrInvalid, i, j, k)
		}
		r.spans = append(r.spans, sp)
		k++
		return nil
	})
	if err != nil {
		return err
	}
	r.scopes[s].hdr = [2]int{start, len(r.hdr)}
	r.scopes[s].n = int32(len(r.spans)) - r.scopes[s].first
	return nil
}

// wrapInvalid makes err ErrInvalid, naming where, unless it already is.
func wrapInvalid(err error, format string, args ...any) error {
	if errors.Is(err, ErrInvalid) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrInvalid, fmt.Sprintf(format, args...), err)
}

// parse reads the span's own fields from its body, and the size it has in
// a frame's protobuf (appendStrippedSpan).
func (sp *reqSpan) parse() error {
	b := sp.body
	size := 0
	for len(b) > 0 {
		num, _, v, n := readField(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		field := b[:n]
		b = b[n:]
		switch num {
		case fieldSpanTraceID:
			if err := readID(sp.trace[:], v, "trace_id"); err != nil {
				return err
			}
		case fieldSpanID:
			if err := readID(sp.id[:], v, "span_id"); err != nil {
				return err
			}
		case fieldSpanParent:
			if err := readID(sp.parent[:], v, "parent_span_id"); err != nil {
				return err
			}
		case fieldSpanKind:
			k, _ := protowire.ConsumeVarint(v)
			sp.kind = int32(k)
			size += len(field)
		case fieldSpanStart:
			sp.start = binary.LittleEndian.Uint64(v)
		case fieldSpanEnd:
			sp.end = binary.LittleEndian.Uint64(v)
		case fieldSpanName:
			sp.name = v
			size += len(field)
		case fieldEvents:
			sp.events++
			size += strippedFieldSize(num, v, fieldEventTime, 0)
		case fieldLinks:
			sp.links++
			size += strippedFieldSize(num, v, fieldLinkTraceID, fieldLinkSpanID)
		case fieldSpanStatus:
			sp.err = false
			eachNested(v, fieldStatusCode, func(c []byte) {
				code, _ := protowire.ConsumeVarint(c)
				sp.err = int32(code) == statusCodeError
			})
			size += len(field)
		default:
			if spanFieldKept(num) {
				size += len(field)
			}
		}
	}
	sp.size = int32(size)
	return nil
}

// strippedFieldSize is the size of field num holding msg without its
// fields x and y (0: none), tag included.
func strippedFieldSize(num protowire.Number, msg []byte, x, y protowire.Number) int {
	n := strippedSize(msg, x, y)
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// readID reads an id of len(dst) bytes; empty is all zeros.
func readID(dst, b []byte, what string) error {
	switch len(b) {
	case 0:
		clear(dst)
	case len(dst):
		copy(dst, b)
	default:
		return fmt.Errorf("%s of %d bytes, not %d", what, len(b), len(dst))
	}
	return nil
}

// resourceService is the service.name of a Resource message: the first
// attribute of that key, as pcommon's AsString gives it.
func resourceService(resource []byte) (string, error) {
	svc, found := "", false
	err := eachAttribute(resource, fieldResourceAttrs, func(key, value []byte) error {
		if found || string(key) != "service.name" {
			return nil
		}
		found = true
		s, _, err := anyValueText(value, nil)
		svc = s
		return err
	})
	return svc, err
}

// eachAttribute calls fn with the key and AnyValue of each KeyValue of msg
// in field num, in order.
func eachAttribute(msg []byte, num protowire.Number, fn func(key, value []byte) error) error {
	for len(msg) > 0 {
		n, _, kv, l := readField(msg)
		if l < 0 {
			return protowire.ParseError(l)
		}
		msg = msg[l:]
		if n != num {
			continue
		}
		var key, value []byte
		for len(kv) > 0 {
			n, _, v, l := readField(kv)
			if l < 0 {
				return protowire.ParseError(l)
			}
			kv = kv[l:]
			switch n {
			case 1:
				key = v
			case 2:
				value = v
			}
		}
		if err := fn(key, value); err != nil {
			return err
		}
	}
	return nil
}

// unsafeString is b as a string, without a copy: only for lookups and
// values that are copied before b changes.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// AnyValue's fields.
const (
	anyString = 1
	anyBool   = 2
	anyInt    = 3
	anyDouble = 4
	anyArray  = 5
	anyKVList = 6
	anyBytes  = 7
	// anyValueStrindex (8) is a string's index in a profile's dictionary:
	// pdata reads it; as text it is empty.
	anyValueStrindex = 8
)

// anyValueString is an AnyValue message as pcommon's AsString gives it,
// through a pcommon.Value.
func anyValueString(b []byte) (string, error) {
	v := pcommon.NewValueEmpty()
	if err := fillValue(v, b); err != nil {
		return "", err
	}
	return v.AsString(), nil
}

// anyValueText is anyValueString without an allocation for a string, an
// int or a bool: the text may share b or scratch (returned for reuse; nil
// for a text the caller keeps), so it is valid until either changes.
func anyValueText(b, scratch []byte) (string, []byte, error) {
	var last protowire.Number
	var val []byte
	for rest := b; len(rest) > 0; {
		num, _, v, n := readField(rest)
		if n < 0 {
			return "", scratch, protowire.ParseError(n)
		}
		rest = rest[n:]
		if num >= anyString && num <= anyValueStrindex {
			last, val = num, v
		}
	}
	switch last {
	case 0:
		return "", scratch, nil
	case anyString:
		return unsafeString(val), scratch, nil
	case anyInt:
		x, _ := protowire.ConsumeVarint(val)
		scratch = strconv.AppendInt(scratch[:0], int64(x), 10)
		return unsafeString(scratch), scratch, nil
	case anyBool:
		x, _ := protowire.ConsumeVarint(val)
		return strconv.FormatBool(x != 0), scratch, nil
	}
	s, err := anyValueString(b)
	return s, scratch, err
}

// maxValueDepth bounds the nesting of the messages of a request read in
// place (checkWire), arrays and maps of values included.
const maxValueDepth = 100

// fillValue sets v to the AnyValue message b, which checkWire took (the
// last of its oneof fields wins, as protobuf has it).
func fillValue(v pcommon.Value, b []byte) error {
	return eachField(b, func(num protowire.Number, _ protowire.Type, field []byte) error {
		val := field[protowire.SizeTag(num):]
		switch num {
		case anyString:
			s, _ := protowire.ConsumeBytes(val)
			v.SetStr(string(s))
		case anyBool:
			x, _ := protowire.ConsumeVarint(val)
			v.SetBool(x != 0)
		case anyInt:
			x, _ := protowire.ConsumeVarint(val)
			v.SetInt(int64(x))
		case anyDouble:
			x, _ := protowire.ConsumeFixed64(val)
			v.SetDouble(math.Float64frombits(x))
		case anyBytes:
			s, _ := protowire.ConsumeBytes(val)
			v.SetEmptyBytes().FromRaw(s)
		case anyArray:
			s, _ := protowire.ConsumeBytes(val)
			arr := v.SetEmptySlice()
			return eachField(s, func(num protowire.Number, _ protowire.Type, field []byte) error {
				if num != 1 {
					return nil
				}
				return fillValue(arr.AppendEmpty(), payload(num, field))
			})
		case anyKVList:
			s, _ := protowire.ConsumeBytes(val)
			m := v.SetEmptyMap()
			return eachAttribute(s, 1, func(key, value []byte) error {
				return fillValue(m.PutEmpty(string(key)), value)
			})
		}
		return nil
	})
}

// A TraceRequest is an OTLP ExportTraceServiceRequest read in place, as
// DB.WriteTraceRequest takes it: parsed once, its spans counted and listed
// before the write (admission, span metrics) without decoding it into
// pdata.
type TraceRequest struct{ r *spanRequest }

// ParseTraceRequest reads body, an ExportTraceServiceRequest (or
// TracesData) in protobuf, which must stay unchanged until Release. A body
// that is not one, or with a span whose trace id or span id is all zeros,
// is ErrInvalid, naming where.
func ParseTraceRequest(body []byte) (*TraceRequest, error) {
	r := spanRequestPool.Get().(*spanRequest)
	if err := r.parse(body); err != nil {
		r.release()
		return nil, err
	}
	return &TraceRequest{r: r}, nil
}

// SpanCount is the request's number of spans.
func (t *TraceRequest) SpanCount() int { return t.r.spanCount() }

// Release lets the request's memory be reused; t must not be used after.
func (t *TraceRequest) Release() {
	if t.r != nil {
		t.r.release()
		t.r = nil
	}
}

// RequestSpan is what a span of a TraceRequest says of itself: its strings
// are the caller's to keep.
type RequestSpan struct {
	TraceID  [16]byte
	SpanID   [8]byte
	ParentID [8]byte
	Service  string
	Name     string
	Kind     int32 // OTLP's SpanKind
	Error    bool  // status code ERROR
	Start    uint64
	End      uint64
}

// EachSpan calls fn with each span of the request, in order. A request's
// service and span names are copied once each, however many spans share
// them.
func (t *TraceRequest) EachSpan(fn func(*RequestSpan)) {
	r := t.r
	names := map[string]string{}
	kept := func(s string) string {
		k, ok := names[s]
		if !ok {
			k = strings.Clone(s)
			names[k] = k
		}
		return k
	}
	var rs RequestSpan
	for i := range r.spans {
		sp := &r.spans[i]
		rs = RequestSpan{TraceID: sp.trace, SpanID: sp.id, ParentID: sp.parent,
			Service: kept(r.res[r.scopes[sp.scope].res].service), Name: kept(unsafeString(sp.name)),
			Kind: sp.kind, Error: sp.err, Start: sp.start, End: sp.end}
		fn(&rs)
	}
}

// A request is checked whole before it is read: every message OTLP's trace
// request holds, at every depth, has its fields in the wire types the
// Collector's decoder (pdata) wants and ids of its lengths, so that what is
// stored decodes again when read. Unknown fields are skipped, as pdata
// skips them. (The check is stricter only where pdata is lax: an
// end-group tag that does not match its group's, more than
// maxValueDepth levels of nested values.)

// wireField is what a message's field must be: its wire type, the
// message it holds (length-delimited fields), or the length of an id.
type wireField struct {
	typ   protowire.Type
	known bool
	msg   *wireMessage
	idLen int
}

// wireMessage is a message's known fields by number.
type wireMessage [17]wireField

var (
	wString  = wireField{typ: protowire.BytesType, known: true}
	wVarint  = wireField{typ: protowire.VarintType, known: true}
	wFixed64 = wireField{typ: protowire.Fixed64Type, known: true}
	wFixed32 = wireField{typ: protowire.Fixed32Type, known: true}
	wTraceID = wireField{typ: protowire.BytesType, known: true, idLen: 16}
	wSpanID  = wireField{typ: protowire.BytesType, known: true, idLen: 8}

	wAnyValue, wKeyValue, wArrayValue, wKVList, wEntityRef, wResource, wScope,
	wStatus, wEvent, wLink, wSpan, wScopeSpans, wResourceSpans, wTraceRequest wireMessage
)

func wMsg(m *wireMessage) wireField {
	return wireField{typ: protowire.BytesType, known: true, msg: m}
}

func init() {
	wAnyValue = wireMessage{1: wString, 2: wVarint, 3: wVarint, 4: wFixed64, 5: wMsg(&wArrayValue), 6: wMsg(&wKVList), 7: wString, 8: wVarint}
	wKeyValue = wireMessage{1: wString, 2: wMsg(&wAnyValue)}
	wArrayValue = wireMessage{1: wMsg(&wAnyValue)}
	wKVList = wireMessage{1: wMsg(&wKeyValue)}
	wEntityRef = wireMessage{1: wString, 2: wString, 3: wString, 4: wString}
	wResource = wireMessage{1: wMsg(&wKeyValue), 2: wVarint, 3: wMsg(&wEntityRef)}
	wScope = wireMessage{1: wString, 2: wString, 3: wMsg(&wKeyValue), 4: wVarint}
	wStatus = wireMessage{2: wString, 3: wVarint}
	wEvent = wireMessage{1: wFixed64, 2: wString, 3: wMsg(&wKeyValue), 4: wVarint}
	wLink = wireMessage{1: wTraceID, 2: wSpanID, 3: wString, 4: wMsg(&wKeyValue), 5: wVarint, 6: wFixed32}
	wSpan = wireMessage{1: wTraceID, 2: wSpanID, 3: wString, 4: wSpanID, 5: wString, 6: wVarint, 7: wFixed64, 8: wFixed64,
		9: wMsg(&wKeyValue), 10: wVarint, 11: wMsg(&wEvent), 12: wVarint, 13: wMsg(&wLink), 14: wVarint, 15: wMsg(&wStatus), 16: wFixed32}
	wScopeSpans = wireMessage{1: wMsg(&wScope), 2: wMsg(&wSpan), 3: wString}
	wResourceSpans = wireMessage{1: wMsg(&wResource), 2: wMsg(&wScopeSpans), 3: wString}
	wTraceRequest = wireMessage{1: wMsg(&wResourceSpans)}
}

// wireNames name the messages in errors.
var wireNames = map[*wireMessage]string{
	&wAnyValue: "AnyValue", &wKeyValue: "KeyValue", &wArrayValue: "ArrayValue", &wKVList: "KeyValueList",
	&wEntityRef: "EntityRef", &wResource: "Resource", &wScope: "InstrumentationScope", &wStatus: "Status",
	&wEvent: "Span.Event", &wLink: "Span.Link", &wSpan: "Span", &wScopeSpans: "ScopeSpans",
	&wResourceSpans: "ResourceSpans", &wTraceRequest: "ExportTraceServiceRequest",
}

// checkWire checks b as a message m, nested depth deep.
func checkWire(b []byte, m *wireMessage, depth int) error {
	if depth > maxValueDepth {
		return errors.New("messages nested too deep")
	}
	for len(b) > 0 {
		num, typ, v, n := readField(b)
		if n < 0 {
			return fmt.Errorf("%s: %w", wireNames[m], protowire.ParseError(n))
		}
		b = b[n:]
		if num >= protowire.Number(len(m)) || !m[num].known {
			continue
		}
		f := &m[num]
		if typ != f.typ {
			return fmt.Errorf("%s field %d: wire type %d, not %d", wireNames[m], num, typ, f.typ)
		}
		switch {
		case f.idLen > 0 && len(v) != 0 && len(v) != f.idLen:
			return fmt.Errorf("%s field %d: an id of %d bytes, not %d", wireNames[m], num, len(v), f.idLen)
		case f.msg != nil:
			if err := checkWire(v, f.msg, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
