package store

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/store/wlog"
)

// abandon stops the store the way a crash would: Badger's files are closed,
// but the metrics head is neither cut nor written, and the WAL stays.
func (db *DB) abandon(t *testing.T) {
	t.Helper()
	close(db.stop)
	db.wg.Wait()
	require.NoError(t, db.metrics.wal.close(true))
	require.NoError(t, db.logs.wal.close(true))
	require.NoError(t, db.closePartitions())
	db.disk.close()
	db.codec.close()
}

// openMetricsStore opens a store in dir that keeps everything, and returns
// the options to reopen it with.
func openMetricsStore(t *testing.T, dir string) (*DB, Options) {
	t.Helper()
	o := DefaultOptions(dir)
	o.Retention = 0
	db, err := Open(o)
	require.NoError(t, err)
	return db, o
}

func TestMetricsWALReplayAfterCrash(t *testing.T) {
	dir := t.TempDir()
	db, o := openMetricsStore(t, dir)
	var err error
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).UnixMilli()
	// 3 series x 300 samples: two full chunks written per series, the rest
	// only in the head and the WAL.
	appendSeries(t, db, 0, 300, start)
	db.abandon(t)

	db, err = Open(o)
	require.NoError(t, err)
	defer db.Close()
	require.Len(t, db.metrics.byRef, 3, "series come back from the WAL")
	requireSamples(t, db, start, 300)
	// New samples after the replay continue the same series.
	appendSeries(t, db, 300, 301, start)
	require.Len(t, db.metrics.byRef, 3)
	requireSamples(t, db, start, 301)
}

func FuzzWALRecord(f *testing.F) {
	f.Add(encodeWALRecord([]walSeries{{ref: 1, lset: labels.FromStrings("__name__", "up", "job", "x")}}, []walSample{{ref: 1, point: point{t: 5, v: 1.5}}, {ref: 1, point: point{t: -3}}}))
	f.Add(encodeWALRecord([]walSeries{{ref: 2, lset: labels.FromStrings("__name__", "rpc_seconds")}}, []walSample{
		{ref: 2, point: point{t: 7, h: &histogram.Histogram{Schema: 1, Count: 3, Sum: 2, PositiveSpans: []histogram.Span{{Offset: -1, Length: 2}}, PositiveBuckets: []int64{1, 1}}}},
		{ref: 2, point: point{t: 8, v: 4}},
		{ref: 2, point: point{t: 9, fh: &histogram.FloatHistogram{CounterResetHint: histogram.GaugeType, Count: 2.5, Sum: 1, PositiveSpans: []histogram.Span{{Length: 1}}, PositiveBuckets: []float64{2.5}}}},
	}))
	f.Add(encodeWALRecord(nil, nil))
	xor := chunkenc.NewXORChunk()
	xapp, _ := xor.Appender()
	for i := range 4 {
		xapp.Append(0, int64(60_000+i*15_000), 20+float64(i)/10)
	}
	f.Add(encodeWALChunks([]walChunk{{ref: 3, kind: walXORChunk, data: xor.Bytes()}, {ref: 4, kind: walXORChunk, data: xor.Bytes()}}, 0))
	f.Add(encodeWALChunks([]walChunk{{ref: 4, kind: walXORChunk, data: xor.Bytes()[:5]}}, 0))
	f.Add([]byte{walRecordSamples, 0xff, 0xff, 0xff, 0xff, 0x0f})
	held, _ := encodeDecimalChunk([]int64{60_000, 75_000, 90_000, 105_000}, []float64{20, 20.1, 20.3, 20.3})
	f.Add(encodeWALChunks([]walChunk{{ref: 3, kind: walDecimalChunk, data: held}, {ref: 3, kind: walXORChunk, data: xor.Bytes()}}, 0))
	f.Add(encodeWALChunks([]walChunk{{ref: 5, kind: walDecimalChunk, data: held[:len(held)-1]}}, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		var sb labels.ScratchBuilder
		series, samples, err := decodeWALRecord(b, &sb)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		s2, smp2, err := decodeWALRecord(encodeWALRecord(series, samples), &sb)
		require.NoError(t, err)
		require.Equal(t, len(series), len(s2))
		for i := range series {
			require.Equal(t, series[i].ref, s2[i].ref)
			require.True(t, labels.Equal(series[i].lset, s2[i].lset))
		}
		require.Len(t, smp2, len(samples))
		for i := range samples {
			require.Equal(t, samples[i].ref, smp2[i].ref)
			require.Equal(t, samples[i].t, smp2[i].t)
			require.Equal(t, math.Float64bits(samples[i].v), math.Float64bits(smp2[i].v))
			require.Equal(t, samples[i].h, smp2[i].h)
			require.Equal(t, samples[i].fh, smp2[i].fh)
		}
	})
}

