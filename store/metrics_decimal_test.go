package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

// scrapeTimes are 120 timestamps 15 s apart, with up to jitter ms added
// (Prometheus aligns scrape times within 2 ms to the interval, so its are
// mostly exact).
func scrapeTimes(r *rand.Rand, jitter int64) []int64 {
	ts := make([]int64, 120)
	for i := range ts {
		ts[i] = 1_795_000_000_000 + int64(i)*15_000
		if jitter > 0 {
			ts[i] += r.Int64N(jitter + 1)
		}
	}
	return ts
}

func xorSize(ts []int64, vs []float64) int {
	c := chunkenc.NewXORChunk()
	app, _ := c.Appender()
	for i := range ts {
		app.Append(0, ts[i], vs[i])
	}
	return len(c.Bytes())
}

// newDecimalChunk is a decimal chunk of data, checked (a query's reader
// places them in its blocks instead).
func newDecimalChunk(data []byte) (*decimalChunk, error) {
	l, err := parseDecimalChunk(data)
	if err != nil {
		return nil, err
	}
	return &decimalChunk{data: data, n: l.n}, nil
}

// readPacked reads count values written by appendPacked and returns the rest
// (the decoder decimal chunks had before they were read in place, kept as
// the reference their iterator is checked against).
func readPacked(b []byte, count int) ([]int64, []byte, error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: %w: missing width", ErrCorrupt, errDecimalChunk)
	}
	w := int(b[0] &^ 0x80)
	withExc := b[0]&0x80 != 0
	b = b[1:]
	if w > 64 {
		return nil, nil, fmt.Errorf("%w: %w: width %d", ErrCorrupt, errDecimalChunk, w)
	}
	exc := map[int]int64{}
	if withExc {
		k, n := binary.Uvarint(b)
		if n <= 0 || k == 0 || k > uint64(count) {
			return nil, nil, fmt.Errorf("%w: %w: exceptions", ErrCorrupt, errDecimalChunk)
		}
		b = b[n:]
		at := -1
		for range k {
			gap, n := binary.Uvarint(b)
			if n <= 0 || gap >= uint64(count) || at+1+int(gap) >= count {
				return nil, nil, fmt.Errorf("%w: %w: exception index", ErrCorrupt, errDecimalChunk)
			}
			at += 1 + int(gap)
			zz, m := binary.Uvarint(b[n:])
			if m <= 0 {
				return nil, nil, fmt.Errorf("%w: %w: exception value", ErrCorrupt, errDecimalChunk)
			}
			exc[at] = unzigzag(zz)
			b = b[n+m:]
		}
	}
	out := make([]int64, count)
	if w == 0 {
		for i, v := range exc {
			out[i] = v
		}
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
		if v, ok := exc[i]; ok {
			out[i] = v
		}
	}
	return out, b[nbytes:], nil
}

// decodeDecimalChunk returns the samples of a decimal chunk as arrays: the
// reference decoder.
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

func TestDecimalChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// One scratch compacts every case's chunk in turn, as a checkpoint's
	// write does: what one chunk left in it must not reach the next.
	var sc decimalScratch
	parse := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	for _, tc := range []struct {
		name    string
		value   func(i int) float64
		decimal bool
		maxSize int   // bytes for 120 samples
		jitter  int64 // ms
		times   func([]int64)
	}{
		{"constant", func(int) float64 { return 1 }, true, 16, 0, nil},
		{"constant, timestamps off by up to 4 ms", func(int) float64 { return 1 }, true, 90, 4, nil},
		{"steady counter", func(i int) float64 { return float64(1000 + 37*i) }, true, 20, 0, nil},
		{"counter", func(i int) float64 { return float64(1000 + 37*i + r.IntN(8)) }, true, 100, 0, nil},
		{"one-decimal gauge, parsed from text", func(int) float64 { return parse(strconv.FormatFloat(20+float64(r.IntN(200))/10, 'f', 1, 64)) }, true, 150, 0, nil},
		{"bytes gauge", func(int) float64 { return float64(r.Int64N(1 << 40)) }, true, 640, 0, nil},
		{"negative and fractional", func(i int) float64 { return parse(strconv.FormatFloat(-3.25+float64(i%9)*0.125, 'f', -1, 64)) }, true, 190, 0, nil},
		{"computed floats", func(i int) float64 { return math.Sin(float64(i)) }, false, 0, 0, nil},
		{"a stale marker", func(i int) float64 {
			if i == 60 {
				return math.Float64frombits(0x7ff0000000000002)
			}
			return 1
		}, false, 0, 0, nil},
		{"negative zero", func(i int) float64 { return math.Copysign(0, -1) }, false, 0, 0, nil},
		// One large difference among small ones: an exception, not a
		// width for every value.
		{"a counter that resets", func(i int) float64 {
			if i < 70 {
				return float64(1000 + 37*i)
			}
			return float64(37 * (i - 70))
		}, true, 32, 0, nil},
		{"a sawtooth that wraps", func(i int) float64 { return float64((900+3*i)%1000) / 10 }, true, 32, 0, nil},
		{"a missed scrape", func(int) float64 { return 1 }, true, 24, 0, func(ts []int64) {
			for i := 50; i < len(ts); i++ {
				ts[i] += 15_000
			}
		}},
		{"a counter with resets and jitter", func(i int) float64 { return float64(37 * (i % 25)) }, true, 120, 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := scrapeTimes(r, tc.jitter)
			if tc.times != nil {
				tc.times(ts)
			}
			vs := make([]float64, len(ts))
			for i := range vs {
				vs[i] = tc.value(i)
			}
			b, ok := encodeDecimalChunk(ts, vs)
			require.Equal(t, tc.decimal, ok)
			xc := chunkenc.NewXORChunk()
			app, _ := xc.Appender()
			for i := range ts {
				app.Append(0, ts[i], vs[i])
			}
			enc, data := sc.compactChunk(builtChunk{enc: chunkenc.EncXOR, data: xc.Bytes()})
			if !ok || len(b) >= len(xc.Bytes()) {
				require.Equal(t, chunkenc.EncXOR, enc)
				require.Equal(t, xc.Bytes(), data)
			} else {
				require.Equal(t, encDecimal, enc)
				require.Equal(t, b, data, "compacted with a used scratch")
			}
			if !ok {
				return
			}
			require.LessOrEqual(t, len(b), tc.maxSize, "XOR takes %d", xorSize(ts, vs))
			gotT, gotV, err := decodeDecimalChunk(b)
			require.NoError(t, err)
			require.Equal(t, ts, gotT)
			for i := range vs {
				require.Equal(t, math.Float64bits(vs[i]), math.Float64bits(gotV[i]), "sample %d", i)
			}
			c, err := newDecimalChunk(b)
			require.NoError(t, err)
			require.Equal(t, len(ts), c.NumSamples())
			requireIteratesAsXOR(t, c, ts, vs)
		})
	}
}

// requireIteratesAsXOR checks a decimal chunk's iterator against
// Prometheus' XOR iterator over the same samples: Next to the end, and
// Seek to every timestamp and between them, from fresh and used iterators.
func requireIteratesAsXOR(t *testing.T, c *decimalChunk, ts []int64, vs []float64) {
	t.Helper()
	xor := chunkenc.NewXORChunk()
	app, err := xor.Appender()
	require.NoError(t, err)
	for i := range ts {
		app.Append(0, ts[i], vs[i])
	}
	type step struct {
		vt chunkenc.ValueType
		t  int64
		v  uint64
	}
	at := func(it chunkenc.Iterator, vt chunkenc.ValueType) step {
		if vt == chunkenc.ValNone {
			return step{vt: vt}
		}
		tt, v := it.At()
		require.Equal(t, tt, it.AtT())
		return step{vt, tt, math.Float64bits(v)}
	}
	d, x := c.Iterator(nil), xor.Iterator(nil)
	for {
		a, b := at(d, d.Next()), at(x, x.Next())
		require.Equal(t, b, a)
		if a.vt == chunkenc.ValNone {
			break
		}
	}
	require.NoError(t, d.Err())
	targets := []int64{ts[0] - 1, ts[len(ts)-1] + 1}
	for _, tt := range ts {
		targets = append(targets, tt, tt+1)
	}
	for i, target := range targets {
		d, x = c.Iterator(d), xor.Iterator(x)
		first := at(x, x.Seek(target))
		require.Equal(t, first, at(d, d.Seek(target)), "seek %d from fresh", target)
		if first.vt == chunkenc.ValNone {
			continue // past the end: what a later Seek returns is not defined
		}
		// A second, earlier seek stays where it is, as Prometheus' does.
		back := targets[(i+1)%len(targets)]
		require.Equal(t, at(x, x.Seek(back)), at(d, d.Seek(back)), "seek %d after %d", back, target)
		require.Equal(t, at(x, x.Next()), at(d, d.Next()), "next after seeks")
	}
}

