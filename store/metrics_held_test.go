package store

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

// chunkSampleCounts returns the sample count of every in-order chunk key
// in the store's partitions, in key order.
func chunkSampleCounts(t *testing.T, db *DB) []int {
	t.Helper()
	var out []int
	for _, p := range db.parts {
		require.NoError(t, p.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsChunk}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				val, err := it.Item().ValueCopy(nil)
				require.NoError(t, err)
				_, w := binary.Uvarint(val[1:])
				data := val[1+w:]
				if chunkenc.Encoding(val[0]) == encDecimal {
					l, err := parseDecimalChunk(data)
					require.NoError(t, err)
					out = append(out, l.n)
					continue
				}
				c, err := chunkenc.FromData(chunkenc.Encoding(val[0]), data)
				require.NoError(t, err)
				out = append(out, c.NumSamples())
			}
			return nil
		}))
	}
	return out
}

// A long series of a steady counter is written in chunks of heldSamples,
// each a key, instead of one per chunkSamples; its held samples are read
// from the head meanwhile, bit for bit; a gauge of arbitrary floats (no
// decimal chunk) is written as before. Every held byte is accounted for,
// and back to zero once written.
func TestHeldChunksMakeLongerKeys(t *testing.T) {
	dir := t.TempDir()
	db, o := openMetricsStore(t, dir)
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).UnixMilli()
	steady := labels.FromStrings("__name__", "requests_total", "pod", "a")
	noisy := labels.FromStrings("__name__", "temperature", "pod", "a")
	rng := rand.New(rand.NewPCG(1, 2))
	var noisyValues []float64
	const n = 1100
	for i := range n {
		a := db.Appender(context.Background())
		_, err := a.Append(0, steady, start+int64(i)*15_000, float64(10*i))
		require.NoError(t, err)
		v := rng.Float64() * 100
		noisyValues = append(noisyValues, v)
		_, err = a.Append(0, noisy, start+int64(i)*15_000, v)
		require.NoError(t, err)
		require.NoError(t, a.Commit())
	}
	// The steady series: 2 keys of 480 (960 samples), 120 held and 20
	// open. The noisy one: 9 keys of 120, 20 open.
	counts := chunkSampleCounts(t, db)
	require.ElementsMatch(t, []int{480, 480, 120, 120, 120, 120, 120, 120, 120, 120, 120}, counts)
	s := db.metrics.get(steady, steady.Hash())
	require.Equal(t, 120, s.held.n)
	require.Equal(t, int64(len(s.held.data)), db.metrics.heldBytes.Load())
	require.Less(t, len(s.held.data), 40, "a steady counter's 120 samples take a few bytes")

	check := func(db *DB) {
		t.Helper()
		got := floats(t, db, "requests_total")[steady.String()]
		require.Len(t, got, n)
		for i, v := range got {
			require.Equal(t, float64(10*i), v)
		}
		got = floats(t, db, "temperature")[noisy.String()]
		require.Len(t, got, n)
		for i, v := range got {
			require.Equal(t, math.Float64bits(noisyValues[i]), math.Float64bits(v))
		}
	}
	check(db)

	// A checkpoint carries the held chunk (the series took samples), a
	// crash after it loses nothing.
	require.NoError(t, db.CheckpointMetrics())
	require.Equal(t, 120, s.held.n, "carried, not written")
	require.Len(t, chunkSampleCounts(t, db), 11)
	db.abandon(t)
	db, err := Open(o)
	require.NoError(t, err)
	check(db)
	// The replay's end wrote every chunk, held or open.
	require.Zero(t, db.metrics.heldBytes.Load())
	require.NoError(t, db.Close())
	db, err = Open(o)
	require.NoError(t, err)
	defer db.Close()
	check(db)
}

// A series that stops taking samples has its held chunk written by the
// next checkpoint (with what was open), and leaves the head after the one
// after that, as any idle series does.
func TestHeldChunkOfAnIdleSeriesIsWritten(t *testing.T) {
	clk := &fakeDisk{free: 100 << 30, now: walT0}
	db, _ := openOnFakeDisk(t, t.TempDir(), clk, func(o *Options) { o.HeadIdleTimeout = time.Hour })
	defer db.Close()
	lset := labels.FromStrings("__name__", "up", "pod", "a")
	for i := range 250 {
		a := db.Appender(context.Background())
		_, err := a.Append(0, lset, walT0.Add(-2*time.Hour).UnixMilli()+int64(i)*15_000, 1) // up to the clock
		require.NoError(t, err)
		require.NoError(t, a.Commit())
	}
	s := db.metrics.get(lset, lset.Hash())
	require.Equal(t, 240, s.held.n)
	require.Empty(t, chunkSampleCounts(t, db))
	require.NoError(t, db.CheckpointMetrics()) // carried
	require.Empty(t, chunkSampleCounts(t, db))
	clk.mu.Lock()
	clk.now = clk.now.Add(61 * time.Minute)
	clk.mu.Unlock()
	require.NoError(t, db.CheckpointMetrics()) // quiet since: written
	require.Equal(t, []int{250}, chunkSampleCounts(t, db), "the open chunk folded into the held one, written as one")
	require.Zero(t, db.metrics.heldBytes.Load())
	require.NoError(t, db.CheckpointMetrics()) // idle: leaves the head
	require.Zero(t, db.HeadStats().Series)
	require.Len(t, floats(t, db, "up")[lset.String()], 250)
}