func appendSeries(t *testing.T, db *DB, from, to int, start int64) {
	t.Helper()
	for i := from; i < to; i++ {
		a := db.Appender(context.Background())
		for s := range 3 {
			_, err := a.Append(0, labels.FromStrings("__name__", "jobs_done_total", "worker", fmt.Sprint(s)), start+int64(i)*1000, float64(i*(s+1)))
			require.NoError(t, err)
		}
		require.NoError(t, a.Commit())
	}
}

// requireSamples checks that each of the 3 series holds exactly the samples
// [0, n) that appendSeries wrote.
func requireSamples(t *testing.T, db *DB, start int64, n int) {
	t.Helper()
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	qry, err := engine.NewRangeQuery(context.Background(), db, nil, `jobs_done_total`, time.UnixMilli(start), time.UnixMilli(start+int64(n-1)*1000), time.Second)
	require.NoError(t, err)
	res := qry.Exec(context.Background())
	require.NoError(t, res.Err)
	m, err := res.Matrix()
	require.NoError(t, err)
	require.Len(t, m, 3)
	for _, s := range m {
		require.Len(t, s.Floats, n, "%s", s.Metric)
		w := int(s.Metric.Get("worker")[0] - '0')
		for i, p := range s.Floats {
			require.Equal(t, start+int64(i)*1000, p.T)
			require.Equal(t, float64(i*(w+1)), p.F)
		}
	}
}

func TestMetricsCheckpointBoundsTheWAL(t *testing.T) {
	dir := t.TempDir()
	db, o := openMetricsStore(t, dir)
	var err error
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).UnixMilli()
	appendSeries(t, db, 0, 200, start)
	first := db.metrics.wal.gen
	require.NoError(t, db.CheckpointMetrics())
	gens, err := wlog.List(filepath.Join(dir, metricsWALDir))
	require.NoError(t, err)
	require.Equal(t, []wlog.Gen{{N: first + 1}}, gens, "the old generation is gone")
	for _, s := range db.metrics.byRef {
		require.Empty(t, s.pending, "cut chunks are written")
		require.Equal(t, 200-chunkSamples, s.open.chunk.NumSamples(), "the open chunk is carried into the new generation, not cut")
	}
	requireSamples(t, db, start, 200)

	// More samples after the checkpoint, then a crash: only the new
	// generation replays — the carried chunk's samples and those after
	// it —, and nothing is lost or doubled.
	appendSeries(t, db, 200, 330, start)
	db.abandon(t)
	db, err = Open(o)
	require.NoError(t, err)
	defer db.Close()
	requireSamples(t, db, start, 330)
	gens, err = wlog.List(filepath.Join(dir, metricsWALDir))
	require.NoError(t, err)
	require.Len(t, gens, 1, "replayed generations are deleted once their chunks are written")
	require.Greater(t, gens[0].N, first+1)
}

// chunkKeys counts the in-order chunk keys (0x22) in the store's
// partitions, and the samples they hold.
func chunkKeys(t *testing.T, db *DB) int {
	t.Helper()
	n := 0
	for _, p := range db.parts {
		require.NoError(t, p.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsChunk}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return nil
		}))
	}
	return n
}

// Checkpoints carry a float chunk that took samples since the last one into
// the new WAL generation instead of cutting it: the chunk fills to
// chunkSamples however many checkpoints pass (one key of 120 samples, not
// one per checkpoint); a chunk that took nothing since is cut, so that the
// series can leave the head; and a crash after a carry loses nothing.
func TestCheckpointsCarryOpenChunks(t *testing.T) {
	dir := t.TempDir()
	db, o := openMetricsStore(t, dir)
	var err error
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).UnixMilli()
	from := 0
	for _, upTo := range []int{40, 80, 110} {
		appendSeries(t, db, from, upTo, start)
		require.NoError(t, db.CheckpointMetrics())
		from = upTo
	}
	require.Zero(t, chunkKeys(t, db), "three checkpoints cut nothing")
	gens, err := wlog.List(filepath.Join(dir, metricsWALDir))
	require.NoError(t, err)
	require.Len(t, gens, 1, "each checkpoint deleted the generation before it")
	requireSamples(t, db, start, 110)

	appendSeries(t, db, 110, 125, start)
	require.Zero(t, chunkKeys(t, db), "a chunk a series, cut at 120 samples and held (metrics_held.go)")
	for _, s := range db.metrics.byRef {
		require.Equal(t, 120, s.held.n)
		require.Equal(t, 5, s.open.chunk.NumSamples())
	}

	// A crash after a checkpoint carried the open chunks: they replay.
	require.NoError(t, db.CheckpointMetrics())
	appendSeries(t, db, 125, 130, start)
	db.abandon(t)
	db, err = Open(o)
	require.NoError(t, err)
	requireSamples(t, db, start, 130)

	// Idle: the first checkpoint carries what came since the last one,
	// the second cuts it.
	appendSeries(t, db, 130, 135, start)
	keys := chunkKeys(t, db)
	require.NoError(t, db.CheckpointMetrics())
	require.Equal(t, keys, chunkKeys(t, db))
	require.NoError(t, db.CheckpointMetrics())
	require.Equal(t, keys+3, chunkKeys(t, db))
	for _, s := range db.metrics.byRef {
		require.True(t, s.empty(), "nothing left but in the partitions")
	}
	requireSamples(t, db, start, 135)
	require.NoError(t, db.Close())
	db, err = Open(o)
	require.NoError(t, err)
	defer db.Close()
	requireSamples(t, db, start, 135)
}

