package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/query"
)

// instantVector runs a PromQL instant query and returns value by the
// given labels joined with "→".
func instantVector(t *testing.T, s *server, q string, by ...string) map[string]string {
	t.Helper()
	out, err := queryVector(s, q, by...)
	require.NoError(t, err)
	return out
}

// queryVector is instantVector returning its error instead of failing the
// test (for use inside Eventually).
func queryVector(s *server, q string, by ...string) (map[string]string, error) {
	code, body := apiGetE(s, "/api/v1/query?"+url.Values{"query": {q}}.Encode())
	var resp promResponse
	if err := json.Unmarshal(body, &resp); err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d: %s", q, code, body)
	}
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(resp.Data, &data); err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	out := map[string]string{}
	for _, r := range data.Result {
		var key []string
		for _, l := range by {
			key = append(key, r.Metric[l])
		}
		out[strings.Join(key, "→")] = r.Value[1].(string)
	}
	return out, nil
}

// TestSpanMetricsAndServiceGraph: a service that sends only traces gets
// RED metrics and a service graph, in PromQL, whose exemplars lead back to
// its traces.
func TestSpanMetricsAndServiceGraph(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SpanMetrics.Interval = 200 * time.Millisecond
	s := startServer(t, cfg)
	base := time.Now().Add(-2 * time.Minute).Truncate(time.Second)
	sendCallTrees(t, s, &seqIDs{}, 6, base)

	want := map[string]string{"backend": "6", "client": "6", "db": "6", "frontend": "6"}
	require.Eventually(t, func() bool {
		got := instantVector(t, s, `sum by (service) (traces_spanmetrics_calls_total)`, "service")
		return len(got) == 4 && got["db"] == "6" && got["client"] == "6"
	}, 10*time.Second, 100*time.Millisecond)
	require.Equal(t, want, instantVector(t, s, `sum by (service) (traces_spanmetrics_calls_total)`, "service"))
	require.Equal(t, map[string]string{"backend→STATUS_CODE_ERROR": "1", "backend→STATUS_CODE_UNSET": "5"},
		instantVector(t, s, `sum by (service, status_code) (traces_spanmetrics_calls_total{service="backend"})`, "service", "status_code"))
	require.Equal(t, map[string]string{"frontend→GET /cart/{id}→SPAN_KIND_SERVER": "6"},
		instantVector(t, s, `sum by (service, span_name, span_kind) (traces_spanmetrics_calls_total{service="frontend"})`, "service", "span_name", "span_kind"))
	// The slow trace's frontend span (1.505 s) is in the 2.048 s bucket, the others under 32 ms.
	require.Equal(t, map[string]string{"0.032": "5", "1.024": "5", "2.048": "6", "+Inf": "6"},
		instantVector(t, s, `sum by (le) (traces_spanmetrics_duration_seconds_bucket{service="frontend", le=~"0.032|1.024|2.048|\\+Inf"})`, "le"))
	require.Equal(t, map[string]string{"": "24"}, instantVector(t, s, `sum(traces_spanmetrics_duration_seconds_count)`))

	// The service graph: caller → callee, with failures.
	require.Eventually(t, func() bool {
		return len(instantVector(t, s, `sum by (client, server) (traces_service_graph_request_total)`, "client", "server")) == 3
	}, 10*time.Second, 100*time.Millisecond)
	require.Equal(t, map[string]string{"client→frontend": "6", "frontend→backend": "6", "backend→db": "6"},
		instantVector(t, s, `sum by (client, server) (traces_service_graph_request_total)`, "client", "server"))
	require.Equal(t, map[string]string{"frontend→backend": "1"},
		instantVector(t, s, `sum by (client, server) (traces_service_graph_request_failed_total) > 0`, "client", "server"))
	require.Equal(t, map[string]string{"": "1", "virtual_node": "2"},
		instantVector(t, s, `count by (connection_type) (traces_service_graph_request_total)`, "connection_type"),
		"client → server pairs have no connection type; parent → child across services are virtual_node")

	// Exemplars carry trace ids that resolve to stored traces.
	code, resp := promGet(t, s, "/api/v1/query_exemplars", url.Values{
		"query": {`traces_spanmetrics_calls_total{service="backend", status_code="STATUS_CODE_ERROR"}`},
		"start": {formatTime(base.Add(-time.Hour))}, "end": {formatTime(time.Now().Add(time.Minute))},
	})
	require.Equal(t, http.StatusOK, code, resp.Error)
	var ex []struct {
		Exemplars []struct {
			Labels map[string]string `json:"labels"`
		} `json:"exemplars"`
	}
	require.NoError(t, json.Unmarshal(resp.Data, &ex))
	require.NotEmpty(t, ex)
	tid := ex[0].Exemplars[0].Labels["trace_id"]
	require.Equal(t, "7e000000000000000000000000000003", tid, "the failing trace")
	got := getTrace(t, s, tid)
	require.Equal(t, 4, got.SpanCount)
	var linked bool
	for _, e := range got.Metrics.Exemplars {
		linked = linked || e.SeriesLabels["__name__"] == "traces_spanmetrics_calls_total"
	}
	require.True(t, linked, "the trace's answer lists the span-metrics exemplars that point at it")
	red := map[string]bool{}
	for _, ss := range got.Metrics.Series {
		if ss.Metric.Get("__name__") == "traces_spanmetrics_calls_total" {
			red[ss.Service] = true
		}
	}
	require.Equal(t, map[string]bool{"backend": true, "client": true, "db": true, "frontend": true}, red,
		"and the RED series of every service in it")
	require.Equal(t, []query.Dependency{{Parent: "backend", Child: "db", CallCount: 6}, {Parent: "client", Child: "frontend", CallCount: 6}, {Parent: "frontend", Child: "backend", CallCount: 6}},
		got.Metrics.ServiceGraph, "and the service graph around it")
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
