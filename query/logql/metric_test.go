package logql_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/query/logql"
)

// instantAt evaluates q at t0+d and returns its samples by label set.
func instantAt(t *testing.T, db logql.Reader, q string, d time.Duration) (map[string]float64, logql.Result) {
	t.Helper()
	e, err := logql.Parse(q)
	require.NoError(t, err)
	at := t0.Add(d)
	res, err := logql.Exec(context.Background(), db, e, logql.Params{Start: at, End: at})
	require.NoError(t, err)
	got := map[string]float64{}
	for _, s := range res.Series {
		require.Len(t, s.Points, 1)
		require.Equal(t, at.UnixMilli(), s.Points[0].T)
		got[s.Metric.String()] = s.Points[0].V
	}
	return got, res
}

func requireSamples(t *testing.T, want, got map[string]float64) {
	t.Helper()
	require.Len(t, got, len(want), "got %v", got)
	for k, w := range want {
		g, ok := got[k]
		require.True(t, ok, "no series %s in %v", k, got)
		if math.IsNaN(w) {
			require.True(t, math.IsNaN(g), "%s = %v, want NaN", k, g)
			continue
		}
		require.InDelta(t, w, g, 1e-12*math.Max(1, math.Abs(w)), "%s", k)
	}
}

// The prod stream's lines 1..10 lie in the window (t0, t0+10s]: durations
// 1..9 ms at level info, 10 ms at level error (line 10 has status 500).
func TestUnwrap(t *testing.T) {
	db := fixture(t)
	const prod = `{app="api", env="prod"} | json`
	for _, tc := range []struct {
		query string
		want  map[string]float64
	}{
		{`sum by (level) (sum_over_time(` + prod + ` | unwrap duration(duration) [10s]))`,
			map[string]float64{`{level="info"}`: 0.045, `{level="error"}`: 0.010}},
		{`avg_over_time(` + prod + ` | unwrap duration_seconds(duration) [10s]) by (level)`,
			map[string]float64{`{level="info"}`: 0.005, `{level="error"}`: 0.010}},
		// With a grouping, Loki's frontend divides the sum by the count of
		// all lines: the one that the filter after unwrap drops counts.
		{`avg_over_time(` + prod + ` | unwrap duration(duration) | level="info" [10s]) by (app)`,
			map[string]float64{`{app="api"}`: 0.0045}},
		{`avg_over_time(` + prod + ` | unwrap duration(duration) | level="info" [10s])`,
			map[string]float64{`{app="api", env="prod", level="info", path="/cart", status="200", user_id="u1"}`: 0.005}},
		{`topk(1, avg_over_time(` + prod + ` | unwrap duration(duration) | level="info" [10s]) without (level))`,
			map[string]float64{`{app="api", env="prod", path="/cart", status="200", user_id="u1"}`: 0.005}},
		{`sum(avg_over_time(` + prod + ` | unwrap duration(duration) | level="info" [10s]) by (app))`,
			map[string]float64{`{}`: 0.005}},
		{`max_over_time(` + prod + ` | unwrap duration(duration) [10s]) by (level)`,
			map[string]float64{`{level="info"}`: 0.009, `{level="error"}`: 0.010}},
		{`min_over_time(` + prod + ` | unwrap duration(duration) [10s]) by (level)`,
			map[string]float64{`{level="info"}`: 0.001, `{level="error"}`: 0.010}},
		{`first_over_time(` + prod + ` | unwrap duration(duration) [10s]) by (level)`,
			map[string]float64{`{level="info"}`: 0.001, `{level="error"}`: 0.010}},
		{`last_over_time(` + prod + ` | unwrap duration(duration) [10s]) by (level)`,
			map[string]float64{`{level="info"}`: 0.009, `{level="error"}`: 0.010}},
		{`quantile_over_time(0.5, ` + prod + ` | unwrap duration(duration) [10s]) by (level)`,
			map[string]float64{`{level="info"}`: 0.005, `{level="error"}`: 0.010}},
		{`quantile_over_time(0.9, ` + prod + ` | unwrap duration(duration) [10s]) by (level)`,
			map[string]float64{`{level="info"}`: 0.0082, `{level="error"}`: 0.010}},
		{`stdvar_over_time(` + prod + ` | unwrap duration(duration) [10s]) by (level)`,
			map[string]float64{`{level="info"}`: 80.0 / 12 * 1e-6, `{level="error"}`: 0}},
		{`stddev_over_time(` + prod + ` | unwrap duration(duration) [10s]) by (level)`,
			map[string]float64{`{level="info"}`: math.Sqrt(80.0 / 12 * 1e-6), `{level="error"}`: 0}},
		{`rate(` + prod + ` | unwrap duration(duration) [10s]) `,
			map[string]float64{
				`{app="api", env="prod", level="info", path="/cart", status="200", user_id="u1"}`:  0.0045,
				`{app="api", env="prod", level="error", path="/cart", status="500", user_id="u1"}`: 0.001,
			}},
		// Loki's rate_counter takes times in ns where Prometheus takes ms:
		// the window starts 10,000 (not 10 s) before the first sample.
		{`rate_counter(` + prod + ` | level="info" | unwrap duration(duration) [10s])`,
			map[string]float64{`{app="api", env="prod", level="info", path="/cart", status="200", user_id="u1"}`: 0.008 * (8e6 + 10) / 8e6 / 10}},
		// Without by, the unwrapped label leaves the series' labels.
		{`sum_over_time({app="api", env="dev"} | logfmt | unwrap bytes(size) [10s])`,
			map[string]float64{`{app="api", env="dev", level="debug", msg="hello world", status="200", took="3ms"}`: 5000}},
		{`sum_over_time({app="api", env="dev"} | logfmt | unwrap size | __error__="" [10s])`, map[string]float64{}},
		{`sum_over_time({app="api", env="dev"} | logfmt | unwrap missing [10s])`, map[string]float64{}},
		{`sum without (level, msg, took, size) (sum_over_time({app="api", env="dev"} | logfmt | unwrap status [10s]))`,
			map[string]float64{`{app="api", env="dev"}`: 1000}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			got, _ := instantAt(t, db, tc.query, 10*time.Second)
			requireSamples(t, tc.want, got)
		})
	}
}

