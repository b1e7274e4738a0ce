package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/store"
)

var logT0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

// logFixture writes 3 streams × n lines, one line a second, in requests of
// 10 lines; every 7th line of app=cart carries a trace id in its text.
func logFixture(t *testing.T, db *store.DB, n int) model.TraceID {
	t.Helper()
	tid := model.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	streams := []labels.Labels{
		labels.FromStrings("app", "cart", "env", "prod"),
		labels.FromStrings("app", "checkout", "env", "prod"),
		labels.FromStrings("app", "cart", "env", "dev"),
	}
	for i := 0; i < n; i += 10 {
		var req []store.LogStream
		for si, ls := range streams {
			st := store.LogStream{Labels: ls}
			for j := i; j < min(i+10, n); j++ {
				e := store.LogEntry{T: logT0.Add(time.Duration(j) * time.Second).UnixNano(), Line: fmt.Sprintf("level=info stream=%d line=%d", si, j)}
				if si == 0 && j%7 == 0 {
					e.Line += " trace_id=" + tid.String()
					e.TraceID = tid
				}
				if j%5 == 0 {
					e.Metadata = labels.FromStrings("user", fmt.Sprint("u", j%3))
				}
				st.Entries = append(st.Entries, e)
			}
			req = append(req, st)
		}
		require.NoError(t, db.WriteLogStreams(context.Background(), req))
	}
	return tid
}

func TestLogSelect(t *testing.T) {
	for _, tc := range []struct {
		name string
		prep func(t *testing.T, db *store.DB) *store.DB
	}{
		{"from the head", func(_ *testing.T, db *store.DB) *store.DB { return db }},
		{"from blocks after a checkpoint", func(t *testing.T, db *store.DB) *store.DB {
			require.NoError(t, db.CheckpointLogs())
			return db
		}},
		{"after a reopen", func(t *testing.T, db *store.DB) *store.DB {
			require.NoError(t, db.Close())
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openStore(t, dir, func(o *store.Options) { o.LogBlockBytes = 2 << 10 })
			tid := logFixture(t, db, 300)
			if db = tc.prep(t, db); db == nil {
				db = openStore(t, dir)
			}
			defer db.Close()
			ctx := context.Background()
			all := store.LogSelect{Start: logT0.UnixNano(), End: logT0.Add(time.Hour).UnixNano()}

			sel := func(ms ...*labels.Matcher) []store.LogStream {
				q := all
				q.Matchers = ms
				got, err := db.SelectLogs(ctx, q)
				require.NoError(t, err)
				return got
			}
			got := sel(labels.MustNewMatcher(labels.MatchEqual, "app", "cart"))
			require.Len(t, got, 2)
			require.Equal(t, `{app="cart", env="dev"}`, got[0].Labels.String(), "streams sorted by labels")
			require.Equal(t, 600, logLines(got))
			for _, s := range got {
				for i, e := range s.Entries {
					require.Equal(t, logT0.Add(time.Duration(i)*time.Second).UnixNano(), e.T, "lines in time order, each once")
				}
			}
			require.Equal(t, "u0", got[1].Entries[0].Metadata.Get("user"), "structured metadata kept")
			require.Equal(t, tid, got[1].Entries[7].TraceID)

			require.Equal(t, 300, logLines(sel(labels.MustNewMatcher(labels.MatchNotEqual, "app", "cart"))))
			require.Equal(t, 900, logLines(sel(labels.MustNewMatcher(labels.MatchRegexp, "app", "c.*"))))
			require.Equal(t, 300, logLines(sel(labels.MustNewMatcher(labels.MatchRegexp, "app", "c.*"), labels.MustNewMatcher(labels.MatchNotRegexp, "env", "p.*"))))
			require.Empty(t, sel(labels.MustNewMatcher(labels.MatchEqual, "app", "nope")))

			q := all
			q.Matchers = []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "env", "prod")}
			q.Start, q.End = logT0.Add(100*time.Second).UnixNano(), logT0.Add(110*time.Second).UnixNano()
			got, err := db.SelectLogs(ctx, q)
			require.NoError(t, err)
			require.Equal(t, 20, logLines(got), "start inclusive, end exclusive")

			q = all
			q.Matchers = []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "cart")}
			q.Keep = func(_ labels.Labels, e *store.LogEntry) bool { return strings.Contains(e.Line, "line=42") }
			got, err = db.SelectLogs(ctx, q)
			require.NoError(t, err)
			require.Equal(t, 2, logLines(got))

			q.Keep, q.MaxLines = nil, 100
			_, err = db.SelectLogs(ctx, q)
			require.ErrorIs(t, err, store.ErrTooMuch)

			series, err := db.LogSeries(ctx, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "env", "prod")}, all.Start, all.End)
			require.NoError(t, err)
			require.Equal(t, []labels.Labels{labels.FromStrings("app", "cart", "env", "prod"), labels.FromStrings("app", "checkout", "env", "prod")}, series)
			series, err = db.LogSeries(ctx, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "env", "prod")}, logT0.Add(2*time.Hour).UnixNano(), logT0.Add(3*time.Hour).UnixNano())
			require.NoError(t, err)
			require.Empty(t, series, "no lines in the range")
			names, err := db.LogLabelNames(ctx, nil, all.Start, all.End)
			require.NoError(t, err)
			require.Equal(t, []string{"app", "env"}, names)
			values, err := db.LogLabelValues(ctx, "app", nil, all.Start, all.End)
			require.NoError(t, err)
			require.Equal(t, []string{"cart", "checkout"}, values)

			tr, err := db.Trace(ctx, tid)
			require.NoError(t, err)
			require.Len(t, tr.Logs, 1)
			require.Len(t, tr.Logs[0].Entries, 43, "every 7th of 300 lines")
			for _, e := range tr.Logs[0].Entries {
				require.Contains(t, e.Line, tid.String())
			}
		})
	}
}

