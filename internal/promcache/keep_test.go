package promcache

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"
)

type fixedPast struct{ before int64 }

func (f fixedPast) MetricsPast(time.Duration) (uint64, int64) { return 0, f.before }

// TestKeptPointsAreTheirOwn: an entry holds copies of its steps' points,
// not slices of the answer's arrays, whose newer steps (and spare room)
// would stay alive beyond what the bound counts.
func TestKeptPointsAreTheirOwn(t *testing.T) {
	st := teststorage.New(t)
	defer st.Close()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := New(promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute}),
		fixedPast{before: now.Add(-10 * time.Minute).UnixMilli()}, 10*time.Minute, 64<<20, nil, nil)
	q, err := e.NewRangeQuery(context.Background(), st, nil, "vector(1)", now.Add(-11*time.Minute), now.Add(2*time.Hour), time.Second)
	require.NoError(t, err)
	res := q.Exec(context.Background())
	require.NoError(t, res.Err)
	require.Len(t, res.Value.(promql.Matrix)[0].Floats, 131*60+1)
	q.Close()
	require.Equal(t, 1, e.lru.Len())
	kept := e.lru.Front().Value.(*entry)
	require.Len(t, kept.series, 1)
	floats := kept.series[0].Floats
	require.Len(t, floats, 60) // the steps before the horizon only
	require.LessOrEqual(t, cap(floats), len(floats)*9/8+8, "a copy (rounded up to its size class), not the answer's array")
	require.Less(t, kept.bytes, int64(4096))
}
