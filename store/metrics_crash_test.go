package store

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
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
	f.Add([]byte{walRecordSamples, 0xff, 0xff, 0xff, 0xff, 0x0f})
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
		require.Nil(t, s.open.chunk)
	}
	requireSamples(t, db, start, 200)

	// More samples after the checkpoint, then a crash: only the new
	// generation replays, and nothing is lost or doubled.
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
