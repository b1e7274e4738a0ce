package store

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lumenobs/lumen/internal/model"
)

// Trace search keys in each partition (see store/FORMAT.md):
//
//	KEY: 0x04 term ^second[4] seq[8]  -> postings: the traces of batch seq with the term, whose
//	                                     spans with it start in that second
//	KEY: 0x05 term                    -> empty: the catalog of terms (services, span names, values)
//	term     := kind[1] uvarint(len) a uvarint(len) b
//	KEY: 0x06 seq[8]                  -> trace_id[16] × n: the traces of batch seq, by ordinal (postings formats 1, 2)
//	KEY: 0x07 seq[8]                  -> uvarint(n) trace_id[16] × n uvarint(base µs) width start[width] × n: the traces of batch seq (formats 3, 4)
//	postings := 0x00 0x04 uvarint(n) { uvarint(Δordinal) uvarint(µs after the trace's start) uvarint(min dur code) uvarint(max dur code − min dur code) }
//
// One key per (term, batch, second) rather than per (term, trace) keeps the
// index to tens of keys per request of a thousand spans. ^second is the
// complement of the start second, so a prefix scan meets the newest first;
// fields are length-prefixed, so service "foo" with span name "bar" never
// collides with "foob" and "ar".
const (
	nsSearchTerm   byte = 0x04
	nsSearchCat    byte = 0x05
	nsSearchTraces byte = 0x06 // KEY: 0x06 seq[8] -> the batch's trace ids, 16 bytes each, by ordinal (postings formats 1 and 2)
	nsSearchBatch  byte = 0x07 // KEY: 0x07 seq[8] -> the batch's traces: their ids and starts (postings formats 3 and 4)
)

// Kinds of search term.
const (
	TermAll      byte = 'T' // every trace: a, b empty
	TermService  byte = 's' // a span's resource service.name: a service
	TermName     byte = 'n' // a span's name: a service, b name
	TermRoot     byte = 'R' // a root span: a service, b name
	TermError    byte = 'e' // a span with status error: a, b empty
	TermSpanAttr byte = 'a' // an indexed span attribute: a key, b value
	TermResAttr  byte = 'r' // an indexed resource attribute: a key, b value
)

// Term is one search index entry's subject.
type Term struct {
	Kind byte
	A, B string
}

func (t Term) encode(dst []byte) []byte {
	dst = append(dst, t.Kind)
	dst = binary.AppendUvarint(dst, uint64(len(t.A)))
	dst = append(dst, t.A...)
	dst = binary.AppendUvarint(dst, uint64(len(t.B)))
	return append(dst, t.B...)
}

func decodeTerm(b []byte) (Term, []byte, error) {
	bad := fmt.Errorf("%w: search term", ErrCorrupt)
	if len(b) < 1 {
		return Term{}, nil, bad
	}
	t := Term{Kind: b[0]}
	b = b[1:]
	str := func() (string, bool) {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return "", false
		}
		s := string(b[w : w+int(n)])
		b = b[w+int(n):]
		return s, true
	}
	var ok1, ok2 bool
	t.A, ok1 = str()
	t.B, ok2 = str()
	if !ok1 || !ok2 {
		return Term{}, nil, bad
	}
	return t, b, nil
}

// DefaultSearchAttributes are the span and resource attributes indexed for
// search: the OpenTelemetry semantic conventions people filter by.
var DefaultSearchAttributes = []string{
	"http.request.method", "http.method", "http.response.status_code", "http.status_code", "http.route", "url.path",
	"rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code", "db.system", "db.system.name", "db.name",
	"messaging.system", "messaging.destination.name", "error.type", "peer.service", "server.address",
	"service.namespace", "service.version", "deployment.environment", "deployment.environment.name",
	"k8s.namespace.name", "k8s.pod.name", "k8s.deployment.name", "k8s.cluster.name", "host.name", "cloud.region",
}

// keySet is a set of attribute keys looked up without hashing a key
// whole: by a hash of its length and its first and last bytes, then compared
// with the few keys of that hash. A key is asked for every attribute of
// every span; most are not in the set and are told so by that hash alone.
type keySet [256][]string

func keyHash(k string) byte {
	if k == "" {
		return 0
	}
	return byte(len(k)*31) ^ k[0]*7 ^ k[len(k)-1]
}

func (s *keySet) add(k string) {
	if !s.has(k) {
		h := keyHash(k)
		s[h] = append(s[h], k)
	}
}

func (s *keySet) has(k string) bool {
	for _, x := range s[keyHash(k)] {
		if x == k {
			return true
		}
	}
	return false
}

// indexedKey reports whether attribute key k is indexed for search.
func (db *DB) indexedKey(k string) bool { return db.searchAttrs.has(k) }

// maxIndexedValue bounds the attribute values that are indexed.
const maxIndexedValue = 256

// posting is one trace's entry under a term: for its spans with the term
// in one request and second, their earliest start and their shortest and
// longest durations.
type posting struct {
	id             model.TraceID
	start          uint64 // ns
	minDur, maxDur uint64 // ns, rounded out to microseconds
}

