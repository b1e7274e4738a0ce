package logql_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
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
			require.Empty(t, res[0].Labels.Get("__error__"), "logfmt skips what it cannot read, as Loki's does")
		}},
		{query: `{app="api", env="prod"} | logfmt --strict`, lines: 60, check: func(t *testing.T, res []logql.Stream) {
			require.Equal(t, "LogfmtParserErr", res[0].Labels.Get("__error__"), "a JSON line is not logfmt")
		}},
		{query: `{app="web"} | json`, lines: 20, check: func(t *testing.T, res []logql.Stream) {
			require.Equal(t, "JSONParserErr", res[0].Labels.Get("__error__"))
		}},
		{query: `{app="web"} | json | __error__=""`, lines: 0},
		{query: `{app="api", env="dev"} | logfmt | status > 1`, lines: 30},
		{query: `{app="web"} | logfmt | status > 1`, lines: 0},
		{query: `{app="web"} | regexp "(?P<status>[A-Z]+)" | status > 1`, lines: 20, check: func(t *testing.T, res []logql.Stream) {
			require.Equal(t, "LabelFilterErr", res[0].Labels.Get("__error__"), "a value that is not a number keeps the line, marked, as Loki does")
		}},
		{query: `{app="web"} | regexp "(?P<status>[A-Z]+)" | status > 1 | __error__=""`, lines: 0},
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
		{`{app="x"} | json | unwrap latency`, `unexpected "|" after the end of the query`},
		{`{app="x"} | json foo=`, `expected a quoted expression`},
		{`{app="x"} | json foo="a..b"`, `cannot parse expression [a..b]`},
		{`{app="x"} | regexp "(a)"`, `invalid regexp parser: at least one named capture must be supplied`},
		{`{app="x"} | pattern "<a><b>"`, `invalid pattern parser: found consecutive capture '<a><b>'`},
		{`{app="x"} | pattern "x <_>"`, `invalid pattern parser: at least one capture is required`},
		{`{app="x"} | label_format a="{{.x}}", a=b`, `multiple label name 'a' not allowed`},
		{`{app="x"} | label_format __error__=x`, `__error__ cannot be formatted`},
		{`{app="x"} | line_format "{{ nope }}"`, `function "nope" not defined`},
		{`{app="x"} | a = ip("nope")`, `ip: invalid pattern`},
		{`{app="x"} |~ ip("1.2.3.4")`, `ip: invalid operation`},
		{`{app="x"} | drop`, `expected a label name after drop`},
		{`rate({app="x"})`, `col 15: unexpected ")", expected "[" and a range`},
		{`rate({app="x"}[1.5m])`, "expected a range such as 5m"},
		{`foo({app="x"}[1m])`, `col 1: unknown function "foo"`},
		{`sum(count_over_time({app="x"}[1m])`, `unexpected "end of query", expected ")"`},
		{`sum({app="x"})`, "sum aggregates a metric query, not a log query"},
		{`topk(x, count_over_time({app="x"}[1m]))`, `expected a positive integer k for topk`},
		{"{app=\"x\"}\n  | json\n  | level >", `parse error at line 3, col 12: unexpected "end of query", expected a number`},
		{`{app="x"} | line_format "{{.a"`, "invalid line template"},
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
		"{app=\"a\"} | json code=\"status\", first=\"tags[0]\", id=`user[\"id\"]` | code >= 500",
		`{app="a"} | logfmt --strict --keep-empty level, d="duration" | d > 1.5s or size <= 10KB`,
		"{app=\"a\"} | pattern `<ip> - <_> [<ts>] \"<method> <path>\"` | method=~\"GET|PUT\", ip = ip(\"10.0.0.0/8\")",
		"{app=\"a\"} | regexp `(?P<m>\\w+)` | unpack | decolorize |> \"<_> GET <_>\" |= ip(\"1.2.3.4\") or \"x\"",
		`{app="a"} | label_format a=b, c="{{ .a | upper | trunc 3 }}{{ __line__ | len }}" | line_format "{{ __timestamp__ | unixEpoch }}"`,
		`{app="a"} | json | drop __error__, x="1" | keep y, z!~"a.*" | (a="1", b > 2 or c != 3ms) and d=""`,
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

