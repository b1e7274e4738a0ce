package store_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/goleak"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"))
}

// clock is a settable time source for partition and retention tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openStore opens a store on a real Badger directory.
func openStore(t *testing.T, dir string, mutate ...func(*store.Options)) *store.DB {
	t.Helper()
	o := store.DefaultOptions(dir)
	o.RetentionInterval = time.Hour // tests call EnforceRetention themselves
	o.RejectOlderThan = -1          // fixtures are on fixed past dates
	for _, m := range mutate {
		m(&o)
	}
	db, err := store.Open(o)
	require.NoError(t, err)
	return db
}

var tracesJSON ptrace.JSONMarshaler

// requireSameSpans checks that got holds exactly the spans of want, each with
// the same resource, scope and every field.
func requireSameSpans(t *testing.T, want, got ptrace.Traces) {
	t.Helper()
	w, g := otlptest.SpansByID(want), otlptest.SpansByID(got)
	require.Equal(t, len(w), len(g), "span count")
	for id, ws := range w {
		gs, ok := g[id]
		require.True(t, ok, "span %s missing", id)
		wj, err := tracesJSON.MarshalTraces(ws)
		require.NoError(t, err)
		gj, err := tracesJSON.MarshalTraces(gs)
		require.NoError(t, err)
		require.JSONEq(t, string(wj), string(gj))
	}
}

func copyTraces(td ptrace.Traces) ptrace.Traces {
	out := ptrace.NewTraces()
	td.CopyTo(out)
	return out
}

func TestWriteAndReadTraces(t *testing.T) {
	for _, tc := range []struct {
		name          string
		traces, spans int
		frameItems    int
	}{
		{name: "one frame", traces: 10, spans: 5, frameItems: 256},
		{name: "a trace split over frames", traces: 3, spans: 40, frameItems: 16},
		{name: "frames of one span", traces: 5, spans: 3, frameItems: 1},
		{name: "single span traces", traces: 300, spans: 1, frameItems: 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openStore(t, t.TempDir(), func(o *store.Options) { o.FrameItems = tc.frameItems })
			defer db.Close()
			g := otlptest.New(1)
			td := g.Traces(tc.traces, tc.spans)
			want := copyTraces(td)
			require.NoError(t, db.WriteTraces(context.Background(), td))
			for _, id := range otlptest.TraceIDs(want) {
				got, err := db.Trace(context.Background(), model.TraceID(id))
				require.NoError(t, err)
				require.Equal(t, tc.spans, got.Spans.SpanCount())
				requireSameSpans(t, otlptest.FilterTrace(want, id), got.Spans)
				require.Empty(t, got.Logs)
			}
		})
	}
}

func TestTraceSpreadOverBatchesAndPartitions(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 20, 23, 59, 0, 0, time.UTC)}
	dir := t.TempDir()
	db := openStore(t, dir, func(o *store.Options) { o.Now = clk.Now })
	defer db.Close()
	g := otlptest.New(2)
	first := g.Traces(1, 3)
	id := otlptest.TraceIDs(first)[0]
	want := copyTraces(first)
	require.NoError(t, db.WriteTraces(context.Background(), first))

	// The same trace goes on after midnight, into the next partition.
	clk.Add(2 * time.Minute)
	second := g.Traces(1, 2)
	for _, rs := range second.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				sp.SetTraceID(id)
			}
		}
	}
	second.ResourceSpans().At(0).CopyTo(want.ResourceSpans().AppendEmpty())
	second.ResourceSpans().At(1).CopyTo(want.ResourceSpans().AppendEmpty())
	require.NoError(t, db.WriteTraces(context.Background(), second))

	stats, err := db.Stats()
	require.NoError(t, err)
	require.Len(t, stats.Partitions, 2)
	require.False(t, stats.Partitions[0].Writable, "the old partition is sealed")
	require.True(t, stats.Partitions[1].Writable)

	got, err := db.Trace(context.Background(), model.TraceID(id))
	require.NoError(t, err)
	requireSameSpans(t, want, got.Spans)
}