// searchBatch is a request's search index, built before its spans move
// into frames: its traces (a posting names one by its ordinal here) and,
// per term, its postings by second.
type searchBatch struct {
	traces []model.TraceID
	starts []uint64 // each trace's earliest span start in the request, ns
	terms  []Term
	// entries sorted by term, bucket, trace ordinal; one per span and term
	// until aggregated.
	entries []searchEntry
}

type searchEntry struct {
	term           int32
	bucket         uint32
	trace          uint32
	start          uint64
	minDur, maxDur uint64
}

func serviceOf(res pcommon.Resource) string {
	if v, ok := res.Attributes().Get("service.name"); ok {
		return v.AsString()
	}
	return ""
}

// nsPerBucket is the width of a postings bucket: one second, so that a
// search of a busy moment decodes few postings it does not need.
const nsPerBucket = uint64(1e9)

// searchEntries computes a request's search index. Terms are interned and
// entries aggregated by sorting, so the cost is a few map lookups per span
// and no allocation per entry. An attribute that is not a KeyValue makes
// the request ErrInvalid.
func (db *DB) searchEntries(req *spanRequest) (*searchBatch, error) {
	var scratch []byte // an attribute value made text
	sb := &searchBatch{entries: getEntries(req.spanCount() * 8)}
	termIDs := map[Term]int32{}
	cache := new(termCache)
	traceIDs := map[model.TraceID]uint32{}
	// intern looks t up as it is (its strings may share the request's
	// bytes), in the cache first, and keeps a copy of a new one.
	intern := func(t Term) int32 {
		c := &cache[termSlot(t)]
		if c.ok && c.t == t {
			return c.id
		}
		id, ok := termIDs[t]
		if !ok {
			t = Term{t.Kind, strings.Clone(t.A), strings.Clone(t.B)}
			id = int32(len(sb.terms))
			termIDs[t] = id
			sb.terms = append(sb.terms, t)
		}
		c.t, c.id, c.ok = sb.terms[id], id, true
		return id
	}
	// attrTerms calls use with the term of each indexed attribute of msg
	// (its KeyValues in field num), of kind TermResAttr or TermSpanAttr.
	attrTerms := func(msg []byte, num protowire.Number, kind byte, use func(int32)) error {
		return eachAttribute(msg, num, func(key, value []byte) error {
			if !db.indexedKey(unsafeString(key)) {
				return nil
			}
			var s string
			var err error
			s, scratch, err = anyValueText(value, scratch)
			if err == nil && len(s) <= maxIndexedValue {
				use(intern(Term{kind, unsafeString(key), s}))
			}
			return err
		})
	}
	// The resource's terms (all spans, its service, its indexed
	// attributes) hold the same posting for a run of spans of one trace in
	// one second, as aggregateEntries would merge them: one entry each per
	// run.
	var resTerms []int32
	var run searchEntry
	inRun := false
	flush := func() {
		if inRun {
			for _, t := range resTerms {
				run.term = t
				sb.entries = append(sb.entries, run)
			}
			inRun = false
		}
	}
	res := int32(-1)
	for i := range req.spans {
		sp := &req.spans[i]
		if r := req.scopes[sp.scope].res; r != res {
			flush()
			res = r
			resTerms = append(resTerms[:0], intern(Term{Kind: TermAll}), intern(Term{TermService, req.res[r].service, ""}))
			err := attrTerms(req.res[r].resource, fieldResourceAttrs, TermResAttr, func(t int32) { resTerms = append(resTerms, t) })
			if err != nil {
				putEntries(sb.entries)
				return nil, fmt.Errorf("%w: resource_spans[%d].resource: %w", ErrInvalid, r, err)
			}
		}
		svc := req.res[res].service
		ord, ok := traceIDs[sp.trace]
		start, end := sp.start, sp.end
		if !ok {
			ord = uint32(len(sb.traces))
			traceIDs[sp.trace] = ord
			sb.traces = append(sb.traces, sp.trace)
			sb.starts = append(sb.starts, start)
		}
		sb.starts[ord] = min(sb.starts[ord], start)
		dur := end - min(end, start)
		e := searchEntry{bucket: uint32(min(start/nsPerBucket, math.MaxUint32)), trace: ord, start: start, minDur: dur, maxDur: dur}
		if inRun && run.trace == e.trace && run.bucket == e.bucket {
			run.start, run.minDur, run.maxDur = min(run.start, start), min(run.minDur, dur), max(run.maxDur, dur)
		} else {
			flush()
			run, inRun = e, true
		}
		add := func(t int32) {
			e.term = t
			sb.entries = append(sb.entries, e)
		}
		add(intern(Term{TermName, svc, unsafeString(sp.name)}))
		if sp.parent == [8]byte{} {
			add(intern(Term{TermRoot, svc, unsafeString(sp.name)}))
		}
		if sp.err {
			add(intern(Term{Kind: TermError}))
		}
		err := attrTerms(sp.body, fieldSpanAttributes, TermSpanAttr, add)
		if err != nil {
			putEntries(sb.entries)
			return nil, fmt.Errorf("%w: span %d of the request: %w", ErrInvalid, i, err)
		}
	}
	flush()
	sb.entries = aggregateEntries(sb.entries, len(sb.terms))
	return sb, nil
}

