package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field columns (span frames of codec 0x05, codecZstdSpanFields): every field of every span —
// name, kind, status, events, links, and each attribute by its key — is
// moved out of the frame's protobuf into a column of that field's values,
// span after span, so that the compressor sees a column of routes or of
// client addresses rather than each between other fields. A column of few
// distinct values is dictionary-coded. A span's columns, in order, are its
// shape; spans of one instrumentation share few shapes. What is left of the
// protobuf is its resources and scopes, and an empty message per span.
// See FORMAT.md.
//
//	fields  := uvarint(columns) { column id }
//	           uvarint(shapes) { uvarint(len) { uvarint(column) } }
//	           n × uvarint(shape)
//	           columns × ( uvarint(len(values)) values )
//	id      := 0x00 uvarint(len) key   an attribute: its KeyValue without the key field
//	         | uvarint(field number)   any field: the field as it is, tag included
//	values  := 0x00 { uvarint(len) value }                                  plain
//	         | 0x01 uvarint(entries) { uvarint(len) value } { uvarint(entry) }  dictionary
//
// An attribute is moved by its key when its KeyValue has one key field,
// first or last (pdata writes it last), or none (the empty key); it is put
// back key first, which is the same message. Other attributes go to the
// column of field 9 as they are. A span's fields come back in their order,
// so repeated fields (attributes, events, links) keep theirs.

// OTLP field numbers the field columns use.
const (
	fieldSpanAttributes = 9 // Span.attributes
	fieldKeyValueKey    = 1 // KeyValue.key
	// The tags of KeyValue's fields key (1) and value (2), both
	// length-delimited.
	keyTag   = fieldKeyValueKey<<3 | byte(protowire.BytesType)
	valueTag = 2<<3 | byte(protowire.BytesType)
)

// Column value encodings.
const (
	columnPlain      = 0
	columnDictionary = 1
)

// maxDictionary is the most distinct values a dictionary-coded column
// has; a column with more is written plain.
const maxDictionary = 1024

// columnKey names a column: an attribute key, or a field number.
type columnKey struct {
	field protowire.Number // 0 for an attribute
	key   string
}

// spanSplitter moves spans' fields out of a marshalled request into
// columns; its maps and buffers are reused from frame to frame.
type spanSplitter struct {
	attrIDs   map[string]int           // attribute columns by key
	fieldIDs  map[protowire.Number]int // field columns by number
	columns   []splitColumn
	shapeIDs  map[string]int
	shapes    []byte // the shapes section's entries
	nShapes   int
	spans     []byte // n × uvarint(shape)
	shape     []byte
	prev      []int  // the columns of the previous span, in order
	next      []int  // by column: the column that last followed it in a span, or -1
	first     int    // the column the last span began with, or -1
	prevShape []byte // its shape's number, as written
	cur       []int
	side      []byte // events and links without their ids and times
	// A column's distinct values by their hash, numbered as first seen,
	// and each value's number.
	distinct map[uint64]int
	entries  [][]byte
	index    []int
}

var columnSeed = maphash.MakeSeed()

type splitColumn struct {
	key    columnKey
	values [][]byte // into the marshalled request
}

func (a *spanSplitter) reset() {
	if a.attrIDs == nil {
		a.attrIDs, a.fieldIDs, a.shapeIDs, a.distinct = map[string]int{}, map[protowire.Number]int{}, map[string]int{}, map[uint64]int{}
	}
	clear(a.attrIDs)
	clear(a.fieldIDs)
	clear(a.shapeIDs)
	a.prev, a.next, a.first = a.prev[:0], a.next[:0], -1
	for i := range a.columns {
		clear(a.columns[i].values)
		a.columns[i].values = a.columns[i].values[:0]
	}
	a.columns = a.columns[:0]
	a.shapes, a.nShapes, a.spans, a.side = a.shapes[:0], 0, a.spans[:0], a.side[:0]
}

// forget drops what refers to the last request's bytes, so that they can
// be collected while the splitter waits in a pool.
func (a *spanSplitter) forget() {
	for i := range a.columns {
		clear(a.columns[i].values)
	}
	clear(a.entries)
}

