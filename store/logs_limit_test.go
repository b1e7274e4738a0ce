package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/store"
)

// A limited selection keeps only the lines the limit answers as it reads:
// 9000 lines match, 20 are held, and the bound on lines gathered (which a
// full selection of them trips) does not apply.
func TestLimitedSelectionHoldsOnlyItsLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		prep func(t *testing.T, db *store.DB)
	}{
		{"from the head", func(*testing.T, *store.DB) {}},
		{"from blocks", func(t *testing.T, db *store.DB) { require.NoError(t, db.CheckpointLogs()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openStore(t, t.TempDir(), func(o *store.Options) { o.LogBlockBytes = 4 << 10 })
			defer db.Close()
			logFixture(t, db, 3000)
			tc.prep(t, db)
			q := store.LogSelect{Start: logT0.UnixNano(), End: logT0.Add(time.Hour).UnixNano(), MaxLines: 1000,
				Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "env", "prod")}}
			_, err := db.SelectLogs(context.Background(), q)
			require.ErrorIs(t, err, store.ErrTooMuch, "6000 lines match: more than a full selection may hold")

			for _, backward := range []bool{false, true} {
				q.Limit, q.Backward = 20, backward
				got, err := db.SelectLogs(context.Background(), q)
				require.NoError(t, err)
				var times []int64
				for _, s := range got {
					for _, e := range s.Entries {
						times = append(times, e.T)
					}
				}
				require.Len(t, times, 20)
				for _, ts := range times {
					sec := time.Duration(ts - logT0.UnixNano())
					if backward {
						require.GreaterOrEqual(t, sec, 2990*time.Second, "the newest lines")
					} else {
						require.Less(t, sec, 10*time.Second, "the oldest lines")
					}
				}
			}
		})
	}
}