// termCache is a direct-mapped cache in front of a request's map of terms:
// a request's spans mostly repeat a few names and attribute values, found by
// a hash of a few of their bytes and one compare instead of a map's hash of
// both strings whole.
type termCache [256]struct {
	t  Term
	id int32
	ok bool
}

func termSlot(t Term) byte {
	h := t.Kind ^ byte(len(t.A)*7) ^ byte(len(t.B)*31)
	if n := len(t.A); n > 0 {
		h ^= t.A[n-1] * 13
	}
	if n := len(t.B); n > 0 {
		h ^= t.B[0]*3 ^ t.B[n-1]*5 ^ t.B[n/2]*11
	}
	return h
}

// aggregateEntries merges the entries of one (term, bucket, trace) and
// returns them sorted by term, bucket and trace: grouped by term first (a
// counting sort, which keeps span order), then each term's entries sorted
// by bucket and trace, equal neighbours merged.
func aggregateEntries(es []searchEntry, terms int) []searchEntry {
	offs := make([]int, terms+1)
	for i := range es {
		offs[es[i].term+1]++
	}
	for t := range terms {
		offs[t+1] += offs[t]
	}
	byTerm := getEntries(len(es))[:len(es)]
	defer putEntries(byTerm)
	next := slices.Clone(offs[:terms])
	for i := range es {
		t := es[i].term
		byTerm[next[t]] = es[i]
		next[t]++
	}
	out := es[:0]
	var keys []uint64
	for t := range terms {
		group := byTerm[offs[t]:offs[t+1]]
		keys = sortedByBucketAndTrace(group, keys[:0])
		for _, k := range keys {
			e := &group[k]
			if n := len(out); n > 0 && out[n-1].term == e.term && out[n-1].bucket == e.bucket && out[n-1].trace == e.trace {
				l := &out[n-1]
				l.start = min(l.start, e.start)
				l.minDur = min(l.minDur, e.minDur)
				l.maxDur = max(l.maxDur, e.maxDur)
				continue
			}
			out = append(out, *e)
		}
	}
	return out
}

// entryBufs recycles requests' search entries (tens of bytes per span and
// indexed term, the largest allocation of a trace write).
var entryBufs sync.Pool // *[]searchEntry

// getEntries returns an empty entry buffer with room for n.
func getEntries(n int) []searchEntry {
	if p, ok := entryBufs.Get().(*[]searchEntry); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]searchEntry, 0, n)
}

// putEntries gives es back for another request; it must not be used after.
func putEntries(es []searchEntry) {
	if cap(es) == 0 || cap(es) > 1<<18 {
		return
	}
	es = es[:0]
	entryBufs.Put(&es)
}

// Packed sort keys of one term's entries: the bucket's distance from the
// group's first (20 bits), the trace ordinal (22) and the entry's index
// (22), so that a group sorts as integers.
const (
	packedIndex  = 1<<22 - 1
	packedTraces = 1 << 22
	packedSpread = 1 << 20
)

// sortedByBucketAndTrace returns the indexes of group's entries in bucket
// then trace order (equal ones in group order), appended to keys.
func sortedByBucketAndTrace(group []searchEntry, keys []uint64) []uint64 {
	if len(group) == 0 {
		return keys
	}
	lo := group[0].bucket
	for i := range group {
		lo = min(lo, group[i].bucket)
	}
	packable := len(group) <= packedIndex
	for i := range group {
		e := &group[i]
		if !packable || e.bucket-lo >= packedSpread || e.trace >= packedTraces {
			packable = false
			break
		}
		keys = append(keys, uint64(e.bucket-lo)<<44|uint64(e.trace)<<22|uint64(i))
	}
	if packable {
		slices.Sort(keys)
		for i := range keys {
			keys[i] &= packedIndex
		}
		return keys
	}
	keys = keys[:0]
	for i := range group {
		keys = append(keys, uint64(i))
	}
	slices.SortStableFunc(keys, func(a, b uint64) int {
		x, y := &group[a], &group[b]
		return cmp.Or(cmp.Compare(x.bucket, y.bucket), cmp.Compare(x.trace, y.trace))
	})
	return keys
}

func termPrefix(t Term) []byte { return t.encode([]byte{nsSearchTerm}) }

func termKey(t Term, bucket uint32, seq uint64) []byte {
	k := termPrefix(t)
	k = binary.BigEndian.AppendUint32(k, ^bucket)
	return binary.BigEndian.AppendUint64(k, seq)
}

// batchTracesKey keys the trace ids of batch seq, in ordinal order
// (postings formats 1 and 2).
func batchTracesKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{nsSearchTraces}, seq)
}

// batchKey keys the traces of batch seq, their ids and starts (postings
// formats 3 and 4).
func batchKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{nsSearchBatch}, seq)
}

