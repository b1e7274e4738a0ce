package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// TestSelectionsFollowWritesUnderLoad: while series are added, written to
// the partition and leave the head, concurrent selections (with and
// without a limit, each kept by the head and the partition) never lose a
// series they found before, find each once and in label order, and once
// the writes stop they find all.
func TestSelectionsFollowWritesUnderLoad(t *testing.T) {
	clk := &fakeDisk{free: 100 << 30, now: walT0}
	db, _ := openOnFakeDisk(t, t.TempDir(), clk, func(o *Options) { o.HeadIdleTimeout = time.Hour })
	defer db.Close()
	const rounds, perRound = 20, 50
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"), labels.MustNewMatcher(labels.MatchNotEqual, "job", "other")}
	count := func(limit int) int {
		q, err := db.Querier(0, walT0.Add(48*time.Hour).UnixMilli())
		require.NoError(t, err)
		defer q.Close()
		set := q.Select(context.Background(), true, &storage.SelectHints{Start: 0, End: walT0.Add(48 * time.Hour).UnixMilli(), Limit: limit}, ms...)
		n := 0
		var prev labels.Labels
		for set.Next() {
			// In label order, each series once: a series counted twice
			// would hide one missed.
			if l := set.At().Labels(); n > 0 && labels.Compare(prev, l) >= 0 {
				t.Errorf("limit %d: %s after %s", limit, l, prev)
			} else {
				prev = l
			}
			n++
		}
		require.NoError(t, set.Err())
		return n
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, limit := range []int{0, rounds * perRound * 2} {
		wg.Go(func() {
			last := 0
			for {
				select {
				case <-done:
					return
				default:
				}
				n := count(limit)
				if n < last {
					t.Errorf("limit %d: %d series after %d", limit, n, last)
					return
				}
				last = n
			}
		})
	}
	for r := range rounds {
		ts := clk.Now()
		a := db.Appender(context.Background())
		for i := range perRound {
			_, err := a.Append(0, labels.FromStrings("__name__", "up", "job", "web", "pod", fmt.Sprintf("pod-%d-%d", r, i)), ts.UnixMilli(), 1)
			require.NoError(t, err)
		}
		require.NoError(t, a.Commit())
		require.NoError(t, db.CheckpointMetrics())
		if r%3 == 2 {
			// Every third round, the series so far leave the head.
			clk.mu.Lock()
			clk.now = clk.now.Add(61 * time.Minute)
			clk.mu.Unlock()
			require.NoError(t, db.CheckpointMetrics())
		}
	}
	close(done)
	wg.Wait()
	require.Equal(t, rounds*perRound, count(0))
	require.Equal(t, rounds*perRound, count(rounds*perRound*2))
}

// A partition's cached postings are used only by reads that began at the
// state they were read at, with no write under way: a read whose snapshot
// is older than an entry (it began before a write that another read then
// cached) must not get it — its labels are not in that snapshot — and
// nothing read while a write is under way, which may have committed part
// of its keys, is kept.
func TestPostingsCacheKeepsWhatOneStateHeld(t *testing.T) {
	c := &postingsCache{}
	c.refs.max, c.selected.max = 1<<10, 1<<10
	key := []byte("job=web")
	before := c.view()
	before.put(key, []uint64{1})
	got, ok := c.view().get(key)
	require.True(t, ok)
	require.Equal(t, []uint64{1}, got)

	ended := c.writing()
	during := c.view()
	during.put(key, []uint64{1, 2})
	_, ok = during.get(key)
	require.False(t, ok, "a read during a write does not use the cache")
	_, ok = before.get(key)
	require.True(t, ok, "a read that began before the write keeps what it began with")
	ended()
	during.put(key, []uint64{1, 2})
	_, ok = c.view().get(key)
	require.False(t, ok, "what was read during the write is not kept after it")

	after := c.view()
	after.put(key, []uint64{1, 2})
	got, ok = after.get(key)
	require.True(t, ok)
	require.Equal(t, []uint64{1, 2}, got)
	_, ok = before.get(key)
	require.False(t, ok, "a read that began before the write does not get what it did not see")
	before.put(key, []uint64{1})
	got, _ = c.view().get(key)
	require.Equal(t, []uint64{1, 2}, got, "nor does it store it")

	// Two writes under way at once: the state is usable again only once
	// both ended.
	end1, end2 := c.writing(), c.writing()
	end1()
	c.view().put(key, []uint64{1, 2, 3})
	_, ok = c.view().get(key)
	require.False(t, ok)
	end2()
	_, ok = c.view().get(key)
	require.False(t, ok)
	c.view().putSelection("k", &selection{series: []refLabels{{ref: 3}}})
	sel, ok := c.view().getSelection("k")
	require.True(t, ok)
	require.Len(t, sel.series, 1)
}
