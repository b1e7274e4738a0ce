package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// The decimal chunk: float samples whose values are all decimals with at
// most 15 fractional digits (what a scrape of "20.3" or "1234" gives),
// stored as integer mantissas under one power of ten, with the
// timestamps' and the mantissas' differences bit-packed at the width the
// chunk needs. A gauge that wanders by tenths takes about a byte a sample
// instead of the 5–8 of XOR; constants and steady counters take a few bits.
// It is lossless: a chunk is stored decimal only if every value comes back
// bit for bit, and only if it is smaller than the XOR chunk it replaces.
// Head chunks stay XOR (appendable); a chunk is re-encoded when it is cut.
// No library in our dependency set does this losslessly: Prometheus'
// encodings are XOR-based, and VictoriaMetrics' decimal encoding rounds
// values to 12 significant digits.
//
//	chunk := uvarint(n) varint(t0) [varint(t1-t0)] width(ts) packed(zigzag(dod of t), n-2)
//	         exp[1] mode[1] varint(m0) [varint(m1-m0) if mode 1]
//	         width(v) packed(zigzag(residual))
//
// value i = m_i / 10^exp; mode 0 packs m_i - m_{i-1} (n-1 of them),
// mode 1 packs their differences (n-2). width is one byte, 0..64 bits.
const encDecimal chunkenc.Encoding = 0x81

const (
	maxDecimalExp      = 15
	maxExactMantissa   = 1 << 53
	maxDecimalSamples  = math.MaxUint16
	decimalModeDelta   = 0
	decimalModeDoubleD = 1
)

var pow10 = func() (p [maxDecimalExp + 1]float64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// decimalExp returns the smallest exponent e such that v = m / 10^e for an
// integer m below 2^53, and false if there is none.
func decimalExp(v float64) (int, bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) || (v == 0 && math.Signbit(v)) {
		return 0, false
	}
	for e := 0; e <= maxDecimalExp; e++ {
		m := math.Round(v * pow10[e])
		if math.Abs(m) >= maxExactMantissa {
			return 0, false
		}
		if m/pow10[e] == v {
			return e, true
		}
	}
	return 0, false
}

// encodeDecimalChunk encodes float samples (times ascending) as a decimal
// chunk, or returns false when the values are not all decimals.
func encodeDecimalChunk(ts []int64, vs []float64) ([]byte, bool) {
	var sc decimalScratch
	return sc.appendDecimalChunk(nil, ts, vs)
}

// decimalScratch holds the arrays a chunk's compaction works in, reused
// from chunk to chunk so that compacting a checkpoint's chunks leaves no
// garbage but the values written.
type decimalScratch struct {
	ts, ms, d1, d2 []int64
	vs             []float64
	out            []byte
	it             chunkenc.Iterator
}

// appendDecimalChunk appends the decimal chunk of float samples (times
// ascending) to b, or returns false when the values are not all decimals.
func (sc *decimalScratch) appendDecimalChunk(b []byte, ts []int64, vs []float64) ([]byte, bool) {
	n := len(ts)
	if n == 0 || n > maxDecimalSamples {
		return nil, false
	}
	exp := 0
	for _, v := range vs {
		e, ok := decimalExp(v)
		if !ok {
			return nil, false
		}
		exp = max(exp, e)
	}
	ms := slices.Grow(sc.ms[:0], n)[:n]
	sc.ms = ms
	for i, v := range vs {
		m := math.Round(v * pow10[exp])
		if math.Abs(m) >= maxExactMantissa || m/pow10[exp] != v {
			return nil, false
		}
		ms[i] = int64(m)
	}
	b = slices.Grow(b, 32+n*2)
	b = binary.AppendUvarint(b, uint64(n))
	b = binary.AppendVarint(b, ts[0])
	if n > 1 {
		b = binary.AppendVarint(b, ts[1]-ts[0])
	}
	b = appendPacked(b, sc.secondDifferences(ts))
	b = append(b, byte(exp))
	dods := sc.secondDifferences(ms)
	deltas := sc.d1
	if packedWidth(dods) < packedWidth(deltas) {
		b = append(b, decimalModeDoubleD)
		b = binary.AppendVarint(b, ms[0])
		if n > 1 {
			b = binary.AppendVarint(b, ms[1]-ms[0])
		}
		b = appendPacked(b, dods)
	} else {
		b = append(b, decimalModeDelta)
		b = binary.AppendVarint(b, ms[0])
		b = appendPacked(b, deltas)
	}
	return b, true
}

// secondDifferences returns the differences of x's differences, in the
// scratch's second array (its first holds the differences).
func (sc *decimalScratch) secondDifferences(x []int64) []int64 {
	sc.d1 = appendDifferences(sc.d1[:0], x)
	sc.d2 = appendDifferences(sc.d2[:0], sc.d1)
	return sc.d2
}

