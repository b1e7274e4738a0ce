package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/store"
)

type encodedAppender interface {
	AppendEncoded(key []byte, t int64, v float64) (bool, error)
}

// TestAppendEncoded: a key built from label pairs in sorted order is the
// labels' own encoding (so that the head finds the series by it), for
// names and values of every length class; a series is found only once the
// head holds it, only by its labels in sorted order, and its samples are
// checked as Append checks them.
func TestAppendEncoded(t *testing.T) {
	sets := []labels.Labels{
		labels.FromStrings("__name__", "up"),
		labels.FromStrings("__name__", "up", "job", "a", "empty", ""),
		labels.FromStrings("__name__", "long", "v", strings.Repeat("x", 254)),
		labels.FromStrings("__name__", "long", "v", strings.Repeat("x", 255)),
		labels.FromStrings("__name__", "long", "v", strings.Repeat("y", 70_000)),
		labels.FromStrings("__name__", "température", "lieu", "Zürich"),
	}
	for _, ls := range sets {
		var key []byte
		ls.Range(func(l labels.Label) { key = store.AppendLabelKey(key, []byte(l.Name), []byte(l.Value)) })
		require.Equal(t, ls.Bytes(nil), key, ls.String())
	}

	db := openStore(t, t.TempDir(), func(o *store.Options) { o.Limits.MaxLabelValueLength = 1 << 20 })
	defer db.Close()
	now := time.Now().Add(-time.Minute).UnixMilli()
	app := db.Appender(context.Background())
	enc, ok := app.(encodedAppender)
	require.True(t, ok)
	found, err := enc.AppendEncoded(store.KeyOf(sets[1]), now, 1)
	require.NoError(t, err)
	require.False(t, found, "not in the head yet")
	for _, ls := range sets {
		_, err := app.Append(0, ls, now, 1)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())

	app = db.Appender(context.Background())
	enc = app.(encodedAppender)
	for i, ls := range sets {
		found, err := enc.AppendEncoded(store.KeyOf(ls), now+1000, float64(i))
		require.NoError(t, err)
		require.True(t, found, ls.String())
	}
	// Labels out of order are another key: not found.
	var unsorted []byte
	unsorted = store.AppendLabelKey(unsorted, []byte("job"), []byte("a"))
	unsorted = store.AppendLabelKey(unsorted, []byte("__name__"), []byte("up"))
	found, err = enc.AppendEncoded(unsorted, now+1000, 1)
	require.NoError(t, err)
	require.False(t, found)
	// The same checks as Append: a sample at the same time with another
	// value in this request, one out of order, one outside the window.
	found, err = enc.AppendEncoded(store.KeyOf(sets[0]), now+1000, 9)
	require.True(t, found)
	require.ErrorIs(t, err, storage.ErrOutOfOrderSample)
	_, err = enc.AppendEncoded(store.KeyOf(sets[0]), time.Now().Add(time.Hour).UnixMilli(), 1)
	require.ErrorIs(t, err, storage.ErrOutOfBounds)
	require.NoError(t, app.Commit())

	q, err := db.Querier(now, now+1000)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "long"))
	n := 0
	for ss.Next() {
		it := ss.At().Iterator(nil)
		samples := 0
		for it.Next() != 0 {
			samples++
		}
		require.Equal(t, 2, samples, ss.At().Labels().String())
		n++
	}
	require.NoError(t, ss.Err())
	require.Equal(t, 3, n)
}

// TestHeadSeriesInLabelOrder: series the head alone holds come out of
// Select in label order, made in any order and over several requests
// (the head ranks them once and merges new ones in), and a regexp selector
// picks the same series asked again after new values arrive.
func TestHeadSeriesInLabelOrder(t *testing.T) {
	db := openStore(t, t.TempDir())
	defer db.Close()
	now := time.Now().Add(-time.Minute).UnixMilli()
	rng := rand.New(rand.NewPCG(1, 2))
	var want []labels.Labels
	sel := func(ms ...*labels.Matcher) []labels.Labels {
		q, err := db.Querier(now-60_000, now+60_000)
		require.NoError(t, err)
		defer q.Close()
		ss := q.Select(context.Background(), false, nil, ms...)
		var got []labels.Labels
		for ss.Next() {
			got = append(got, ss.At().Labels())
		}
		require.NoError(t, ss.Err())
		return got
	}
	name := labels.MustNewMatcher(labels.MatchEqual, "__name__", "m")
	inst := labels.MustNewMatcher(labels.MatchRegexp, "instance", "10[.]1[.]0[.].*|h.*7")
	for round := range 4 {
		app := db.Appender(context.Background())
		for _, i := range rng.Perm(300) {
			ls := labels.FromStrings("__name__", "m", "instance", fmt.Sprintf("10.1.%d.%d", round, i), "z", strconv.Itoa(i%7))
			_, err := app.Append(0, ls, now, float64(i))
			require.NoError(t, err)
			want = append(want, ls)
		}
		_, err := app.Append(0, labels.FromStrings("__name__", "m", "instance", fmt.Sprintf("host%d7", round)), now, 1)
		require.NoError(t, err)
		want = append(want, labels.FromStrings("__name__", "m", "instance", fmt.Sprintf("host%d7", round)))
		require.NoError(t, app.Commit())
		got := sel(name)
		slices.SortFunc(want, labels.Compare)
		require.Equal(t, want, got, "round %d: the head's series in label order", round)
		picked := sel(name, inst)
		require.Len(t, picked, 300+round+1, "round %d", round)
	}
}