// batchTable is a batch's traces by ordinal, read in place: their ids
// and, from postings format 3 on, their earliest span starts (µs).
type batchTable struct {
	n      int
	ids    []byte // n × 16
	base   uint64 // the earliest start, µs
	width  int    // bytes of each start after base
	starts []byte // n × width, big-endian
}

func (t batchTable) id(i int) model.TraceID { return model.TraceID(t.ids[16*i:]) }

// start returns trace i's start in µs (format 3 tables only), false when
// it is past what a time can be.
func (t batchTable) start(i int) (uint64, bool) {
	var v uint64
	for _, c := range t.starts[t.width*i : t.width*(i+1)] {
		v = v<<8 | uint64(c)
	}
	us := t.base + v
	return us, us >= t.base && us <= math.MaxUint64/1000
}

// encodeBatchTable writes a batch's traces for postings of formats 3 and 4:
// uvarint(n), the ids, uvarint(the earliest start in µs), a width, then
// each start in µs after the earliest in that many bytes, big-endian — a
// fixed width, so that a reader finds a trace's start without decoding the
// others'.
func encodeBatchTable(ids []model.TraceID, starts []uint64) []byte {
	base := uint64(math.MaxUint64)
	for _, s := range starts {
		base = min(base, s/1000)
	}
	if len(starts) == 0 {
		base = 0
	}
	var most uint64
	for _, s := range starts {
		most = max(most, s/1000-base)
	}
	width := max(1, (bits.Len64(most)+7)/8)
	b := binary.AppendUvarint(make([]byte, 0, 12+len(ids)*(16+width)), uint64(len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	b = binary.AppendUvarint(b, base)
	b = append(b, byte(width))
	for _, s := range starts {
		v := s/1000 - base
		for i := width - 1; i >= 0; i-- {
			b = append(b, byte(v>>(8*i)))
		}
	}
	return b
}

// decodeBatchTable reads what encodeBatchTable wrote, in place.
func decodeBatchTable(b []byte) (batchTable, error) {
	bad := fmt.Errorf("%w: search batch traces", ErrCorrupt)
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w)/17 { // an id and a start byte each
		return batchTable{}, bad
	}
	b = b[w:]
	t := batchTable{n: int(n), ids: b[:16*n]}
	b = b[16*n:]
	if t.base, w = binary.Uvarint(b); w <= 0 || len(b) < w+1 {
		return batchTable{}, bad
	}
	t.width, b = int(b[w]), b[w+1:]
	if t.width < 1 || t.width > 8 || uint64(len(b)) != n*uint64(t.width) {
		return batchTable{}, bad
	}
	t.starts = b
	return t, nil
}

// idsTable is the 0x06 table of formats 1 and 2, read in place.
func idsTable(v []byte) (batchTable, error) {
	if len(v)%16 != 0 {
		return batchTable{}, fmt.Errorf("%w: traces of search batch", ErrCorrupt)
	}
	return batchTable{n: len(v) / 16, ids: v}, nil
}

// Postings values. The first form (written before postings format 2) starts
// with uvarint(n), never 0; later ones start with 0x00 and a format byte.
const (
	postingsV2    byte = 0x01 // ordinals as differences, durations as min and max − min
	postingsAlias byte = 0x02 // the same postings as another term's, same second and batch
	postingsV3    byte = 0x03 // and starts after the trace's start in the batch table (0x07)
	postingsV4    byte = 0x04 // and durations as codes of a log scale (durationCode)
)

// Durations in postings of format 4 are codes of a log scale with eight
// steps an octave: exact below 16 µs, then within 9 %. A posting's
// durations only prune a search's candidates (whose spans are then
// checked), so its shortest is rounded down to a code and its longest up;
// most spans' durations take a byte instead of two or three.
const (
	exactDurationCodes = 16
	// maxDurationCode is 2^52 µs (142 years); a longest duration coded
	// at or above it reads as unbounded.
	maxDurationCode = exactDurationCodes + (52-4)*8
)

// durationCode returns the code of a duration in µs, rounded down, or up.
func durationCode(us uint64, up bool) uint64 {
	if us < exactDurationCodes {
		return us
	}
	e := bits.Len64(us) - 1 // >= 4
	m := (us >> (e - 3)) & 7
	c := uint64(exactDurationCodes+(e-4)*8) + m
	if up && us&(1<<(e-3)-1) != 0 {
		c++
	}
	return min(c, maxDurationCode)
}

// codeDuration returns the duration in µs that a code stands for (at most
// maxDurationCode's).
func codeDuration(c uint64) uint64 {
	if c < exactDurationCodes {
		return c
	}
	c = min(c, maxDurationCode) - exactDurationCodes
	e, m := c/8+4, c%8
	return (8 + m) << (e - 3)
}

// postingsFormat is the format byte of a postings value (not an alias):
// 0 for the first format.
func postingsFormat(v []byte) byte {
	if len(v) >= 2 && v[0] == 0 {
		return v[1]
	}
	return 0
}

// encodePostings writes one term's entries of one bucket, sorted by trace
// ordinal, in format 4: the ordinal's difference from the one before, the
// start in µs after the trace's (starts, by ordinal: its earliest span's,
// in ns), the shortest duration's code rounded down and the longest's,
// rounded up, less the shortest's. Formats 2 and 3 (earlier builds) store
// the durations in µs; format 2 the start in µs into the bucket's second.
func encodePostings(es []searchEntry, starts []uint64) []byte {
	return encodePostingsIn(postingsV4, es, starts)
}

func encodePostingsIn(format byte, es []searchEntry, starts []uint64) []byte {
	base := uint64(es[0].bucket) * nsPerBucket
	b := binary.AppendUvarint(append(make([]byte, 0, 6+len(es)*7), 0, format), uint64(len(es)))
	prev := uint32(0)
	for _, e := range es {
		b = binary.AppendUvarint(b, uint64(e.trace-prev))
		prev = e.trace
		lo, hi := e.minDur/1000, e.maxDur/1000
		if e.maxDur%1000 != 0 { // rounded up, without overflowing near 2^64 ns
			hi++
		}
		if format == postingsV4 {
			lo, hi = durationCode(lo, false), durationCode(hi, true)
		}
		since := (e.start - min(e.start, base)) / 1000
		if format >= postingsV3 {
			since = e.start/1000 - starts[e.trace]/1000
		}
		b = binary.AppendUvarint(b, since)
		b = binary.AppendUvarint(b, lo)
		b = binary.AppendUvarint(b, hi-lo)
	}
	return b
}

// writePostingsFormat, when set, makes writes use postings of that format
// (2, with the 0x06 table, or 3; the format's number, not its byte) as
// earlier builds did (tests of reading them).
var writePostingsFormat atomic.Uint32

// aliasPostings is the value of a term whose postings in a second and batch
// are those of term t.
func aliasPostings(t Term) []byte { return t.encode([]byte{0, postingsAlias}) }

// postingsAliasOf returns the term whose postings v stands for, when v is
// an alias.
func postingsAliasOf(v []byte) (Term, bool, error) {
	if len(v) < 2 || v[0] != 0 || v[1] != postingsAlias {
		return Term{}, false, nil
	}
	t, rest, err := decodeTerm(v[2:])
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%w: search postings alias", ErrCorrupt)
	}
	return t, err == nil, err
}