// appendDifferences appends x[i]-x[i-1] for i >= 1 to dst.
func appendDifferences(dst, x []int64) []int64 {
	for i := 1; i < len(x); i++ {
		dst = append(dst, x[i]-x[i-1])
	}
	return dst
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func packedWidth(x []int64) int {
	var or uint64
	for _, v := range x {
		or |= zigzag(v)
	}
	return bits.Len64(or)
}

// appendPacked writes the width, then every value zigzagged in width bits,
// most significant bit first.
func appendPacked(b []byte, x []int64) []byte {
	w := packedWidth(x)
	bw := bitWriter{b: append(b, byte(w))}
	for _, v := range x {
		bw.write(zigzag(v), w)
	}
	return bw.b
}

// bitWriter appends values of a given width in bits to b, most significant
// bit first, each starting where the one before ended.
type bitWriter struct {
	b    []byte
	free int // bits still free in the last byte
}

// write appends the w low bits of u (w <= 64).
func (bw *bitWriter) write(u uint64, w int) {
	for left := w; left > 0; {
		if bw.free == 0 {
			bw.b, bw.free = append(bw.b, 0), 8
		}
		take := min(left, bw.free)
		part := (u >> (left - take)) & (1<<uint(take) - 1)
		bw.b[len(bw.b)-1] |= byte(part << uint(bw.free-take))
		bw.free, left = bw.free-take, left-take
	}
}

var errDecimalChunk = errors.New("decimal chunk")

// decimalChunk is a decimal chunk read in place: its layout is checked
// when it is made (so that reading it cannot run past its bytes), read
// again by each iterator, and its samples are decoded as they are
// iterated, without arrays per chunk. It cannot be appended to.
type decimalChunk struct {
	data []byte
	n    int
}

// decimalLayout is where a decimal chunk's parts are.
type decimalLayout struct {
	n      int
	t0, d0 int64  // the first time and the first time delta
	tw     int    // width of the times' packed second differences
	tbits  []byte // those, n-2 of them
	exp    int
	mode   byte
	m0, e0 int64  // the first mantissa, and in mode 1 the first mantissa delta
	vw     int    // width of the packed mantissa differences
	vbits  []byte // those: n-1 in mode 0, n-2 in mode 1
}

// parseDecimalChunk checks a decimal chunk's layout and returns it ready
// to iterate: a count, header varints, widths of at most 64 bits and
// exactly the packed bytes they call for, nothing after.
func parseDecimalChunk(b []byte) (decimalLayout, error) {
	var c decimalLayout
	bad := func(what string) (decimalLayout, error) {
		return decimalLayout{}, fmt.Errorf("%w: %w: %s", ErrCorrupt, errDecimalChunk, what)
	}
	un, w := binary.Uvarint(b)
	if w <= 0 || un == 0 || un > maxDecimalSamples {
		return bad("sample count")
	}
	c.n = int(un)
	b = b[w:]
	if c.t0, w = binary.Varint(b); w <= 0 {
		return bad("first time")
	}
	b = b[w:]
	if c.n > 1 {
		if c.d0, w = binary.Varint(b); w <= 0 {
			return bad("first time delta")
		}
		b = b[w:]
	}
	var err error
	if c.tw, c.tbits, b, err = splitPacked(b, max(c.n-2, 0)); err != nil {
		return decimalLayout{}, err
	}
	if len(b) < 2 || b[0] > maxDecimalExp || b[1] > decimalModeDoubleD {
		return bad("value header")
	}
	c.exp, c.mode = int(b[0]), b[1]
	b = b[2:]
	if c.m0, w = binary.Varint(b); w <= 0 {
		return bad("first value")
	}
	b = b[w:]
	packed := c.n - 1
	if c.mode == decimalModeDoubleD {
		packed = max(c.n-2, 0)
		if c.n > 1 {
			if c.e0, w = binary.Varint(b); w <= 0 {
				return bad("first value delta")
			}
			b = b[w:]
		}
	}
	if c.vw, c.vbits, b, err = splitPacked(b, packed); err != nil {
		return decimalLayout{}, err
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	return c, nil
}

// splitPacked splits count values written by appendPacked from what
// follows them: their width, their bytes, the rest.
func splitPacked(b []byte, count int) (int, []byte, []byte, error) {
	if len(b) == 0 {
		return 0, nil, nil, fmt.Errorf("%w: %w: missing width", ErrCorrupt, errDecimalChunk)
	}
	w := int(b[0])
	b = b[1:]
	if w > 64 {
		return 0, nil, nil, fmt.Errorf("%w: %w: width %d", ErrCorrupt, errDecimalChunk, w)
	}
	nbytes := (count*w + 7) / 8
	if nbytes > len(b) {
		return 0, nil, nil, fmt.Errorf("%w: %w: %d values of %d bits in %d bytes", ErrCorrupt, errDecimalChunk, count, w, len(b))
	}
	return w, b[:nbytes], b[nbytes:], nil
}

// readBits returns the w bits (w <= 64) of b at bit pos, most significant
// first, zigzag-decoded; b holds them (parseDecimalChunk checked).
func readBits(b []byte, pos, w int) int64 { return unzigzag(readUint(b, pos, w)) }

// readUint returns the w bits (w <= 64) of b at bit pos, most significant
// first, as bitWriter wrote them; b must hold them.
func readUint(b []byte, pos, w int) uint64 {
	if w == 0 {
		return 0
	}
	i, bit := pos>>3, pos&7
	if i+8 <= len(b) && w <= 64-bit {
		return binary.BigEndian.Uint64(b[i:]) << uint(bit) >> uint(64-w)
	}
	var u uint64
	for left := w; left > 0; {
		bit := pos & 7
		take := min(left, 8-bit)
		part := uint64(b[pos>>3]>>uint(8-bit-take)) & (1<<uint(take) - 1)
		u = u<<uint(take) | part
		pos += take
		left -= take
	}
	return u
}

func (c *decimalChunk) Bytes() []byte               { return c.data }
func (c *decimalChunk) Encoding() chunkenc.Encoding { return encDecimal }
func (c *decimalChunk) NumSamples() int             { return c.n }
func (c *decimalChunk) Compact()                    {}
func (c *decimalChunk) Reset(stream []byte) {
	*c = decimalChunk{data: stream}
	if l, err := parseDecimalChunk(stream); err == nil { // a corrupt stream reads as empty
		c.n = l.n
	}
}
func (c *decimalChunk) Appender() (chunkenc.Appender, error) {
	return nil, errors.New("a decimal chunk is written whole and cannot be appended to")
}

func (c *decimalChunk) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	d, ok := it.(*decimalIterator)
	if !ok {
		d = &decimalIterator{}
	}
	*d = decimalIterator{i: -1}
	if c.n > 0 {
		d.c, _ = parseDecimalChunk(c.data) // checked when c was made
	}
	return d
}

// decimalIterator decodes a decimal chunk's float samples one at a time.
type decimalIterator struct {
	c      decimalLayout
	i      int   // the current sample, -1 before the first
	t, dt  int64 // its time and the last time delta
	m, dm  int64 // its mantissa and the last mantissa delta
	tp, vp int   // bit positions in the packed times and mantissas
}

func (it *decimalIterator) Next() chunkenc.ValueType {
	c := &it.c
	if it.i >= c.n-1 {
		it.i = c.n
		return chunkenc.ValNone
	}
	it.i++
	switch it.i {
	case 0:
		it.t, it.m = c.t0, c.m0
		return chunkenc.ValFloat
	case 1:
		it.dt = c.d0
	default:
		it.dt += readBits(c.tbits, it.tp, c.tw)
		it.tp += c.tw
	}
	it.t += it.dt
	switch {
	case c.mode == decimalModeDelta:
		it.dm = readBits(c.vbits, it.vp, c.vw)
		it.vp += c.vw
	case it.i == 1:
		it.dm = c.e0
	default:
		it.dm += readBits(c.vbits, it.vp, c.vw)
		it.vp += c.vw
	}
	it.m += it.dm
	return chunkenc.ValFloat
}

// Seek moves to the first sample at or after t; a current sample that is
// already there stays.
func (it *decimalIterator) Seek(t int64) chunkenc.ValueType {
	if it.i >= it.c.n {
		return chunkenc.ValNone
	}
	if it.i >= 0 && it.t >= t {
		return chunkenc.ValFloat
	}
	for it.Next() == chunkenc.ValFloat {
		if it.t >= t {
			return chunkenc.ValFloat
		}
	}
	return chunkenc.ValNone
}

func (it *decimalIterator) At() (int64, float64) {
	return it.t, float64(it.m) / pow10[it.c.exp]
}

func (it *decimalIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	return it.t, nil
}

func (it *decimalIterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return it.t, nil
}
func (it *decimalIterator) AtT() int64  { return it.t }
func (it *decimalIterator) AtST() int64 { return 0 }
func (it *decimalIterator) Err() error  { return nil }

// compactChunk returns a finished chunk's encoding and bytes as written
// to a partition: a float chunk becomes a decimal chunk when that is
// smaller; other chunks are written as they are. The decimal bytes live in
// the scratch until its next use.
func (sc *decimalScratch) compactChunk(c builtChunk) (chunkenc.Encoding, []byte) {
	if c.enc != chunkenc.EncXOR {
		return c.enc, c.data
	}
	xc, err := chunkenc.FromData(chunkenc.EncXOR, c.data)
	if err != nil {
		return c.enc, c.data
	}
	ts, vs := sc.ts[:0], sc.vs[:0]
	sc.it = xc.Iterator(sc.it)
	for sc.it.Next() == chunkenc.ValFloat {
		t, v := sc.it.At()
		ts, vs = append(ts, t), append(vs, v)
	}
	sc.ts, sc.vs = ts, vs
	if sc.it.Err() != nil {
		return c.enc, c.data
	}
	d, ok := sc.appendDecimalChunk(sc.out[:0], ts, vs)
	if ok {
		sc.out = d
	}
	if ok && len(d) < len(c.data) {
		return encDecimal, d
	}
	return c.enc, c.data
}
