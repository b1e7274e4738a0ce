package store

import (
	"encoding/binary"
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

func TestDecimalChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	parse := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	for _, tc := range []struct {
		name    string
		value   func(i int) float64
		decimal bool
		maxSize int   // bytes for 120 samples
		jitter  int64 // ms
	}{
		{"constant", func(int) float64 { return 1 }, true, 16, 0},
		{"constant, timestamps off by up to 4 ms", func(int) float64 { return 1 }, true, 90, 4},
		{"steady counter", func(i int) float64 { return float64(1000 + 37*i) }, true, 20, 0},
		{"counter", func(i int) float64 { return float64(1000 + 37*i + r.IntN(8)) }, true, 100, 0},
		{"one-decimal gauge, parsed from text", func(int) float64 { return parse(strconv.FormatFloat(20+float64(r.IntN(200))/10, 'f', 1, 64)) }, true, 150, 0},
		{"bytes gauge", func(int) float64 { return float64(r.Int64N(1 << 40)) }, true, 640, 0},
		{"negative and fractional", func(i int) float64 { return parse(strconv.FormatFloat(-3.25+float64(i%9)*0.125, 'f', -1, 64)) }, true, 190, 0},
		{"computed floats", func(i int) float64 { return math.Sin(float64(i)) }, false, 0, 0},
		{"a stale marker", func(i int) float64 {
			if i == 60 {
				return math.Float64frombits(0x7ff0000000000002)
			}
			return 1
		}, false, 0, 0},
		{"negative zero", func(i int) float64 { return math.Copysign(0, -1) }, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := scrapeTimes(r, tc.jitter)
			vs := make([]float64, len(ts))
			for i := range vs {
				vs[i] = tc.value(i)
			}
			b, ok := encodeDecimalChunk(ts, vs)
			require.Equal(t, tc.decimal, ok)
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
	f.Fuzz(func(t *testing.T, chunk, values []byte) {
		// Any bytes: decoded or refused as corrupt, never a panic.
		if _, _, err := decodeDecimalChunk(chunk); err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
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