func TestLogsSurviveACrash(t *testing.T) {
	dir := t.TempDir()
	db := openStore(t, dir, func(o *store.Options) { o.LogBlockBytes = 4 << 10 })
	tid := logFixture(t, db, 200)
	// Some lines are in blocks, the rest only in the WAL and the head.
	db.Abandon(t)

	db = openStore(t, dir, func(o *store.Options) { o.LogBlockBytes = 4 << 10 })
	got, err := db.SelectLogs(context.Background(), store.LogSelect{
		Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "app", ".+")},
		Start:    logT0.UnixNano(), End: logT0.Add(time.Hour).UnixNano(),
	})
	require.NoError(t, err)
	require.Equal(t, 600, logLines(got), "every acknowledged line, each once, though replayed blocks were written before")
	tr, err := db.Trace(context.Background(), tid)
	require.NoError(t, err)
	require.Len(t, tr.Logs[0].Entries, 29)

	// A second crash after more writes, then a clean reopen.
	logFixture(t, db, 20)
	db.Abandon(t)
	db = openStore(t, dir)
	got, err = db.SelectLogs(context.Background(), store.LogSelect{
		Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "checkout")},
		Start:    logT0.UnixNano(), End: logT0.Add(time.Hour).UnixNano(),
	})
	require.NoError(t, err)
	require.Equal(t, 200, logLines(got), "lines written twice are stored once")
	require.NoError(t, db.Close())
}

func TestLogStreamsAreValidated(t *testing.T) {
	db := openStore(t, t.TempDir())
	defer db.Close()
	for _, tc := range []struct {
		lset labels.Labels
		want string
	}{
		{labels.EmptyLabels(), "at least one label"},
		{labels.FromStrings("1app", "x"), `invalid label name "1app"`},
		{labels.FromStrings("app.name", "x"), `invalid label name "app.name"`},
		{labels.New(labels.Label{Name: "a", Value: "1"}, labels.Label{Name: "a", Value: "2"}), `duplicate label name "a"`},
	} {
		err := db.WriteLogStreams(context.Background(), []store.LogStream{
			{Labels: labels.FromStrings("app", "ok"), Entries: []store.LogEntry{{T: 1, Line: "x"}}},
			{Labels: tc.lset, Entries: []store.LogEntry{{T: 1, Line: "x"}}},
		})
		require.ErrorIs(t, err, store.ErrInvalid)
		require.ErrorContains(t, err, tc.want)
	}
	series, err := db.LogSeries(context.Background(), nil, 0, 10)
	require.NoError(t, err)
	require.Empty(t, series, "nothing of a refused request is stored")
}