// appendColumns appends uvarint(len(proto)) proto and the columns of the
// spans split since the last reset.
func (a *spanSplitter) appendColumns(b, proto []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(proto)))
	b = append(b, proto...)
	b = binary.AppendUvarint(b, uint64(len(a.columns)))
	for _, c := range a.columns {
		b = binary.AppendUvarint(b, uint64(c.key.field))
		if c.key.field == 0 {
			b = protowire.AppendString(b, c.key.key)
		}
	}
	b = binary.AppendUvarint(b, uint64(a.nShapes))
	b = append(b, a.shapes...)
	b = append(b, a.spans...)
	for i := range a.columns {
		b = a.appendColumn(b, a.columns[i].values)
	}
	return b
}

// appendColumn appends uvarint(len(values)) values: dictionary-coded
// when that is smaller, plain otherwise.
func (a *spanSplitter) appendColumn(b []byte, values [][]byte) []byte {
	plain := 1
	for _, v := range values {
		plain += protowire.SizeBytes(len(v))
	}
	if dict, ok := a.dictionary(values); ok && dict < plain {
		b = binary.AppendUvarint(b, uint64(dict))
		b = append(b, columnDictionary)
		b = binary.AppendUvarint(b, uint64(len(a.entries)))
		for _, v := range a.entries {
			b = protowire.AppendBytes(b, v)
		}
		for _, e := range a.index {
			b = binary.AppendUvarint(b, uint64(e))
		}
		return b
	}
	b = binary.AppendUvarint(b, uint64(plain))
	b = append(b, columnPlain)
	for _, v := range values {
		b = protowire.AppendBytes(b, v)
	}
	return b
}

// dictionary numbers values' distinct values in a.entries and a.index and
// returns the size of the dictionary-coded column; false when more than
// half the values are distinct (a dictionary would not pay), more than
// maxDictionary, or two distinct values hash alike.
func (a *spanSplitter) dictionary(values [][]byte) (int, bool) {
	clear(a.distinct)
	a.entries, a.index = a.entries[:0], a.index[:0]
	size := 1
	hashed := false // the entries are in a.distinct: there are many
	for _, v := range values {
		e, ok := -1, false
		if !hashed { // a few entries: compared, not hashed
			for i, x := range a.entries {
				if bytes.Equal(x, v) {
					e, ok = i, true
					break
				}
			}
		} else {
			h := maphash.Bytes(columnSeed, v)
			if e, ok = a.distinct[h]; ok && !bytes.Equal(a.entries[e], v) {
				return 0, false
			}
		}
		if !ok {
			if len(a.entries) >= maxDictionary || 2*len(a.entries) > len(values) {
				return 0, false
			}
			e = len(a.entries)
			a.entries = append(a.entries, v)
			size += protowire.SizeBytes(len(v))
			switch {
			case hashed:
				a.distinct[maphash.Bytes(columnSeed, v)] = e
			case len(a.entries) > fewEntries:
				hashed = true
				for i, x := range a.entries {
					h := maphash.Bytes(columnSeed, x)
					if _, dup := a.distinct[h]; dup {
						return 0, false
					}
					a.distinct[h] = i
				}
			}
		}
		a.index = append(a.index, e)
		size += protowire.SizeVarint(uint64(e))
	}
	return size + protowire.SizeVarint(uint64(len(a.entries))), true
}

// fewEntries is how many distinct values of a column are compared one by
// one before they are hashed.
const fewEntries = 8

// put puts a span's field in its column.
func (a *spanSplitter) put(fnum protowire.Number, key, value []byte, attr bool) {
	id := a.column(fnum, key, attr)
	a.columns[id].values = append(a.columns[id].values, value)
	a.cur = append(a.cur, id)
	a.shape = binary.AppendUvarint(a.shape, uint64(id))
}