func FuzzDecimalChunk(f *testing.F) {
	f.Add([]byte{}, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	seed := func(vs ...float64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
		return b
	}
	f.Add([]byte{3, 0x80, 1, 2, 0, 1, 0, 2, 0}, seed(20.3, 20.4, 19.9))
	f.Add([]byte{}, seed(1e300, -1e-300, 0.1))
	enc, _ := encodeDecimalChunk([]int64{1000, 2000, 3000}, []float64{1.5, 2.5, 3})
	f.Add(enc, seed(7, 7, 7, 7))
	// Exceptions: a missed scrape and a counter that resets.
	enc, _ = encodeDecimalChunk([]int64{0, 15, 30, 45, 75, 90, 105}, []float64{10, 20, 30, 40, 0, 10, 20})
	f.Add(enc, seed(1, 2, 3, 4, 0, 1, 2, 3))
	f.Fuzz(func(t *testing.T, chunk, values []byte) {
		// Any bytes: decoded or refused as corrupt, never a panic; read in
		// place exactly as the reference decodes them.
		refT, refV, refErr := decodeDecimalChunk(chunk)
		c, err := newDecimalChunk(chunk)
		if refErr != nil {
			require.ErrorIs(t, refErr, ErrCorrupt)
			require.ErrorIs(t, err, ErrCorrupt)
		} else {
			require.NoError(t, err)
			require.Equal(t, len(refT), c.NumSamples())
			it := c.Iterator(nil)
			for i := range refT {
				require.Equal(t, chunkenc.ValFloat, it.Next())
				gotT, gotV := it.At()
				require.Equal(t, refT[i], gotT)
				require.Equal(t, math.Float64bits(refV[i]), math.Float64bits(gotV))
			}
			require.Equal(t, chunkenc.ValNone, it.Next())
		}
		// Any values: encoded losslessly or refused.
		var ts []int64
		var vs []float64
		for i := 0; i+8 <= len(values); i += 8 {
			ts = append(ts, int64(i)*1000)
			vs = append(vs, math.Float64frombits(binary.LittleEndian.Uint64(values[i:])))
		}
		b, ok := encodeDecimalChunk(ts, vs)
		if !ok {
			return
		}
		gotT, gotV, err := decodeDecimalChunk(b)
		require.NoError(t, err)
		require.Equal(t, ts, gotT)
		for i := range vs {
			require.Equal(t, math.Float64bits(vs[i]), math.Float64bits(gotV[i]))
		}
		if len(ts) > 0 {
			c, err := newDecimalChunk(b)
			require.NoError(t, err)
			requireIteratesAsXOR(t, c, ts, vs)
		}
	})
}

// TestDecimalSeekAsXOR: any sequence of Next and Seek over a decimal chunk
// reads what it reads over the XOR chunk of the same samples — values of
// both modes, with exceptions (resets, missed scrapes, jitter).
func TestDecimalSeekAsXOR(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	values := []func(i int) float64{
		func(i int) float64 { return float64(1000 + 37*i) },             // steady: mode 1, width 0
		func(i int) float64 { return float64(1000 + 37*i + r.IntN(8)) }, // counter
		func(i int) float64 { return float64(37 * (i % 25)) },           // resets: exceptions
		func(i int) float64 { return float64(r.IntN(2000)) / 10 },       // gauge
		func(i int) float64 { return float64(r.Int64N(1 << 40)) },       // wide
	}
	for round := range 400 {
		n := 1 + r.IntN(480)
		ts, vs := make([]int64, n), make([]float64, n)
		at := int64(r.IntN(1 << 20))
		f := values[round%len(values)]
		for i := range n {
			at += 15_000 + int64(r.IntN(5)) - 2
			if r.IntN(40) == 0 {
				at += 30_000 // a missed scrape
			}
			ts[i], vs[i] = at, f(i)
		}
		data, ok := encodeDecimalChunk(ts, vs)
		require.True(t, ok)
		l, err := parseDecimalChunk(data)
		require.NoError(t, err)
		dc := &decimalChunk{data: data, n: l.n}
		xc := chunkenc.NewXORChunk()
		app, err := xc.Appender()
		require.NoError(t, err)
		for i := range ts {
			app.Append(0, ts[i], vs[i])
		}
		want, got := xc.Iterator(nil), dc.Iterator(nil)
		for op := 0; ; op++ {
			var w, g chunkenc.ValueType
			if r.IntN(3) == 0 {
				target := ts[0] - 5 + r.Int64N(ts[n-1]-ts[0]+20)
				if r.IntN(2) == 0 {
					target = ts[r.IntN(n)] + int64(r.IntN(3)) - 1
				}
				w, g = want.Seek(target), got.Seek(target)
			} else {
				w, g = want.Next(), got.Next()
			}
			require.Equal(t, w, g, "round %d op %d", round, op)
			if w == chunkenc.ValNone {
				break
			}
			wt, wv := want.At()
			gt, gv := got.At()
			require.Equal(t, wt, gt, "round %d op %d", round, op)
			require.Equal(t, math.Float64bits(wv), math.Float64bits(gv), "round %d op %d", round, op)
		}
		require.Equal(t, chunkenc.ValNone, got.Seek(ts[n-1]+1))
		require.Equal(t, chunkenc.ValNone, got.Next())
	}
}
