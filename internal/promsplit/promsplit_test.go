package promsplit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/promsplit"
	"github.com/lumenobs/lumen/internal/promtest"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// data is 40 series of two names over an hour, 15 s apart, a counter that
// resets and a gauge, and one series that stops half-way.
func data(t *testing.T) storage.Storage {
	st := teststorage.New(t)
	t.Cleanup(func() { _ = st.Close() })
	app := st.Appender(context.Background())
	for i := range 20 {
		for s := range 240 {
			ts := t0.Add(time.Duration(s) * 15 * time.Second).UnixMilli()
			_, err := app.Append(0, labels.FromStrings("__name__", "requests_total", "job", fmt.Sprint("j", i%3), "instance", fmt.Sprint(i)), ts, float64((s*(i+1))%500))
			require.NoError(t, err)
			if i == 7 && s > 120 {
				continue
			}
			_, err = app.Append(0, labels.FromStrings("__name__", "temperature", "job", fmt.Sprint("j", i%3), "instance", fmt.Sprint(i)), ts, float64(i)+float64(s%17)/3)
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	return st
}

// counting counts the range queries the engine makes.
type counting struct {
	*promql.Engine
	ranges int
}

func (c *counting) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	c.ranges++
	return c.Engine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
}

var testParser = parser.NewParser(parser.Options{EnableExperimentalFunctions: true, ExperimentalDurationExpr: true})

func newEngine() *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
		EnableAtModifier: true, EnableNegativeOffset: true, EnablePerStepStats: true, Parser: testParser,
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() }})
}

func run(t *testing.T, e promql.QueryEngine, q storage.Queryable, expr string, start, end time.Time, step time.Duration) (string, *promql.Result, promql.Query) {
	t.Helper()
	qry, err := e.NewRangeQuery(context.Background(), q, promql.NewPrometheusQueryOpts(true, 0), expr, start, end, step)
	if err != nil {
		return "error: " + err.Error(), &promql.Result{Err: err}, nil
	}
	t.Cleanup(qry.Close)
	res := qry.Exec(context.Background())
	if res.Err != nil {
		return "error: " + res.Err.Error(), res, qry
	}
	w, i := res.Warnings.AsStrings(expr, 0, 0)
	return fmt.Sprint(res.Value.String(), w, i), res, qry
}

// TestSplitEqualsWhole: range queries asked in 2 and 3 interleaved parts
// (sharing the selections or not) answer exactly as asked whole, stats
// included; those that name the query's ends or step, or are short, are
// asked whole.
func TestSplitEqualsWhole(t *testing.T) {
	st := data(t)
	whole := newEngine()
	start, end := t0.Add(10*time.Minute+250*time.Millisecond), t0.Add(55*time.Minute+3517*time.Millisecond)
	exprs := []string{
		`sum by (job) (rate(requests_total[1m]))`,
		`rate(requests_total[5m])`,
		`temperature`,
		`avg_over_time(temperature[2m:15s])`,
		`topk(3, temperature)`,
		`count_values("v", round(temperature))`,
		`temperature > 10 and on (instance) rate(requests_total[1m]) > 0.1`,
		`quantile by (job) (0.9, temperature offset 5m)`,
		`timestamp(temperature)`,
		`time()`,
		`absent(nonexistent)`,
		`temperature @ 1772326800`,
		`label_replace(temperature, "x", "$1", "instance", "(.*)")`,
		`temperature * on (instance) group_left requests_total`,
		`requests_total + on (job) requests_total`, // many-to-many: an error at every step
	}
	for _, parts := range []int{2, 3} {
		for _, shared := range []bool{false, true} {
			var q storage.Queryable = st
			if shared {
				q = promtest.Concurrent{Queryable: st}
			}
			c := &counting{Engine: whole}
			split := &promsplit.Engine{QueryEngine: c, Parts: parts, Parser: testParser}
			for _, expr := range exprs {
				for _, step := range []time.Duration{7 * time.Second, time.Minute} {
					want, wres, wq := run(t, whole, st, expr, start, end, step)
					before := c.ranges
					got, _, gq := run(t, split, q, expr, start, end, step)
					require.Equal(t, want, got, "%s in %d parts (shared %t), step %s", expr, parts, shared, step)
					require.Equal(t, before+parts, c.ranges, "%s: asked in parts", expr)
					if wres.Err == nil {
						ws, gs := wq.Stats().Samples, gq.Stats().Samples
						require.Equal(t, ws.TotalSamples, gs.TotalSamples, expr)
						require.Equal(t, ws.TotalSamplesPerStep, gs.TotalSamplesPerStep, expr)
						require.Equal(t, ws.Interval, gs.Interval, expr)
					}
				}
			}
		}
	}

	// Asked whole: the query's ends, its step, a duration expression, too
	// few steps, a query that does not parse.
	c := &counting{Engine: whole}
	split := &promsplit.Engine{QueryEngine: c, Parts: 2, Parser: testParser}
	for _, expr := range []string{
		`temperature @ start()`,
		`rate(requests_total[5m] @ end())`,
		`max_over_time(temperature[10m:1m] @ end())`,
		`temperature + step()`,
		`avg_over_time(temperature[step()])`,
		`temperature offset (2 * step())`,
		`sum(`,
	} {
		before := c.ranges
		want, _, _ := run(t, whole, st, expr, start, end, time.Minute)
		got, _, _ := run(t, split, st, expr, start, end, time.Minute)
		require.Equal(t, want, got, expr)
		require.Equal(t, before+1, c.ranges, "%s: asked whole", expr)
	}
	before := c.ranges
	run(t, split, st, `temperature`, start, start.Add(30*time.Minute), 2*time.Minute) // 16 steps: split
	require.Equal(t, before+2, c.ranges)
	run(t, split, st, `temperature`, start, start.Add(28*time.Minute), 2*time.Minute) // 15 steps: whole
	require.Equal(t, before+3, c.ranges)
}
