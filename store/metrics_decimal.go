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
// mode 1 packs their differences (n-2). width is one byte, 0..64 bits, or
// with 0x80 added, packed values with exceptions:
//
//	packed := width[1] | (0x80|width)[1] uvarint(k) k×(uvarint(gap) uvarint(zigzag(value))) bits
//
// where each of the k exceptions replaces the packed value at its index
// (gap: the indexes between it and the one before, the first counted from
// 0), its own slot packed as 0. A counter that resets, a sawtooth that
// wraps or a missed scrape is one large difference among small ones: packed
// at its width, it would take every slot of the chunk that wide.
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
	if pd, pm := packing(dods), packing(deltas); pd.cost < pm.cost {
		b = append(b, decimalModeDoubleD)
		b = binary.AppendVarint(b, ms[0])
		if n > 1 {
			b = binary.AppendVarint(b, ms[1]-ms[0])
		}
		b = appendPackedAs(b, dods, pd)
	} else {
		b = append(b, decimalModeDelta)
		b = binary.AppendVarint(b, ms[0])
		b = appendPackedAs(b, deltas, pm)
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

// packPlan is how a run of values is packed: at width w bits, with k
// exceptions (the values wider than w), in cost bytes.
type packPlan struct{ w, k, cost int }

// packing chooses how to pack x: the width and the exceptions, those of
// x's values that need more bits than it, so that the bytes are fewest.
// Without exceptions it is the width of the widest value.
func packing(x []int64) packPlan {
	var hist [65]int // values by their width
	for _, v := range x {
		hist[bits.Len64(zigzag(v))]++
	}
	gap := 1 // an exception's gap takes a byte when the chunk has fewer than 128 values
	if len(x) >= 128 {
		gap = 2
	}
	w := 64
	for w > 0 && hist[w] == 0 {
		w--
	}
	best := packPlan{w: w, cost: 1 + (len(x)*w+7)/8}
	exc, excBytes := 0, 0
	for cand := w - 1; cand >= 0; cand-- {
		// The values of width cand+1 become exceptions too.
		exc += hist[cand+1]
		excBytes += hist[cand+1] * (gap + (cand+1+6)/7)
		if c := 1 + uvarintLen(uint64(exc)) + excBytes + (len(x)*cand+7)/8; c < best.cost {
			best = packPlan{w: cand, k: exc, cost: c}
		}
	}
	return best
}

func uvarintLen(u uint64) int { return (bits.Len64(u|1) + 6) / 7 }

// appendPacked writes x as packing chooses.
func appendPacked(b []byte, x []int64) []byte { return appendPackedAs(b, x, packing(x)) }

// appendPackedAs writes x as plan says: the width (0x80 added when
// exceptions follow), the exceptions, then every value zigzagged in width
// bits, most significant bit first (an exception's slot 0).
func appendPackedAs(b []byte, x []int64, plan packPlan) []byte {
	w, k := plan.w, plan.k
	if k == 0 {
		b = append(b, byte(w))
	} else {
		b = binary.AppendUvarint(append(b, 0x80|byte(w)), uint64(k))
		last := -1
		for i, v := range x {
			if zz := zigzag(v); bits.Len64(zz) > w {
				b = binary.AppendUvarint(b, uint64(i-last-1))
				b = binary.AppendUvarint(b, zz)
				last = i
			}
		}
	}
	bw := bitWriter{b: b}
	for _, v := range x {
		if zz := zigzag(v); bits.Len64(zz) <= w {
			bw.write(zz, w)
		} else {
			bw.write(0, w)
		}
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
	// mint and maxt are its first and last samples' times when bounded
	// (a chunk read for a query: its key or the head says them).
	mint, maxt int64
	bounded    bool
}

func (c *decimalChunk) timeBounds() (int64, int64, bool) { return c.mint, c.maxt, c.bounded }

// decimalLayout is where a decimal chunk's parts are.
type decimalLayout struct {
	n      int
	t0, d0 int64  // the first time and the first time delta
	times  packed // the times' second differences, n-2 of them
	exp    int
	mode   byte
	m0, e0 int64  // the first mantissa, and in mode 1 the first mantissa delta
	values packed // the mantissas' differences: n-1 in mode 0, n-2 in mode 1
}

// packed is where a run of packed values is: their width, their bits and
// their exceptions (checked: each index inside the run, in order).
type packed struct {
	w    int
	bits []byte
	exc  []byte // k × (uvarint(gap) uvarint(zigzag(value)))
}

// packedReader reads a run of packed values in order, in place.
type packedReader struct {
	p    *packed
	pos  int    // bit position of the next value
	i    int    // its index
	exc  []byte // exceptions not reached yet
	next int    // index of the next exception, -1 when none is left
	val  int64  // its value
}

func (r *packedReader) reset(p *packed) {
	*r = packedReader{p: p, exc: p.exc, next: -1}
	r.advance(-1)
}

// advance reads the next exception after index last.
func (r *packedReader) advance(last int) {
	r.next = -1
	if len(r.exc) == 0 {
		return
	}
	gap, n := binary.Uvarint(r.exc)
	zz, m := binary.Uvarint(r.exc[n:]) // checked by splitPacked
	r.exc = r.exc[n+m:]
	r.next, r.val = last+1+int(gap), unzigzag(zz)
}

// read returns the next value.
func (r *packedReader) read() int64 {
	v := readBits(r.p.bits, r.pos, r.p.w)
	r.pos += r.p.w
	if r.i == r.next {
		v = r.val
		r.advance(r.i)
	}
	r.i++
	return v
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
	if c.times, b, err = splitPacked(b, max(c.n-2, 0)); err != nil {
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
	if c.values, b, err = splitPacked(b, packed); err != nil {
		return decimalLayout{}, err
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	return c, nil
}

// splitPacked splits count values written by appendPacked from what
// follows them, checking their exceptions.
func splitPacked(b []byte, count int) (packed, []byte, error) {
	bad := func(format string, a ...any) (packed, []byte, error) {
		return packed{}, nil, fmt.Errorf("%w: %w: %s", ErrCorrupt, errDecimalChunk, fmt.Sprintf(format, a...))
	}
	if len(b) == 0 {
		return bad("missing width")
	}
	var p packed
	p.w = int(b[0] &^ 0x80)
	withExc := b[0]&0x80 != 0
	b = b[1:]
	if p.w > 64 {
		return bad("width %d", p.w)
	}
	if withExc {
		k, n := binary.Uvarint(b)
		if n <= 0 || k == 0 || k > uint64(count) {
			return bad("%d exceptions among %d values", k, count)
		}
		b = b[n:]
		at, start := -1, b
		for range k {
			gap, n := binary.Uvarint(b)
			if n <= 0 || gap >= uint64(count-at-1) {
				return bad("an exception past the %d values", count)
			}
			at += 1 + int(gap)
			_, m := binary.Uvarint(b[n:])
			if m <= 0 {
				return bad("an exception's value")
			}
			b = b[n+m:]
		}
		p.exc = start[:len(start)-len(b)]
	}
	nbytes := (count*p.w + 7) / 8
	if nbytes > len(b) {
		return bad("%d values of %d bits in %d bytes", count, p.w, len(b))
	}
	p.bits = b[:nbytes]
	return p, b[nbytes:], nil
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
	d.tr.reset(&d.c.times)
	d.vr.reset(&d.c.values)
	return d
}

// decimalIterator decodes a decimal chunk's float samples one at a time.
type decimalIterator struct {
	c      decimalLayout
	i      int   // the current sample, -1 before the first
	t, dt  int64 // its time and the last time delta
	m, dm  int64 // its mantissa and the last mantissa delta
	tr, vr packedReader
}

func (it *decimalIterator) Next() chunkenc.ValueType {
	c := &it.c
	if it.i >= c.n-1 {
		it.i = c.n
		return chunkenc.ValNone
	}
	if it.i >= 1 {
		it.advance(math.MinInt64)
		return chunkenc.ValFloat
	}
	it.i++
	if it.i == 0 {
		it.t, it.m = c.t0, c.m0
		return chunkenc.ValFloat
	}
	// The second sample: its time delta and (mode 1) mantissa delta are
	// the chunk's header's.
	it.dt = c.d0
	it.t += it.dt
	if c.mode == decimalModeDelta {
		it.dm = it.vr.read()
	} else {
		it.dm = c.e0
	}
	it.m += it.dm
	return chunkenc.ValFloat
}

// advance moves from the second sample or later to the next one, and on
// while its time is before t, or to the last: one loop over both packed
// runs with the readers' state in locals and the bits read inline, so that
// a Seek into a long chunk costs a few nanoseconds a sample passed.
func (it *decimalIterator) advance(t int64) {
	c := &it.c
	tr, vr := &it.tr, &it.vr
	tb, tw, vb, vw := c.times.bits, c.times.w, c.values.bits, c.values.w
	tpos, ti, tnext := tr.pos, tr.i, tr.next
	vpos, vi, vnext := vr.pos, vr.i, vr.next
	doubleDelta := c.mode == decimalModeDoubleD
	i, tt, dt, m, dm := it.i, it.t, it.dt, it.m, it.dm
	last := c.n - 1
	for i < last {
		var d int64
		if tw != 0 {
			if k, bit := tpos>>3, tpos&7; k+8 <= len(tb) && tw <= 64-bit {
				d = unzigzag(binary.BigEndian.Uint64(tb[k:]) << uint(bit) >> uint(64-tw))
			} else {
				d = unzigzag(readUint(tb, tpos, tw))
			}
		}
		if ti == tnext {
			d = tr.val
			tr.advance(ti)
			tnext = tr.next
		}
		tpos += tw
		ti++
		var v int64
		if vw != 0 {
			if k, bit := vpos>>3, vpos&7; k+8 <= len(vb) && vw <= 64-bit {
				v = unzigzag(binary.BigEndian.Uint64(vb[k:]) << uint(bit) >> uint(64-vw))
			} else {
				v = unzigzag(readUint(vb, vpos, vw))
			}
		}
		if vi == vnext {
			v = vr.val
			vr.advance(vi)
			vnext = vr.next
		}
		vpos += vw
		vi++
		dt += d
		tt += dt
		if doubleDelta {
			dm += v
		} else {
			dm = v
		}
		m += dm
		i++
		if tt >= t {
			break
		}
	}
	tr.pos, tr.i, vr.pos, vr.i = tpos, ti, vpos, vi
	it.i, it.t, it.dt, it.m, it.dm = i, tt, dt, m, dm
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
	for it.i < 1 {
		if it.Next() == chunkenc.ValNone {
			return chunkenc.ValNone
		}
		if it.t >= t {
			return chunkenc.ValFloat
		}
	}
	if it.i < it.c.n-1 {
		it.advance(t)
		if it.t >= t {
			return chunkenc.ValFloat
		}
	}
	it.i = it.c.n
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

// readFloats appends the float samples of c to the scratch's ts and vs.
func (sc *decimalScratch) readFloats(c chunkenc.Chunk) error {
	sc.it = c.Iterator(sc.it)
	for sc.it.Next() == chunkenc.ValFloat {
		t, v := sc.it.At()
		sc.ts, sc.vs = append(sc.ts, t), append(sc.vs, v)
	}
	return sc.it.Err()
}

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
	sc.ts, sc.vs = sc.ts[:0], sc.vs[:0]
	if sc.readFloats(xc) != nil {
		return c.enc, c.data
	}
	d, ok := sc.appendDecimalChunk(sc.out[:0], sc.ts, sc.vs)
	if ok {
		sc.out = d
	}
	if ok && len(d) < len(c.data) {
		return encDecimal, d
	}
	return c.enc, c.data
}
