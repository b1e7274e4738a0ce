package query

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/store"
)

func TestNormalizeSpansMergesGroupsAndSorts(t *testing.T) {
	td := ptrace.NewTraces()
	add := func(service string, names ...string) {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", service)
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("lib")
		for _, n := range names {
			sp := ss.Spans().AppendEmpty()
			sp.SetName(n)
			sp.SetStartTimestamp(pcommon.Timestamp(len(n)))
		}
	}
	add("b", "bbbb", "bb")
	add("a", "aaa")
	add("b", "b")
	// An empty group (a resource with no spans) must not upset the sort.
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	normalizeSpans(td)

	var got [][]string
	for _, rs := range td.ResourceSpans().All() {
		var names []string
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				names = append(names, sp.Name())
			}
		}
		got = append(got, names)
	}
	require.Equal(t, [][]string{nil, {"b", "bb", "bbbb"}, {"aaa"}}, got)
}

func TestParseInclude(t *testing.T) {
	inc, err := parseInclude("")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"trace": true, "logs": true, "metrics": true}, inc)
	inc, err = parseInclude("logs")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"logs": true}, inc)
	_, err = parseInclude("trace,spans")
	require.ErrorIs(t, err, errBadRequest)
	require.ErrorContains(t, err, `unknown part "spans"`)
}

// TestCorrelatedREDIsTheTracesOperations: the RED series in a trace's
// answer are those of the operations the trace has in each service, not the
// first of the service's in label order; other series naming the service
// follow, span-metric buckets never.
func TestCorrelatedREDIsTheTracesOperations(t *testing.T) {
	db, err := store.Open(store.DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	now := time.Now().Truncate(time.Second)

	// The service's span metrics hold many operations; the trace calls one
	// of them, whose name needs quoting in a regexp.
	app := db.Appender(context.Background())
	add := func(ls labels.Labels) {
		_, err := app.Append(0, ls, now.UnixMilli(), 1)
		require.NoError(t, err)
	}
	red := func(name, op string) labels.Labels {
		return labels.FromStrings("__name__", name, "service", "cart", "span_name", op,
			"span_kind", "SPAN_KIND_SERVER", "status_code", "STATUS_CODE_UNSET")
	}
	for i := range 80 {
		op := fmt.Sprintf("GET /a%02d", i)
		for _, n := range []string{"traces_spanmetrics_calls_total", "traces_spanmetrics_duration_seconds_count", "traces_spanmetrics_duration_seconds_sum"} {
			add(red(n, op))
		}
		add(labels.FromStrings("__name__", "traces_spanmetrics_duration_seconds_bucket", "service", "cart", "span_name", op, "le", "+Inf"))
	}
	const op = "POST /cart/{id}+(v2)"
	add(red("traces_spanmetrics_calls_total", op))
	add(red("traces_spanmetrics_duration_seconds_count", op))
	add(red("traces_spanmetrics_calls_total", "POST /cart/{id}"))
	add(labels.FromStrings("__name__", "cart_queue", "service", "cart"))
	add(labels.FromStrings("__name__", "up", "job", "cart"))
	require.NoError(t, app.Commit())

	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "cart")
	for i := range 3 {
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{0x5b, 0x8e, 0xff})
		sp.SetSpanID(pcommon.SpanID{byte(i + 1)})
		sp.SetName(op)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	}
	require.NoError(t, db.WriteTraces(context.Background(), td))

	api := New(db, DefaultTraceConfig(), NewMetrics(prometheus.NewRegistry()), nil)
	mux := http.NewServeMux()
	api.Register(mux, nil)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/api/v1/traces/5b8eff00000000000000000000000000?include=metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var got TraceResponse
	require.NoError(t, json.Unmarshal(body, &got))
	var series []string
	for _, ss := range got.Metrics.Series {
		require.Equal(t, "cart", ss.Service)
		require.Len(t, ss.Values, 1, ss.Metric)
		series = append(series, ss.Metric.Get("__name__")+" "+ss.Metric.Get("span_name"))
	}
	require.Equal(t, []string{
		"traces_spanmetrics_calls_total " + op,
		"traces_spanmetrics_duration_seconds_count " + op,
		"up ",
		"cart_queue ",
	}, series)
}
