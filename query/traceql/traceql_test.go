package traceql

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func span(t *testing.T) (pcommon.Resource, ptrace.Span) {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "cart")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetName("GET /cart")
	sp.SetKind(ptrace.SpanKindServer)
	sp.Status().SetCode(ptrace.StatusCodeError)
	sp.SetStartTimestamp(pcommon.Timestamp(time.Second))
	sp.SetEndTimestamp(pcommon.Timestamp(time.Second + 250*time.Millisecond))
	sp.Attributes().PutStr("http.route", "/cart/{id}")
	sp.Attributes().PutInt("http.response.status_code", 503)
	sp.Attributes().PutStr("timeout", "1.5s")
	sp.Attributes().PutBool("cache.hit", true)
	sp.Attributes().PutDouble("ratio", 0.25)
	sp.Attributes().PutEmptySlice("tags").FromRaw([]any{"a", "b"})
	return rs.Resource(), sp
}

// TestMatch: conditions on one span, as Tempo evaluates them.
func TestMatch(t *testing.T) {
	res, sp := span(t)
	for q, want := range map[string]bool{
		`{}`:                                 true,
		`{ resource.service.name = "cart" }`: true,
		`{ span.service.name = "cart" }`:     false,
		`{ .service.name = "cart" && name = "GET /cart" }`:          true,
		`{ status = error && kind = server }`:                       true,
		`{ status = "error" }`:                                      true,
		`{ status = ok || kind = client }`:                          false,
		`{ status != ok }`:                                          true,
		`{ duration > 200ms && duration <= 250ms }`:                 true,
		`{ span:duration >= 250ms }`:                                true,
		`{ span.http.response.status_code >= 500 }`:                 true,
		`{ span.http.response.status_code = 200 }`:                  false,
		`{ span.http.response.status_code > 502.5 }`:                true,
		`{ .ratio < 1 }`:                                            true,
		`{ .http.route =~ "/cart/.*" }`:                             true,
		`{ .http.route =~ "/cart" }`:                                false, // anchored
		`{ .http.route !~ "/cart/.*" }`:                             false,
		`{ .missing != "x" }`:                                       false, // nil != "x" is false, as in Tempo
		`{ .missing = "x" }`:                                        false,
		`{ .missing = nil }`:                                        true,
		`{ .missing != nil }`:                                       false,
		`{ .http.route != nil }`:                                    true,
		`{ .timeout = "1.5s" }`:                                     true,
		`{ .timeout > 1s }`:                                         false, // a string is not a duration
		`{ .http.route = 1 }`:                                       false, // nor a number
		`{ .cache.hit }`:                                            true,
		`{ .cache.hit = false }`:                                    false,
		`{ true }`:                                                  true,
		`{ false || .cache.hit }`:                                   true,
		`{ !(status = error) }`:                                     false,
		`{ .tags = "b" }`:                                           true, // an array holds when one element does
		`{ .tags != "b" }`:                                          false,
		`{ (name = "x" || name = "GET /cart") && status != unset }`: true,
		"{ span:name = `GET /cart` }":                               true,
		`{ span."http.route" = "/cart/{id}" }`:                      true,
		`{ name > "GET" && name < "H" }`:                            true,
		`{ rootServiceName = "nope" }`:                              true, // Match: conditions on the trace are relaxed
	} {
		p, err := Parse(q)
		require.NoError(t, err, q)
		require.Equal(t, want, p.Match(res, sp), q)
	}
}

