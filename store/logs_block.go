package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/internal/model"
)

// Log keys in a day partition (see store/FORMAT.md):
//
//	KEY: 0x40 ref[8]                                       -> stream labels
//	KEY: 0x41 uvarint(len) name uvarint(len) value ref[8]  -> empty (posting)
//	KEY: 0x42 ref[8] mint[8] maxt[8] seq[8]                -> block
//	KEY: 0x43 trace_id[16] ref[8] mint[8] maxt[8] seq[8]   -> empty: the block holds lines of the trace (earlier builds)
//	KEY: 0x44 trace_id[8:16] uvarint(seq)                  -> empty: block seq holds lines of a trace whose id ends so
//	KEY: 0x45 seq[8]                                       -> ref[8] mint[8] maxt[8] seq[8]: block seq's key
const (
	nsStream        byte = 0x40
	nsStreamPosting byte = 0x41
	nsLogBlock      byte = 0x42
	nsLogTrace      byte = 0x43
	nsLogTraceTail  byte = 0x44
	nsLogBlockSeq   byte = 0x45
)

var streamIndex = labelIndex{sets: nsStream, postings: nsStreamPosting, what: "stream"}

// LogEntry is one log line of a stream.
type LogEntry struct {
	// T is the line's time, unix nanoseconds.
	T    int64
	Line string
	// Metadata is the line's structured metadata (Loki), or for OTLP
	// records their attributes, severity and ids.
	Metadata labels.Labels
	// TraceID and SpanID link the line to a trace: from OTLP fields, or
	// found in the metadata, the stream's labels or the line (logids).
	TraceID model.TraceID
	SpanID  model.SpanID
}

// LogStream is a set of lines that share their labels.
type LogStream struct {
	Labels  labels.Labels
	Entries []LogEntry
}

// blockRef names a block: its stream, its time range and its batch.
type blockRef struct {
	ref        uint64
	mint, maxt int64
	seq        uint64
}

const blockRefLen = 32

func (b blockRef) appendTo(k []byte) []byte {
	k = binary.BigEndian.AppendUint64(k, b.ref)
	k = binary.BigEndian.AppendUint64(k, sortableTime(b.mint))
	k = binary.BigEndian.AppendUint64(k, sortableTime(b.maxt))
	return binary.BigEndian.AppendUint64(k, b.seq)
}

func parseBlockRef(b []byte) blockRef {
	return blockRef{
		ref:  binary.BigEndian.Uint64(b[0:8]),
		mint: int64(binary.BigEndian.Uint64(b[8:16]) ^ (1 << 63)),
		maxt: int64(binary.BigEndian.Uint64(b[16:24]) ^ (1 << 63)),
		seq:  binary.BigEndian.Uint64(b[24:32]),
	}
}

func logBlockKey(b blockRef) []byte {
	return b.appendTo(append(make([]byte, 0, 1+blockRefLen), nsLogBlock))
}

func logBlockPrefix(ref uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{nsLogBlock}, ref)
}

func parseLogBlockKey(k []byte) (blockRef, error) {
	if len(k) != 1+blockRefLen || k[0] != nsLogBlock {
		return blockRef{}, fmt.Errorf("%w: log block key of %d bytes", ErrCorrupt, len(k))
	}
	return parseBlockRef(k[1:]), nil
}

func logTraceKey(id model.TraceID, b blockRef) []byte {
	k := make([]byte, 0, 1+16+blockRefLen)
	k = append(k, nsLogTrace)
	k = append(k, id[:]...)
	return b.appendTo(k)
}

func logTracePrefix(id model.TraceID) []byte { return append([]byte{nsLogTrace}, id[:]...) }

// The trace index of a partition's blocks: a key per trace and block
// naming the block by its seq alone, and a key per block with at least one
// trace id naming the block's key. A 0x43 key (earlier builds wrote them;
// they are still read) repeated the whole block key after the whole id and
// took 44 bytes on disk a trace and block on the benchmark's lines; a 0x44
// key takes 21. It keeps the last 8 bytes of an id, the random part in
// every id scheme (W3C's, 64-bit ids padded with zeros in front, X-Ray's
// with a time in front); a block that another id ending the same way names
// is read and its lines filtered out.

const logTraceTailLen = 8

func logTraceTailPrefix(id model.TraceID) []byte {
	return append([]byte{nsLogTraceTail}, id[16-logTraceTailLen:]...)
}

