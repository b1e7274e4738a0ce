package main

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/vmtest"
)

// TestMetricsInVictoriaMetrics: with its metrics in a real single-node
// VictoriaMetrics (its defaults), a Lumen's Prometheus API answers as
// VictoriaMetrics does, and its correlated answers — whose span metrics
// and service graph Lumen reads back through VictoriaMetrics' query API —
// are a local Lumen's, fed the same data.
func TestMetricsInVictoriaMetrics(t *testing.T) {
	vm := vmtest.New(t)
	vm.Start()

	localCfg := testConfig(t, t.TempDir())
	localCfg.SpanMetrics.Interval = time.Second
	local := startServer(t, localCfg)
	cfg := testConfig(t, t.TempDir())
	cfg.Storage.Metrics.Backend = backendRemote
	cfg.Storage.Metrics.Remote.WriteURL = vm.URL + "/api/v1/write"
	cfg.Storage.Metrics.Remote.QueryURL = vm.URL
	cfg.SpanMetrics.Interval = time.Second
	remote := startServer(t, cfg)

	start := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	body := v1Request(t, map[string]string{"queue_depth": "a:1", "queue_latency": "a:1"}, "batch", start, 20, 15*time.Second)
	for _, s := range []*server{local, remote} {
		code, _, resp := remoteWrite(t, s, body, 1)
		require.Equal(t, http.StatusNoContent, code, resp)
	}
	ids := sendCalls(t, []string{local.cfg.OTLP.HTTPAddr, remote.cfg.OTLP.HTTPAddr}, 4)

	at := strconv.FormatInt(start.Add(5*time.Minute).Unix(), 10)
	require.Eventually(t, func() bool {
		code, resp := promGet(t, remote, "/api/v1/query", url.Values{"query": {"queue_depth"}, "time": {at}})
		return code == http.StatusOK && strings.Contains(string(resp.Data), `"a:1"`)
	}, 30*time.Second, 100*time.Millisecond, "the remote write reaches VictoriaMetrics")
	// Lumen's Prometheus API is VictoriaMetrics' own answer. (Its answers
	// to the same query may differ for a moment after a write, until the
	// samples it took are all searchable and its rollup cache is reset:
	// asked until the two agree.)
	for _, q := range []string{
		"/api/v1/query?" + url.Values{"query": {"sum by (instance) (queue_depth)"}, "time": {at}}.Encode(),
		"/api/v1/query_range?" + url.Values{"query": {"rate(queue_depth[1m])"}, "start": {strconv.FormatInt(start.Unix(), 10)}, "end": {at}, "step": {"30"}}.Encode(),
		"/api/v1/series?match[]=queue_depth&start=" + strconv.FormatInt(start.Unix(), 10),
		"/api/v1/labels?start=" + strconv.FormatInt(start.Unix(), 10),
		"/api/v1/label/job/values?start=" + strconv.FormatInt(start.Unix(), 10),
	} {
		var want, got string
		if !assert.Eventually(t, func() bool {
			want, got = httpGet(t, vm.URL+q), httpGet(t, remote.api(q))
			return want == got
		}, 10*time.Second, 200*time.Millisecond, q) {
			require.Equal(t, want, got, q)
		}
		require.True(t, strings.HasPrefix(got, "200 "), "%s: %s", q, got)
		require.NotContains(t, got, ":[]", "%s: an empty answer", q)
	}

	// The correlated answers: spans and lines are Lumen's own in both; the
	// span metrics and the service graph come back from VictoriaMetrics
	// equal to the local Lumen's.
	for _, id := range ids {
		var want traceResponse
		require.Eventually(t, func() bool {
			w, _ := findTrace(t, local, id)
			want = w
			return w.SpanCount == 3 && len(graphOf(w)) == 1 && graphOf(w)[0].CallCount == 4
		}, time.Minute, 200*time.Millisecond, "the local Lumen's answer, with every call in its graph")
		var got traceResponse
		if !assert.Eventually(t, func() bool {
			got, _ = findTrace(t, remote, id)
			want = getTrace(t, local, id)
			return slices.Equal(graphOf(got), graphOf(want)) && sameValues(redValues(want), redValues(got))
		}, time.Minute, 500*time.Millisecond, "trace %s: its span metrics and graph from VictoriaMetrics", id) {
			require.Equal(t, graphOf(want), graphOf(got))
			require.Equal(t, redValues(want), redValues(got))
		}
		require.Empty(t, got.Warnings)
		require.NotEmpty(t, redValues(got))
		require.Equal(t, comparableSpans(want.Spans), comparableSpans(got.Spans))
		require.Equal(t, comparableLogs(want.Logs), comparableLogs(got.Logs))
	}
}