// shop builds a trace of a checkout:
//
//	frontend  GET /checkout       server  0–100ms  (root)
//	frontend    POST /cart        client  5–40ms
//	cart          POST /cart      server  6–39ms
//	cart            redis GET     client  10–12ms
//	cart            redis SET     client  15–20ms  error
//	frontend    POST /pay         client  45–95ms  link to another trace
//	payment       charge          server  46–94ms  error, event exception
//	payment         SELECT        client  50–90ms  db.system=postgresql
//
// and one span whose parent never arrived (orphan, in cart).
func shop(t *testing.T) *Trace {
	t.Helper()
	td := ptrace.NewTraces()
	tid := pcommon.TraceID{0x7e, 1}
	scopes := map[string]ptrace.ScopeSpans{}
	n := byte(0)
	add := func(svc, name string, parent pcommon.SpanID, kind ptrace.SpanKind, from, to int, attrs ...any) ptrace.Span {
		ss, ok := scopes[svc]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", svc)
			rs.Resource().Attributes().PutStr("deployment.environment.name", "prod")
			ss = rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName("shop/" + svc)
			ss.Scope().SetVersion("1.2.0")
			scopes[svc] = ss
		}
		n++
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(tid)
		sp.SetSpanID(pcommon.SpanID{0x5b, n})
		sp.SetParentSpanID(parent)
		sp.SetName(name)
		sp.SetKind(kind)
		base := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(from) * time.Millisecond)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(to) * time.Millisecond)))
		for i := 0; i+1 < len(attrs); i += 2 {
			require.NoError(t, sp.Attributes().PutEmpty(attrs[i].(string)).FromRaw(attrs[i+1]))
		}
		return sp
	}
	root := add("frontend", "GET /checkout", pcommon.SpanID{}, ptrace.SpanKindServer, 0, 100, "http.route", "/checkout")
	cartCall := add("frontend", "POST /cart", root.SpanID(), ptrace.SpanKindClient, 5, 40)
	cart := add("cart", "POST /cart", cartCall.SpanID(), ptrace.SpanKindServer, 6, 39, "http.route", "/cart")
	add("cart", "redis GET", cart.SpanID(), ptrace.SpanKindClient, 10, 12, "db.system", "redis")
	set := add("cart", "redis SET", cart.SpanID(), ptrace.SpanKindClient, 15, 20, "db.system", "redis")
	set.Status().SetCode(ptrace.StatusCodeError)
	pay := add("frontend", "POST /pay", root.SpanID(), ptrace.SpanKindClient, 45, 95)
	l := pay.Links().AppendEmpty()
	l.SetTraceID(pcommon.TraceID{0x7e, 9})
	l.SetSpanID(pcommon.SpanID{0x5b, 99})
	l.Attributes().PutStr("link.kind", "retry-of")
	charge := add("payment", "charge", pay.SpanID(), ptrace.SpanKindServer, 46, 94, "amount", 42.5)
	charge.Status().SetCode(ptrace.StatusCodeError)
	charge.Status().SetMessage("card declined")
	ev := charge.Events().AppendEmpty()
	ev.SetName("exception")
	ev.SetTimestamp(charge.StartTimestamp() + pcommon.Timestamp(3*time.Millisecond))
	ev.Attributes().PutStr("exception.message", "declined")
	add("payment", "SELECT", charge.SpanID(), ptrace.SpanKindClient, 50, 90, "db.system", "postgresql")
	add("cart", "orphan", pcommon.SpanID{0x5b, 0xee}, ptrace.SpanKindInternal, 60, 61)
	return NewTrace(td)
}

// names lists each spanset's span names and attributes, for comparing.
func names(sets []*Spanset) []string {
	var out []string
	for _, ss := range sets {
		var ns []string
		for _, s := range ss.Spans {
			ns = append(ns, s.Span.Name())
		}
		line := strings.Join(ns, ",")
		for _, kv := range ss.Attributes {
			line += fmt.Sprintf(" %s=%s", kv.Key, kv.Value)
		}
		out = append(out, line)
	}
	return out
}