func logTraceTailKey(id model.TraceID, seq uint64) []byte {
	return binary.AppendUvarint(logTraceTailPrefix(id), seq)
}

func parseLogTraceTailKey(k []byte) (uint64, error) {
	if len(k) < 1+logTraceTailLen+1 || k[0] != nsLogTraceTail {
		return 0, fmt.Errorf("%w: log trace key of %d bytes", ErrCorrupt, len(k))
	}
	seq, n := binary.Uvarint(k[1+logTraceTailLen:])
	if n <= 0 || 1+logTraceTailLen+n != len(k) {
		return 0, fmt.Errorf("%w: log trace key %x: bad block seq", ErrCorrupt, k)
	}
	return seq, nil
}

func logBlockSeqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{nsLogBlockSeq}, seq)
}

// parseLogBlockSeq reads the value of 0x45 seq: the block's key.
func parseLogBlockSeq(seq uint64, v []byte) (blockRef, error) {
	if len(v) != blockRefLen {
		return blockRef{}, fmt.Errorf("%w: block %d's key of %d bytes", ErrCorrupt, seq, len(v))
	}
	br := parseBlockRef(v)
	if br.seq != seq {
		return blockRef{}, fmt.Errorf("%w: block %d's key names block %d", ErrCorrupt, seq, br.seq)
	}
	return br, nil
}

func parseLogTraceKey(k []byte) (blockRef, error) {
	if len(k) != 1+16+blockRefLen || k[0] != nsLogTrace {
		return blockRef{}, fmt.Errorf("%w: log trace key of %d bytes", ErrCorrupt, len(k))
	}
	return parseBlockRef(k[17:]), nil
}

// Block payload, compressed as a whole with zstd (frame codec 0x03). Entries
// are sorted by time; like things sit together so the compressor sees runs.
//
//	payload := uvarint(n) times flags ids levels stamps metadata lengths lines
//	times   := n × uvarint(t − previous t)         the first against the block's mint
//	flags   := n × byte: 1 trace id, 2 span id, 4 metadata, 8 level,
//	           16 trace id in the line, 32 span id in the line, 64 the
//	           line holds '\n' (its length is given), 128 a stamp
//	ids     := of each entry in order: trace_id[16] (flag 1) or uvarint(offset
//	           of its 32 hex digits in the line) (16), then span_id[8] (2) or
//	           uvarint(offset of its 16 hex digits) (32)
//	levels  := of each entry flagged 8: one byte, its detected_level (blockLevels)
//	stamps  := of each entry flagged 128: uvarint(offset) digits[1]
//	           varint(stamp time − entry time): the RFC 3339 time taken
//	           from its line (logs_stamp.go)
//	metadata:= labels (as for 0x40) of each entry flagged 4, in order, without
//	           a detected_level given by flag 8
//	lengths := n × uvarint(len(line))
//	lines   := the lines, back to back
//
// Blocks written now start with a 0 byte (separatedBlock) and end each line
// with '\n' instead of listing every length: lengths holds only those of
// lines flagged 64, which contain '\n' themselves. A length column of
// random-looking numbers compresses worse than a line end the compressor
// mostly matches with the line's own shape.
//
// Flags 8, 16 and 32 came later (blocks without them read the same): most
// lines carry only a detected_level, and a line's ids are usually written in
// it, so neither is stored twice. Flag 128 (separated blocks) came later
// still: a line that writes its own time in RFC 3339 stores it as a stamp,
// the line with the time's text blanked to zeros of the same length
// ("0000-00-00T00:00:00.000Z"), written back in place when read.
const codecZstdLogBlock byte = 3

const (
	flagTrace    byte = 1
	flagSpan     byte = 2
	flagMetadata byte = 4
	// Blocks only, not the WAL:
	flagLevel       byte = 8
	flagTraceInLine byte = 16
	flagSpanInLine  byte = 32
	flagMultiline   byte = 64  // separated blocks: the line holds '\n', its length is given
	flagTimeInLine  byte = 128 // separated blocks: the line's time is a stamp
	blockFlags           = flagTrace | flagSpan | flagMetadata | flagLevel | flagTraceInLine | flagSpanInLine

	// separatedBlock starts a block whose lines each end in '\n' (no
	// entry count is 0, so v1 blocks never start with it).
	separatedBlock byte = 0
)

// LevelLabel is the structured-metadata field ingest sets on every line
// (ingest/logfields); blockLevels are the values a block stores as a byte.
const LevelLabel = "detected_level"

