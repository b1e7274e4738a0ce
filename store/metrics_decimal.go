package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

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
	ms := make([]int64, n)
	for i, v := range vs {
		m := math.Round(v * pow10[exp])
		if math.Abs(m) >= maxExactMantissa || m/pow10[exp] != v {
			return nil, false
		}
		ms[i] = int64(m)
	}
	b := make([]byte, 0, 32+n*2)
	b = binary.AppendUvarint(b, uint64(n))
	b = binary.AppendVarint(b, ts[0])
	if n > 1 {
		b = binary.AppendVarint(b, ts[1]-ts[0])
	}
	b = appendPacked(b, secondDifferences(ts))
	b = append(b, byte(exp))
	deltas := firstDifferences(ms)
	dods := secondDifferences(ms)
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

// firstDifferences returns x[i]-x[i-1] for i >= 1; secondDifferences the
// differences of those.
func firstDifferences(x []int64) []int64 {
	if len(x) < 2 {
		return nil
	}
	out := make([]int64, len(x)-1)
	for i := 1; i < len(x); i++ {
		out[i-1] = x[i] - x[i-1]
	}
	return out
}

func secondDifferences(x []int64) []int64 { return firstDifferences(firstDifferences(x)) }

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
	b = append(b, byte(w))
	free := 0 // bits still free in the last byte
	for _, v := range x {
		u := zigzag(v)
		for left := w; left > 0; {
			if free == 0 {
				b, free = append(b, 0), 8
			}
			take := min(left, free)
			part := (u >> (left - take)) & (1<<uint(take) - 1)
			b[len(b)-1] |= byte(part << uint(free-take))
			free, left = free-take, left-take
		}
	}
	return b
}

var errDecimalChunk = errors.New("decimal chunk")

// readPacked reads count values written by appendPacked and returns the rest.
func readPacked(b []byte, count int) ([]int64, []byte, error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: %w: missing width", ErrCorrupt, errDecimalChunk)
	}
	w := int(b[0])
	b = b[1:]
	if w > 64 {
		return nil, nil, fmt.Errorf("%w: %w: width %d", ErrCorrupt, errDecimalChunk, w)
	}
	out := make([]int64, count)
	if w == 0 {
		return out, b, nil
	}
	nbytes := (count*w + 7) / 8
	if nbytes > len(b) {
		return nil, nil, fmt.Errorf("%w: %w: %d values of %d bits in %d bytes", ErrCorrupt, errDecimalChunk, count, w, len(b))
	}
	pos := 0 // bit position
	for i := range out {
		var u uint64
		for left := w; left > 0; {
			bit := pos & 7
			take := min(left, 8-bit)
			part := uint64(b[pos>>3]>>uint(8-bit-take)) & (1<<uint(take) - 1)
			u = u<<uint(take) | part
			pos += take
			left -= take
		}
		out[i] = unzigzag(u)
	}
	return out, b[nbytes:], nil
}

// decodeDecimalChunk returns the samples of a decimal chunk.
func decodeDecimalChunk(b []byte) ([]int64, []float64, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %w: %s", ErrCorrupt, errDecimalChunk, what) }
	un, w := binary.Uvarint(b)
	if w <= 0 || un == 0 || un > maxDecimalSamples {
		return nil, nil, bad("sample count")
	}
	n := int(un)
	b = b[w:]
	ts := make([]int64, n)
	t0, w := binary.Varint(b)
	if w <= 0 {
		return nil, nil, bad("first time")
	}
	b = b[w:]
	ts[0] = t0
	var d0 int64
	if n > 1 {
		if d0, w = binary.Varint(b); w <= 0 {
			return nil, nil, bad("first time delta")
		}
		b = b[w:]
		ts[1] = t0 + d0
	}
	dods, b, err := readPacked(b, max(n-2, 0))
	if err != nil {
		return nil, nil, err
	}
	for i := 2; i < n; i++ {
		d0 += dods[i-2]
		ts[i] = ts[i-1] + d0
	}
	if len(b) < 2 || b[0] > maxDecimalExp || b[1] > decimalModeDoubleD {
		return nil, nil, bad("value header")
	}
	exp, mode := int(b[0]), b[1]
	b = b[2:]
	ms := make([]int64, n)
	if ms[0], w = binary.Varint(b); w <= 0 {
		return nil, nil, bad("first value")
	}
	b = b[w:]
	if mode == decimalModeDelta {
		deltas, rest, err := readPacked(b, n-1)
		if err != nil {
			return nil, nil, err
		}
		for i := 1; i < n; i++ {
			ms[i] = ms[i-1] + deltas[i-1]
		}
		b = rest
	} else {
		var d int64
		if n > 1 {
			if d, w = binary.Varint(b); w <= 0 {
				return nil, nil, bad("first value delta")
			}
			b = b[w:]
			ms[1] = ms[0] + d
		}
		dd, rest, err := readPacked(b, max(n-2, 0))
		if err != nil {
			return nil, nil, err
		}
		for i := 2; i < n; i++ {
			d += dd[i-2]
			ms[i] = ms[i-1] + d
		}
		b = rest
	}
	if len(b) != 0 {
		return nil, nil, bad("trailing bytes")
	}
	vs := make([]float64, n)
	for i, m := range ms {
		vs[i] = float64(m) / pow10[exp]
	}
	return ts, vs, nil
}