// TestEval: whole queries on a trace of eight spans, each spanset's spans
// in start order.
func TestEval(t *testing.T) {
	tr := shop(t)
	for _, tc := range []struct {
		query string
		want  []string // one line per spanset; nil: the trace does not match
	}{
		{`{}`, []string{"GET /checkout,POST /cart,POST /cart,redis GET,redis SET,POST /pay,charge,SELECT,orphan"}},
		{`{ status = error }`, []string{"redis SET,charge"}},
		{`{ resource.service.name = "cart" && kind = client }`, []string{"redis GET,redis SET"}},
		{`{ .nope = 1 }`, nil},

		// Trace-level intrinsics and the nested set model.
		{`{ rootServiceName = "frontend" && rootName = "GET /checkout" && name = "charge" }`, []string{"charge"}},
		{`{ traceDuration > 99ms && kind = server && resource.service.name = "payment" }`, []string{"charge"}},
		{`{ traceDuration > 1s }`, nil},
		{`{ nestedSetParent < 0 }`, []string{"GET /checkout"}},
		{`{ nestedSetParent < 0 && true }`, []string{"GET /checkout"}},
		{`{ nestedSetLeft = 1 && nestedSetRight = 16 }`, []string{"GET /checkout"}},
		{`{ span:parentID = nil }`, []string{"GET /checkout"}},
		{`{ trace:id = "7e010000000000000000000000000000" && name = "SELECT" }`, []string{"SELECT"}},
		{`{ span:id = "5b07000000000000" }`, []string{"charge"}},

		// Events, links, scopes, status messages.
		{`{ event:name = "exception" }`, []string{"charge"}},
		{`{ event.exception.message =~ "decl.*" }`, []string{"charge"}},
		{`{ event:timeSinceStart > 2ms }`, []string{"charge"}},
		{`{ link.link.kind = "retry-of" }`, []string{"POST /pay"}},
		{`{ link:traceID = "7e090000000000000000000000000000" }`, []string{"POST /pay"}},
		{`{ instrumentation:name = "shop/payment" && kind = client }`, []string{"SELECT"}},
		{`{ instrumentation:version = "1.2.0" && statusMessage = "card declined" }`, []string{"charge"}},

		// Spanset operators.
		{`{ name = "charge" } && { span.db.system = "redis" }`, []string{"redis GET,redis SET,charge"}},
		{`{ name = "charge" } && { name = "nope" }`, nil},
		{`{ name = "charge" } || { name = "nope" }`, []string{"charge"}},
		{`{ resource.service.name = "frontend" } >> { status = error }`, []string{"redis SET,charge"}},
		{`{ resource.service.name = "payment" } >> { status = error }`, nil},
		{`{ name = "POST /pay" } > { kind = server }`, []string{"charge"}},
		{`{ name = "GET /checkout" } > { kind = server }`, nil},
		{`{ name = "redis GET" } ~ { }`, []string{"redis SET"}},
		{`{ name = "SELECT" } << { }`, []string{"GET /checkout,POST /pay,charge"}},
		{`{ name = "SELECT" } < { }`, []string{"charge"}},
		{`{ resource.service.name = "frontend" } !>> { kind = client }`, nil},
		{`{ resource.service.name = "cart" } !>> { kind = client }`, []string{"POST /cart,POST /pay,SELECT"}},
		{`{ name = "POST /pay" } !> { kind = server }`, []string{"GET /checkout,POST /cart"}},
		{`{ name = "redis GET" } !~ { resource.service.name = "cart" }`, []string{"POST /cart,redis GET,orphan"}},
		{`{ kind = server } &>> { status = error }`, []string{"GET /checkout,POST /cart,redis SET,charge"}},
		{`{ name = "POST /pay" } &> { }`, []string{"POST /pay,charge"}},
		{`{ name = "SELECT" } &<< { }`, []string{"GET /checkout,POST /pay,charge,SELECT"}},
		{`{ name = "SELECT" } &< { }`, []string{"charge,SELECT"}},
		{`{ name = "redis GET" } &~ { }`, []string{"redis GET,redis SET"}},
		{`{ name = "SELECT" } !<< { kind = server }`, []string{"POST /cart"}},
		{`{ name = "SELECT" } !< { kind = server }`, []string{"GET /checkout,POST /cart"}},
		{`{ name = "GET /checkout" } >> { kind = server } >> { kind = client }`, []string{"redis GET,redis SET,SELECT"}},
		{`({ name = "GET /checkout" } >> { status = error }) && { name = "orphan" }`, []string{"redis SET,charge,orphan"}},
		// Drilldown's structure tab.
		{`({nestedSetParent<0 && true } &>> { kind = server }) || ({nestedSetParent<0 && true }) | select(status, resource.service.name, name, nestedSetParent, nestedSetLeft, nestedSetRight)`,
			[]string{"GET /checkout,POST /cart,charge"}},
		{`{ resource.service.name = "frontend" } >> { status = error } | { resource.service.name = "payment" }`, []string{"charge"}},

		// Aggregates, by(), select(), coalesce().
		{`{ kind = client } | count() > 3`, []string{"POST /cart,redis GET,redis SET,POST /pay,SELECT count()=5"}},
		{`{ kind = client } | count() > 5`, nil},
		{`{} | count() = 9`, []string{"GET /checkout,POST /cart,POST /cart,redis GET,redis SET,POST /pay,charge,SELECT,orphan count()=9"}},
		{`{ kind = server } | avg(duration) > 40ms`, []string{"GET /checkout,POST /cart,charge avg(duration)=60.333333ms"}},
		{`{ kind = server } | avg(duration) > 70ms`, nil},
		{`{ kind = server } | max(duration) >= 100ms`, []string{"GET /checkout,POST /cart,charge max(duration)=100ms"}},
		{`{ kind = server } | min(duration) < 40ms`, []string{"GET /checkout,POST /cart,charge min(duration)=33ms"}},
		{`{ } | sum(span.amount) = 42.5`, []string{"GET /checkout,POST /cart,POST /cart,redis GET,redis SET,POST /pay,charge,SELECT,orphan sum(span.amount)=42.5"}},
		{`{ kind = client } | by(resource.service.name)`, []string{
			"POST /cart,POST /pay by(resource.service.name)=frontend",
			"redis GET,redis SET by(resource.service.name)=cart",
			"SELECT by(resource.service.name)=payment"}},
		{`{ kind = client } | by(resource.service.name) | count() > 1`, []string{
			"POST /cart,POST /pay by(resource.service.name)=frontend count()=2",
			"redis GET,redis SET by(resource.service.name)=cart count()=2"}},
		{`{ kind = client } | by(span.db.system) | coalesce()`, []string{"POST /cart,redis GET,redis SET,POST /pay,SELECT"}},
		{`{ status = error } | select(span.db.system, resource.service.name)`, []string{"redis SET,charge"}},
		{`{ status = error } | select(event.exception.message) with(most_recent=true)`, []string{"redis SET,charge"}},
		// Drilldown's exceptions and span list.
		{`{true && true && status = error} | select(resource.service.name, event.exception.message,event.exception.stacktrace,event.exception.type) with(most_recent=true)`,
			[]string{"redis SET,charge"}},
		{`{nestedSetParent<0 && true && resource.service.name != nil} | select(status, resource.service.name, name, nestedSetParent, nestedSetLeft, nestedSetRight)`,
			[]string{"GET /checkout"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := Parse(tc.query)
			require.NoError(t, err)
			got := names(q.Eval(tr))
			require.Equal(t, tc.want, got)
			if tc.want != nil {
				// Match is the search's filter of candidates: one span of
				// a matching trace must pass it.
				require.True(t, slices.ContainsFunc(tr.Spans, func(s *Span) bool { return q.Match(s.Resource, s.Span) }), "no span passes Match")
			}
		})
	}
}