// decodePostings calls f with each posting of v, a term's postings of one
// bucket in any format (not an alias), until f returns false. traces is the
// batch's table: from 0x06 for formats 1 and 2, from 0x07 (with starts)
// for formats 3 and 4.
func decodePostings(bucket uint32, b []byte, table batchTable, f func(p posting) bool) error {
	bad := fmt.Errorf("%w: search postings", ErrCorrupt)
	format := postingsFormat(b)
	v2 := format >= postingsV2 && format <= postingsV4 && format != postingsAlias
	switch {
	case format >= postingsV3 && table.width == 0:
		return bad
	case v2:
		b = b[2:]
	case len(b) > 0 && b[0] == 0:
		return bad
	}
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return bad
	}
	b = b[w:]
	base := uint64(bucket) * nsPerBucket
	ord := uint64(0)
	for range n {
		var vals [4]uint64
		for i := range vals {
			v, w := binary.Uvarint(b)
			if w <= 0 {
				return bad
			}
			vals[i], b = v, b[w:]
		}
		if v2 {
			ord += vals[0]
			if ord < vals[0] || vals[2]+vals[3] < vals[2] {
				return bad
			}
			vals[0], vals[3] = ord, vals[2]+vals[3]
		}
		unbounded := false
		if format == postingsV4 {
			if vals[3] > maxDurationCode {
				return bad
			}
			unbounded = vals[3] == maxDurationCode
			vals[2], vals[3] = codeDuration(vals[2]), codeDuration(vals[3])
		}
		if vals[0] >= uint64(table.n) || vals[1] > math.MaxUint64/1000 || vals[2] > math.MaxUint64/1000 || vals[3] > math.MaxUint64/1000 {
			return bad
		}
		start := base + vals[1]*1000
		if format >= postingsV3 {
			ts, ok := table.start(int(vals[0]))
			us := ts + vals[1]
			if !ok || us < ts || us > math.MaxUint64/1000 {
				return bad
			}
			start = us * 1000
		}
		maxDur := vals[3] * 1000
		if unbounded {
			maxDur = math.MaxUint64
		}
		if !f(posting{id: table.id(int(vals[0])), start: start, minDur: vals[2] * 1000, maxDur: maxDur}) {
			return nil
		}
	}
	if len(b) != 0 {
		return bad
	}
	return nil
}

// searchCatalog remembers the catalog terms written to the head partition,
// so each is written once per partition.
type searchCatalog struct {
	mu   sync.Mutex
	part string
	seen map[Term]struct{}
}

// fresh returns the terms not yet written to partition part.
func (c *searchCatalog) fresh(part string, terms []Term) []Term {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.part != part {
		c.part, c.seen = part, map[Term]struct{}{}
	}
	var out []Term
	for _, t := range terms {
		if _, ok := c.seen[t]; !ok {
			c.seen[t] = struct{}{}
			out = append(out, t)
		}
	}
	return out
}

