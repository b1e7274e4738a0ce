package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"
)

// Churned series and streams (every rollout brings new pod names) leave
// the head once idle, so the head follows the active ones; their data
// stays readable from the partitions, and a restart does not bring them
// back.
func TestIdleSeriesAndStreamsLeaveTheHead(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeDisk{free: 100 << 30, now: walT0}
	db, o := openOnFakeDisk(t, dir, clk, func(o *Options) { o.HeadIdleTimeout = time.Hour })
	const perRound, rounds = 500, 4
	for r := range rounds {
		ts := clk.Now()
		a := db.Appender(context.Background())
		var streams []LogStream
		for i := range perRound {
			pod := fmt.Sprintf("pod-%d-%d", r, i)
			_, err := a.Append(0, labels.FromStrings("__name__", "up", "pod", pod), ts.UnixMilli(), float64(r))
			require.NoError(t, err)
			streams = append(streams, LogStream{Labels: labels.FromStrings("pod", pod), Entries: []LogEntry{{T: ts.UnixNano(), Line: "started"}}})
		}
		require.NoError(t, a.Commit())
		require.NoError(t, db.WriteLogStreams(context.Background(), streams))
		// Checkpoints an idle period apart: the first writes the round's
		// log lines and carries its open metric chunks into the new WAL
		// generation, the second writes those chunks (they took nothing
		// since) and finds the streams idle, the third the series.
		require.NoError(t, db.CheckpointMetrics())
		require.NoError(t, db.CheckpointLogs())
		up := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")}
		require.Len(t, db.metrics.selectSeries(up), perRound, "round %d: the head selects the round's series", r)
		clk.set(100 << 30)
		clk.mu.Lock()
		clk.now = clk.now.Add(61 * time.Minute)
		clk.mu.Unlock()
		require.NoError(t, db.CheckpointMetrics())
		require.NoError(t, db.CheckpointLogs())
		require.Equal(t, perRound, db.HeadStats().Series, "round %d: the series' chunks were written by that checkpoint", r)
		require.NoError(t, db.CheckpointMetrics())
		st := db.HeadStats()
		require.Zero(t, st.Series, "round %d: every series is idle an hour later", r)
		require.Zero(t, st.Streams, "round %d", r)
		require.Empty(t, db.metrics.selectSeries(up), "round %d: nor the selections the head keeps", r)
		// Read from the partition alone, whose postings the rounds
		// before were read (and cached) from: this round's are there.
		require.Equal(t, perRound*(r+1), len(floats(t, db, "up")), "round %d", r)
		got, err := db.SelectLogs(context.Background(), LogSelect{Start: walT0.UnixNano(), End: clk.Now().UnixNano(),
			Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "pod", "pod-.*")}})
		require.NoError(t, err)
		require.Equal(t, perRound*(r+1), len(got), "round %d", r)
	}
	st := db.HeadStats()
	require.Equal(t, uint64(perRound*rounds), st.SeriesRemoved)
	require.Equal(t, uint64(perRound*rounds), st.StreamsRemoved)
	require.Len(t, floats(t, db, "up"), perRound*rounds, "removed series are still read from the partitions")
	got, err := db.SelectLogs(context.Background(), LogSelect{Start: walT0.UnixNano(), End: clk.Now().UnixNano(),
		Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "pod", "pod-.*")}})
	require.NoError(t, err)
	require.Len(t, got, perRound*rounds)

	// A removed series that comes back continues under a new ref; reads
	// merge it with its past.
	back := labels.FromStrings("__name__", "up", "pod", "pod-0-7")
	a := db.Appender(context.Background())
	_, err = a.Append(0, back, clk.Now().UnixMilli(), 9)
	require.NoError(t, err)
	require.NoError(t, a.Commit())
	require.Equal(t, []float64{0, 9}, floats(t, db, "up")[back.String()])
	require.Equal(t, 1, db.HeadStats().Series)

	db.abandon(t)
	db, err = Open(o)
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, 1, db.HeadStats().Series, "the WAL names only the series still in the head")
	require.Equal(t, []float64{0, 9}, floats(t, db, "up")[back.String()])
}