func TestWALChunkSamples(t *testing.T) {
	c := chunkenc.NewXORChunk()
	app, err := c.Appender()
	require.NoError(t, err)
	for i := range 5 {
		app.Append(0, int64(1000+i*15), float64(i)/10)
	}
	rec := encodeWALChunks([]walChunk{{ref: 7, kind: walXORChunk, data: c.Bytes()}}, 0)
	var sb labels.ScratchBuilder
	series, samples, err := decodeWALRecord(rec, &sb)
	require.NoError(t, err)
	require.Empty(t, series)
	require.Len(t, samples, 5)
	for i, s := range samples {
		require.Equal(t, uint64(7), s.ref)
		require.Equal(t, int64(1000+i*15), s.t)
		require.Equal(t, float64(i)/10, s.v)
	}

	short := slices.Clone(c.Bytes())
	short[1] = 9 // says 9 samples, holds 5
	_, _, err = decodeWALRecord(encodeWALChunks([]walChunk{{ref: 7, kind: walXORChunk, data: short}}, 0), &sb)
	require.ErrorIs(t, err, ErrCorrupt)
	_, _, err = decodeWALRecord(encodeWALChunks([]walChunk{{ref: 7, kind: walXORChunk, data: []byte{0}}}, 0), &sb)
	require.ErrorIs(t, err, ErrCorrupt)

	back := chunkenc.NewXORChunk()
	bapp, err := back.Appender()
	require.NoError(t, err)
	bapp.Append(0, 2000, 1)
	bapp.Append(0, 1000, 2) // a chunk's times must increase
	_, _, err = decodeWALRecord(encodeWALChunks([]walChunk{{ref: 7, kind: walXORChunk, data: back.Bytes()}}, 0), &sb)
	require.ErrorIs(t, err, ErrCorrupt)
}

// A sparse series' chunk is cut after chunkSpan however few samples it
// holds: kept open across checkpoints, it would otherwise stay in the head
// for days.
func TestChunksSpanAtMostTwoHours(t *testing.T) {
	var points []point
	for i := range 7 {
		points = append(points, point{t: int64(i) * 50 * 60_000, v: float64(i)}) // every 50 minutes
	}
	chunks := buildChunks(points)
	require.Len(t, chunks, 3)
	for _, c := range chunks {
		require.Less(t, c.maxt-c.mint, chunkSpan)
	}
	require.Equal(t, []int64{0, 150 * 60_000, 300 * 60_000}, []int64{chunks[0].mint, chunks[1].mint, chunks[2].mint})
}

// A metrics WAL generation written by builds whose records were zstd
// frames, followed by S2 frames: both replay; what this build writes is
// S2.
func TestMetricsWALReplaysZstdAndS2Frames(t *testing.T) {
	dir := t.TempDir()
	lset := labels.FromStrings("__name__", "up", "job", "a")
	first := encodeWALRecord([]walSeries{{ref: 1, lset: lset}}, []walSample{{ref: 1, point: point{t: walT0.UnixMilli(), v: 1}}})
	second := encodeWALRecord(nil, []walSample{{ref: 1, point: point{t: walT0.UnixMilli() + 15_000, v: 2}}})
	writeZstdThenS2Generation(t, filepath.Join(dir, metricsWALDir), first, second)
	db, _ := openMetricsStore(t, dir)
	defer db.Close()
	require.Equal(t, []float64{1, 2}, floats(t, db, "up")[lset.String()])
	require.Empty(t, db.WALReplaySkipped())

	a := db.Appender(context.Background())
	_, err := a.Append(0, lset, walT0.UnixMilli()+30_000, 3)
	require.NoError(t, err)
	require.NoError(t, a.Commit())
	b, err := os.ReadFile(newestSegment(t, dir, metricsWALDir))
	require.NoError(t, err)
	require.Equal(t, codecS2, b[len(wlog.Magic)+1+wlog.FrameHeader], "the first frame's codec")
}