func TestLogsReachableFromTheirTrace(t *testing.T) {
	db := openStore(t, t.TempDir(), func(o *store.Options) { o.FrameItems = 7 })
	defer db.Close()
	g := otlptest.New(3)
	td := g.Traces(4, 2)
	ids := otlptest.TraceIDs(td)
	require.NoError(t, db.WriteTraces(context.Background(), td))
	ld := g.Logs(ids[:3], 5, 20)
	require.NoError(t, db.WriteLogs(context.Background(), ld))

	for i, id := range ids {
		got, err := db.Trace(context.Background(), model.TraceID(id))
		require.NoError(t, err)
		if i == 3 {
			require.Empty(t, got.Logs, "trace without logs")
			continue
		}
		require.Equal(t, 5, logLines(got.Logs))
		for _, st := range got.Logs {
			// OTLP resources map to streams as Loki maps them.
			require.Equal(t, `{k8s_pod_name="svc-0-7d9f8c6b5-x0", service_name="svc-0"}`, st.Labels.String())
			for _, e := range st.Entries {
				require.Equal(t, model.TraceID(id), e.TraceID)
				require.False(t, e.SpanID.IsEmpty())
				require.Equal(t, "app.logger", e.Metadata.Get("scope_name"))
				require.Equal(t, "9", e.Metadata.Get("severity_number"))
				require.Equal(t, "INFO", e.Metadata.Get("severity_text"))
				require.Equal(t, "http", e.Metadata.Get("logger"))
				require.Equal(t, id.String(), e.Metadata.Get("trace_id"))
				require.Contains(t, e.Line, "handled request")
			}
		}
	}

	// A trace id known only from logs is found too.
	orphan := g.TraceID()
	require.NoError(t, db.WriteLogs(context.Background(), g.Logs([]pcommon.TraceID{orphan}, 2, 0)))
	got, err := db.Trace(context.Background(), model.TraceID(orphan))
	require.NoError(t, err)
	require.Equal(t, 0, got.Spans.SpanCount())
	require.Equal(t, 2, logLines(got.Logs))
}

func logLines(streams []store.LogStream) int {
	n := 0
	for _, st := range streams {
		n += len(st.Entries)
	}
	return n
}

func TestUnknownTraceIsNotFound(t *testing.T) {
	db := openStore(t, t.TempDir())
	defer db.Close()
	require.NoError(t, db.WriteTraces(context.Background(), otlptest.New(4).Traces(3, 3)))
	_, err := db.Trace(context.Background(), model.TraceID{1, 2, 3})
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestInvalidSpansAreRefusedWhole(t *testing.T) {
	db := openStore(t, t.TempDir())
	defer db.Close()
	g := otlptest.New(5)
	td := g.Traces(2, 2)
	ids := otlptest.TraceIDs(td)
	td.ResourceSpans().At(1).ScopeSpans().At(0).Spans().At(0).SetTraceID(pcommon.TraceID{})
	err := db.WriteTraces(context.Background(), td)
	require.ErrorIs(t, err, store.ErrInvalid)
	require.Contains(t, err.Error(), "resource_spans[1].scope_spans[0].spans[0] has an all-zero trace_id")
	for _, id := range ids {
		_, err := db.Trace(context.Background(), model.TraceID(id))
		require.ErrorIs(t, err, store.ErrNotFound, "nothing of a refused request is stored")
	}

	td = g.Traces(1, 1)
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).SetSpanID(pcommon.SpanID{})
	require.ErrorIs(t, db.WriteTraces(context.Background(), td), store.ErrInvalid)
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	g := otlptest.New(6)
	td := g.Traces(50, 4)
	want := copyTraces(td)
	ids := otlptest.TraceIDs(want)
	ld := g.Logs(ids[:10], 3, 5)

	db := openStore(t, dir)
	require.NoError(t, db.WriteTraces(context.Background(), td))
	require.NoError(t, db.WriteLogs(context.Background(), ld))
	require.NoError(t, db.Close())
	require.NoError(t, db.Close(), "a second Close is harmless")
	_, err := db.Trace(context.Background(), model.TraceID(ids[0]))
	require.ErrorIs(t, err, store.ErrClosed)

	db = openStore(t, dir)
	defer db.Close()
	for i, id := range ids {
		got, err := db.Trace(context.Background(), model.TraceID(id))
		require.NoError(t, err)
		requireSameSpans(t, otlptest.FilterTrace(want, id), got.Spans)
		if i < 10 {
			require.Equal(t, 3, logLines(got.Logs))
		}
	}
	// New writes after a reopen do not collide with the old batches.
	more := g.Traces(5, 2)
	moreIDs := otlptest.TraceIDs(more)
	require.NoError(t, db.WriteTraces(context.Background(), more))
	got, err := db.Trace(context.Background(), model.TraceID(moreIDs[0]))
	require.NoError(t, err)
	require.Equal(t, 2, got.Spans.SpanCount())
	got, err = db.Trace(context.Background(), model.TraceID(ids[0]))
	require.NoError(t, err)
	require.Equal(t, 4, got.Spans.SpanCount())
}