// A sample whose unwrapped value is not a number fails the query, as in
// Loki, unless a label filter after unwrap drops it.
func TestUnwrapPipelineError(t *testing.T) {
	db := fixture(t)
	e, err := logql.Parse(`sum(sum_over_time({app="api", env="dev"} | logfmt | unwrap size [10s]))`)
	require.NoError(t, err)
	at := t0.Add(10 * time.Second)
	_, err = logql.Exec(context.Background(), db, e, logql.Params{Start: at, End: at})
	require.ErrorIs(t, err, logql.ErrPipeline)
	var pe *logql.PipelineError
	require.True(t, errors.As(err, &pe))
	require.Equal(t, "SampleExtractionErr", pe.Err)
	require.Contains(t, err.Error(), `__error_details__="strconv.ParseFloat: parsing \"1KB\": invalid syntax"`)
}

func TestVectorOperations(t *testing.T) {
	db := fixture(t)
	// At t0+10s, in (t0, t0+10s]: prod 10 lines, dev 5, web 3.
	const all = `count_over_time({env=~".+"}[10s])`
	for _, tc := range []struct {
		query string
		want  map[string]float64
	}{
		{`stddev(` + all + `)`, map[string]float64{`{}`: math.Sqrt(26.0 / 3)}},
		{`stdvar by (app) (` + all + `)`, map[string]float64{`{app="api"}`: 6.25, `{app="web"}`: 0}},
		{`sum by (app, env) (` + all + `) / on (env) group_left sum by (env) (` + all + `)`, map[string]float64{
			`{app="api", env="prod"}`: 10.0 / 13, `{app="web", env="prod"}`: 3.0 / 13, `{app="api", env="dev"}`: 1}},
		{`sum by (env) (` + all + `) / on (env) group_right sum by (app, env) (` + all + `)`, map[string]float64{
			`{app="api", env="prod"}`: 13.0 / 10, `{app="web", env="prod"}`: 13.0 / 3, `{app="api", env="dev"}`: 1}},
		{`sum by (app) (` + all + `) - ignoring (env) sum by (app, env) (count_over_time({env="prod"}[10s]))`,
			map[string]float64{`{app="api"}`: 5, `{app="web"}`: 0}},
		{`sum by (app, env) (` + all + `) * on (app) group_left (app_total) label_replace(sum by (app) (` + all + `), "app_total", "yes", "", "")`,
			map[string]float64{`{app="api", app_total="yes", env="prod"}`: 150, `{app="api", app_total="yes", env="dev"}`: 75, `{app="web", app_total="yes", env="prod"}`: 9}},
		{all + ` > 4`, map[string]float64{`{app="api", env="prod"}`: 10, `{app="api", env="dev"}`: 5}},
		{`4 < ` + all, map[string]float64{`{app="api", env="prod"}`: 10, `{app="api", env="dev"}`: 5}},
		{all + ` > bool 4`, map[string]float64{`{app="api", env="prod"}`: 1, `{app="api", env="dev"}`: 1, `{app="web", env="prod"}`: 0}},
		{all + ` == bool ` + all, map[string]float64{`{app="api", env="prod"}`: 1, `{app="api", env="dev"}`: 1, `{app="web", env="prod"}`: 1}},
		{all + ` >= ` + all + ` * 2`, map[string]float64{}},
		{`sum(` + all + `) > 10 < 20`, map[string]float64{`{}`: 18}},
		// Division and modulo by zero are NaN in Loki, not ±Inf.
		{all + ` / 0`, map[string]float64{`{app="api", env="prod"}`: math.NaN(), `{app="api", env="dev"}`: math.NaN(), `{app="web", env="prod"}`: math.NaN()}},
		{`sum(` + all + `) % 0`, map[string]float64{`{}`: math.NaN()}},
		{`sum(` + all + `) ^ 0.5 * 2 - 1`, map[string]float64{`{}`: 2*math.Sqrt(18) - 1}},
		{`-2 * sum(` + all + `) + -1`, map[string]float64{`{}`: -37}},
		{`2 ^ 3 ^ 2 * sum(` + all + `)`, map[string]float64{`{}`: 512 * 18}},
		{`count_over_time({env="prod"}[10s]) and count_over_time({app="api"}[10s])`, map[string]float64{`{app="api", env="prod"}`: 10}},
		{`count_over_time({env="prod"}[10s]) unless count_over_time({app="api"}[10s])`, map[string]float64{`{app="web", env="prod"}`: 3}},
		{`count_over_time({env="prod"}[10s]) unless on (env) count_over_time({app="api"}[10s])`, map[string]float64{}},
		{`count_over_time({app="web"}[10s]) or count_over_time({env="dev"}[10s])`,
			map[string]float64{`{app="web", env="prod"}`: 3, `{app="api", env="dev"}`: 5}},
		{`count_over_time({app="nope"}[10s]) or vector(7)`, map[string]float64{`{}`: 7}},
		{`vector(1) + sum(` + all + `)`, map[string]float64{`{}`: 19}},
		{`label_replace(sum by (app) (` + all + `), "short", "$1", "app", "(.).*")`,
			map[string]float64{`{app="api", short="a"}`: 15, `{app="web", short="w"}`: 3}},
		{`label_replace(sum by (app) (` + all + `), "app", "", "app", "a.*")`,
			map[string]float64{`{}`: 15, `{app="web"}`: 3}},
		{`absent_over_time({app="nope", env="prod", env=~"p.*"}[10s])`, map[string]float64{`{app="nope"}`: 1}},
		{`absent_over_time({app="api"}[10s])`, map[string]float64{}},
		{`count_over_time({app="web"}[10s] offset 5s)`, map[string]float64{`{app="web", env="prod"}`: 2}},
		{`count_over_time({app="web"}[10s] | line_format "x")`, map[string]float64{`{app="web", env="prod"}`: 3}},
		{`bytes_over_time(({app="web"} |= "needle")[10s])`, map[string]float64{}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			got, _ := instantAt(t, db, tc.query, 10*time.Second)
			requireSamples(t, tc.want, got)
		})
	}
}