// splitRawSpan puts each field of a span of a request read in place in its
// column and the span's shape in a.spans: its fields but those the id and
// time columns hold, its events without their times and its links without
// their ids (copied, in a.side).
func (a *spanSplitter) splitRawSpan(sp *reqSpan) {
	a.shape, a.cur = a.shape[:0], a.cur[:0]
	for rest := sp.body; len(rest) > 0; {
		num, _, v, n := readField(rest)
		field := rest[:n]
		rest = rest[n:]
		if !spanFieldKept(num) {
			continue
		}
		switch num {
		case fieldSpanAttributes:
			if k, r, ok := splitKeyValue(v); ok {
				a.put(0, k, r, true)
				continue
			}
		case fieldEvents, fieldLinks:
			x, y := protowire.Number(fieldEventTime), protowire.Number(0)
			if num == fieldLinks {
				x, y = fieldLinkTraceID, fieldLinkSpanID
			}
			n := len(a.side)
			a.side = appendStripped(a.side, num, v, x, y)
			field = a.side[n:len(a.side):len(a.side)]
		}
		a.put(num, nil, field, false)
	}
	a.endSpan()
}

// endSpan records the shape of the span just split.
func (a *spanSplitter) endSpan() {
	if slices.Equal(a.cur, a.prev) && a.nShapes > 0 { // the previous span's shape
		a.spans = append(a.spans, a.prevShape...)
		return
	}
	a.prev, a.cur = a.cur, a.prev
	id, ok := a.shapeIDs[string(a.shape)]
	if !ok {
		id = a.nShapes
		a.nShapes++
		a.shapeIDs[string(a.shape)] = id
		a.shapes = protowire.AppendBytes(a.shapes, a.shape)
	}
	n := len(a.spans)
	a.spans = binary.AppendUvarint(a.spans, uint64(id))
	a.prevShape = append(a.prevShape[:0], a.spans[n:]...)
}

// nextField returns the first field of b: its number, wire type and
// whole encoding (tag included).
func nextField(b []byte) (protowire.Number, protowire.Type, []byte, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, protowire.ParseError(n)
	}
	m := protowire.ConsumeFieldValue(num, typ, b[n:])
	if m < 0 {
		return 0, 0, nil, protowire.ParseError(m)
	}
	return num, typ, b[:n+m], nil
}

// column returns the number of the column of an attribute's key or a
// field's number, making it when it is new. Spans of one frame mostly
// have their columns in the same order, some with a field more or less
// (an event, a link): the column that last followed the span's previous
// one (or began the last span) is tried first.
func (a *spanSplitter) column(field protowire.Number, key []byte, attr bool) int {
	guess := a.first
	if j := len(a.cur); j > 0 {
		guess = a.next[a.cur[j-1]]
	}
	id, ok := guess, false
	if guess >= 0 {
		c := a.columns[guess].key
		ok = c.field == field && (!attr || c.key == string(key))
	}
	switch {
	case ok:
	case attr:
		id, ok = a.attrIDs[string(key)]
	default:
		id, ok = a.fieldIDs[field]
	}
	if !ok {
		id = a.newColumn(field, key, attr)
	}
	if j := len(a.cur); j > 0 {
		a.next[a.cur[j-1]] = id
	} else {
		a.first = id
	}
	return id
}

// newColumn makes the column of an attribute's key or a field's number.
func (a *spanSplitter) newColumn(field protowire.Number, key []byte, attr bool) int {
	id := len(a.columns)
	k := columnKey{field: field}
	if attr {
		k.key = string(key)
		a.attrIDs[k.key] = id
	} else {
		a.fieldIDs[field] = id
	}
	if len(a.columns) < cap(a.columns) {
		a.columns = a.columns[:id+1]
		a.columns[id].key = k
	} else {
		a.columns = append(a.columns, splitColumn{key: k})
	}
	a.next = append(a.next, -1)
	return id
}

