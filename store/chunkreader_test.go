package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

// TestChunkReaderWalksAsItSeeks: a chunk reader shared by many series —
// asked largest ref first (walking its reverse iterator from one series to
// the next), smallest first, or in any order — returns for every series the
// chunks a reader that seeks for that series alone returns, whatever the
// query window: before every chunk, inside one, across several, after all.
// Series have one to six chunks, some end early, some start late, and one
// in three is not selected at all, so walks cross chunks of other series.
func TestChunkReaderWalksAsItSeeks(t *testing.T) {
	dir := t.TempDir()
	db, o := openMetricsStore(t, dir)
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	at := func(i int) int64 { return start.Add(time.Duration(i) * 15 * time.Second).UnixMilli() }
	rnd := rand.New(rand.NewPCG(7, 17))
	const series, samples = 600, 720 // 3 h of 15 s steps: six chunks for a full series
	from, to := make([]int, series), make([]int, series)
	for s := range series {
		from[s], to[s] = 0, samples
		switch s % 4 {
		case 1:
			to[s] = rnd.IntN(samples-1) + 1 // ends early
		case 2:
			from[s] = rnd.IntN(samples - 1) // starts late
		}
	}
	for i := range samples {
		a := db.Appender(context.Background())
		for s := range series {
			if i >= from[s] && i < to[s] {
				job := "kept"
				if s%3 == 0 {
					job = "other"
				}
				_, err := a.Append(0, labels.FromStrings("__name__", "walk_total", "job", job, "i", fmt.Sprint(s)), at(i), float64(i)/3) // thirds: not decimal, so not held (every chunk a key)
				require.NoError(t, err)
			}
		}
		require.NoError(t, a.Commit())
	}
	require.NoError(t, db.Close()) // every head chunk written to the partition
	db, err := Open(o)
	require.NoError(t, err)
	defer db.Close()

	parts, err := db.snapshot()
	require.NoError(t, err)
	require.Len(t, parts, 1)
	p := parts[0]
	var refs []uint64
	require.NoError(t, p.selectSeries([]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "kept")}, func(s refLabels) { refs = append(refs, s.ref) }))
	require.Len(t, refs, series-series/3)
	require.True(t, slices.IsSorted(refs))

	describe := func(cs []chunkenc.Chunk) []string {
		t.Helper()
		var out []string
		for _, c := range cs {
			it := c.Iterator(nil)
			n, first, last := 0, int64(0), int64(0)
			for it.Next() == chunkenc.ValFloat {
				ts, _ := it.At()
				if n == 0 {
					first = ts
				}
				last = ts
				n++
			}
			require.NoError(t, it.Err())
			out = append(out, fmt.Sprintf("%d samples %d..%d", n, first, last))
		}
		return out
	}
	lists := map[uint64][]chunkenc.Chunk{} // what one reader returned, by ref
	read := func(q *querier, cr *chunkReader, ref uint64) []string {
		t.Helper()
		cs, err := q.chunks(cr, ref)
		require.NoError(t, err)
		require.Equal(t, len(cs), cap(cs), "a series' chunks cannot be appended to in place")
		lists[ref] = cs
		return describe(cs)
	}
	windows := [][2]int{{-100, -1}, {0, samples}, {130, 130}, {100, 140}, {239, 481}, {700, 2000}, {samples + 10, samples + 400}}
	for _, w := range windows {
		q := &querier{db: db, mint: at(w[0]), maxt: at(w[1])}
		err := p.view(func(txn *badger.Txn) error {
			want := map[uint64][]string{}
			chunksSeen := 0
			for _, ref := range refs {
				cr := newChunkReader(p, txn) // seeks, alone
				want[ref] = read(q, cr, ref)
				cr.close()
				chunksSeen += len(want[ref])
			}
			orders := map[string][]uint64{"largest first": slices.Clone(refs), "smallest first": slices.Clone(refs), "random": slices.Clone(refs)}
			slices.Reverse(orders["largest first"])
			rnd.Shuffle(len(refs), func(i, j int) { orders["random"][i], orders["random"][j] = orders["random"][j], orders["random"][i] })
			for name, order := range orders {
				cr := newChunkReader(p, txn)
				clear(lists)
				for _, ref := range order {
					require.Equal(t, want[ref], read(q, cr, ref), "window %v, %s, ref %d", w, name, ref)
				}
				// The chunks (their bytes, decimal chunks, lists) come
				// from the reader's shared blocks: every series' are
				// still its own after the whole read and after appends
				// to the others' (as merging partitions does).
				for _, ref := range order {
					lists[ref] = append(lists[ref], chunkenc.NewXORChunk())
				}
				for _, ref := range order {
					require.Equal(t, want[ref], describe(lists[ref][:len(lists[ref])-1]), "window %v, %s, ref %d after the read", w, name, ref)
				}
				if name == "largest first" {
					// Neighbouring selected series are at most two
					// unselected series (up to twelve chunks) apart.
					require.Equal(t, 1, cr.seeks, "window %v: one seek, then walks (%d)", w, cr.walks)
					require.Equal(t, len(order)-1, cr.walks)
				}
				cr.close()
			}
			if w == [2]int{0, samples} {
				require.Greater(t, chunksSeen, 3*len(refs), "most series have several chunks in the window")
			}
			return nil
		})
		require.NoError(t, err)
	}
}