func TestNestedSet(t *testing.T) {
	tr := shop(t)
	got := map[string][3]int{}
	for _, s := range tr.Spans {
		got[s.Span.Name()+"@"+serviceName(s.Resource)] = [3]int{s.left, s.right, s.nsParent}
	}
	require.Equal(t, map[string][3]int{
		"GET /checkout@frontend": {1, 16, -1},
		"POST /cart@frontend":    {2, 9, 1},
		"POST /cart@cart":        {3, 8, 2},
		"redis GET@cart":         {4, 5, 3},
		"redis SET@cart":         {6, 7, 3},
		"POST /pay@frontend":     {10, 15, 1},
		"charge@payment":         {11, 14, 10},
		"SELECT@payment":         {12, 13, 11},
		"orphan@cart":            {0, 0, 0},
	}, got)
	require.Equal(t, "GET /checkout", tr.RootName)
	require.Equal(t, "frontend", tr.RootService)
}

// TestShownAndConjuncts: the attributes a result shows, and the
// conditions a search can pick an index from.
func TestShownAndConjuncts(t *testing.T) {
	q, err := Parse(`{ resource.service.name = "cart" && status = error && duration > 1ms } >> { .http.route = "/x" && name = "y" } | select(span.db.system, nestedSetParent, rootName)`)
	require.NoError(t, err)
	var keys []string
	for _, a := range q.Shown() {
		keys = append(keys, a.Scope+":"+a.Key())
	}
	require.Equal(t, []string{"resource:service.name", "intrinsic:status", ":http.route", "span:db.system", "intrinsic:nestedSetParent"}, keys)
	require.False(t, q.Simple())
	var conds []string
	for _, c := range q.Conjuncts() {
		conds = append(conds, c.String())
	}
	require.Equal(t, []string{`resource.service.name = "cart"`, "status = error", "duration > 1ms"}, conds, "the side with more conditions")

	q, err = Parse(`{ span.http.response.status_code = 500 && .a = "b" }`)
	require.NoError(t, err)
	require.True(t, q.Simple())
	a, v, ok := q.Conjuncts()[0].Attr()
	require.True(t, ok)
	require.Equal(t, Attr{Scope: ScopeSpan, Name: "http.response.status_code", text: "span.http.response.status_code"}, *a)
	require.Equal(t, Value{Type: TypeInt, N: 500}, v)
}

