// Package otlptest builds realistic OTLP payloads for tests and benchmarks.
package otlptest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Gen makes deterministic traces and logs from a seed.
type Gen struct {
	rnd *rand.Rand
	// Services is how many distinct services (resources) spans come from.
	Services int
	// Attrs is how many attributes each span carries.
	Attrs int
	// Start is the time of the first span.
	Start time.Time
}

// New returns a generator with the given seed: 4 services, 10 attributes.
func New(seed uint64) *Gen {
	return &Gen{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), Services: 4, Attrs: 10, Start: time.Now().Add(-time.Minute)}
}

// TraceID returns a fresh random trace id.
func (g *Gen) TraceID() pcommon.TraceID {
	var id pcommon.TraceID
	binary.BigEndian.PutUint64(id[:8], g.rnd.Uint64())
	binary.BigEndian.PutUint64(id[8:], g.rnd.Uint64()|1)
	return id
}

// SpanID returns a fresh random span id.
func (g *Gen) SpanID() pcommon.SpanID {
	var id pcommon.SpanID
	binary.BigEndian.PutUint64(id[:], g.rnd.Uint64()|1)
	return id
}

var (
	httpMethods = []string{"GET", "POST", "PUT", "DELETE"}
	routes      = []string{"/api/orders", "/api/orders/{id}", "/api/cart", "/api/users/{id}", "/healthz", "/api/checkout"}
)

// Traces returns nTraces traces of spansPerTrace spans each, spread over the
// generator's services, shaped like instrumented HTTP servers: a root span
// with children, each span with g.Attrs attributes, some with events, links
// and error status.
func (g *Gen) Traces(nTraces, spansPerTrace int) ptrace.Traces {
	td := ptrace.NewTraces()
	scopes := make([]ptrace.SpanSlice, g.Services)
	for s := range g.Services {
		rs := td.ResourceSpans().AppendEmpty()
		rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
		ra := rs.Resource().Attributes()
		ra.PutStr("service.name", fmt.Sprintf("svc-%d", s))
		ra.PutStr("service.namespace", "shop")
		ra.PutStr("service.version", "1.4.2")
		ra.PutStr("host.name", fmt.Sprintf("node-%d", s%3))
		ra.PutStr("k8s.pod.name", fmt.Sprintf("svc-%d-7d9f8c6b5-x%d", s, s))
		ra.PutStr("telemetry.sdk.language", "go")
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp")
		ss.Scope().SetVersion("0.60.0")
		scopes[s] = ss.Spans()
	}
	for t := range nTraces {
		tid := g.TraceID()
		start := g.Start.Add(time.Duration(t) * time.Millisecond)
		var parent pcommon.SpanID
		for i := range spansPerTrace {
			sp := scopes[(t+i)%g.Services].AppendEmpty()
			sp.SetTraceID(tid)
			sid := g.SpanID()
			sp.SetSpanID(sid)
			if i > 0 {
				sp.SetParentSpanID(parent)
				sp.SetKind(ptrace.SpanKindClient)
			} else {
				sp.SetKind(ptrace.SpanKindServer)
				sp.TraceState().FromRaw("vendor=lumen")
			}
			route := routes[g.rnd.IntN(len(routes))]
			method := httpMethods[g.rnd.IntN(len(httpMethods))]
			sp.SetName(method + " " + route)
			s := start.Add(time.Duration(i) * 100 * time.Microsecond)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(s))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(s.Add(time.Duration(200+g.rnd.IntN(5000)) * time.Microsecond)))
			a := sp.Attributes()
			a.PutStr("http.request.method", method)
			a.PutStr("http.route", route)
			a.PutInt("http.response.status_code", 200)
			a.PutStr("url.scheme", "https")
			a.PutStr("server.address", "shop.example.com")
			a.PutInt("server.port", 443)
			a.PutStr("network.protocol.version", "1.1")
			a.PutStr("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)")
			a.PutInt("http.response.body.size", int64(g.rnd.IntN(20000)))
			a.PutStr("client.address", fmt.Sprintf("10.0.%d.%d", g.rnd.IntN(256), g.rnd.IntN(256)))
			for k := 10; k < g.Attrs; k++ {
				a.PutStr(fmt.Sprintf("app.attr.%d", k), fmt.Sprintf("value-%d", g.rnd.IntN(100)))
			}
			if g.rnd.IntN(10) == 0 {
				sp.Status().SetCode(ptrace.StatusCodeError)
				sp.Status().SetMessage("upstream timed out")
				ev := sp.Events().AppendEmpty()
				ev.SetName("exception")
				ev.SetTimestamp(sp.EndTimestamp())
				ev.Attributes().PutStr("exception.type", "context.DeadlineExceeded")
				ev.Attributes().PutStr("exception.message", "context deadline exceeded")
			} else {
				sp.Status().SetCode(ptrace.StatusCodeOk)
			}
			if i == 1 {
				l := sp.Links().AppendEmpty()
				l.SetTraceID(g.TraceID())
				l.SetSpanID(g.SpanID())
				l.Attributes().PutStr("link.kind", "follows_from")
			}
			parent = sid
		}
	}
	return td
}

