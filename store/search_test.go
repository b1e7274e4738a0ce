package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/store"
)

var searchT0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// callTree builds trace i: client → frontend → backend → db, each span
// within its parent. Every 5th trace fails in the backend; every 7th has a
// slow (2 s) frontend span. Spans of one trace may be split over requests.
func callTree(i int, only ...string) ptrace.Traces {
	td := ptrace.NewTraces()
	tid := pcommon.TraceID{byte(i >> 8), byte(i), 0xab, 1}
	start := searchT0.Add(time.Duration(i) * time.Second)
	type spec struct {
		svc, name string
		kind      ptrace.SpanKind
		off, dur  time.Duration
		attrs     map[string]string
		err       bool
	}
	slow := 50 * time.Millisecond
	if i%7 == 0 {
		slow = 2 * time.Second
	}
	specs := []spec{
		{"client", "checkout", ptrace.SpanKindClient, 0, slow + 40*time.Millisecond, nil, false},
		{"frontend", "GET /cart/{id}", ptrace.SpanKindServer, 5 * time.Millisecond, slow + 20*time.Millisecond, map[string]string{"http.route": "/cart/{id}", "http.request.method": "GET", "user.id": fmt.Sprint("u", i%10)}, false},
		{"backend", "reserve", ptrace.SpanKindServer, 10 * time.Millisecond, 10 * time.Millisecond, map[string]string{"rpc.method": "Reserve"}, i%5 == 0},
		{"db", "SELECT stock", ptrace.SpanKindClient, 12 * time.Millisecond, 5 * time.Millisecond, map[string]string{"db.system": "postgresql"}, false},
	}
	var parent pcommon.SpanID
	for j, s := range specs {
		sid := pcommon.SpanID{byte(i >> 8), byte(i), byte(j + 1)}
		if len(only) == 0 || only[0] == s.svc {
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", s.svc)
			rs.Resource().Attributes().PutStr("deployment.environment.name", "prod")
			sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
			sp.SetTraceID(tid)
			sp.SetSpanID(sid)
			sp.SetParentSpanID(parent)
			sp.SetName(s.name)
			sp.SetKind(s.kind)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start.Add(s.off)))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(s.off + s.dur)))
			for k, v := range s.attrs {
				sp.Attributes().PutStr(k, v)
			}
			if s.err {
				sp.Status().SetCode(ptrace.StatusCodeError)
			}
		}
		parent = sid
	}
	return td
}

func searchFixture(t *testing.T) *store.DB {
	t.Helper()
	db := openStore(t, t.TempDir(), func(o *store.Options) { o.Retention = 0 })
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	for i := range 100 {
		require.NoError(t, db.WriteTraces(context.Background(), callTree(i)))
	}
	return db
}

func ids(res store.SearchResult) []int {
	out := make([]int, len(res.Traces))
	for i, tr := range res.Traces {
		out[i] = int(tr.TraceID[0])<<8 | int(tr.TraceID[1])
	}
	return out
}