func TestLogTail(t *testing.T) {
	db := openStore(t, t.TempDir())
	defer db.Close()
	ctx := context.Background()
	cart := labels.FromStrings("app", "cart")
	write := func(ls labels.Labels, lines ...string) {
		st := store.LogStream{Labels: ls}
		for i, l := range lines {
			st.Entries = append(st.Entries, store.LogEntry{T: logT0.Add(time.Duration(i)).UnixNano(), Line: l})
		}
		require.NoError(t, db.WriteLogStreams(ctx, []store.LogStream{st}))
	}
	write(cart, "before the tail")
	tail := db.TailLogs([]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "cart")}, 16)
	write(labels.FromStrings("app", "other"), "not matched")
	for i := range 10 {
		write(cart, fmt.Sprint("a", i), fmt.Sprint("b", i))
	}
	for i := range 10 {
		got := <-tail.C
		require.Equal(t, cart, got.Labels)
		require.Equal(t, []string{fmt.Sprint("a", i), fmt.Sprint("b", i)}, []string{got.Entries[0].Line, got.Entries[1].Line})
	}
	tail.Close()
	_, open := <-tail.C
	require.False(t, open)
	require.NoError(t, tail.Err())

	// A reader that does not keep up is told, not silently skipped.
	slow := db.TailLogs(nil, 2)
	for i := range 5 {
		write(cart, fmt.Sprint("c", i))
	}
	n := 0
	for range slow.C {
		n++
	}
	require.Equal(t, 2, n)
	require.ErrorIs(t, slow.Err(), store.ErrTailBehind)
}

// TestLogTraceIndex: a trace's lines are found through the trace index of
// blocks whatever build wrote it (0x43 keys before, 0x44 now), and ids that
// end the same way, or that are 64-bit ids padded with zeros in front, each
// get their own lines only.
func TestLogTraceIndex(t *testing.T) {
	dir := t.TempDir()
	db := openStore(t, dir, func(o *store.Options) { o.LogBlockBytes = 1 << 10 })
	a := model.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8}
	sameTail := model.TraceID{9, 9, 9, 9, 9, 9, 9, 9, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8}
	short1 := model.TraceID{8: 0x11, 15: 0x01}
	short2 := model.TraceID{8: 0x11, 15: 0x02}
	ids := []model.TraceID{a, sameTail, short1, short2}
	write := func(from, to int) {
		t.Helper()
		for i := from; i < to; i += 20 {
			st := store.LogStream{Labels: labels.FromStrings("app", "cart")}
			for j := i; j < i+20; j++ {
				e := store.LogEntry{T: logT0.Add(time.Duration(j) * time.Second).UnixNano(), Line: fmt.Sprintf("level=info line=%d", j)}
				if j%3 == 0 {
					e.TraceID = ids[j/3%len(ids)]
					e.Line += " trace_id=" + e.TraceID.String()
				}
				st.Entries = append(st.Entries, e)
			}
			require.NoError(t, db.WriteLogStreams(context.Background(), []store.LogStream{st}))
		}
		require.NoError(t, db.CheckpointLogs())
	}
	store.WriteLogTraceKeys(true)
	t.Cleanup(func() { store.WriteLogTraceKeys(false) })
	write(0, 240) // as earlier builds indexed blocks
	store.WriteLogTraceKeys(false)
	write(240, 480)
	require.NoError(t, db.Close())
	db = openStore(t, dir)
	defer db.Close()

	for k, id := range ids {
		tr, err := db.Trace(context.Background(), id)
		require.NoError(t, err)
		require.Len(t, tr.Logs, 1, "trace %s", id)
		var want []int64
		for j := 0; j < 480; j += 3 {
			if j/3%len(ids) == k {
				want = append(want, logT0.Add(time.Duration(j)*time.Second).UnixNano())
			}
		}
		var got []int64
		for _, e := range tr.Logs[0].Entries {
			require.Equal(t, id, e.TraceID)
			require.Contains(t, e.Line, id.String())
			got = append(got, e.T)
		}
		require.Equal(t, want, got, "trace %s: its lines from both halves, and only its own", id)
	}
	_, err := db.Trace(context.Background(), model.TraceID{7: 1, 8: 0xa1, 9: 0xa2, 10: 0xa3, 11: 0xa4, 12: 0xa5, 13: 0xa6, 14: 0xa7, 15: 0xa8})
	require.ErrorIs(t, err, store.ErrNotFound, "an unknown id ending as a known one finds no lines")
}
