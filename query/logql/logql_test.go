package logql_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/query/logql"
	"github.com/lumenobs/lumen/store"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) int64 { return t0.Add(d).UnixNano() }

// fixture stores, in a real store on disk:
//
//	{app="api", env="prod"}: 60 JSON lines, one a second from t0; every 10th an error with status 500
//	{app="api", env="dev"}:  30 logfmt lines, one every 2 s
//	{app="web", env="prod"}: 20 text lines, one every 3 s; every 5th holds "needle"
func fixture(t *testing.T) *store.DB {
	t.Helper()
	o := store.DefaultOptions(t.TempDir())
	o.Retention = 0
	o.LogBlockBytes = 2 << 10 // several blocks per stream, and some lines still in the head
	db, err := store.Open(o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	var prod, dev, web store.LogStream
	prod.Labels = labels.FromStrings("app", "api", "env", "prod")
	dev.Labels = labels.FromStrings("app", "api", "env", "dev")
	web.Labels = labels.FromStrings("app", "web", "env", "prod")
	for i := range 60 {
		level, status := "info", 200
		if i%10 == 0 {
			level, status = "error", 500
		}
		prod.Entries = append(prod.Entries, store.LogEntry{T: at(time.Duration(i) * time.Second),
			Line: fmt.Sprintf(`{"level":%q,"status":%d,"duration":"%dms","path":"/cart","user":{"id":"u1"}}`, level, status, i)})
	}
	for i := range 30 {
		dev.Entries = append(dev.Entries, store.LogEntry{T: at(time.Duration(2*i) * time.Second),
			Line: `level=debug status=200 msg="hello world" took=3ms size=1KB`})
	}
	for i := range 20 {
		line := "GET /index.html 200"
		if i%5 == 0 {
			line += " needle"
		}
		web.Entries = append(web.Entries, store.LogEntry{T: at(time.Duration(3*i) * time.Second), Line: line})
	}
	// In requests of 10 lines a stream, as a client would send them.
	for i := 0; i < 60; i += 10 {
		var req []store.LogStream
		for _, s := range []store.LogStream{prod, dev, web} {
			if i < len(s.Entries) {
				req = append(req, store.LogStream{Labels: s.Labels, Entries: s.Entries[i:min(i+10, len(s.Entries))]})
			}
		}
		require.NoError(t, db.WriteLogStreams(context.Background(), req))
	}
	return db
}

func count(streams []logql.Stream) int {
	n := 0
	for _, s := range streams {
		n += len(s.Entries)
	}
	return n
}

func TestLogQueries(t *testing.T) {
	db := fixture(t)
	all := logql.Params{Start: t0, End: t0.Add(time.Minute), Limit: 1000, Forward: true}
	for _, tc := range []struct {
		query   string
		lines   int
		streams int    // 0: not checked
		first   string // the first line, when set
		check   func(t *testing.T, res []logql.Stream)
	}{
		{query: `{app="api"}`, lines: 90, streams: 2},
		{query: `{app!="api", env="prod"}`, lines: 20, streams: 1},
		{query: `{app=~"a.*|w.*", env="prod"}`, lines: 80, streams: 2},
		{query: `{app="api", env!~"d.*"}`, lines: 60, streams: 1},
		{query: `{app="web"} |= "needle"`, lines: 4, first: "GET /index.html 200 needle"},
		{query: `{app="web"} != "needle"`, lines: 16},
		{query: `{app="web"} |= "nope" or "needle"`, lines: 4},
		{query: `{app="api", env="prod"} |~ "\"status\":5\\d\\d"`, lines: 6},
		{query: "{app=\"api\", env=\"prod\"} |~ `\"status\":5\\d\\d`", lines: 6},
		{query: `{app="api", env="prod"} !~ "error"`, lines: 54},
		{query: `{app="api", env="prod"} |= "error" != "\"status\":200"`, lines: 6},
		{query: `{app="api", env="prod"} | json | level="error"`, lines: 6, check: func(t *testing.T, res []logql.Stream) {
			ls := res[0].Labels
			require.Equal(t, "error", ls.Get("level"))
			require.Equal(t, "500", ls.Get("status"))
			require.Equal(t, "u1", ls.Get("user_id"), "nested objects joined with _")
			require.Equal(t, "/cart", ls.Get("path"))
			require.Equal(t, "prod", ls.Get("env"), "stream labels kept")
		}},
		{query: `{app="api", env="prod"} | json | status >= 500`, lines: 6},
		{query: `{app="api", env="prod"} | json | status == 500`, lines: 6},
		{query: `{app="api", env="prod"} | json | status != 200`, lines: 6},
		{query: `{app="api", env="prod"} | json | duration > 50ms`, lines: 9},
		{query: `{app="api", env="prod"} | json | duration >= 50ms, duration < 52ms`, lines: 2},
		{query: `{app="api", env="prod"} | json | level="error" or duration <= 1ms`, lines: 7},
		{query: `{app="api", env="prod"} | json | (level="error" or duration <= 1ms) and status=200`, lines: 1},
		{query: `{app="api", env="prod"} | json | level=~"err.*" | path!="/cart"`, lines: 0},
		{query: `{app="api", env="dev"} | logfmt | size >= 1KB and took < 5ms`, lines: 30, check: func(t *testing.T, res []logql.Stream) {
			require.Equal(t, "hello world", res[0].Labels.Get("msg"), "quoted logfmt values")
			require.Equal(t, "debug", res[0].Labels.Get("level"))
		}},
		{query: `{app="api", env="dev"} | logfmt | msg="hello world"`, lines: 30},
		{query: `{app="api", env="dev"} | logfmt | size > 1KB`, lines: 0},
		{query: `{app="web"} | line_format "{{.app}}: {{__line__ | ToUpper}}"`, lines: 20, first: "web: GET /INDEX.HTML 200 NEEDLE"},
		{query: `{app="api", env="prod"} | json | line_format "{{.level}} {{.path}} {{.user_id}}" |= "error"`, lines: 6, first: "error /cart u1"},
		{query: `{app="api", env="prod"} | logfmt`, lines: 60, check: func(t *testing.T, res []logql.Stream) {
			require.Equal(t, "LogfmtParserErr", res[0].Labels.Get("__error__"), "a JSON line is not logfmt")
		}},
		{query: `{app="web"} | json`, lines: 20, check: func(t *testing.T, res []logql.Stream) {
			require.Equal(t, "JSONParserErr", res[0].Labels.Get("__error__"))
		}},
		{query: `{app="web"} | json | __error__=""`, lines: 0},
		{query: `{app="api", env="dev"} | logfmt | status > 1`, lines: 30},
		{query: `{app="web"} | logfmt | status > 1`, lines: 20, check: func(t *testing.T, res []logql.Stream) {
			require.Equal(t, "LabelFilterErr", res[0].Labels.Get("__error__"), "a value that is not a number keeps the line, marked, as Loki does")
		}},
		{query: `{app="web"} | logfmt | status > 1 | __error__=""`, lines: 0},
		{query: `{app="nope"}`, lines: 0},
	} {
		t.Run(tc.query, func(t *testing.T) {
			e, err := logql.Parse(tc.query)
			require.NoError(t, err)
			require.True(t, logql.IsLogQuery(e))
			res, err := logql.Exec(context.Background(), db, e, all)
			require.NoError(t, err)
			require.Equal(t, tc.lines, count(res.Streams))
			if tc.streams > 0 {
				require.Len(t, res.Streams, tc.streams)
			}
			if tc.first != "" {
				require.Equal(t, tc.first, res.Streams[0].Entries[0].Line)
			}
			if tc.check != nil {
				tc.check(t, res.Streams)
			}
		})
	}
}

func TestLogQueryLimitAndDirection(t *testing.T) {
	db := fixture(t)
	e, err := logql.Parse(`{app="api", env="prod"} | json`)
	require.NoError(t, err)
	times := func(p logql.Params) []int64 {
		res, err := logql.Exec(context.Background(), db, e, p)
		require.NoError(t, err)
		var out []int64
		for _, s := range res.Streams {
			for _, en := range s.Entries {
				out = append(out, (en.T-t0.UnixNano())/int64(time.Second))
			}
		}
		return out
	}
	p := logql.Params{Start: t0, End: t0.Add(time.Minute), Limit: 3}
	require.ElementsMatch(t, []int64{59, 58, 57}, times(p), "backward: the newest lines")
	p.Forward = true
	require.ElementsMatch(t, []int64{0, 1, 2}, times(p), "forward: the oldest lines")
	p.Start, p.End = t0.Add(10*time.Second), t0.Add(12*time.Second)
	p.Limit = 100
	require.Equal(t, []int64{10, 11}, times(p), "start inclusive, end exclusive")

	// Lines of one stream in the answer follow the direction.
	e, err = logql.Parse(`{app="web"}`)
	require.NoError(t, err)
	res, err := logql.Exec(context.Background(), db, e, logql.Params{Start: t0, End: t0.Add(time.Minute), Limit: 100})
	require.NoError(t, err)
	require.Greater(t, res.Streams[0].Entries[0].T, res.Streams[0].Entries[1].T)
}

func TestMetricQueries(t *testing.T) {
	db := fixture(t)
	rng := logql.Params{Start: t0.Add(10 * time.Second), End: t0.Add(40 * time.Second), Step: 10 * time.Second}
	steps := []int64{t0.Add(10 * time.Second).UnixMilli(), t0.Add(20 * time.Second).UnixMilli(), t0.Add(30 * time.Second).UnixMilli(), t0.Add(40 * time.Second).UnixMilli()}
	flat := func(v ...float64) []logql.Point {
		out := make([]logql.Point, len(v))
		for i := range v {
			out[i] = logql.Point{T: steps[i], V: v[i]}
		}
		return out
	}
	for _, tc := range []struct {
		query string
		p     logql.Params
		want  map[string][]logql.Point
	}{
		// Windows are (t-range, t]: at t0+10s, prod has lines 1..10.
		{`count_over_time({app="api", env="prod"}[10s])`, rng, map[string][]logql.Point{`{app="api", env="prod"}`: flat(10, 10, 10, 10)}},
		{`rate({app="web"}[30s])`, rng, map[string][]logql.Point{`{app="web", env="prod"}`: flat(4.0/30, 7.0/30, 10.0/30, 10.0/30)}},
		{`bytes_over_time({app="web"}[10s])`, rng, map[string][]logql.Point{`{app="web", env="prod"}`: flat(
			3*19, 2*19+26, 3*19+26, 3*19)}},
		{`bytes_rate({app="web"}[10s])`, rng, map[string][]logql.Point{`{app="web", env="prod"}`: flat(
			3*19/10.0, (2*19+26)/10.0, (3*19+26)/10.0, 3*19/10.0)}},
		{`sum by (env) (count_over_time({app="api"}[10s]))`, rng, map[string][]logql.Point{`{env="dev"}`: flat(5, 5, 5, 5), `{env="prod"}`: flat(10, 10, 10, 10)}},
		{`sum(count_over_time({app="api"}[10s])) by (env)`, rng, map[string][]logql.Point{`{env="dev"}`: flat(5, 5, 5, 5), `{env="prod"}`: flat(10, 10, 10, 10)}},
		{`sum without (app) (count_over_time({app="api"}[10s]))`, rng, map[string][]logql.Point{`{env="dev"}`: flat(5, 5, 5, 5), `{env="prod"}`: flat(10, 10, 10, 10)}},
		{`sum(count_over_time({env=~".+"}[10s]))`, rng, map[string][]logql.Point{`{}`: flat(18, 18, 19, 18)}},
		{`avg(count_over_time({env=~".+"}[10s]))`, rng, map[string][]logql.Point{`{}`: flat(6, 6, 19.0/3, 6)}},
		{`max(count_over_time({env=~".+"}[10s]))`, rng, map[string][]logql.Point{`{}`: flat(10, 10, 10, 10)}},
		{`min(count_over_time({env=~".+"}[10s]))`, rng, map[string][]logql.Point{`{}`: flat(3, 3, 4, 3)}},
		{`count(count_over_time({env=~".+"}[10s]))`, rng, map[string][]logql.Point{`{}`: flat(3, 3, 3, 3)}},
		{`count by (app) (count_over_time({env=~".+"}[10s]))`, rng, map[string][]logql.Point{`{app="api"}`: flat(2, 2, 2, 2), `{app="web"}`: flat(1, 1, 1, 1)}},
		{`topk(2, count_over_time({env=~".+"}[10s]))`, rng, map[string][]logql.Point{`{app="api", env="prod"}`: flat(10, 10, 10, 10), `{app="api", env="dev"}`: flat(5, 5, 5, 5)}},
		{`topk by (app) (1, count_over_time({env=~".+"}[10s]))`, rng, map[string][]logql.Point{`{app="api", env="prod"}`: flat(10, 10, 10, 10), `{app="web", env="prod"}`: flat(3, 3, 4, 3)}},
		{`bottomk(1, count_over_time({env=~".+"}[10s]))`, rng, map[string][]logql.Point{`{app="web", env="prod"}`: flat(3, 3, 4, 3)}},
		{`sum by (level) (count_over_time({app="api", env="prod"} | json [10s]))`, rng, map[string][]logql.Point{`{level="error"}`: flat(1, 1, 1, 1), `{level="info"}`: flat(9, 9, 9, 9)}},
		{`sum(count_over_time({app="api", env="prod"} |= "error" [10s] offset 10s))`, rng, map[string][]logql.Point{`{}`: flat(1, 1, 1, 1)}},
		// Instant: evaluated at End; steps without lines have no point.
		{`sum(count_over_time({app="api", env="prod"} | json | level="error" [1m]))`, logql.Params{End: t0.Add(time.Minute)},
			map[string][]logql.Point{`{}`: {{T: t0.Add(time.Minute).UnixMilli(), V: 5}}}},
		{`count_over_time({app="api"}[10s])`, logql.Params{End: t0.Add(2 * time.Hour)}, map[string][]logql.Point{}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			e, err := logql.Parse(tc.query)
			require.NoError(t, err)
			require.False(t, logql.IsLogQuery(e))
			res, err := logql.Exec(context.Background(), db, e, tc.p)
			require.NoError(t, err)
			got := map[string][]logql.Point{}
			for _, s := range res.Series {
				got[s.Metric.String()] = s.Points
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ query, want string }{
		{`{app="x"`, `parse error at line 1, col 9: unexpected "end of query", expected "," or "}"`},
		{`{app=~".*"}`, "at least one regexp or equality matcher that does not have an empty-compatible value"},
		{`{}`, "at least one label matcher"},
		{`{app="x"} |= 5`, `col 14: unexpected "5", expected a quoted string after the line filter`},
		{`{app="x"} |~ "("`, `col 14: invalid regexp "("`},
		{`rate({app="x"})`, `col 15: unexpected ")", expected "[" and a range`},
		{`rate({app="x"}[0s])`, "expected a positive range"},
		{`foo({app="x"}[1m])`, `col 1: unknown function "foo"`},
		{`sum(count_over_time({app="x"}[1m])`, `unexpected "end of query", expected ")"`},
		{`sum({app="x"})`, "sum aggregates a metric query, not a log query"},
		{`topk(x, count_over_time({app="x"}[1m]))`, `expected a positive integer k for topk`},
		{"{app=\"x\"}\n  | json\n  | level >", `parse error at line 3, col 12: unexpected "end of query", expected a number`},
		{`{app="x"} | unwrap latency`, "the unwrap stage is not supported by Lumen"},
		{`{app="x"} | json foo="bar"`, "json with parameters is not supported"},
		{`{app="x"} | line_format "{{.a"`, "invalid line_format template"},
		{`{app="x"} extra`, `col 11: unexpected "extra" after the end of the query`},
		{`{app="x" @}`, `col 10: unexpected character '@'`},
		{`{app="x} `, "string not terminated"},
		{`{app="x"} | level =~ 5`, "expected a quoted regexp"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			_, err := logql.Parse(tc.query)
			require.Error(t, err)
			require.ErrorIs(t, err, logql.ErrParse)
			var pe *logql.ParseError
			require.True(t, errors.As(err, &pe))
			require.Contains(t, err.Error(), tc.want)
			require.True(t, strings.HasPrefix(err.Error(), "parse error at line "))
		})
	}
}

// TestParseDepth: nesting is bounded, so no query can overflow the
// parser's stack (fatal in Go: the whole server would go down).
func TestParseDepth(t *testing.T) {
	nest := func(open, inner, close string, n int) string {
		return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
	}
	const metric = `count_over_time({app="x"}[1m])`
	for _, tc := range []struct {
		name, query string
		tooDeep     bool
	}{
		{"parentheses at the limit", nest("(", metric, ")", logql.MaxDepth), false},
		{"parentheses past the limit", nest("(", metric, ")", logql.MaxDepth+1), true},
		{"aggregations at the limit", nest("sum(", metric, ")", logql.MaxDepth), false},
		{"aggregations past the limit", nest("sum(", metric, ")", logql.MaxDepth+1), true},
		{"label filter parentheses past the limit", `{app="x"} | ` + nest("(", `a="b"`, ")", logql.MaxDepth+1), true},
		{"100,000 parentheses", strings.Repeat("(", 100_000), true},
		{"100,000 label filter parentheses", `{app="x"} | ` + strings.Repeat("(", 100_000), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := logql.Parse(tc.query)
			if !tc.tooDeep {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, logql.ErrParse)
			require.ErrorIs(t, err, logql.ErrTooDeep)
			require.ErrorContains(t, err, fmt.Sprintf("nested too deeply (at most %d)", logql.MaxDepth))
		})
	}
}

// FuzzParse: no query makes the parser panic; what it accepts it prints
// back and parses again the same way.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{app="api"} |= "x" | json | level="error" | line_format "{{.level}}"`,
		`sum by (env) (rate({app=~"a.+"} | logfmt | status >= 500 [5m] offset 1m))`,
		`topk(3, bytes_over_time({app="x"} != "y" [1h]))`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		e, err := logql.Parse(q)
		if err != nil {
			require.ErrorIs(t, err, logql.ErrParse)
			return
		}
		_, err = logql.Parse(e.String())
		require.NoError(t, err, "printed form of %q", q)
	})
}