// pipe runs query's pipeline over lines of one stream and returns each
// kept line as "labels line".
func pipe(t *testing.T, query string, stream labels.Labels, lines ...store.LogEntry) []string {
	t.Helper()
	e, err := logql.Parse(query)
	require.NoError(t, err)
	le, ok := e.(*logql.LogExpr)
	require.True(t, ok)
	for i := range lines {
		if lines[i].T == 0 {
			lines[i].T = t0.Add(time.Duration(i) * time.Second).UnixNano()
		}
	}
	var out []string
	for _, l := range logql.Pipe(le, stream, lines) {
		out = append(out, l.Labels.String()+" "+l.Line)
	}
	return out
}

func line(s string, md ...string) store.LogEntry {
	return store.LogEntry{Line: s, Metadata: labels.FromStrings(md...)}
}

// TestPipelineStages: each stage as Loki 3.7 runs it, over lines and
// labels written out in full.
func TestPipelineStages(t *testing.T) {
	app := labels.FromStrings("app", "a")
	for _, tc := range []struct {
		name   string
		query  string
		stream labels.Labels
		lines  []store.LogEntry
		want   []string
	}{
		{"json: nested objects joined with _, arrays and nulls skipped, numbers as written",
			`{app="a"} | json`, app,
			[]store.LogEntry{line(`{"a":{"b":1,"c":{"d":"x"}},"arr":[1,2],"n":null,"t":true,"f":1.50,"s":"é\n"}`)},
			[]string{`{a_b="1", a_c_d="x", app="a", f="1.50", s="é\n", t="true"} {"a":{"b":1,"c":{"d":"x"}},"arr":[1,2],"n":null,"t":true,"f":1.50,"s":"é\n"}`}},
		{"json: names sanitised; the first of two equal keys wins; a stream label's name gets _extracted",
			`{app="a"} | json`, app,
			[]store.LogEntry{line(`{"my-key":1," sp ":2,"1x":3,"é":4,"app":"b","k":1,"k":2,"o":{"app":5}}`)},
			[]string{`{_="4", _1x="3", app="a", app_extracted="b", k="1", my_key="1", o_app="5", sp="2"} {"my-key":1," sp ":2,"1x":3,"é":4,"app":"b","k":1,"k":2,"o":{"app":5}}`}},
		{"json: a line that is not an object is marked, with jsonparser's reason",
			`{app="a"} | json`, app,
			[]store.LogEntry{line(`panic: oops`), line(`{"a":1,"b":`)},
			[]string{
				`{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol", app="a"} panic: oops`,
				`{__error__="JSONParserErr", __error_details__="Malformed JSON error", a="1", app="a"} {"a":1,"b":`,
			}},
		{"json with expressions: paths, indexes, objects as JSON, missing fields empty",
			`{app="a"} | json code="status", first="tags[1]", id=` + "`user[\"id\"]`" + `, geo="user.geo", none="x.y", app`, app,
			[]store.LogEntry{line(`{"status":500,"tags":["a","b"],"user":{"id":"u1","geo":{"c":"FR"}},"app":"z"}`), line(`nope`)},
			[]string{
				`{app="a", app_extracted="z", code="500", first="b", geo="{\"c\":\"FR\"}", id="u1", none=""} {"status":500,"tags":["a","b"],"user":{"id":"u1","geo":{"c":"FR"}},"app":"z"}`,
				`{__error__="JSONParserErr", app="a"} nope`,
			}},
		{"logfmt: quoted values, keys alone skipped, first value wins, malformed pairs skipped",
			`{app="a"} | logfmt`, app,
			[]store.LogEntry{line(`a=1 b="x \"y\"" c d= a=2 e"f=3 g=é`)},
			[]string{`{a="1", app="a", b="x \"y\"", g="é"} a=1 b="x \"y\"" c d= a=2 e"f=3 g=é`}},
		{"logfmt --keep-empty keeps keys alone",
			`{app="a"} | logfmt --keep-empty`, app,
			[]store.LogEntry{line(`a=1 retry d=`)},
			[]string{`{a="1", app="a", d="", retry=""} a=1 retry d=`}},
		{"logfmt --strict stops at the first malformed pair and marks the line",
			`{app="a"} | logfmt --strict`, app,
			[]store.LogEntry{line(`a=1 msg="open b=2`), line(`a=1 =x b=2`)},
			[]string{
				`{__error__="LogfmtParserErr", __error_details__="logfmt syntax error at pos 18 : unterminated quoted value", a="1", app="a"} a=1 msg="open b=2`,
				`{__error__="LogfmtParserErr", __error_details__="logfmt syntax error at pos 5 : unexpected '='", a="1", app="a"} a=1 =x b=2`,
			}},
		{"logfmt with expressions: renamed, every name set, later values replace earlier",
			`{app="a"} | logfmt level, d="duration", missing`, app,
			[]store.LogEntry{line(`level=info duration=5ms level=warn other=1`)},
			[]string{`{app="a", d="5ms", level="warn", missing=""} level=info duration=5ms level=warn other=1`}},
		{"pattern: named captures, <_> skipped, a missing literal ends the match",
			`{app="a"} | pattern "<ip> - <_> [<ts>] \"<method> <path>\""`, app,
			[]store.LogEntry{line(`1.2.3.4 - u [now] "GET /x"`), line(`1.2.3.4 - u [now`), line(`nothing here`)},
			[]string{
				`{app="a", ip="1.2.3.4", method="GET", path="/x", ts="now"} 1.2.3.4 - u [now] "GET /x"`,
				`{app="a", ip="1.2.3.4", ts="now"} 1.2.3.4 - u [now`,
				`{app="a", ip="nothing here"} nothing here`,
			}},
		{"regexp: named groups; a line it does not match is kept as it is",
			`{app="a"} | regexp "(?P<method>\\w+) (?P<path>/\\S*)(?P<q>\\?\\S+)?"`, app,
			[]store.LogEntry{line(`GET /x`), line(`-`)},
			[]string{`{app="a", method="GET", path="/x", q=""} GET /x`, `{app="a"} -`}},
		{"unpack: string fields become labels, _entry the line",
			`{app="a"} | unpack`, app,
			[]store.LogEntry{line(`{"_entry":"level=info","pod":"p1","app":"x","n":1}`), line(`{"pod":"p1"}`), line(`x`)},
			[]string{
				`{app="a", app_extracted="x", pod="p1"} level=info`,
				`{app="a"} {"pod":"p1"}`,
				`{__error__="JSONParserErr", __error_details__="expecting json object(6), but it is not", app="a"} x`,
			}},
		{"numeric filters: a missing label drops, an unparseable value keeps the line marked",
			`{app="a"} | logfmt | n > 5`, app,
			[]store.LogEntry{line(`n=10`), line(`n=1`), line(`m=1`), line(`n=abc`)},
			[]string{
				`{app="a", n="10"} n=10`,
				`{__error__="LabelFilterErr", __error_details__="strconv.ParseFloat: parsing \"abc\": invalid syntax", app="a", n="abc"} n=abc`,
			}},
		{"duration and bytes filters; an earlier error is kept",
			`{app="a"} | logfmt | d >= 1s or size > 1KB`, app,
			[]store.LogEntry{line(`d=1500ms`), line(`d=10ms size=2KB`), line(`d=10ms size=1KB`), line(`d=soon size=big`)},
			[]string{
				`{app="a", d="1500ms"} d=1500ms`,
				`{app="a", d="10ms", size="2KB"} d=10ms size=2KB`,
				`{__error__="LabelFilterErr", __error_details__="time: invalid duration \"soon\"", app="a", d="soon", size="big"} d=soon size=big`,
			}},
		{"string filters compare a missing label as empty; __error__ filters read the error",
			`{app="a"} | json | x = "" | __error__ = ""`, app,
			[]store.LogEntry{line(`{"x":""}`), line(`{"x":"1"}`), line(`{}`), line(`bad`)},
			[]string{`{app="a", x=""} {"x":""}`, `{app="a"} {}`}},
		{"a comma joins a filter with everything after it: a, b or c is a and (b or c)",
			`{app="a"} | logfmt | a="1", b="1" or c="1"`, app,
			[]store.LogEntry{line(`a=1 b=1`), line(`a=1 c=1`), line(`a=2 c=1`), line(`b=1 c=1`)},
			[]string{`{a="1", app="a", b="1"} a=1 b=1`, `{a="1", app="a", c="1"} a=1 c=1`}},
		{"and binds tighter than or",
			`{app="a"} | logfmt | a="1" and b="1" or c="1"`, app,
			[]store.LogEntry{line(`a=1 b=1`), line(`a=1 b=2`), line(`c=1`)},
			[]string{`{a="1", app="a", b="1"} a=1 b=1`, `{app="a", c="1"} c=1`}},
		{"label regexps are anchored; Loki's literal simplifications",
			`{app="a"} | logfmt | l =~ "warn|err.*" | l !~ "e"`, app,
			[]store.LogEntry{line(`l=warn`), line(`l=awarn`), line(`l=error`), line(`l=xerror`), line(`l=e`)},
			[]string{`{app="a", l="warn"} l=warn`, `{app="a", l="error"} l=error`, `{app="a", l="xerror"} l=xerror`}},
		{"ip() filters on labels and lines",
			`{app="a"} |= ip("10.0.0.0/8") | logfmt | src = ip("10.0.0.1-10.0.0.5")`, app,
			[]store.LogEntry{line(`src=10.0.0.3`), line(`src=10.0.0.9`), line(`src=192.168.0.1`)},
			[]string{`{app="a", src="10.0.0.3"} src=10.0.0.3`}},
		{"line_format: functions, __line__, __timestamp__, missing labels empty",
			`{app="a"} | logfmt | line_format "{{ .m | ToUpper }} {{ __line__ | len }} {{ __timestamp__ | unixEpoch }} [{{ .none }}] {{ .m | default \"d\" }} {{ .n | int | add 1 }} {{ addf 0.1 0.2 }} {{ trunc 3 .m }}"`, app,
			[]store.LogEntry{{T: time.Unix(1700000000, 0).UnixNano(), Line: `m=abcd n=2.5`}},
			[]string{`{app="a", m="abcd", n="2.5"} ABCD 12 1700000000 [] abcd 3 0.3 abc`}},
		{"line_format {{.label}} alone is the label's value",
			`{app="a"} | logfmt | line_format "{{.m}}"`, app,
			[]store.LogEntry{line(`m=x`), line(`n=y`)},
			[]string{`{app="a", m="x"} x`, `{app="a", n="y"} `}},
		{"a template that fails marks the line and keeps it as it was",
			`{app="a"} | line_format "{{ substr 5 10 __line__ }}"`, app,
			[]store.LogEntry{line(`abc`)},
			[]string{`{__error__="TemplateFormatErr", __error_details__="template: line:1:3: executing \"line\" at <substr 5 10 __line__>: error calling substr: runtime error: slice bounds out of range [5:3]", app="a"} abc`}},
		{"label_format renames and formats; templates see the labels as they are at the stage's first template",
			`{app="a"} | logfmt | label_format who=user, up="{{ .user | upper }}-{{ .who }}"`, app,
			[]store.LogEntry{line(`user=bob`)},
			[]string{`{app="a", up="-bob", who="bob"} user=bob`}},
		{"drop: names, matchers, the error",
			`{app="a"} | json | drop x, y="2", __error__, __error_details__`, app,
			[]store.LogEntry{line(`{"x":1,"y":2,"z":3}`), line(`{"y":3}`), line(`bad`)},
			[]string{`{app="a", z="3"} {"x":1,"y":2,"z":3}`, `{app="a", y="3"} {"y":3}`, `{app="a"} bad`}},
		{"keep: names and matchers; the error stays",
			`{app="a"} | json | keep x, y="2"`, app,
			[]store.LogEntry{line(`{"x":1,"y":2,"z":3}`), line(`{"y":3}`), line(`bad`)},
			[]string{`{x="1", y="2"} {"x":1,"y":2,"z":3}`, `{} {"y":3}`, `{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol"} bad`}},
		{"decolorize",
			`{app="a"} | decolorize`, app,
			[]store.LogEntry{line("\x1b[31mERROR\x1b[0m x")},
			[]string{`{app="a"} ERROR x`}},
		{"line filters run before the parsers and decolorize ahead of them, as Loki reorders them",
			`{app="a"} | decolorize |~ "^ERROR"`, app,
			[]store.LogEntry{line("\x1b[31mERROR\x1b[0m x"), line("ERROR y")},
			[]string{`{app="a"} ERROR y`}},
		{"structured metadata: a stream label's name gets _extracted, and so does a parsed label's that metadata has",
			`{app="a"} | logfmt`, app,
			[]store.LogEntry{line(`pod=p2`, "app", "m", "pod", "p1", "trace", "t")},
			[]string{`{app="a", app_extracted="m", pod="p1", pod_extracted="p2", trace="t"} pod=p2`}},
		{"|> keeps lines that follow a pattern",
			`{app="a"} |> "<_> GET <_>"`, app,
			[]store.LogEntry{line(`1 GET /x`), line(`1 POST /x`)},
			[]string{`{app="a"} 1 GET /x`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, pipe(t, tc.query, tc.stream, tc.lines...))
		})
	}
}