// splitKeyValue returns a KeyValue's key and the rest of it, when that
// round-trips: one key field, first or last (pdata writes it last), or
// none (the empty key).
func splitKeyValue(kv []byte) (key, rest []byte, ok bool) {
	// pdata's: the value field, then the key field.
	if len(kv) > 0 && kv[0] == valueTag {
		if l, n := protowire.ConsumeVarint(kv[1:]); n > 0 && l < uint64(len(kv)) {
			if p := 1 + n + int(l); p < len(kv) && kv[p] == keyTag {
				if k, m := protowire.ConsumeBytes(kv[p+1:]); m > 0 && p+1+m == len(kv) {
					return k, kv[:p], true
				}
			}
		}
	}
	from, to := -1, -1 // where the key field is
	for off := 0; off < len(kv); {
		num, typ, field, err := nextField(kv[off:])
		if err != nil {
			return nil, nil, false
		}
		if num == fieldKeyValueKey {
			if typ != protowire.BytesType || from >= 0 {
				return nil, nil, false
			}
			from, to = off, off+len(field)
		}
		off += len(field)
	}
	switch {
	case from < 0:
		return nil, kv, true
	case from == 0:
		rest = kv[to:]
	case to == len(kv):
		rest = kv[:from]
	default:
		return nil, nil, false
	}
	_, _, n := protowire.ConsumeTag(kv[from:to])
	key, _ = protowire.ConsumeBytes(kv[from+n : to])
	return key, rest, true
}

// spanColumns reads a frame's field columns back, span by span. Its
// slices refer to the payload and are reused from frame to frame (see
// getSpanColumns).
type spanColumns struct {
	fields  []protowire.Number // each column's field, 0 for an attribute
	keys    [][]byte           // each attribute column's key
	shapes  []int              // every shape's columns, one after another
	shapeAt []int              // shape i is shapes[shapeAt[i]:shapeAt[i+1]]
	spans   []int              // each span's shape
	cols    []columnCursor
}

var spanColumnsPool = sync.Pool{New: func() any { return new(spanColumns) }}

// getSpanColumns returns an empty spanColumns; putSpanColumns gives it
// back once nothing refers to what it read.
func getSpanColumns() *spanColumns { return spanColumnsPool.Get().(*spanColumns) }

func putSpanColumns(a *spanColumns) {
	for i := range a.cols {
		clear(a.cols[i].dict)
		a.cols[i].dict, a.cols[i].b = a.cols[i].dict[:0], nil
	}
	clear(a.keys)
	a.fields, a.keys, a.shapes, a.shapeAt, a.spans, a.cols = a.fields[:0], a.keys[:0], a.shapes[:0], a.shapeAt[:0], a.spans[:0], a.cols[:0]
	if cap(a.shapes) > 1<<16 || cap(a.spans) > 1<<16 {
		return // an odd frame's: not worth keeping
	}
	spanColumnsPool.Put(a)
}

// columnCursor reads one column's values in order.
type columnCursor struct {
	b    []byte   // what is left: values, or dictionary entry numbers
	dict [][]byte // the dictionary's entries, when dictionary-coded
	dic  bool
}

func (c *columnCursor) next() ([]byte, bool) {
	l, n := binary.Uvarint(c.b)
	if n <= 0 {
		return nil, false
	}
	if c.dic {
		c.b = c.b[n:]
		if l >= uint64(len(c.dict)) {
			return nil, false
		}
		return c.dict[l], true
	}
	if l > uint64(len(c.b)-n) {
		return nil, false
	}
	v := c.b[n : n+int(l)]
	c.b = c.b[n+int(l):]
	return v, true
}