func TestParseErrors(t *testing.T) {
	for q, want := range map[string]string{
		`resource.service.name = "x"`:               "col 1: a query starts with {",
		`{ .a = "x"`:                                "col 11: expected && , || or }",
		`{ .a = }`:                                  "col 8: expected a value",
		`{ foo = 1 }`:                               `col 3: unknown attribute "foo"`,
		`{ .a ? 1 }`:                                "col 6: expected && , || or }",
		`{ duration > 5 }`:                          "duration compares with a duration",
		`{ .a =~ "(" }`:                             `invalid regexp "("`,
		`{ .a =~ 1 }`:                               "=~ needs a string",
		`{ .a = "x } `:                              "string not terminated",
		`{ resource. = 1 }`:                         "attribute name missing",
		`{ 5 }`:                                     "col 3: expected a condition, not the value 5",
		`{ .a = 1 } | count()`:                      "count() as a stage of its own is not supported",
		`{ .a = 1 } | count(.a) > 1`:                "count() takes no argument",
		`{ .a = 1 } | avg(5) > 1`:                   "avg() takes an attribute",
		`{ .a = 1 } | count() > "x"`:                "count() compares with a number or a duration",
		`{ .a = 1 } extra`:                          `col 12: unexpected "extra"`,
		`{ .a = 1 } |`:                              "expected a pipeline stage",
		`{ .a = 1 } | select(.a`:                    "expected , or ) in select()",
		`{ .a = 1 } | select("x")`:                  `select() takes attributes, not "x"`,
		`{ .a = 1 } with(most_recent=true`:          "expected ) after the hints",
		`{ .a = 1 } >> `:                            "expected a spanset filter",
		`({ .a = 1 }`:                               "col 12: expected )",
		`{ (.a = 1 }`:                               "expected )",
		"{ .a = \"\\q\" }":                          "invalid string",
		`{ .a = 1 } | by(.a) | by(.b) | nope()`:     `the pipeline stage "nope" is not supported`,
		strings.Repeat("{ } >> ", MaxParts) + "{ }": "too many spanset filters and pipeline stages (at most 512)",
		"{ }" + strings.Repeat(" | { }", MaxParts):  "too many spanset filters and pipeline stages (at most 512)",
	} {
		_, err := Parse(q)
		require.ErrorIs(t, err, ErrParse, q)
		require.ErrorContains(t, err, want, q)
	}
}