func TestRetentionDropsOldPartitionsAndFreesDisk(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	db := openStore(t, dir, func(o *store.Options) { o.Now = clk.Now; o.Retention = 3 * 24 * time.Hour })
	defer db.Close()
	g := otlptest.New(7)
	var dayIDs [][]pcommon.TraceID
	for range 5 {
		td := g.Traces(200, 5)
		dayIDs = append(dayIDs, otlptest.TraceIDs(td))
		require.NoError(t, db.WriteTraces(context.Background(), td))
		clk.Add(24 * time.Hour)
	}
	// Five partitions; "now" is the start of a sixth day.
	before, err := db.Stats()
	require.NoError(t, err)
	require.Len(t, before.Partitions, 5)
	oldest := filepath.Join(dir, "partitions", before.Partitions[0].Name)
	require.DirExists(t, oldest)

	gen, _ := db.MetricsPast(10 * time.Minute)
	dropped := db.EnforceRetention()
	moved, _ := db.MetricsPast(10 * time.Minute)
	require.NotEqual(t, gen, moved, "data dropped: answers kept from before are stale")
	// Now is Nov 6 12:00, so the cutoff is Nov 3 12:00: the partitions of
	// Nov 1 and Nov 2 end before it, Nov 3's does not.
	require.Equal(t, []string{"20261101T000000Z", "20261102T000000Z"}, dropped)
	require.NoDirExists(t, oldest)
	after, err := db.Stats()
	require.NoError(t, err)
	require.Len(t, after.Partitions, 3)
	require.Equal(t, before.DiskBytes-before.Partitions[0].DiskBytes-before.Partitions[1].DiskBytes, after.DiskBytes)
	require.Empty(t, db.EnforceRetention(), "nothing more to drop")

	_, err = db.Trace(context.Background(), model.TraceID(dayIDs[0][0]))
	require.ErrorIs(t, err, store.ErrNotFound)
	got, err := db.Trace(context.Background(), model.TraceID(dayIDs[4][0]))
	require.NoError(t, err)
	require.Equal(t, 5, got.Spans.SpanCount())
}

// TestMetricsPastMovesOnOldWrites: the generation of the metric data
// before the horizon moves when a sample older than the horizon is written,
// not for newer ones; the horizon is the first one asked.
func TestMetricsPastMovesOnOldWrites(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	db := openStore(t, t.TempDir(), func(o *store.Options) { o.Now = clk.Now })
	defer db.Close()
	write := func(lset labels.Labels, at time.Duration) {
		app := db.Appender(context.Background())
		_, err := app.Append(0, lset, clk.Now().Add(-at).UnixMilli(), 1)
		require.NoError(t, err)
		require.NoError(t, app.Commit())
	}
	gen, before := db.MetricsPast(10 * time.Minute)
	require.Equal(t, clk.Now().Add(-10*time.Minute).UnixMilli(), before)
	write(labels.FromStrings("__name__", "up"), 9*time.Minute)
	now, _ := db.MetricsPast(time.Hour) // the first horizon stays
	require.Equal(t, gen, now, "newer than the horizon")
	write(labels.FromStrings("__name__", "up", "job", "backfilled"), 11*time.Minute)
	now, before = db.MetricsPast(time.Hour)
	require.NotEqual(t, gen, now, "older than the horizon")
	require.Equal(t, clk.Now().Add(-10*time.Minute).UnixMilli(), before)
}