var blockLevels = [...]string{"trace", "debug", "info", "warn", "error", "critical", "fatal", "unknown"}

// levelOnly[i] is the metadata of a line that has nothing but level i:
// shared by every such line read.
var levelOnly = func() (ls [len(blockLevels)]labels.Labels) {
	for i, l := range blockLevels {
		ls[i] = labels.FromStrings(LevelLabel, l)
	}
	return ls
}()

// LevelOnly is the metadata of a line that has nothing but level lvl, one
// label set shared by every such line, for the levels a block stores as a
// byte; false for any other level.
func LevelOnly(lvl string) (labels.Labels, bool) {
	code, ok := levelCode(lvl)
	if !ok {
		return labels.EmptyLabels(), false
	}
	return levelOnly[code], true
}

func levelCode(v string) (byte, bool) {
	for i, l := range blockLevels {
		if l == v {
			return byte(i), true
		}
	}
	return 0, false
}

// sortEntries orders entries by time, then line, and drops exact
// duplicates (same time, line, ids and metadata), as Loki drops a line
// pushed twice: a request retried after a lost answer, or a WAL replayed
// after its blocks were written, stores a line once.
func sortEntries(es []LogEntry) []LogEntry {
	slices.SortStableFunc(es, compareEntries)
	return slices.CompactFunc(es, func(a, b LogEntry) bool { return compareEntries(a, b) == 0 })
}

func compareEntries(a, b LogEntry) int {
	if c := cmp.Compare(a.T, b.T); c != 0 {
		return c
	}
	if c := strings.Compare(a.Line, b.Line); c != 0 {
		return c
	}
	if c := bytes.Compare(a.TraceID[:], b.TraceID[:]); c != 0 {
		return c
	}
	if c := bytes.Compare(a.SpanID[:], b.SpanID[:]); c != 0 {
		return c
	}
	return labels.Compare(a.Metadata, b.Metadata)
}

// encodeBlock encodes sorted entries; mint is es[0].T.
func encodeBlock(es []LogEntry) []byte {
	// Room for a line, its time, flags, length, ids and a short label set
	// or two: one allocation for most blocks.
	size := 16
	for i := range es {
		size += len(es[i].Line) + 64
	}
	b := make([]byte, 0, size)
	b = append(b, separatedBlock)
	b = binary.AppendUvarint(b, uint64(len(es)))
	prev := es[0].T
	for i := range es {
		b = binary.AppendUvarint(b, uint64(es[i].T-prev))
		prev = es[i].T
	}
	type where struct {
		trace, span int // offsets of the ids' hex digits in the line; -1: not there
		f, level    byte
		md          labels.Labels // the metadata to store
		stampOff    int           // with flagTimeInLine: where the stamp is
		digits      byte
		delta       int64
	}
	ws := make([]where, len(es))
	var stamps stampFinder
	for i := range es {
		e, w := &es[i], &ws[i]
		w.trace, w.span, w.md = -1, -1, e.Metadata
		var f byte
		if !e.TraceID.IsEmpty() {
			if w.trace = hexIndex(e.Line, e.TraceID[:]); w.trace >= 0 {
				f |= flagTraceInLine
			} else {
				f |= flagTrace
			}
		}
		if !e.SpanID.IsEmpty() {
			if w.span = hexIndex(e.Line, e.SpanID[:]); w.span >= 0 {
				f |= flagSpanInLine
			} else {
				f |= flagSpan
			}
		}
		if lvl := e.Metadata.Get(LevelLabel); lvl != "" {
			if code, ok := levelCode(lvl); ok {
				f |= flagLevel
				w.level = code
				if e.Metadata.Len() == 1 {
					w.md = labels.EmptyLabels()
				} else {
					w.md = labels.NewBuilder(e.Metadata).Del(LevelLabel).Labels()
				}
			}
		}
		if !w.md.IsEmpty() {
			f |= flagMetadata
		}
		if strings.IndexByte(e.Line, '\n') >= 0 {
			f |= flagMultiline
		}
		// A stamp is written back after the ids are read from the line's
		// blank: it may not overlap them (an id glued to a year).
		if off, n, digits, delta, ok := stamps.find(e.Line, e.T); ok && !spansOverlap(off, n, w.trace, 32) && !spansOverlap(off, n, w.span, 16) {
			f |= flagTimeInLine
			w.stampOff, w.digits, w.delta = off, digits, delta
		}
		w.f = f
		b = append(b, f)
	}
	for i := range es {
		switch w := &ws[i]; {
		case w.trace >= 0:
			b = binary.AppendUvarint(b, uint64(w.trace))
		case !es[i].TraceID.IsEmpty():
			b = append(b, es[i].TraceID[:]...)
		}
		switch w := &ws[i]; {
		case w.span >= 0:
			b = binary.AppendUvarint(b, uint64(w.span))
		case !es[i].SpanID.IsEmpty():
			b = append(b, es[i].SpanID[:]...)
		}
	}
	for i := range ws {
		if ws[i].f&flagLevel != 0 {
			b = append(b, ws[i].level)
		}
	}
	for i := range ws {
		if w := &ws[i]; w.f&flagTimeInLine != 0 {
			b = binary.AppendUvarint(b, uint64(w.stampOff))
			b = append(b, w.digits)
			b = binary.AppendVarint(b, w.delta)
		}
	}
	for i := range ws {
		if !ws[i].md.IsEmpty() {
			b = encodeLabels(b, ws[i].md)
		}
	}
	for i := range es {
		if ws[i].f&flagMultiline != 0 {
			b = binary.AppendUvarint(b, uint64(len(es[i].Line)))
		}
	}
	for i := range es {
		line := es[i].Line
		if w := &ws[i]; w.f&flagTimeInLine != 0 {
			b = append(b, line[:w.stampOff]...)
			b = append(b, blankStamp(w.digits)...)
			line = line[w.stampOff+stampLen(w.digits):]
		}
		b = append(append(b, line...), '\n')
	}
	return b
}

