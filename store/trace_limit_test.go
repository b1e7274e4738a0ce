package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/store"
)

// A trace whose client wrote without end costs no more to read than the
// limits: the spans read up to max_trace_bytes and the newest
// max_trace_log_lines lines, with the answer saying so.
func TestOversizedTraceIsTruncated(t *testing.T) {
	db := openStore(t, t.TempDir(), func(o *store.Options) {
		o.Limits.MaxTraceBytes = 16 << 10
		o.Limits.MaxTraceLogLines = 5
	})
	defer db.Close()
	g := otlptest.New(11)
	first := g.Traces(1, 50)
	id := otlptest.TraceIDs(first)[0]
	for i := range 40 { // 40 batches of 50 spans under one trace id
		td := first
		if i > 0 {
			td = g.Traces(1, 50)
			for _, rs := range td.ResourceSpans().All() {
				for _, ss := range rs.ScopeSpans().All() {
					for _, sp := range ss.Spans().All() {
						sp.SetTraceID(id)
					}
				}
			}
		}
		require.NoError(t, db.WriteTraces(context.Background(), td))
	}
	var lines []store.LogEntry
	for i := range 20 {
		lines = append(lines, store.LogEntry{T: logT0.Add(time.Duration(i) * time.Second).UnixNano(), Line: fmt.Sprint("line ", i), TraceID: model.TraceID(id)})
	}
	require.NoError(t, db.WriteLogStreams(context.Background(), []store.LogStream{{Labels: labels.FromStrings("app", "loud"), Entries: lines}}))

	got, err := db.Trace(context.Background(), model.TraceID(id))
	require.NoError(t, err)
	require.Less(t, got.Spans.SpanCount(), 2000, "not every span is read")
	require.Positive(t, got.Spans.SpanCount())
	require.Contains(t, got.Truncated, "(max_trace_bytes) were left out")
	require.Contains(t, got.Truncated, "log lines past 5 (max_trace_log_lines) were left out")
	require.Len(t, got.Logs, 1)
	require.Len(t, got.Logs[0].Entries, 5)
	require.Equal(t, "line 19", got.Logs[0].Entries[4].Line, "the newest lines are kept")
}