func TestDiskBudgetDropsOldestThenCutsTheHead(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	db := openStore(t, dir, func(o *store.Options) { o.Now = clk.Now; o.Retention = 0 })
	for range 3 {
		require.NoError(t, db.WriteTraces(context.Background(), otlptest.New(8).Traces(300, 5)))
		clk.Add(24 * time.Hour)
	}
	head := otlptest.New(9).Traces(300, 5)
	headID := otlptest.TraceIDs(head)[0]
	require.NoError(t, db.WriteTraces(context.Background(), head))
	stats, err := db.Stats()
	require.NoError(t, err)
	require.Len(t, stats.Partitions, 4)
	require.NoError(t, db.Close())

	// Reopen with a budget that everything but the three older partitions
	// fits in with half of one to spare: they go, on open, before anything
	// is written. (The head is larger than the sealed ones: its DISCARD
	// file is reserved whole while it is writable; and it holds its last
	// memtable, written at the close.)
	db = openStore(t, dir, func(o *store.Options) { o.Now = clk.Now; o.Retention = 0 })
	stats, err = db.Stats()
	require.NoError(t, err)
	require.NoError(t, db.Close())
	older := stats.Partitions[0].DiskBytes
	require.Equal(t, older, stats.Partitions[2].DiskBytes, "the older partitions hold the same")
	budget := stats.DiskBytes - 3*older + older/2
	db = openStore(t, dir, func(o *store.Options) { o.Now = clk.Now; o.Retention = 0; o.MaxDiskBytes = budget })
	stats, err = db.Stats()
	require.NoError(t, err)
	require.Len(t, stats.Partitions, 1)
	require.True(t, stats.Partitions[0].Writable)
	_, err = db.Trace(context.Background(), model.TraceID(headID))
	require.NoError(t, err)
	require.NoError(t, db.Close())

	// A budget smaller than the head alone: the head is cut — a new one
	// starts now — and dropped.
	clk.Add(time.Minute)
	db = openStore(t, dir, func(o *store.Options) { o.Now = clk.Now; o.Retention = 0; o.MaxDiskBytes = 1 })
	defer db.Close()
	stats, err = db.Stats()
	require.NoError(t, err)
	require.Len(t, stats.Partitions, 1)
	require.True(t, stats.Partitions[0].Writable)
	require.Equal(t, clk.Now().Truncate(time.Second), stats.Partitions[0].Start)
	require.Equal(t, time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC), stats.Partitions[0].End, "a cut head ends at the next boundary")
	_, err = db.Trace(context.Background(), model.TraceID(headID))
	require.ErrorIs(t, err, store.ErrNotFound)
	require.NoError(t, db.WriteTraces(context.Background(), otlptest.New(10).Traces(3, 2)), "writes go on")
}

func TestConcurrentWritesReadsAndRollover(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 1, 23, 59, 59, 0, time.UTC)}
	db := openStore(t, t.TempDir(), func(o *store.Options) { o.Now = clk.Now; o.PartitionDuration = time.Hour; o.Retention = 0 })
	defer db.Close()
	var wg sync.WaitGroup
	idsCh := make(chan []pcommon.TraceID, 16)
	for w := range 4 {
		wg.Go(func() {
			g := otlptest.New(uint64(100 + w))
			for range 4 {
				td := g.Traces(20, 3)
				ids := otlptest.TraceIDs(td)
				if err := db.WriteTraces(context.Background(), td); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				idsCh <- ids
				clk.Add(20 * time.Minute) // several rollovers while others write
			}
		})
	}
	wg.Wait()
	close(idsCh)
	n := 0
	for ids := range idsCh {
		for _, id := range ids {
			got, err := db.Trace(context.Background(), model.TraceID(id))
			require.NoError(t, err)
			require.Equal(t, 3, got.Spans.SpanCount())
			n++
		}
	}
	require.Equal(t, 4*4*20, n)
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*store.Options)
		want   string
	}{
		{"no dir", func(o *store.Options) { o.Dir = "" }, "data dir is empty"},
		{"tiny partition", func(o *store.Options) { o.PartitionDuration = time.Second }, "shorter than a minute"},
		{"retention below a partition", func(o *store.Options) { o.Retention = time.Hour }, "shorter than one partition"},
		{"negative budget", func(o *store.Options) { o.MaxDiskBytes = -1 }, "negative"},
		{"zero frame", func(o *store.Options) { o.FrameItems = 0 }, "frame items"},
		{"unknown log compression", func(o *store.Options) { o.LogCompression = "max" }, `log compression "max": fast or better`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := store.DefaultOptions(t.TempDir())
			tc.mutate(&o)
			require.ErrorContains(t, o.Validate(), tc.want)
			_, err := store.Open(o)
			require.ErrorContains(t, err, tc.want)
		})
	}
	require.NoError(t, store.DefaultOptions("x").Validate())
}

