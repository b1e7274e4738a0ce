package spanmetrics

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/store"
)

func sp(trace, id, parent byte, svc string, kind ptrace.SpanKind, failed bool) Span {
	return Span{TraceID: [16]byte{trace}, SpanID: [8]byte{id}, ParentID: [8]byte{parent}, Service: svc, Name: "op",
		Kind: kind, Error: failed, Start: 1e9, End: 1e9 + 5e6}
}

func TestEdgesPairInAnyOrderAndExpire(t *testing.T) {
	o := store.DefaultOptions(t.TempDir())
	o.Retention = 0
	db, err := store.Open(o)
	require.NoError(t, err)
	defer db.Close()
	cfg := DefaultConfig()
	g := New(cfg, db, nil)
	now := time.Now().Add(-time.Minute)
	g.now = func() time.Time { return now }

	// The server span arrives before its client span, in another request.
	g.Observe([]Span{sp(1, 2, 1, "api", ptrace.SpanKindServer, true)})
	g.Observe([]Span{{TraceID: [16]byte{1}, SpanID: [8]byte{1}, Service: "web", Name: "call", Kind: ptrace.SpanKindClient, Start: 1e9, End: 1e9 + 9e6}})
	// A producer and its consumer; and a parent whose child never comes.
	g.Observe([]Span{sp(2, 1, 0, "orders", ptrace.SpanKindProducer, false), sp(2, 2, 1, "mailer", ptrace.SpanKindConsumer, false)})
	g.Observe([]Span{sp(3, 5, 4, "lonely", ptrace.SpanKindServer, false)})
	require.Equal(t, map[edgeKey]uint64{{client: "web", server: "api"}: 1, {client: "orders", server: "mailer", conn: "messaging_system"}: 1}, requests(g))
	require.Equal(t, uint64(1), g.edges[edgeKey{client: "web", server: "api"}].failed)

	// Past twice the wait, unpaired spans are forgotten: a parent
	// arriving now makes no edge.
	now = now.Add(cfg.EdgeWait + time.Second)
	require.NoError(t, g.Flush(context.Background()))
	now = now.Add(cfg.EdgeWait + time.Second)
	require.NoError(t, g.Flush(context.Background()))
	require.Zero(t, g.pendingCount())
	g.Observe([]Span{sp(3, 4, 0, "gateway", ptrace.SpanKindClient, false)})
	require.Len(t, requests(g), 2)

	// What was written is in the store, with an exemplar per series.
	q, err := db.Querier(0, now.Add(time.Hour).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "traces_service_graph_request_total"))
	n := 0
	for set.Next() {
		n++
	}
	require.Equal(t, 2, n)
}

// Past MaxSeries, spans of new keys are counted in one overflow key,
// written as otel_metric_overflow="true" series, not dropped silently;
// keys that take no span for StaleAfter leave memory and are no longer
// written.
func TestSeriesAreBoundedAndExpire(t *testing.T) {
	o := store.DefaultOptions(t.TempDir())
	db, err := store.Open(o)
	require.NoError(t, err)
	defer db.Close()
	cfg := DefaultConfig()
	cfg.MaxSeries = 2
	g := New(cfg, db, nil)
	now := time.Now().Add(-time.Hour)
	g.now = func() time.Time { return now }
	g.Observe([]Span{sp(1, 1, 0, "a", ptrace.SpanKindServer, false), sp(1, 2, 0, "b", ptrace.SpanKindServer, false),
		sp(1, 3, 0, "c", ptrace.SpanKindServer, false), sp(1, 4, 0, "d", ptrace.SpanKindServer, false)})
	require.Len(t, g.red, 3, "two keys and the overflow key")
	require.Equal(t, uint64(2), g.Stats().Overflow)
	require.NoError(t, g.Flush(context.Background()))
	calls := func() map[string]float64 {
		q, err := db.Querier(0, time.Now().UnixMilli())
		require.NoError(t, err)
		defer q.Close()
		set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "traces_spanmetrics_calls_total"))
		out := map[string]float64{}
		for set.Next() {
			it := set.At().Iterator(nil)
			for it.Next() != 0 {
				_, v := it.At()
				out[set.At().Labels().String()] = v
			}
		}
		return out
	}
	got := calls()
	require.Len(t, got, 3)
	require.Equal(t, 2.0, got[`{__name__="traces_spanmetrics_calls_total", otel_metric_overflow="true"}`])

	now = now.Add(cfg.StaleAfter / 2)
	g.Observe([]Span{sp(2, 1, 0, "a", ptrace.SpanKindServer, false)})
	now = now.Add(cfg.StaleAfter/2 + time.Second)
	require.NoError(t, g.Flush(context.Background()))
	st := g.Stats()
	require.Equal(t, 1, st.Keys, "only the key that took a span is left")
	require.Equal(t, uint64(2), st.Expired)
}

func requests(g *Generator) map[edgeKey]uint64 {
	out := map[edgeKey]uint64{}
	for k, e := range g.edges {
		out[k] = e.requests
	}
	return out
}

// A request's spans pair among themselves whatever the generations hold:
// with MaxPending reached, a client and its server in one request still
// make their edge, in either order; spans whose partner is in another
// request wait as before, and are dropped when nothing may wait.
func TestSpansOfOneRequestPairAmongThemselves(t *testing.T) {
	o := store.DefaultOptions(t.TempDir())
	db, err := store.Open(o)
	require.NoError(t, err)
	defer db.Close()
	cfg := DefaultConfig()
	cfg.MaxPending = 2
	g := New(cfg, db, nil)
	now := time.Now().Add(-time.Minute)
	g.now = func() time.Time { return now }

	// Two spans that fill the generations and will never pair.
	g.Observe([]Span{sp(9, 1, 7, "x", ptrace.SpanKindServer, false), sp(9, 2, 8, "y", ptrace.SpanKindServer, false)})
	require.Equal(t, 2, g.pendingCount())
	g.Observe([]Span{
		sp(1, 2, 1, "api", ptrace.SpanKindServer, false), // its client comes after it
		{TraceID: [16]byte{1}, SpanID: [8]byte{1}, Service: "web", Name: "call", Kind: ptrace.SpanKindClient, Start: 1e9, End: 1e9 + 9e6},
		sp(2, 1, 0, "orders", ptrace.SpanKindProducer, false),
		sp(2, 2, 1, "mailer", ptrace.SpanKindConsumer, false),
		sp(3, 3, 3, "self", ptrace.SpanKindServer, false), // its own parent: no edge
	})
	require.Equal(t, map[edgeKey]uint64{{client: "web", server: "api"}: 1, {client: "orders", server: "mailer", conn: "messaging_system"}: 1}, requests(g))
	// A child whose parent is in no request seen, with nothing allowed to
	// wait: dropped and counted.
	dropped := g.Stats().Dropped
	g.Observe([]Span{sp(4, 2, 1, "api", ptrace.SpanKindServer, false)})
	require.Greater(t, g.Stats().Dropped, dropped)
	require.Len(t, requests(g), 2)
}