// hexIndex is where id is written in line as hex digits (lowercase, or
// else uppercase), or -1.
func hexIndex(line string, id []byte) int {
	if len(line) < 2*len(id) {
		return -1
	}
	var buf [32]byte
	h := buf[:2*len(id)]
	hex.Encode(h, id)
	if i := strings.Index(line, unsafe.String(unsafe.SliceData(h), len(h))); i >= 0 {
		return i
	}
	if i := strings.Index(line, strings.ToUpper(string(h))); i >= 0 {
		return i
	}
	return -1
}

// decodeBlock decodes a block payload; mint is from its key.
func decodeBlock(b []byte, mint int64, sb *labels.ScratchBuilder) ([]LogEntry, error) {
	return decodeBlockLines(b, mint, sb, false, nil)
}

// decodeBlockView decodes a block payload with each line a view into b,
// not a copy: for a reader that filters lines and clones the few it
// keeps. b must not change while the lines are in use, and is written:
// each stamp goes back over its blank (logs_stamp.go), so b decodes once.
func decodeBlockView(b []byte, mint int64, sb *labels.ScratchBuilder, only *model.TraceID) ([]LogEntry, error) {
	return decodeBlockLines(b, mint, sb, true, only)
}

// blockParts are a log block's sections (store/FORMAT.md), found by one
// walk of its layout that checks every length: decodeBlockLines builds the
// lines from them, sumBlock counts them.
type blockParts struct {
	separated bool   // the layout whose lines end in '\n' (a leading 0x00)
	times     []byte // a uvarint per line: its time after the previous one's
	flags     []byte // a byte per line
	ids       []byte // per flags: trace and span ids, raw or as offsets in the line
	levels    []byte // a byte per line with flagLevel: its index in blockLevels
	stamps    []byte // per line with flagTimeInLine: its stamp
	metadata  []byte // per line with flagMetadata: its labels' encoding
	lengths   []byte // a uvarint per line (separated: per line with flagMultiline)
	lines     []byte
}

func badBlock(what string) error { return fmt.Errorf("%w: log block: %s", ErrCorrupt, what) }