// A series used within the idle timeout stays, and so does one holding
// unwritten samples.
func TestActiveSeriesStay(t *testing.T) {
	clk := &fakeDisk{free: 100 << 30, now: walT0}
	db, _ := openOnFakeDisk(t, t.TempDir(), clk, func(o *Options) { o.HeadIdleTimeout = time.Hour })
	defer db.Close()
	a := db.Appender(context.Background())
	_, err := a.Append(0, labels.FromStrings("__name__", "up", "job", "a"), walT0.UnixMilli(), 1)
	require.NoError(t, err)
	require.NoError(t, a.Commit())
	clk.mu.Lock()
	clk.now = clk.now.Add(59 * time.Minute)
	clk.mu.Unlock()
	require.NoError(t, db.CheckpointMetrics())
	require.NoError(t, db.CheckpointMetrics())
	require.Equal(t, 1, db.HeadStats().Series)
}

func TestHeadLimits(t *testing.T) {
	clk := &fakeDisk{free: 100 << 30, now: walT0}
	db, _ := openOnFakeDisk(t, t.TempDir(), clk, func(o *Options) {
		o.Limits.MaxActiveSeries = 5
		o.Limits.MaxSeriesPerMetric = 3
		o.Limits.MaxActiveStreams = 2
		o.Limits.MaxLabelNamesPerSeries = 4
		o.Limits.MaxLabelNamesPerStream = 2
		o.Limits.MaxLabelValueLength = 10
	})
	defer db.Close()
	appendOne := func(ls ...string) error {
		a := db.Appender(context.Background())
		_, err := a.Append(0, labels.FromStrings(ls...), walT0.UnixMilli(), 1)
		if err != nil {
			_ = a.Rollback()
			return err
		}
		return a.Commit()
	}
	for i := range 3 {
		require.NoError(t, appendOne("__name__", "a", "i", fmt.Sprint(i)))
	}
	for _, tc := range []struct {
		ls   []string
		want string
	}{
		{[]string{"__name__", "a", "i", "3"}, `metric "a" has 3 series in the head, the limit (max_series_per_metric)`},
		{[]string{"__name__", "b", "w", "x", "y", "z", "q", "r", "s", "t"}, "has 5 labels, more than the limit of 4 (max_label_names_per_series)"},
		{[]string{"__name__", "b", "w", strings.Repeat("v", 11)}, `value of label "w" is 11 bytes, longer than the limit of 10 (max_label_value_length)`},
	} {
		err := appendOne(tc.ls...)
		require.ErrorIs(t, err, ErrLimit)
		require.ErrorContains(t, err, tc.want)
	}
	require.NoError(t, appendOne("__name__", "b", "i", "0"))
	require.NoError(t, appendOne("__name__", "c", "i", "0"))
	err := appendOne("__name__", "d", "i", "0")
	require.ErrorIs(t, err, ErrLimit)
	require.ErrorContains(t, err, "the head holds 5 series, the limit (max_active_series)")
	require.NoError(t, appendOne("__name__", "a", "i", "1"), "existing series go on")

	line := func(app string) LogStream {
		return LogStream{Labels: labels.FromStrings("app", app), Entries: []LogEntry{{T: walT0.UnixNano(), Line: "x"}}}
	}
	require.NoError(t, db.WriteLogStreams(context.Background(), []LogStream{line("a"), line("b")}))
	err = db.WriteLogStreams(context.Background(), []LogStream{line("a"), line("c")})
	require.ErrorIs(t, err, ErrLimit)
	require.ErrorContains(t, err, "1 lines refused, the others stored")
	require.ErrorContains(t, err, "the head holds 2 streams, the limit (max_active_streams)")
	err = db.WriteLogStreams(context.Background(), []LogStream{{Labels: labels.FromStrings("a", "1", "b", "2", "c", "3"), Entries: line("x").Entries}})
	require.ErrorIs(t, err, ErrLimit)
	require.ErrorContains(t, err, "has 3 labels, more than the limit of 2 (max_label_names_per_stream)")
}