// Instant queries answer sorted by labels, unless they sort by value.
func TestInstantOrder(t *testing.T) {
	db := fixture(t)
	const all = `count_over_time({env=~".+"}[10s])`
	job := func(name string, v int) string {
		return fmt.Sprintf(`label_replace(vector(%d), "job", %q, "", "")`, v, name)
	}
	jobs := strings.Join([]string{job("packed", 180), job("nginx", 720), job("java", 120), job("json", 720), job("logfmt", 360)}, " or ")
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{`sort(` + all + `)`, []string{`{app="web", env="prod"}`, `{app="api", env="dev"}`, `{app="api", env="prod"}`}},
		{`sort_desc(` + all + `)`, []string{`{app="api", env="prod"}`, `{app="api", env="dev"}`, `{app="web", env="prod"}`}},
		{`topk(2, ` + all + `)`, []string{`{app="api", env="dev"}`, `{app="api", env="prod"}`}},
		{`bottomk(2, ` + all + `)`, []string{`{app="api", env="dev"}`, `{app="web", env="prod"}`}},
		{`topk by (app) (1, ` + all + `)`, []string{`{app="api", env="prod"}`, `{app="web", env="prod"}`}},
		// Ties come out in the order Loki's heaps leave them (json and
		// nginx at 720): json first in sort, nginx first in sort_desc.
		{`sort(` + jobs + `)`, []string{`{job="java"}`, `{job="packed"}`, `{job="logfmt"}`, `{job="json"}`, `{job="nginx"}`}},
		{`sort_desc(` + jobs + `)`, []string{`{job="nginx"}`, `{job="json"}`, `{job="logfmt"}`, `{job="packed"}`, `{job="java"}`}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			_, res := instantAt(t, db, tc.query, 10*time.Second)
			require.Equal(t, logql.ResultVector, res.Type)
			var got []string
			for _, s := range res.Series {
				got = append(got, s.Metric.String())
			}
			require.Equal(t, tc.want, got)
		})
	}
}

