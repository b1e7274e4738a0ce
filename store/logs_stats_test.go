package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/store"
)

// TestLogChunks checks the chunk sums /index/stats and /index/volume are
// answered from, wherever the lines are: each chunk's count, span and
// size (lines, 8 bytes per metadata pair, each distinct metadata string
// once) must be those of the lines SelectLogs returns in its span.
func TestLogChunks(t *testing.T) {
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
			logFixture(t, db, 300)
			if db = tc.prep(t, db); db == nil {
				db = openStore(t, dir)
			}
			defer db.Close()
			ctx := context.Background()
			start, end := logT0.UnixNano(), logT0.Add(time.Hour).UnixNano()
			ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "cart")}
			got, err := db.LogChunks(ctx, ms, start, end)
			require.NoError(t, err)
			lines, err := db.SelectLogs(ctx, store.LogSelect{Matchers: ms, Start: start, End: end})
			require.NoError(t, err)
			require.Len(t, got, len(lines))
			for i, s := range got {
				require.Equal(t, lines[i].Labels, s.Labels)
				var entries int64
				for _, c := range s.Chunks {
					var want store.LogChunk
					symbols := map[string]bool{}
					for _, e := range lines[i].Entries {
						if e.T < c.MinT || e.T > c.MaxT {
							continue
						}
						if want.Entries == 0 {
							want.MinT = e.T
						}
						want.MaxT = e.T
						want.Entries++
						want.Bytes += int64(len(e.Line)) + 8*int64(e.Metadata.Len())
						e.Metadata.Range(func(l labels.Label) {
							for _, s := range []string{l.Name, l.Value} {
								if !symbols[s] {
									symbols[s] = true
									want.Bytes += int64(len(s))
								}
							}
						})
					}
					require.Equal(t, want, c)
					entries += c.Entries
				}
				require.EqualValues(t, 300, entries, "every line in one chunk")
			}

			// A range that ends inside the lines: only the chunks that
			// reach into it.
			mid := logT0.Add(100 * time.Second).UnixNano()
			part, err := db.LogChunks(ctx, ms, start, mid)
			require.NoError(t, err)
			for _, s := range part {
				require.NotEmpty(t, s.Chunks)
				for _, c := range s.Chunks {
					require.LessOrEqual(t, c.MinT, mid)
				}
			}
			none, err := db.LogChunks(ctx, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "nope")}, start, end)
			require.NoError(t, err)
			require.Empty(t, none)
		})
	}
}