// A held chunk carried in the WAL reads back as its samples; one that is
// not a decimal chunk, or holds more than a held chunk can, is refused.
func TestWALHeldChunkSamples(t *testing.T) {
	ts := make([]int64, 300)
	vs := make([]float64, 300)
	for i := range ts {
		ts[i], vs[i] = int64(1000+i*15), float64(i)/10
	}
	data, ok := encodeDecimalChunk(ts, vs)
	require.True(t, ok)
	var sb labels.ScratchBuilder
	_, samples, err := decodeWALRecord(encodeWALChunks([]walChunk{{ref: 7, kind: walDecimalChunk, data: data}}, 0), &sb)
	require.NoError(t, err)
	require.Len(t, samples, 300)
	for i, s := range samples {
		require.Equal(t, uint64(7), s.ref)
		require.Equal(t, ts[i], s.t)
		require.Equal(t, vs[i], s.v)
	}
	for _, bad := range [][]byte{nil, {0}, data[:len(data)/2]} {
		_, _, err = decodeWALRecord(encodeWALChunks([]walChunk{{ref: 7, kind: walDecimalChunk, data: bad}}, 0), &sb)
		require.ErrorIs(t, err, ErrCorrupt)
	}
	long := make([]int64, heldSamples+1)
	lv := make([]float64, heldSamples+1)
	for i := range long {
		long[i] = int64(i)
	}
	data, ok = encodeDecimalChunk(long, lv)
	require.True(t, ok)
	_, _, err = decodeWALRecord(encodeWALChunks([]walChunk{{ref: 7, kind: walDecimalChunk, data: data}}, 0), &sb)
	require.ErrorIs(t, err, ErrCorrupt)
}

// A replay of two generations (a crash between a checkpoint's rotation and
// its deletion of the old one) reads the held samples twice: the second
// time they are older than the newest and within the out-of-order window,
// and must not come back as out-of-order samples. A late sample the held
// chunk does not have is still taken.
func TestHeldSamplesAreNotTakenAgainOutOfOrder(t *testing.T) {
	db, _ := openMetricsStore(t, t.TempDir())
	defer db.Close()
	start := time.Now().Add(-time.Hour).UnixMilli()
	lset := labels.FromStrings("__name__", "up", "pod", "a")
	for i := range 250 {
		a := db.Appender(context.Background())
		_, err := a.Append(0, lset, start+int64(i)*1000, float64(i))
		require.NoError(t, err)
		require.NoError(t, a.Commit())
	}
	s := db.metrics.get(lset, lset.Hash())
	require.Equal(t, 240, s.held.n)
	window := db.opts.MetricsOutOfOrderWindow.Milliseconds()
	for i := 100; i < 240; i++ {
		_, ok := s.add(point{t: start + int64(i)*1000, v: float64(i)}, window, &db.metrics.heldBytes)
		require.False(t, ok, "sample %d is held", i)
	}
	require.Empty(t, s.ooo)
	_, ok := s.add(point{t: start + 200*1000 + 500, v: 1}, window, &db.metrics.heldBytes)
	require.True(t, ok, "a late sample between two held ones")
	require.Len(t, s.ooo, 1)
}

// A checkpoint's records of carried chunks hold at most about
// carryRecordSamples samples each, however few bytes they take: a replay
// decodes a record's samples at once.
func TestCarryRecordsBoundedBySamples(t *testing.T) {
	db, _ := openMetricsStore(t, t.TempDir())
	defer db.Close()
	start := time.Now().Add(-2 * time.Hour).UnixMilli()
	const series, samples = 1000, 300
	for i := range samples {
		a := db.Appender(context.Background())
		for k := range series {
			_, err := a.Append(0, labels.FromStrings("__name__", "up", "pod", strconv.Itoa(k)), start+int64(i)*15_000, 1)
			require.NoError(t, err)
		}
		require.NoError(t, a.Commit())
	}
	db.metrics.state.mu.Lock() // as a checkpoint: commits stopped
	first := db.metrics.checkpointFirst()
	db.metrics.state.mu.Unlock()
	require.Len(t, first.more, 2, "300k samples carried, in two records")
	var sb labels.ScratchBuilder
	total := 0
	for _, rec := range first.more {
		_, smp, err := decodeWALRecord(rec, &sb)
		require.NoError(t, err)
		require.LessOrEqual(t, len(smp), carryRecordSamples+heldSamples+chunkSamples)
		total += len(smp)
	}
	require.Equal(t, series*samples, total)
}
