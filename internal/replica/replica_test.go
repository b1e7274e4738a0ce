package replica

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/store"
)

// Every series written through the replica's appender, by each method
// that names a series, is stored with lumen_replica; with no name, the
// series are as given.
func TestSeriesCarryTheReplica(t *testing.T) {
	db, err := store.Open(store.DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, storage.Appendable(db), Appendable(db, ""))

	ctx := context.Background()
	now := time.Now().Add(-time.Minute).UnixMilli()
	app := Appendable(db, "lumen-1").Appender(ctx)
	_, err = app.Append(0, labels.FromStrings("__name__", "calls_total", "service", "api"), now, 3)
	require.NoError(t, err)
	_, err = app.AppendExemplar(0, labels.FromStrings("__name__", "calls_total", "service", "api"),
		exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "0af7651916cd43dd8448eb211c80319c"), Value: 1, Ts: now, HasTs: true})
	require.NoError(t, err)
	_, err = app.AppendSTZeroSample(0, labels.FromStrings("__name__", "started_total"), now, now-1000)
	require.NoError(t, err)
	_, err = app.Append(0, labels.FromStrings("__name__", "started_total"), now, 1)
	require.NoError(t, err)
	_, err = app.AppendHistogram(0, labels.FromStrings("__name__", "latency_seconds"), now, &histogram.Histogram{Count: 1, Sum: 0.5, Schema: 0,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{1}}, nil)
	require.NoError(t, err)
	_, err = app.UpdateMetadata(0, labels.FromStrings("__name__", "calls_total", "service", "api"), metadata.Metadata{Type: "counter", Help: "Calls."})
	require.NoError(t, err)
	require.NoError(t, app.Commit())

	q, err := db.Querier(0, now+1)
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	var got []string
	for set.Next() {
		l := set.At().Labels()
		require.Equal(t, "lumen-1", l.Get(Label), l.String())
		require.Equal(t, labels.NewBuilder(l).Del(Label).Labels(), Without(l))
		got = append(got, l.Get("__name__"))
	}
	require.NoError(t, set.Err())
	require.Equal(t, []string{"calls_total", "latency_seconds", "started_total"}, got)

	eq, err := db.ExemplarQuerier(ctx)
	require.NoError(t, err)
	ex, err := eq.Select(0, now+1, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "calls_total")})
	require.NoError(t, err)
	require.Len(t, ex, 1)
	require.Equal(t, "lumen-1", ex[0].SeriesLabels.Get(Label))

	// The same labels without a replica are left alone.
	l := labels.FromStrings("__name__", "x")
	require.Equal(t, l, Without(l))
}

// Every method of Prometheus' Appender that takes a series' labels is one
// of the replica appender's own: a method added to the interface in a
// new Prometheus fails here instead of writing series without the label
// (TestSeriesCarryTheReplica calls each of them).
func TestEveryLabelledMethodIsWrapped(t *testing.T) {
	own := []string{"Append", "AppendExemplar", "AppendHistogram", "AppendHistogramSTZeroSample", "UpdateMetadata", "AppendSTZeroSample"}
	lt := reflect.TypeFor[labels.Labels]()
	it := reflect.TypeFor[storage.Appender]()
	for i := range it.NumMethod() {
		m := it.Method(i)
		for j := range m.Type.NumIn() {
			if m.Type.In(j) == lt {
				require.True(t, slices.Contains(own, m.Name), "storage.Appender.%s takes labels; the replica appender must add its label there", m.Name)
			}
		}
	}
}
