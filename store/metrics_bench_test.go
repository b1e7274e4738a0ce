package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/store"
)

// BenchmarkPromQLRateSum measures `sum by (job) (rate(x[5m]))` over 10k
// series × 1 h of 15 s samples (2.4M samples, most in flushed chunks), as an
// instant query at the end of the hour and as a range query over the hour at
// a 1 min step.
func BenchmarkPromQLRateSum(b *testing.B) {
	db, err := store.Open(func() store.Options {
		o := store.DefaultOptions(b.TempDir())
		o.Retention = 0
		return o
	}())
	require.NoError(b, err)
	defer db.Close()
	const nSeries, nSamples = 10_000, 240
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	lsets := make([]labels.Labels, nSeries)
	for i := range lsets {
		lsets[i] = labels.FromStrings("__name__", "x", "job", fmt.Sprintf("job-%d", i%10), "instance", fmt.Sprintf("host-%d", i))
	}
	for r := range nSamples {
		a := db.Appender(context.Background())
		for i, ls := range lsets {
			_, err := a.Append(0, ls, start.Add(time.Duration(r)*15*time.Second).UnixMilli(), float64(r*(i%7+1)))
			require.NoError(b, err)
		}
		require.NoError(b, a.Commit())
	}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	end := start.Add(nSamples * 15 * time.Second)
	b.Run("instant", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			q, err := engine.NewInstantQuery(context.Background(), db, nil, `sum by (job) (rate(x[5m]))`, end)
			require.NoError(b, err)
			res := q.Exec(context.Background())
			require.NoError(b, res.Err)
			v, _ := res.Vector()
			require.Len(b, v, 10)
			q.Close()
		}
	})
	b.Run("range_1h_step_1m", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			q, err := engine.NewRangeQuery(context.Background(), db, nil, `sum by (job) (rate(x[5m]))`, start.Add(5*time.Minute), end, time.Minute)
			require.NoError(b, err)
			res := q.Exec(context.Background())
			require.NoError(b, res.Err)
			m, _ := res.Matrix()
			require.Len(b, m, 10)
			q.Close()
		}
	})
}

// BenchmarkCheckpoint times a metrics checkpoint over 100k series whose open
// chunks hold 60 samples each (as a 15-s scrape leaves them after 15
// minutes): carried into the new WAL generation, or cut and written to the
// partition (as before 2026-12-03, and as the disk budget's checkpoint).
func BenchmarkCheckpoint(b *testing.B) {
	for _, mode := range []string{"carry", "cut"} {
		b.Run(mode, func(b *testing.B) {
			const series, samples = 100_000, 60
			o := store.DefaultOptions(b.TempDir())
			o.Retention = 0
			o.RejectOlderThan = -1
			db, err := store.Open(o)
			require.NoError(b, err)
			defer db.Close()
			sets := make([]labels.Labels, series)
			for i := range sets {
				sets[i] = labels.FromStrings("__name__", "http_requests_total", "instance", fmt.Sprintf("10.0.%d.%d:9100", i/256, i%256), "job", fmt.Sprintf("job-%d", i%10))
			}
			t0 := time.Now().Add(-time.Hour).UnixMilli()
			checkpoint := db.CheckpointMetrics
			if mode == "cut" {
				checkpoint = db.CheckpointMetricsCutting
			}
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				for r := range samples {
					a := db.Appender(context.Background())
					for j, lset := range sets {
						_, err := a.Append(0, lset, t0+int64(i*samples+r)*15_000, float64(j+r))
						require.NoError(b, err)
					}
					require.NoError(b, a.Commit())
				}
				b.StartTimer()
				require.NoError(b, checkpoint())
			}
		})
	}
}
