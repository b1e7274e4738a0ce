package traceql

import (
	"fmt"
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
	return rs.Resource(), sp
}

func TestMatch(t *testing.T) {
	res, sp := span(t)
	for q, want := range map[string]bool{
		`{}`:                                 true,
		`{ resource.service.name = "cart" }`: true,
		`{ span.service.name = "cart" }`:     false,
		`{ .service.name = "cart" && name = "GET /cart" }`:          true,
		`{ status = error && kind = server }`:                       true,
		`{ status = ok || kind = client }`:                          false,
		`{ duration > 200ms && duration <= 250ms }`:                 true,
		`{ span.http.response.status_code >= 500 }`:                 true,
		`{ span.http.response.status_code = 200 }`:                  false,
		`{ .http.route =~ "/cart/.*" }`:                             true,
		`{ .http.route !~ "/cart/.*" }`:                             false,
		`{ .missing != "x" }`:                                       true,
		`{ .missing = "x" }`:                                        false,
		`{ .timeout > 1s }`:                                         true,
		`{ (name = "x" || name = "GET /cart") && status != unset }`: true,
		"{ span:name = `GET /cart` }":                               true,
	} {
		p, err := Parse(q)
		require.NoError(t, err, q)
		require.Equal(t, want, p.Match(res, sp), q)
	}
}

func TestParseErrors(t *testing.T) {
	for q, want := range map[string]string{
		`resource.service.name = "x"`: "col 1: a query starts with {",
		`{ .a = "x"`:                  "col 11: expected && , || or }",
		`{ .a = }`:                    "col 8: expected a value",
		`{ foo = 1 }`:                 `col 3: unknown attribute "foo"`,
		`{ .a ? 1 }`:                  "col 6: expected a comparison",
		`{ duration > 5 }`:            "duration compares with a duration",
		`{ .a =~ "(" }`:               `invalid regexp "("`,
		`{ .a = "x } `:                "string not terminated",
		`{ .a = 1 } >> { .b = 2 }`:    "only one spanset filter",
		`{ resource. = 1 }`:           "attribute name missing",
	} {
		_, err := Parse(q)
		require.ErrorIs(t, err, ErrParse, q)
		require.ErrorContains(t, err, want, q)
	}
}

// TestParseDepth: nesting is bounded, so no filter can overflow the
// parser's stack (fatal in Go: the whole server would go down).
func TestParseDepth(t *testing.T) {
	nest := func(n int) string { return "{ " + strings.Repeat("(", n) + `.a = "x"` + strings.Repeat(")", n) + " }" }
	for _, tc := range []struct {
		name, query string
		tooDeep     bool
		col         int // of the first parenthesis too many
	}{
		{"at the limit", nest(MaxDepth), false, 0},
		{"past the limit", nest(MaxDepth + 1), true, len("{ ") + MaxDepth + 1},
		{"100,000 parentheses", "{ " + strings.Repeat("(", 100_000), true, len("{ ") + MaxDepth + 1},
		{"100,000 nested ors", "{ " + strings.Repeat(`(.a = "x" || `, 100_000), true, len("{ ") + MaxDepth*len(`(.a = "x" || `) + 1},
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
// evaluated.
func FuzzParse(f *testing.F) {
	f.Add(`{ resource.service.name = "cart" && duration > 100ms || (status = error && .a =~ "x.*") }`)
	f.Add(`{ span.http.route = "/y" }`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, q string) {
		p, err := Parse(q)
		if err != nil {
			require.ErrorIs(t, err, ErrParse)
			return
		}
		res, sp := span(t)
		_ = p.Match(res, sp)
		_ = p.Conjuncts()
	})
}