// TestUnsupported: valid TraceQL that Lumen does not evaluate is refused
// with an error that names the part.
func TestUnsupported(t *testing.T) {
	for q, want := range map[string]string{
		`{ } | rate()`: "the metrics function rate() is not supported",
		`{ } | quantile_over_time(duration, .99) by(.a)`: "the metrics function quantile_over_time() is not supported",
		`{ } | count_over_time()`:                        "count_over_time()",
		`{ .a + 1 = 2 }`:                                 "arithmetic (+) is not supported",
		`{ .a = .b * 2 }`:                                "arithmetic (*) is not supported",
		`{ (.a) = 1 }`:                                   "comparing a parenthesized expression is not supported",
		`{ parent.span.a = 1 }`:                          "the parent. scope is not supported",
		`{ span:nope = 1 }`:                              `the intrinsic "span:nope" is not supported`,
		`{ } | by(.a, .b)`:                               "by() with 2 attributes is not supported",
		`{ } | topk(5)`:                                  "topk()",
		`{ } | count() > 1 | histogram_over_time(duration)`: "histogram_over_time()",
	} {
		_, err := Parse(q)
		require.ErrorIs(t, err, ErrParse, q)
		require.ErrorIs(t, err, ErrUnsupported, q)
		require.ErrorContains(t, err, want, q)
	}
}

// TestParseDepth: nesting is bounded, so no query can overflow the
// parser's stack (fatal in Go: the whole server would go down).
func TestParseDepth(t *testing.T) {
	nest := func(n int) string {
		return "{ " + strings.Repeat("(", n-1) + `.a = "x"` + strings.Repeat(")", n-1) + " }"
	}
	for _, tc := range []struct {
		name, query string
		tooDeep     bool
		col         int // of the first parenthesis too many
	}{
		{"at the limit", nest(MaxDepth), false, 0},
		{"past the limit", nest(MaxDepth + 1), true, len("{ ") + MaxDepth},
		{"100,000 parentheses", "{ " + strings.Repeat("(", 100_000), true, len("{ ") + MaxDepth},
		{"100,000 nested ors", "{ " + strings.Repeat(`(.a = "x" || `, 100_000), true, len("{ ") + (MaxDepth-1)*len(`(.a = "x" || `) + 1},
		{"100,000 spanset parentheses", strings.Repeat("(", 100_000), true, MaxDepth + 1},
		{"100,000 nested pipelines", strings.Repeat("({} | ", 100_000), true, (MaxDepth-1)*len("({} | ") + 2},
		{"100,000 negations", "{ " + strings.Repeat("!", 100_000) + "true }", true, len("{ ") + MaxDepth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := Parse(tc.query)
			if !tc.tooDeep {
				require.NoError(t, err)
				res, sp := span(t)
				_ = q.Match(res, sp)
				return
			}
			require.ErrorIs(t, err, ErrParse)
			require.ErrorIs(t, err, ErrTooDeep)
			require.ErrorContains(t, err, fmt.Sprintf("parse error at col %d: parentheses nested too deeply (at most %d)", tc.col, MaxDepth))
		})
	}
}

// FuzzParse: no input makes the parser panic, and what parses can be
// evaluated on a trace and on a span.
func FuzzParse(f *testing.F) {
	f.Add(`{ resource.service.name = "cart" && duration > 100ms || (status = error && .a =~ "x.*") }`)
	f.Add(`{ span.http.route = "/y" }`)
	f.Add(`{}`)
	f.Add(`{ kind = server } >> { status = error } | by(resource.service.name) | count() > 1`)
	f.Add(`({nestedSetParent<0 && true } &>> { kind = server }) || ({nestedSetParent<0}) | select(status, name, nestedSetLeft)`)
	f.Add(`{ } | avg(duration) > 1s with(most_recent=true)`)
	f.Fuzz(func(t *testing.T, q string) {
		p, err := Parse(q)
		if err != nil {
			require.ErrorIs(t, err, ErrParse)
			return
		}
		res, sp := span(t)
		_ = p.Match(res, sp)
		_ = p.Conjuncts()
		_ = p.Eval(shop(t))
	})
}