// Numbers alone are a scalar at one time and a series with no labels over
// a range, every step included.
func TestNumbers(t *testing.T) {
	db := fixture(t)
	for _, tc := range []struct {
		query string
		want  float64
	}{
		{`1 + 2 * 3`, 7},
		{`(1 + 2) * 3`, 9},
		{`2 ^ 3 ^ 2`, 512},
		{`10 - 2 - 3`, 5},
		{`1 > 2`, 0},
		{`2 >= 2`, 1},
		{`-1 / 0 + 5`, math.NaN()},
		{`7 % 4`, 3},
	} {
		t.Run(tc.query, func(t *testing.T) {
			e, err := logql.Parse(tc.query)
			require.NoError(t, err)
			at := t0.Add(time.Minute)
			res, err := logql.Exec(context.Background(), db, e, logql.Params{Start: at, End: at})
			require.NoError(t, err)
			require.Equal(t, logql.ResultScalar, res.Type)
			require.Equal(t, at.UnixMilli(), res.Scalar.T)
			if math.IsNaN(tc.want) {
				require.True(t, math.IsNaN(res.Scalar.V))
			} else {
				require.Equal(t, tc.want, res.Scalar.V)
			}
			res, err = logql.Exec(context.Background(), db, e, logql.Params{Start: t0, End: t0.Add(time.Minute), Step: 20 * time.Second})
			require.NoError(t, err)
			require.Equal(t, logql.ResultMatrix, res.Type)
			require.Len(t, res.Series, 1)
			require.Equal(t, 0, res.Series[0].Metric.Len())
			require.Len(t, res.Series[0].Points, 4)
			require.Equal(t, t0.Add(time.Minute).UnixMilli(), res.Series[0].Points[3].T)
		})
	}
}