// splitBlock walks a block payload into its sections.
func splitBlock(b []byte) (blockParts, error) {
	var p blockParts
	allowed := blockFlags
	if p.separated = len(b) > 0 && b[0] == separatedBlock; p.separated {
		b, allowed = b[1:], blockFlags|flagMultiline|flagTimeInLine
	}
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > uint64(len(b)) {
		return p, badBlock("entry count")
	}
	b = b[w:]
	rest := b
	for range n {
		_, w := binary.Uvarint(b)
		if w <= 0 {
			return p, badBlock("time")
		}
		b = b[w:]
	}
	p.times = rest[:len(rest)-len(b)]
	if uint64(len(b)) < n {
		return p, badBlock("flags")
	}
	p.flags, b = b[:n], b[n:]
	rest = b
	for _, f := range p.flags {
		if f&^allowed != 0 || f&(flagTrace|flagTraceInLine) == flagTrace|flagTraceInLine || f&(flagSpan|flagSpanInLine) == flagSpan|flagSpanInLine {
			return p, badBlock("flag")
		}
		for _, id := range [2]struct {
			raw, inLine byte
			n           int
		}{{flagTrace, flagTraceInLine, 16}, {flagSpan, flagSpanInLine, 8}} {
			switch {
			case f&id.raw != 0:
				if len(b) < id.n {
					return p, badBlock("id")
				}
				b = b[id.n:]
			case f&id.inLine != 0:
				_, w := binary.Uvarint(b)
				if w <= 0 {
					return p, badBlock("id offset")
				}
				b = b[w:]
			}
		}
	}
	p.ids, rest = rest[:len(rest)-len(b)], b
	for _, f := range p.flags {
		if f&flagLevel != 0 {
			if len(b) == 0 || int(b[0]) >= len(blockLevels) {
				return p, badBlock("level")
			}
			b = b[1:]
		}
	}
	p.levels, rest = rest[:len(rest)-len(b)], b
	for _, f := range p.flags {
		if f&flagTimeInLine != 0 {
			_, w := binary.Uvarint(b)
			if w <= 0 || w >= len(b) || b[w] > 9 {
				return p, badBlock("stamp")
			}
			b = b[w+1:]
			if _, w = binary.Varint(b); w <= 0 {
				return p, badBlock("stamp")
			}
			b = b[w:]
		}
	}
	p.stamps, rest = rest[:len(rest)-len(b)], b
	for _, f := range p.flags {
		if f&flagMetadata != 0 {
			after, err := skipLabels(b)
			if err != nil {
				return p, fmt.Errorf("log block metadata: %w", err)
			}
			b = after
		}
	}
	p.metadata, rest = rest[:len(rest)-len(b)], b
	var total uint64
	for _, f := range p.flags {
		if p.separated && f&flagMultiline == 0 {
			continue
		}
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)) {
			return p, badBlock("line length")
		}
		total += l
		b = b[w:]
	}
	p.lengths = rest[:len(rest)-len(b)]
	if !p.separated && total != uint64(len(b)) {
		return p, badBlock("lines")
	}
	if p.separated && uint64(len(b)) < n {
		return p, badBlock("lines")
	}
	p.lines = b
	return p, nil
}