// TestPipelineConcurrent: the store runs a query's pipeline from several
// workers at once; templates read each line's own __line__.
func TestPipelineConcurrent(t *testing.T) {
	e, err := logql.Parse(`{app="a"} | logfmt | label_format l="{{ __line__ }}" | line_format "{{ .n }}:{{ __line__ }}"`)
	require.NoError(t, err)
	le := e.(*logql.LogExpr)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				s := fmt.Sprintf("n=%d-%d", w, i)
				out := logql.Pipe(le, labels.FromStrings("app", "a"), []store.LogEntry{{T: 1, Line: s}})
				if len(out) != 1 || out[0].Line != fmt.Sprintf("%d-%d:%s", w, i, s) || out[0].Labels.Get("l") != s {
					t.Errorf("line %q: got %+v", s, out)
					return
				}
			}
		})
	}
	wg.Wait()
}

// lokiPipelineCases is testdata/loki-pipeline.json.gz: queries run by
// Loki 3.7.8's own pipeline over groups of lines (JSON, logfmt, access
// logs, colours, malformed and random lines, structured metadata that
// collides with labels), and what it kept: each line's index, labels and,
// when a stage changed it, the line; or that the query does not parse. It
// was made with a program outside this repository (Loki is AGPL) that
// calls, for each case, Loki's syntax.ParseLogSelector(query, true),
// .Pipeline(), .ForStream(stream) and .ProcessString(t, line, metadata).
type lokiPipelineCases struct {
	Reference string `json:"reference"`
	Groups    []struct {
		Streams []map[string]string `json:"streams"`
		Lines   []struct {
			T    int64             `json:"t"`
			Line string            `json:"line"`
			MD   map[string]string `json:"md"`
		} `json:"lines"`
		Cases []struct {
			Query  string              `json:"query"`
			Stream int                 `json:"stream"`
			Error  bool                `json:"error"`
			Want   [][]json.RawMessage `json:"want"`
		} `json:"cases"`
	} `json:"groups"`
}