// A PromQL selector over more series than max_series_per_query fails with
// a message naming the limit, instead of holding them all.
func TestSeriesPerQueryIsBounded(t *testing.T) {
	clk := &fakeDisk{free: 100 << 30, now: walT0}
	db, _ := openOnFakeDisk(t, t.TempDir(), clk, func(o *Options) { o.Limits.MaxSeriesPerQuery = 5 })
	defer db.Close()
	a := db.Appender(context.Background())
	for i := range 6 {
		_, err := a.Append(0, labels.FromStrings("__name__", "up", "i", fmt.Sprint(i)), walT0.UnixMilli(), 1)
		require.NoError(t, err)
	}
	require.NoError(t, a.Commit())
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	for query, wantErr := range map[string]bool{`count(up)`: true, `count(up{i!="0"})`: false} {
		qry, err := engine.NewInstantQuery(context.Background(), db, nil, query, walT0)
		require.NoError(t, err)
		res := qry.Exec(context.Background())
		if wantErr {
			require.ErrorContains(t, res.Err, "the query selects more than 5 series (limits.max_series_per_query)")
		} else {
			require.NoError(t, res.Err)
		}
	}
}

// A query sorts the head series it selected by their ranks in the head's
// label order. One that left the head since it was selected keeps its old
// rank while those still there are ranked again with the series made
// since: it is placed by its labels, not by that stale rank.
func TestSelectedSeriesGoneMeanwhileSortByLabels(t *testing.T) {
	clk := &fakeDisk{free: 100 << 30, now: walT0}
	db, _ := openOnFakeDisk(t, t.TempDir(), clk, func(o *Options) { o.HeadIdleTimeout = time.Hour })
	defer db.Close()
	appendPods := func(pods ...string) {
		t.Helper()
		a := db.Appender(context.Background())
		for _, pod := range pods {
			_, err := a.Append(0, labels.FromStrings("__name__", "up", "pod", pod), clk.Now().UnixMilli(), 1)
			require.NoError(t, err)
		}
		require.NoError(t, a.Commit())
	}
	var first, last, early []string
	for i := range 5 {
		first = append(first, fmt.Sprintf("p%02d", i))
		last = append(last, fmt.Sprintf("p%02d", i+5))
		early = append(early, fmt.Sprintf("o%02d", i))
	}
	appendPods(append(slices.Clone(first), last...)...)
	up := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")}
	db.metrics.sortByLabels(db.metrics.selectSeries(up)) // ranks p00..p09 as 0..9
	require.NoError(t, db.CheckpointMetrics())           // carries their chunks
	clk.mu.Lock()
	clk.now = clk.now.Add(61 * time.Minute)
	clk.mu.Unlock()
	appendPods(first...)
	require.NoError(t, db.CheckpointMetrics()) // writes p05..p09's chunks
	selected := db.metrics.selectSeries(up)
	require.Len(t, selected, 10)
	require.NoError(t, db.CheckpointMetrics()) // p05..p09 leave the head
	require.Equal(t, 5, db.HeadStats().Series)
	appendPods(early...) // ranked before the rest at the next sort
	selected = append(selected, db.metrics.selectSeries([]*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "pod", "o.*")})...)
	require.Len(t, selected, 15)
	with := make([]int, len(selected))
	for i := range with {
		with[i] = i
	}
	orig := slices.Clone(selected)
	db.metrics.sortByLabelsWith(selected, with)
	var got []string
	for i, s := range selected {
		got = append(got, s.lset.Get("pod"))
		require.Same(t, orig[with[i]], s, "with moves along")
	}
	want := slices.Concat(early, first, last)
	slices.Sort(want)
	require.Equal(t, want, got)
}