func TestUnknownEntriesInDataDirAreIgnored(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "partitions", "lost+found"), 0o755))
	db := openStore(t, dir)
	require.NoError(t, db.Close())
}

// TestSpanFramesOfEarlierBuildsRead: a store holding what builds before
// span field columns and postings format 3 wrote (span frames of codec
// 0x02, postings of format 2 with the 0x06 batch table), what builds
// before raw ids and postings format 4 wrote (codec 0x05, format 3) and
// what is written now reads every trace of each, whole, and finds every
// one by search, before and after a restart.
func TestSpanFramesOfEarlierBuildsRead(t *testing.T) {
	dir := t.TempDir()
	db := openStore(t, dir)
	earlier, fields, now := otlptest.New(21).Traces(30, 4), otlptest.New(23).Traces(30, 4), otlptest.New(22).Traces(30, 4)
	wantEarlier, wantFields, wantNow := copyTraces(earlier), copyTraces(fields), copyTraces(now)
	store.WriteSpanCodec(0x02)
	store.WritePostingsFormat(2)
	err := db.WriteTraces(context.Background(), earlier)
	store.WriteSpanCodec(0x05)
	store.WritePostingsFormat(3)
	if err == nil {
		err = db.WriteTraces(context.Background(), fields)
	}
	store.WriteSpanCodec(0)
	store.WritePostingsFormat(0)
	require.NoError(t, err)
	require.NoError(t, db.WriteTraces(context.Background(), now))
	check := func(db *store.DB) {
		t.Helper()
		for _, want := range []ptrace.Traces{wantEarlier, wantFields, wantNow} {
			for _, id := range otlptest.TraceIDs(want) {
				got, err := db.Trace(context.Background(), model.TraceID(id))
				require.NoError(t, err)
				requireSameSpans(t, otlptest.FilterTrace(want, id), got.Spans)
			}
		}
		// Search: every trace, and by a span name of each set.
		window := store.TraceSearch{Start: uint64(time.Now().Add(-time.Hour).UnixNano()), End: uint64(time.Now().Add(time.Hour).UnixNano()), Limit: 1000}
		res, err := db.SearchTraces(context.Background(), window)
		require.NoError(t, err)
		found := map[model.TraceID]bool{}
		for _, s := range res.Traces {
			found[s.TraceID] = true
		}
		for _, want := range []ptrace.Traces{wantEarlier, wantFields, wantNow} {
			for _, id := range otlptest.TraceIDs(want) {
				require.True(t, found[model.TraceID(id)], "trace %s found by search", id)
			}
			sp := want.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
			svc, _ := want.ResourceSpans().At(0).Resource().Attributes().Get("service.name")
			q := window
			q.Drive = store.Term{Kind: store.TermName, A: svc.Str(), B: sp.Name()}
			res, err := db.SearchTraces(context.Background(), q)
			require.NoError(t, err)
			var ids []model.TraceID
			for _, s := range res.Traces {
				ids = append(ids, s.TraceID)
			}
			require.Contains(t, ids, model.TraceID(sp.TraceID()), "span name %q of %s", sp.Name(), svc.Str())
		}
	}
	check(db)
	require.NoError(t, db.Close())
	db = openStore(t, dir)
	defer db.Close()
	check(db)
}