// compactChunk returns a finished chunk's encoding and bytes as written
// to a partition: a float chunk becomes a decimal chunk when that is
// smaller; other chunks are written as they are.
func compactChunk(c builtChunk) (chunkenc.Encoding, []byte) {
	if c.enc != chunkenc.EncXOR {
		return c.enc, c.data
	}
	xc, err := chunkenc.FromData(chunkenc.EncXOR, c.data)
	if err != nil {
		return c.enc, c.data
	}
	n := xc.NumSamples()
	ts, vs := make([]int64, 0, n), make([]float64, 0, n)
	it := xc.Iterator(nil)
	for it.Next() == chunkenc.ValFloat {
		t, v := it.At()
		ts, vs = append(ts, t), append(vs, v)
	}
	if it.Err() != nil {
		return c.enc, c.data
	}
	if d, ok := encodeDecimalChunk(ts, vs); ok && len(d) < len(c.data) {
		return encDecimal, d
	}
	return c.enc, c.data
}

// decimalChunk is a decimal chunk decoded for reading: its samples are
// iterated directly, not re-encoded as XOR. It cannot be appended to.
type decimalChunk struct {
	data []byte
	ts   []int64
	vs   []float64
}

func newDecimalChunk(data []byte) (*decimalChunk, error) {
	ts, vs, err := decodeDecimalChunk(data)
	if err != nil {
		return nil, err
	}
	return &decimalChunk{data: data, ts: ts, vs: vs}, nil
}

func (c *decimalChunk) Bytes() []byte               { return c.data }
func (c *decimalChunk) Encoding() chunkenc.Encoding { return encDecimal }
func (c *decimalChunk) NumSamples() int             { return len(c.ts) }
func (c *decimalChunk) Compact()                    {}
func (c *decimalChunk) Reset(stream []byte) {
	c.data = stream
	var err error
	if c.ts, c.vs, err = decodeDecimalChunk(stream); err != nil { // a corrupt stream reads as empty
		c.ts, c.vs = nil, nil
	}
}
func (c *decimalChunk) Appender() (chunkenc.Appender, error) {
	return nil, errors.New("a decimal chunk is written whole and cannot be appended to")
}

func (c *decimalChunk) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if d, ok := it.(*decimalIterator); ok {
		d.ts, d.vs, d.i = c.ts, c.vs, -1
		return d
	}
	return &decimalIterator{ts: c.ts, vs: c.vs, i: -1}
}

// decimalIterator iterates a decoded decimal chunk's float samples.
type decimalIterator struct {
	ts []int64
	vs []float64
	i  int
}

func (it *decimalIterator) Next() chunkenc.ValueType {
	if it.i < len(it.ts) {
		it.i++
	}
	if it.i >= len(it.ts) {
		return chunkenc.ValNone
	}
	return chunkenc.ValFloat
}

// Seek moves to the first sample at or after t; a current sample that is
// already there stays.
func (it *decimalIterator) Seek(t int64) chunkenc.ValueType {
	if it.i < 0 {
		it.i = 0
	}
	for it.i < len(it.ts) && it.ts[it.i] < t {
		it.i++
	}
	if it.i >= len(it.ts) {
		return chunkenc.ValNone
	}
	return chunkenc.ValFloat
}

func (it *decimalIterator) At() (int64, float64) { return it.ts[it.i], it.vs[it.i] }
func (it *decimalIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	return it.ts[it.i], nil
}

func (it *decimalIterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return it.ts[it.i], nil
}
func (it *decimalIterator) AtT() int64  { return it.ts[it.i] }
func (it *decimalIterator) AtST() int64 { return 0 }
func (it *decimalIterator) Err() error  { return nil }