func TestSearchTraces(t *testing.T) {
	db := searchFixture(t)
	ctx := context.Background()
	all := store.TraceSearch{Start: uint64(searchT0.UnixNano()), End: uint64(searchT0.Add(time.Hour).UnixNano()), Limit: 5}
	search := func(mut func(q *store.TraceSearch)) store.SearchResult {
		q := all
		mut(&q)
		res, err := db.SearchTraces(ctx, q)
		require.NoError(t, err)
		return res
	}

	res := search(func(q *store.TraceSearch) {})
	require.Equal(t, []int{99, 98, 97, 96, 95}, ids(res), "every trace, newest first")
	s := res.Traces[0]
	require.Equal(t, "client", s.RootService)
	require.Equal(t, "checkout", s.RootName)
	require.Equal(t, 4, s.SpanCount)
	require.Equal(t, []string{"backend", "client", "db", "frontend"}, s.Services)
	require.Equal(t, uint64(searchT0.Add(99*time.Second).UnixNano()), s.Start)

	res = search(func(q *store.TraceSearch) { q.Drive = store.Term{Kind: store.TermError} })
	require.Equal(t, []int{95, 90, 85, 80, 75}, ids(res), "errors only")
	require.Equal(t, 1, res.Traces[0].ErrorCount)

	res = search(func(q *store.TraceSearch) {
		q.Drive = store.Term{Kind: store.TermName, A: "frontend", B: "GET /cart/{id}"}
		q.MinDuration = uint64(time.Second)
	})
	require.Equal(t, []int{98, 91, 84, 77, 70}, ids(res), "slow frontend spans, pruned by the index's durations")

	res = search(func(q *store.TraceSearch) {
		q.Drive = store.Term{Kind: store.TermSpanAttr, A: "http.route", B: "/cart/{id}"}
		q.Start = uint64(searchT0.Add(10 * time.Second).UnixNano())
		q.End = uint64(searchT0.Add(12 * time.Second).UnixNano())
	})
	require.Equal(t, []int{11, 10}, ids(res), "the time range bounds the matching spans' starts (trace 12's frontend span starts at 12.005 s)")

	res = search(func(q *store.TraceSearch) {
		q.Drive = store.Term{Kind: store.TermResAttr, A: "deployment.environment.name", B: "prod"}
		q.Limit = 200
	})
	require.Len(t, res.Traces, 100)

	// A condition on a non-indexed attribute is checked on the spans of
	// each candidate, and the matching spans come back.
	res = search(func(q *store.TraceSearch) {
		q.Drive = store.Term{Kind: store.TermService, A: "frontend"}
		q.Match = func(_ pcommon.Resource, sp ptrace.Span) bool {
			v, ok := sp.Attributes().Get("user.id")
			return ok && v.Str() == "u3"
		}
		q.Limit = 3
	})
	require.Equal(t, []int{93, 83, 73}, ids(res))
	require.Equal(t, 1, res.Traces[0].MatchedCount)
	require.Equal(t, "GET /cart/{id}", res.Traces[0].Matched[0].Name)
	require.Equal(t, "frontend", res.Traces[0].Matched[0].Service)
	require.Greater(t, res.Inspected, 20)

	res = search(func(q *store.TraceSearch) {
		q.Match = func(pcommon.Resource, ptrace.Span) bool { return false }
		q.MaxInspect = 30
	})
	require.Empty(t, res.Traces)
	require.True(t, res.Partial, "stopped by MaxInspect, and says so")
	require.Equal(t, 30, res.Inspected)

	res = search(func(q *store.TraceSearch) { q.Drive = store.Term{Kind: store.TermService, A: "nope"} })
	require.Empty(t, res.Traces)

	// The catalog lists services, span names and indexed values.
	lo, hi := uint64(0), uint64(1)<<63
	svcs, err := db.SearchCatalog(ctx, store.TermService, "", lo, hi)
	require.NoError(t, err)
	require.Equal(t, []store.Term{{store.TermService, "backend", ""}, {store.TermService, "client", ""}, {store.TermService, "db", ""}, {store.TermService, "frontend", ""}}, svcs)
	names, err := db.SearchCatalog(ctx, store.TermName, "backend", lo, hi)
	require.NoError(t, err)
	require.Equal(t, []store.Term{{store.TermName, "backend", "reserve"}}, names)
	routes, err := db.SearchCatalog(ctx, store.TermSpanAttr, "http.route", lo, hi)
	require.NoError(t, err)
	require.Equal(t, []store.Term{{store.TermSpanAttr, "http.route", "/cart/{id}"}}, routes)
	attrs, err := db.SearchCatalog(ctx, store.TermSpanAttr, "", lo, hi)
	require.NoError(t, err)
	require.Len(t, attrs, 4, "http.route, http.request.method, rpc.method, db.system: user.id is not indexed")
}

func TestSearchSummaryOfATraceSplitOverRequests(t *testing.T) {
	dir := t.TempDir()
	db := openStore(t, dir, func(o *store.Options) { o.Retention = 0 })
	ctx := context.Background()
	// The backend and db report first; the root arrives later.
	require.NoError(t, db.WriteTraces(ctx, callTree(5, "backend")))
	require.NoError(t, db.WriteTraces(ctx, callTree(5, "db")))
	q := store.TraceSearch{Start: 0, End: 1 << 63, Drive: store.Term{Kind: store.TermError}}
	res, err := db.SearchTraces(ctx, q)
	require.NoError(t, err)
	require.Len(t, res.Traces, 1)
	require.Empty(t, res.Traces[0].RootName, "no root yet")
	require.Equal(t, 2, res.Traces[0].SpanCount)

	require.NoError(t, db.WriteTraces(ctx, callTree(5, "client")))
	require.NoError(t, db.WriteTraces(ctx, callTree(5, "frontend")))
	require.NoError(t, db.Close())
	db = openStore(t, dir, func(o *store.Options) { o.Retention = 0 })
	defer db.Close()
	res, err = db.SearchTraces(ctx, q)
	require.NoError(t, err)
	require.Len(t, res.Traces, 1)
	s := res.Traces[0]
	require.Equal(t, model.TraceID{0, 5, 0xab, 1}, s.TraceID)
	require.Equal(t, "client", s.RootService)
	require.Equal(t, 4, s.SpanCount)
	require.Equal(t, 1, s.ErrorCount)
	require.Equal(t, uint64(searchT0.Add(5*time.Second).UnixNano()), s.Start)
	require.Equal(t, uint64(searchT0.Add(5*time.Second+90*time.Millisecond).UnixNano()), s.End)
}