// writeSearch adds a request's search index to the batch being written.
func (db *DB) writeSearch(p *partition, set func(k, v []byte), seq uint64, sb *searchBatch) {
	format := postingsV4
	switch writePostingsFormat.Load() {
	case 2:
		format = postingsV2
	case 3:
		format = postingsV3
	}
	if format == postingsV2 {
		ids := make([]byte, 0, 16*len(sb.traces))
		for _, id := range sb.traces {
			ids = append(ids, id[:]...)
		}
		set(batchTracesKey(seq), ids)
	} else {
		set(batchKey(seq), encodeBatchTable(sb.traces, sb.starts))
	}
	var catalog []Term
	// A term whose postings in a second are another's (a resource
	// attribute of a request with one resource, a value every span has)
	// is written as an alias of the first term with them.
	first := map[string]int32{}
	var same []byte
	for i := 0; i < len(sb.entries); {
		j := i + 1
		for j < len(sb.entries) && sb.entries[j].term == sb.entries[i].term && sb.entries[j].bucket == sb.entries[i].bucket {
			j++
		}
		e := sb.entries[i]
		t := sb.terms[e.term]
		val := encodePostingsIn(format, sb.entries[i:j], sb.starts)
		same = binary.BigEndian.AppendUint32(append(same[:0], val...), e.bucket)
		if other, ok := first[string(same)]; ok {
			if alias := aliasPostings(sb.terms[other]); len(alias) < len(val) {
				val = alias
			}
		} else {
			first[string(same)] = e.term
		}
		set(termKey(t, e.bucket, seq), val)
		i = j
	}
	for _, t := range sb.terms {
		if t.Kind != TermAll && t.Kind != TermError && t.Kind != TermRoot {
			catalog = append(catalog, t)
		}
	}
	for _, t := range db.catalog.fresh(p.name, catalog) {
		set(t.encode([]byte{nsSearchCat}), nil)
	}
}

// TraceSummary is what a search result shows of a trace.
type TraceSummary struct {
	TraceID     model.TraceID
	RootService string // empty when the root span has not arrived
	RootName    string
	Start, End  uint64 // unix ns
	SpanCount   int
	ErrorCount  int
	Services    []string
	// Matched are the spans that satisfied the search (at most
	// MaxMatched), when it had conditions on spans.
	Matched []MatchedSpan
	// MatchedCount counts every matching span.
	MatchedCount int
}

// MatchedSpan is a span that satisfied a search.
type MatchedSpan struct {
	SpanID     model.SpanID
	Service    string
	Name       string
	Start, End uint64
}

// TraceSearch says which traces to find.
type TraceSearch struct {
	// Start and End bound the matching spans' start times, unix ns.
	Start, End uint64
	// Drive is the index term the search walks, newest first: the most
	// selective one the query implies (zero: every trace).
	Drive Term
	// Also are terms that a matching span has too: candidates must have
	// them in the same bucket.
	Also []Term
	// MinDuration and MaxDuration (ns, 0: unbounded) prune candidates by
	// the durations of their spans with the Drive term, as the index
	// keeps them: rounded out to within an eighth. They never drop a
	// trace that meets them; Match is what checks them exactly.
	MinDuration, MaxDuration uint64
	// Match, when set, must hold for at least one span of a trace; the
	// candidate's spans are read to check it.
	Match func(res pcommon.Resource, span ptrace.Span) bool
	// Limit is the number of traces wanted.
	Limit int
	// MaxInspect bounds the candidates whose spans are read.
	MaxInspect int
	// MaxMatched bounds the matched spans returned per trace.
	MaxMatched int
}

// SearchResult is a search's answer.
type SearchResult struct {
	Traces []TraceSummary
	// Inspected counts the candidate traces whose spans were read.
	Inspected int
	// Partial is set when MaxInspect stopped the search before Limit.
	Partial bool
}