// Logs returns n log records per trace id given, each carrying that trace id
// and a span id, plus untraced records with no trace id.
func (g *Gen) Logs(traceIDs []pcommon.TraceID, perTrace, untraced int) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "svc-0")
	rl.Resource().Attributes().PutStr("k8s.pod.name", "svc-0-7d9f8c6b5-x0")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("app.logger")
	add := func(tid pcommon.TraceID, i int) {
		lr := sl.LogRecords().AppendEmpty()
		ts := g.Start.Add(time.Duration(i) * time.Millisecond)
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(ts.Add(time.Millisecond)))
		lr.SetSeverityNumber(plog.SeverityNumberInfo)
		lr.SetSeverityText("INFO")
		lr.Body().SetStr(fmt.Sprintf("handled request %d in %dms", i, g.rnd.IntN(100)))
		lr.Attributes().PutStr("logger", "http")
		if !tid.IsEmpty() {
			lr.SetTraceID(tid)
			lr.SetSpanID(g.SpanID())
			lr.SetFlags(plog.DefaultLogRecordFlags.WithIsSampled(true))
		}
	}
	for _, tid := range traceIDs {
		for i := range perTrace {
			add(tid, i)
		}
	}
	for i := range untraced {
		add(pcommon.TraceID{}, i)
	}
	return ld
}

// TraceIDs lists the distinct trace ids in td, in order of first appearance.
func TraceIDs(td ptrace.Traces) []pcommon.TraceID {
	seen := map[pcommon.TraceID]bool{}
	var out []pcommon.TraceID
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				if !seen[sp.TraceID()] {
					seen[sp.TraceID()] = true
					out = append(out, sp.TraceID())
				}
			}
		}
	}
	return out
}

// SpansByID flattens td into a map from span id to a Traces holding only that
// span with its resource and scope, so two Traces can be compared span by span
// whatever their grouping.
func SpansByID(td ptrace.Traces) map[pcommon.SpanID]ptrace.Traces {
	out := map[pcommon.SpanID]ptrace.Traces{}
	EachSpanAlone(td, func(id pcommon.SpanID, one ptrace.Traces) { out[id] = one })
	return out
}

// EachSpanAlone calls fn with each span of td, in order, as a Traces holding
// only that span with its resource and scope.
func EachSpanAlone(td ptrace.Traces, fn func(pcommon.SpanID, ptrace.Traces)) {
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				one := ptrace.NewTraces()
				nrs := one.ResourceSpans().AppendEmpty()
				rs.Resource().CopyTo(nrs.Resource())
				nrs.SetSchemaUrl(rs.SchemaUrl())
				nss := nrs.ScopeSpans().AppendEmpty()
				ss.Scope().CopyTo(nss.Scope())
				nss.SetSchemaUrl(ss.SchemaUrl())
				sp.CopyTo(nss.Spans().AppendEmpty())
				fn(sp.SpanID(), one)
			}
		}
	}
}

// FilterTrace returns a copy of td with only the spans of trace id.
func FilterTrace(td ptrace.Traces, id pcommon.TraceID) ptrace.Traces {
	out := ptrace.NewTraces()
	td.CopyTo(out)
	out.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(s ptrace.Span) bool { return s.TraceID() != id })
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
	return out
}

// Renumber gives every trace in td a new random trace id, so that a payload
// built once can be sent many times as new traces. It returns the first new id.
func Renumber(td ptrace.Traces, rnd *rand.Rand) pcommon.TraceID {
	remap := map[pcommon.TraceID]pcommon.TraceID{}
	var first pcommon.TraceID
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				id, ok := remap[sp.TraceID()]
				if !ok {
					binary.BigEndian.PutUint64(id[:8], rnd.Uint64())
					binary.BigEndian.PutUint64(id[8:], rnd.Uint64()|1)
					remap[sp.TraceID()] = id
					if first.IsEmpty() {
						first = id
					}
				}
				sp.SetTraceID(id)
			}
		}
	}
	return first
}
