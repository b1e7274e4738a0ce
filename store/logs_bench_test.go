package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/store"
)

// benchLogs writes pushes of 1000 lines over 10 of 100 streams, one line
// in 20 carrying a trace id, as lumen-load does over HTTP.
func benchLogs(b *testing.B, db *store.DB, pushes int) []model.TraceID {
	var ids []model.TraceID
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	n := 0
	for p := range pushes {
		var req []store.LogStream
		for s := range 10 {
			st := store.LogStream{Labels: labels.FromStrings("app", fmt.Sprint("app-", (p*10+s)%100), "env", "prod")}
			for range 100 {
				n++
				e := store.LogEntry{T: t0.Add(time.Duration(n) * time.Microsecond).UnixNano(),
					Line: fmt.Sprintf(`ts=%d level=info caller=db.go:%d msg="slow query" duration=%dms rows=%d`, n, n%400, n%900, n%100)}
				if n%20 == 0 {
					e.TraceID = model.TraceID{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 1}
					ids = append(ids, e.TraceID)
				}
				st.Entries = append(st.Entries, e)
			}
			req = append(req, st)
		}
		require.NoError(b, db.WriteLogStreams(context.Background(), req))
	}
	return ids
}

func openBenchStore(b *testing.B) *store.DB {
	o := store.DefaultOptions(b.TempDir())
	o.Retention = 0
	db, err := store.Open(o)
	require.NoError(b, err)
	return db
}

// BenchmarkWriteLogStreams: one push of 1000 lines, durable on return.
func BenchmarkWriteLogStreams(b *testing.B) {
	db := openBenchStore(b)
	defer db.Close()
	b.ResetTimer()
	benchLogs(b, db, b.N)
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkTraceLogs: a trace's lines by id among 1M stored lines.
func BenchmarkTraceLogs(b *testing.B) {
	db := openBenchStore(b)
	defer db.Close()
	ids := benchLogs(b, db, 1000)
	require.NoError(b, db.CheckpointLogs())
	b.ResetTimer()
	for i := range b.N {
		tr, err := db.Trace(context.Background(), ids[(i*7919)%len(ids)])
		require.NoError(b, err)
		require.Len(b, tr.Logs, 1)
	}
}