// SearchTraces finds traces newest first, from the search index: it walks
// the Drive term's postings second by second from End back to Start, in
// every partition that may hold them, prunes by duration, and checks Match
// on the spans of each candidate; summaries come from the spans.
func (db *DB) SearchTraces(ctx context.Context, q TraceSearch) (SearchResult, error) {
	if q.Limit <= 0 {
		q.Limit = 20
	}
	if r := db.opts.RemoteTraces; r != nil {
		return remoteSearch(ctx, r, q)
	}
	parts, err := db.snapshot()
	if err != nil {
		return SearchResult{}, err
	}
	if q.MaxMatched <= 0 {
		q.MaxMatched = 3
	}
	if q.Drive.Kind == 0 {
		q.Drive = Term{Kind: TermAll}
	}
	var live []*partition
	for _, p := range parts {
		if lo, hi := p.bounds(); hi != 0 && lo <= q.End && hi >= q.Start {
			live = append(live, p)
		}
	}
	var res SearchResult
	seen := map[model.TraceID]bool{}
	prefix := termPrefix(q.Drive)
	cur, last := uint32(min(q.End/nsPerBucket, math.MaxUint32)), uint32(min(q.Start/nsPerBucket, math.MaxUint32))
	// Bucket by bucket, newest first: the postings of one second from every
	// partition, ordered by start, are the next candidates. Seconds with no
	// postings are skipped by seeking.
	for {
		bucket, found := uint32(0), false
		for _, p := range live {
			err := p.view(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
				defer it.Close()
				it.Seek(binary.BigEndian.AppendUint32(slices.Clone(prefix), ^cur))
				if !it.Valid() {
					return nil
				}
				k := it.Item().Key()
				if len(k) != len(prefix)+12 {
					return fmt.Errorf("%w: search key of %d bytes", ErrCorrupt, len(k))
				}
				if m := ^binary.BigEndian.Uint32(k[len(prefix):]); !found || m > bucket {
					bucket, found = m, true
				}
				return nil
			})
			if err != nil {
				return res, wrapRead(err)
			}
		}
		if !found || bucket < last {
			break
		}
		cands, err := readBucket(live, prefix, bucket, func(ps posting) bool {
			return ps.start <= q.End && ps.start >= q.Start && ps.maxDur >= q.MinDuration && (q.MaxDuration == 0 || ps.minDur <= q.MaxDuration)
		})
		if err != nil {
			return res, err
		}
		// Traces must also have every Also term in the same bucket: the
		// conditions hold on one span, whose start puts all its terms in
		// one bucket.
		for _, t := range q.Also {
			if len(cands) == 0 {
				break
			}
			has, err := readBucket(live, termPrefix(t), bucket, func(posting) bool { return true })
			if err != nil {
				return res, err
			}
			in := make(map[model.TraceID]struct{}, len(has))
			for _, ps := range has {
				in[ps.id] = struct{}{}
			}
			cands = slices.DeleteFunc(cands, func(ps posting) bool { _, ok := in[ps.id]; return !ok })
		}
		// Newest first, taken from a heap: a busy second can hold many
		// more postings than a search needs, and sorting them all would
		// cost more than the search.
		h := postingHeap(cands)
		heap.Init(&h)
		cands = cands[:0:0]
		next := func() (posting, bool) {
			if h.Len() == 0 {
				return posting{}, false
			}
			return heap.Pop(&h).(posting), true
		}
		for c, more := next(); more; c, more = next() {
			if len(res.Traces) >= q.Limit {
				break
			}
			if seen[c.id] {
				continue
			}
			seen[c.id] = true
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("search traces: %w", err)
			}
			if q.Match != nil && q.MaxInspect > 0 && res.Inspected >= q.MaxInspect {
				res.Partial = true
				return res, nil
			}
			res.Inspected++
			td, err := db.traceSpans(ctx, parts, c.id) // all of it, wherever its other spans went
			if err != nil {
				return res, err
			}
			s, ok := summarize(c.id, td, q.Match, q.MaxMatched)
			if ok {
				res.Traces = append(res.Traces, s)
			}
		}
		if len(res.Traces) >= q.Limit || bucket == 0 || bucket <= last {
			break
		}
		cur = bucket - 1
	}
	return res, nil
}