// decodeBlockLines decodes a block; with only set, the structured metadata
// of lines of other traces is skipped, not decoded (their Metadata is
// empty) and their stamps are not written back (their Line holds the
// blank: logs_stamp.go), as a trace's lookup reads just its own lines. A
// view's stamps are written into b.
func decodeBlockLines(b []byte, mint int64, sb *labels.ScratchBuilder, view bool, only *model.TraceID) ([]LogEntry, error) {
	p, err := splitBlock(b)
	if err != nil {
		return nil, err
	}
	es := make([]LogEntry, len(p.flags))
	t, times := mint, p.times
	for i := range es {
		d, w := binary.Uvarint(times) // checked by splitBlock
		t += int64(d)
		es[i].T, times = t, times[w:]
	}
	// Offsets of ids written in their lines, resolved once the lines are.
	type inLine struct {
		i           int
		trace, span uint64
	}
	var offs []inLine
	ids := p.ids
	for i, f := range p.flags {
		o := inLine{i: i, trace: math.MaxUint64, span: math.MaxUint64}
		switch {
		case f&flagTrace != 0:
			es[i].TraceID, ids = model.TraceID(ids[:16]), ids[16:]
		case f&flagTraceInLine != 0:
			v, w := binary.Uvarint(ids)
			o.trace, ids = v, ids[w:]
		}
		switch {
		case f&flagSpan != 0:
			es[i].SpanID, ids = model.SpanID(ids[:8]), ids[8:]
		case f&flagSpanInLine != 0:
			v, w := binary.Uvarint(ids)
			o.span, ids = v, ids[w:]
		}
		if f&(flagTraceInLine|flagSpanInLine) != 0 {
			offs = append(offs, o)
		}
	}
	buf := p.lines // stamps are written into it, the lines are views of it
	if !view {
		buf = bytes.Clone(p.lines) // one allocation for every line of the block
	}
	all := unsafe.String(unsafe.SliceData(buf), len(buf))
	lengths := p.lengths
	for i, f := range p.flags {
		var l uint64
		if !p.separated || f&flagMultiline != 0 {
			var w int
			l, w = binary.Uvarint(lengths) // checked by splitBlock
			lengths = lengths[w:]
		}
		if !p.separated {
			es[i].Line, all = all[:l], all[l:]
			continue
		}
		// A line ends at its '\n', or after its given length.
		if f&flagMultiline == 0 {
			j := strings.IndexByte(all, '\n')
			if j < 0 {
				return nil, badBlock("line without its end")
			}
			l = uint64(j)
		}
		if l >= uint64(len(all)) || all[l] != '\n' {
			return nil, badBlock("line without its end")
		}
		es[i].Line, all = all[:l], all[l+1:]
	}
	if p.separated && len(all) != 0 {
		return nil, badBlock("bytes after the last line")
	}
	for _, o := range offs {
		e := &es[o.i]
		if o.trace != math.MaxUint64 && !hexAt(e.Line, o.trace, e.TraceID[:]) {
			return nil, badBlock("trace id in the line")
		}
		if o.span != math.MaxUint64 && !hexAt(e.Line, o.span, e.SpanID[:]) {
			return nil, badBlock("span id in the line")
		}
	}
	// Stamps, once the lines' trace ids are known: a trace's lookup writes
	// only its own.
	var sw stampWriter
	stamps := p.stamps
	for i, f := range p.flags {
		if f&flagTimeInLine == 0 {
			continue
		}
		off, digits, delta := nextStamp(&stamps)
		if only != nil && es[i].TraceID != *only {
			continue
		}
		start := int(uintptr(unsafe.Pointer(unsafe.StringData(es[i].Line))) - uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
		if err := writeStamp(buf[start:start+len(es[i].Line)], es[i].T, off, digits, delta, &sw); err != nil {
			return nil, err
		}
	}
	next, mds := 0, p.metadata
	for i, f := range p.flags {
		var lvl labels.Labels
		if f&flagLevel != 0 {
			lvl, next = levelOnly[p.levels[next]], next+1
		}
		var md []byte
		if f&flagMetadata != 0 {
			after, _ := skipLabels(mds) // checked by splitBlock
			md, mds = mds[:len(mds)-len(after)], after
		}
		if only != nil && es[i].TraceID != *only {
			continue // another trace's metadata is not decoded
		}
		switch {
		case md == nil:
			es[i].Metadata = lvl
		default:
			ls, _, err := decodeLabels(md, sb)
			if err != nil {
				return nil, fmt.Errorf("log block metadata: %w", err)
			}
			if f&flagLevel != 0 {
				if ls.Has(LevelLabel) {
					return nil, badBlock("level given twice")
				}
				ls = labels.NewBuilder(ls).Set(LevelLabel, lvl.Get(LevelLabel)).Labels()
			}
			es[i].Metadata = ls
		}
	}
	return es, nil
}

// nextStamp reads the stamp at the start of *b (checked by splitBlock).
func nextStamp(b *[]byte) (off uint64, digits byte, delta int64) {
	off, w := binary.Uvarint(*b)
	digits = (*b)[w]
	delta, w2 := binary.Varint((*b)[w+1:])
	*b = (*b)[w+1+w2:]
	return off, digits, delta
}

// writeStamp writes a stamp into the line of an entry at t, in place of the
// blank it was stored as.
func writeStamp(line []byte, t int64, off uint64, digits byte, delta int64, sw *stampWriter) error {
	at, ok := stampAt(t, delta)
	n := uint64(stampLen(digits))
	if !ok || off > uint64(len(line)) || uint64(len(line))-off < n || string(line[off:off+n]) != blankStamp(digits) {
		return badBlock("stamp")
	}
	sw.append(line[off:off], at, digits)
	return nil
}

// spansOverlap tells whether [a, a+n) and [b, b+m) overlap; b < 0 is none.
func spansOverlap(a, n, b, m int) bool { return b >= 0 && a < b+m && b < a+n }

// hexAt decodes the 2×len(id) hex digits at off in line into id; false
// when they are not there, not hex, or all zeros (an id never is).
func hexAt(line string, off uint64, id []byte) bool {
	if off > uint64(len(line)) || uint64(len(line))-off < uint64(2*len(id)) {
		return false
	}
	if _, err := hex.Decode(id, unsafe.Slice(unsafe.StringData(line[off:]), 2*len(id))); err != nil {
		return false
	}
	for _, c := range id {
		if c != 0 {
			return true
		}
	}
	return false
}