// readSpanColumns reads the field columns of a frame of n spans into a.
func readSpanColumns(r *columnReader, n uint64, a *spanColumns) error {
	ncols := r.uvarint("column count")
	if ncols > uint64(len(r.b)) { // a column takes at least a byte
		r.fail("column count")
	}
	for i := uint64(0); i < ncols && r.err == nil; i++ {
		field := protowire.Number(min(r.uvarint("column field"), uint64(protowire.MaxValidNumber)+1))
		var key []byte
		if field == 0 {
			key = r.bytes(int(min(r.uvarint("attribute key length"), uint64(len(r.b))+1)), "attribute key")
		}
		a.fields, a.keys = append(a.fields, field), append(a.keys, key)
	}
	nshapes := r.uvarint("shape count")
	if nshapes > uint64(len(r.b)) {
		r.fail("shape count")
	}
	a.shapeAt = append(a.shapeAt, 0)
	for i := uint64(0); i < nshapes && r.err == nil; i++ {
		sr := columnReader{b: r.bytes(int(min(r.uvarint("shape length"), uint64(len(r.b))+1)), "shape")}
		for len(sr.b) > 0 && sr.err == nil {
			k := sr.uvarint("shape")
			if k >= ncols {
				sr.fail("shape column")
			}
			a.shapes = append(a.shapes, int(k))
		}
		if sr.err != nil {
			r.fail("shape")
		}
		a.shapeAt = append(a.shapeAt, len(a.shapes))
	}
	if n > uint64(len(r.b)) { // a span's shape takes a byte
		r.fail("span shapes")
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		s := r.uvarint("span shape")
		if s >= nshapes {
			r.fail("span shape")
		}
		a.spans = append(a.spans, int(s))
	}
	for i := uint64(0); i < ncols && r.err == nil; i++ {
		cr := columnReader{b: r.bytes(int(min(r.uvarint("column length"), uint64(len(r.b))+1)), "column")}
		if len(a.cols) < cap(a.cols) {
			a.cols = a.cols[:len(a.cols)+1]
		} else {
			a.cols = append(a.cols, columnCursor{})
		}
		c := &a.cols[len(a.cols)-1]
		c.dic = false
		switch mode := cr.bytes(1, "column encoding"); {
		case cr.err != nil:
		case mode[0] == columnPlain:
		case mode[0] == columnDictionary:
			c.dic = true
			entries := cr.uvarint("dictionary size")
			if entries == 0 || entries > uint64(len(cr.b)) {
				cr.fail("dictionary size")
			}
			for range entries {
				if cr.err != nil {
					break
				}
				c.dict = append(c.dict, cr.bytes(int(min(cr.uvarint("dictionary entry length"), uint64(len(cr.b))+1)), "dictionary entry"))
			}
		default:
			cr.fail("column encoding")
		}
		if cr.err != nil {
			r.fail("column")
		}
		c.b = cr.b
	}
	return r.err
}

// appendSpan appends span i's fields from the columns to body and returns
// it with the number of events and links among them; or, with appendTo
// false, only steps over span i's values.
func (a *spanColumns) appendSpan(body []byte, i int, appendTo bool) ([]byte, spanCounts, error) {
	var c spanCounts
	if i >= len(a.spans) {
		return nil, c, errors.New("more spans than shapes")
	}
	sh := a.spans[i]
	for _, k := range a.shapes[a.shapeAt[sh]:a.shapeAt[sh+1]] {
		value, ok := a.cols[k].next()
		if !ok {
			return nil, c, fmt.Errorf("column %d of %d truncated or malformed", k, len(a.cols))
		}
		field, key := a.fields[k], a.keys[k]
		switch field {
		case fieldEvents:
			c.events++
		case fieldLinks:
			c.links++
		}
		if !appendTo {
			continue
		}
		if field != 0 {
			body = append(body, value...)
			continue
		}
		size := len(value)
		if len(key) > 0 {
			size += 1 + protowire.SizeBytes(len(key))
		}
		body = protowire.AppendTag(body, fieldSpanAttributes, protowire.BytesType)
		body = protowire.AppendVarint(body, uint64(size))
		if len(key) > 0 {
			body = protowire.AppendTag(body, fieldKeyValueKey, protowire.BytesType)
			body = protowire.AppendBytes(body, key)
		}
		body = append(body, value...)
	}
	return body, c, nil
}

// finish checks that every column was read to its end.
func (a *spanColumns) finish() error {
	for k, c := range a.cols {
		if len(c.b) != 0 {
			return fmt.Errorf("column %d of %d has %d bytes left", k, len(a.cols), len(c.b))
		}
	}
	return nil
}
