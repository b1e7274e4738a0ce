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
	require.Equal(t, map[edgeKey]uint64{{"web", "api", ""}: 1, {"orders", "mailer", "messaging_system"}: 1}, requests(g))
	require.Equal(t, uint64(1), g.edges[edgeKey{"web", "api", ""}].failed)

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

func TestSeriesAreBounded(t *testing.T) {
	o := store.DefaultOptions(t.TempDir())
	db, err := store.Open(o)
	require.NoError(t, err)
	defer db.Close()
	cfg := DefaultConfig()
	cfg.MaxSeries = 2
	g := New(cfg, db, nil)
	g.Observe([]Span{sp(1, 1, 0, "a", ptrace.SpanKindServer, false), sp(1, 2, 0, "b", ptrace.SpanKindServer, false), sp(1, 3, 0, "c", ptrace.SpanKindServer, false)})
	require.Len(t, g.red, 2)
	require.Equal(t, uint64(1), g.dropped)
}

func requests(g *Generator) map[edgeKey]uint64 {
	out := map[edgeKey]uint64{}
	for k, e := range g.edges {
		out[k] = e.requests
	}
	return out
}
