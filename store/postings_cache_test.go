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
// series they found before, and once the writes stop they find all.
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
		for set.Next() {
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