// TestPipelineAgainstLoki: every stage, line for line, as Loki's pipeline
// answers.
func TestPipelineAgainstLoki(t *testing.T) {
	f, err := os.Open("testdata/loki-pipeline.json.gz")
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	var doc lokiPipelineCases
	require.NoError(t, json.NewDecoder(zr).Decode(&doc))
	n := 0
	for _, g := range doc.Groups {
		entries := make([]store.LogEntry, len(g.Lines))
		for i, l := range g.Lines {
			entries[i] = store.LogEntry{T: l.T, Line: l.Line, Metadata: labels.FromMap(l.MD)}
		}
		index := map[int64]int{}
		for i, e := range entries {
			index[e.T] = i
		}
		for _, c := range g.Cases {
			n++
			e, err := logql.Parse(c.Query)
			if c.Error {
				require.ErrorIs(t, err, logql.ErrParse, "%s: Loki refuses it", c.Query)
				continue
			}
			require.NoError(t, err, c.Query)
			var want, got []string
			for _, w := range c.Want {
				var i int
				var lset, line string
				require.NoError(t, json.Unmarshal(w[0], &i))
				require.NoError(t, json.Unmarshal(w[1], &lset))
				line = g.Lines[i].Line
				if len(w) > 2 {
					require.NoError(t, json.Unmarshal(w[2], &line))
				}
				want = append(want, fmt.Sprintf("%d %s %q", i, lset, line))
			}
			for _, l := range logql.Pipe(e.(*logql.LogExpr), labels.FromMap(g.Streams[c.Stream]), entries) {
				got = append(got, fmt.Sprintf("%d %s %q", index[l.T], l.Labels, l.Line))
			}
			require.Equal(t, want, got, "%s over stream %v", c.Query, g.Streams[c.Stream])
		}
	}
	t.Logf("%d queries answered as %s", n, doc.Reference)
}