// A range query evaluates every step from start to end, both included.
func TestRangeSteps(t *testing.T) {
	db := fixture(t)
	e, err := logql.Parse(`sum(count_over_time({app="web"}[6s])) or vector(0)`)
	require.NoError(t, err)
	res, err := logql.Exec(context.Background(), db, e, logql.Params{Start: t0.Add(50 * time.Second), End: t0.Add(90 * time.Second), Step: 10 * time.Second})
	require.NoError(t, err)
	require.Equal(t, logql.ResultMatrix, res.Type)
	require.Len(t, res.Series, 1)
	var got []float64
	for _, p := range res.Series[0].Points {
		got = append(got, p.V)
	}
	// web's lines are at 0, 3, …, 57 s: (44,50] holds 45, 48; (54,60] 57.
	require.Equal(t, []float64{2, 1, 0, 0, 0}, got)
}

func TestMetricParseErrors(t *testing.T) {
	for _, tc := range []struct{ query, want string }{
		{`sum_over_time({app="x"}[1m])`, "invalid aggregation sum_over_time without unwrap"},
		{`count_over_time({app="x"} | unwrap a [1m])`, "invalid aggregation count_over_time with unwrap"},
		{`rate({app="x"}[1m]) by (a)`, "grouping not allowed for rate aggregation"},
		{`quantile_over_time({app="x"} | unwrap a [1m])`, "parameter required for operation quantile_over_time"},
		{`max_over_time(0.5, {app="x"} | unwrap a [1m])`, "parameter 0.5 not supported for operation max_over_time"},
		{`sum(count_over_time({app="x"}[1m])) and 1`, "unexpected number on the right side of and"},
		{`{app="x"} + 1`, "the left side of + is a log query"},
		{`-sum(count_over_time({app="x"}[1m]))`, `unexpected "-"`},
		{`topk(0, count_over_time({app="x"}[1m]))`, "invalid parameter (must be greater than 0) topk(0"},
		{`sum(2, count_over_time({app="x"}[1m]))`, "unsupported parameter for operation sum(2,"},
		{`count_over_time({app="x"} | unwrap a | json [1m])`, "only label filters may follow unwrap"},
		{`sum_over_time({app="x"} | unwrap foo(a) [1m])`, `unknown unwrap conversion "foo"`},
		{`label_replace(count_over_time({app="x"}[1m]), "a", "b", "c", "(")`, "invalid regex in label_replace"},
		{`sum(count_over_time({app="x"}[1m])) by`, `unexpected "end of query", expected "(" after by`},
		{`count_over_time({app="x"})`, `expected "[" and a range`},
		{`1 +`, `unexpected "end of query"`},
		{`sum(1 + 2)`, "sum aggregates a metric query, not a number"},
		{`label_replace(3, "a", "b", "c", "d")`, "label_replace takes a metric query, not a number"},
		{`sum(count_over_time({app="x"}[1m])) / on (a) group_left (b count_over_time({app="x"}[1m])`, `unknown function "b"`},
	} {
		t.Run(tc.query, func(t *testing.T) {
			_, err := logql.Parse(tc.query)
			require.ErrorIs(t, err, logql.ErrParse)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// Printed metric queries parse back to the same text.
func TestMetricRoundTrip(t *testing.T) {
	for _, q := range []string{
		`quantile_over_time(0.99, {app="x"} | json | unwrap duration(latency) | __error__="" [5m] offset 1m) by (path)`,
		`count_over_time({app="x"}[5m] | json | level="error")`,
		`sum by (a) (rate({app="x"}[1m])) / on (a) group_left (b) sum by (a, b) (rate({app="x"}[1m])) > bool 0.5`,
		`label_replace(vector(1), "a", "$1", "b", "(.*)") or vector(1) * -1 + 2 ^ 3`,
	} {
		e, err := logql.Parse(q)
		require.NoError(t, err)
		require.Equal(t, q, e.String())
		again, err := logql.Parse(e.String())
		require.NoError(t, err)
		require.Equal(t, e.String(), again.String())
	}
}