// readBucket reads one term's postings of one bucket from every partition,
// keeping those keep accepts.
func readBucket(parts []*partition, prefix []byte, bucket uint32, keep func(posting) bool) ([]posting, error) {
	var out []posting
	for _, p := range parts {
		err := p.view(func(txn *badger.Txn) error {
			mp := binary.BigEndian.AppendUint32(slices.Clone(prefix), ^bucket)
			it := txn.NewIterator(badger.IteratorOptions{Prefix: mp})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()
				if len(k) != len(mp)+8 {
					return fmt.Errorf("%w: search key of %d bytes", ErrCorrupt, len(k))
				}
				seq := binary.BigEndian.Uint64(k[len(mp):])
				keepAll := func(ps posting) bool {
					if keep(ps) {
						out = append(out, ps)
					}
					return true
				}
				decode := func(v []byte) error {
					return withBatchTable(txn, seq, postingsFormat(v), func(table batchTable) error {
						return decodePostings(bucket, v, table, keepAll)
					})
				}
				err := it.Item().Value(func(v []byte) error {
					target, ok, err := postingsAliasOf(v)
					if err != nil {
						return err
					}
					if !ok {
						return decode(v)
					}
					// The same postings as target's, in this second and batch.
					item, err := txn.Get(termKey(target, bucket, seq))
					if err != nil {
						return fmt.Errorf("%w: search postings alias: %v", ErrCorrupt, err) //nolint:errorlint // Badger errors stay inside the store
					}
					return item.Value(func(v []byte) error {
						if _, ok, _ := postingsAliasOf(v); ok {
							return fmt.Errorf("%w: search postings alias of an alias", ErrCorrupt)
						}
						return decode(v)
					})
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, wrapRead(err)
		}
	}
	return out, nil
}

// postingHeap orders postings newest first.
type postingHeap []posting

func (h postingHeap) Len() int { return len(h) }
func (h postingHeap) Less(i, j int) bool {
	if h[i].start != h[j].start {
		return h[i].start > h[j].start
	}
	return bytes.Compare(h[i].id[:], h[j].id[:]) < 0
}
func (h postingHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *postingHeap) Push(x any)   { *h = append(*h, x.(posting)) }
func (h *postingHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// withBatchTable calls fn with the table of batch seq that postings of
// format name traces by — ids and starts (0x07) for formats 3 and 4, ids
// (0x06) before —, read in place: valid only during fn.
func withBatchTable(txn *badger.Txn, seq uint64, format byte, fn func(batchTable) error) error {
	key, decode := batchKey(seq), decodeBatchTable
	if format < postingsV3 || format == postingsAlias {
		key, decode = batchTracesKey(seq), idsTable
	}
	item, err := txn.Get(key)
	if err != nil {
		return fmt.Errorf("%w: traces of search batch %d: %v", ErrCorrupt, seq, err) //nolint:errorlint // Badger errors stay inside the store
	}
	return item.Value(func(v []byte) error {
		t, err := decode(v)
		if err != nil {
			return err
		}
		return fn(t)
	})
}

// summarize makes a trace's summary from its spans; with match, it lists
// the matching spans, and reports false when there are none.
func summarize(id model.TraceID, td ptrace.Traces, match func(pcommon.Resource, ptrace.Span) bool, maxMatched int) (TraceSummary, bool) {
	s := TraceSummary{TraceID: id}
	for _, rs := range td.ResourceSpans().All() {
		svc := serviceOf(rs.Resource())
		if !slices.Contains(s.Services, svc) {
			s.Services = append(s.Services, svc)
		}
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				start, end := uint64(sp.StartTimestamp()), uint64(sp.EndTimestamp())
				if s.SpanCount == 0 || start < s.Start {
					s.Start = start
				}
				s.End = max(s.End, end)
				s.SpanCount++
				if sp.Status().Code() == ptrace.StatusCodeError {
					s.ErrorCount++
				}
				if sp.ParentSpanID().IsEmpty() && s.RootName == "" {
					s.RootService, s.RootName = svc, sp.Name()
				}
				if match != nil && match(rs.Resource(), sp) {
					s.MatchedCount++
					s.Matched = append(s.Matched, MatchedSpan{SpanID: model.SpanID(sp.SpanID()), Service: svc, Name: sp.Name(), Start: start, End: end})
				}
			}
		}
	}
	slices.Sort(s.Services)
	// The first maxMatched by start time (then id), whatever order the
	// spans were stored or answered in.
	slices.SortFunc(s.Matched, func(a, b MatchedSpan) int {
		if c := cmp.Compare(a.Start, b.Start); c != 0 {
			return c
		}
		return bytes.Compare(a.SpanID[:], b.SpanID[:])
	})
	if len(s.Matched) > maxMatched {
		s.Matched = s.Matched[:maxMatched:maxMatched]
	}
	return s, s.SpanCount > 0 && (match == nil || s.MatchedCount > 0)
}

// traceSpans reads a trace's spans (not its logs) from every partition.
func (db *DB) traceSpans(ctx context.Context, parts []*partition, id model.TraceID) (ptrace.Traces, error) {
	td := ptrace.NewTraces()
	budget := db.traceBudget()
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return td, fmt.Errorf("read trace %s: %w", id, err)
		}
		if err := db.readTrace(p, id, td, plog.NewLogs(), &budget); err != nil {
			return td, err
		}
	}
	return td, nil
}

// SearchCatalog lists the catalog terms of a kind (and, when a is set,
// with that first field) in partitions overlapping [start, end], sorted
// and without duplicates: services, span names of a service, values of an
// indexed attribute.
func (db *DB) SearchCatalog(ctx context.Context, kind byte, a string, start, end uint64) ([]Term, error) {
	if db.opts.RemoteTraces != nil {
		return remoteCatalog(ctx, db.opts.RemoteTraces, kind, a)
	}
	parts, err := db.snapshot()
	if err != nil {
		return nil, err
	}
	prefix := []byte{nsSearchCat, kind}
	if a != "" {
		prefix = Term{Kind: kind, A: a}.encode([]byte{nsSearchCat})
		prefix = prefix[:len(prefix)-1] // without the empty b's length
	}
	seen := map[Term]struct{}{}
	for _, p := range parts {
		lo, hi := p.bounds()
		if hi == 0 || lo > end || hi < start {
			continue
		}
		err := p.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("search catalog: %w", err)
				}
				t, rest, err := decodeTerm(it.Item().Key()[1:])
				if err != nil || len(rest) != 0 {
					return fmt.Errorf("%w: catalog key", ErrCorrupt)
				}
				if a == "" || t.A == a {
					seen[t] = struct{}{}
				}
			}
			return nil
		})
		if err != nil {
			return nil, wrapRead(err)
		}
	}
	out := make([]Term, 0, len(seen))
	for t := range seen {
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y Term) int {
		if c := strings.Compare(x.A, y.A); c != 0 {
			return c
		}
		return strings.Compare(x.B, y.B)
	})
	return out, nil
}
