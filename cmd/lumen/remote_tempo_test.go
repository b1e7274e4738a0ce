package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/tempotest"
	"github.com/lumenobs/lumen/query/traceremote"
)

// TestTracesInTempo: with storage.traces.remote.api tempo, spans Lumen
// acknowledged while the backend — a real Tempo — was not running, across
// a restart of Lumen, are in it once it runs; the correlated answer then
// holds the spans a local Lumen fed the same data answers, with the lines
// kept locally; Lumen's Tempo API answers as Tempo does; its Jaeger API
// and its own searches, made over Tempo's reads, answer as the local
// Lumen's; while Tempo is down each names it. The UI's trace page shows
// the same on both.
func TestTracesInTempo(t *testing.T) {
	tempo := tempotest.New(t, freeAddr(t))
	cfg := testConfig(t, t.TempDir())
	cfg.Storage.Traces.Backend = backendRemote
	cfg.Storage.Traces.Remote.API = traceremote.APITempo
	cfg.Storage.Traces.Remote.OTLPURL = tempo.OTLP
	cfg.Storage.Traces.Remote.QueryURL = tempo.URL
	cfg.Storage.Traces.Remote.QueryTimeout = Duration(5 * time.Second)
	cfg.SpanMetrics.Interval = time.Second
	localCfg := testConfig(t, t.TempDir())
	localCfg.SpanMetrics.Interval = time.Second
	local := startServer(t, localCfg)
	remote := startServer(t, cfg)
	id := sendTraceAndLog(t, []*server{local, remote}, "payments")

	requireSpansLeftOut(t, remote, id, tempo.URL)
	for _, q := range []string{"/api/search?tags=service.name%3Dpayments", "/api/traces/" + id, "/jaeger/api/services",
		"/jaeger/api/traces?service=payments", "/api/v1/search?service=payments"} {
		code, body := fetch(t, remote.api(q))
		require.Equal(t, http.StatusServiceUnavailable, code, "%s: %s", q, body)
		require.Contains(t, body, "traces backend "+tempo.URL, q)
	}

	remote.stop()
	remote = startServer(t, cfg) // what the first acknowledged is still queued
	tempo.Start()

	awaitSameTrace(t, local, remote, id, 2)

	// Lumen's Tempo API is Tempo's own answer.
	now := time.Now()
	secs := "&start=" + strconv.FormatInt(now.Add(-time.Hour).Unix(), 10) + "&end=" + strconv.FormatInt(now.Add(time.Minute).Unix(), 10)
	search := "/api/search?" + url.Values{"q": {`{ resource.service.name = "payments" && kind = client }`}}.Encode() + secs
	require.Eventually(t, func() bool {
		return strings.Contains(searchTraces(t, tempo.URL+search), strings.TrimLeft(id, "0"))
	}, time.Minute, 500*time.Millisecond, "tempo's search finds the trace")
	for _, q := range []string{
		"/api/traces/" + id,
		"/api/v2/traces/" + id,
		"/api/traces/00000000000000000000000000000abc",
		search,
		"/api/v2/search/tag/resource.service.name/values?" + strings.TrimPrefix(secs, "&"),
		"/api/search/tags",
		"/api/status/buildinfo",
	} {
		require.Equal(t, tempoAnswer(t, httpGet(t, tempo.URL+q)), tempoAnswer(t, httpGet(t, remote.api(q))), q)
	}

	// Lumen's Jaeger API and its own searches, over Tempo's search and
	// trace by id, answer as the local Lumen's.
	start := strconv.FormatInt(now.Add(-time.Hour).UnixMicro(), 10)
	for _, q := range []string{
		"/jaeger/api/services",
		"/jaeger/api/services/payments/operations",
		"/jaeger/api/traces/" + id,
		"/jaeger/api/traces?" + url.Values{"service": {"payments"}, "start": {start}, "limit": {"20"}}.Encode(),
		"/jaeger/api/traces?" + url.Values{"service": {"payments"}, "operation": {"charge"}, "start": {start}, "limit": {"20"}}.Encode(),
		"/jaeger/api/traces/00000000000000000000000000000abc",
	} {
		require.Equal(t, jaegerAnswer(t, local.api(q)), jaegerAnswer(t, remote.api(q)), q)
	}
	window := "&start=" + strconv.FormatInt(now.Add(-time.Hour).UnixNano(), 10) + "&end=" + strconv.FormatInt(now.Add(time.Minute).UnixNano(), 10)
	requireSameSearches(t, local, remote, id, "/api/v1/search?service=payments"+window,
		"/api/v1/search?service=payments&name=charge"+window,
		"/api/v1/search?service=payments&root=true"+window,
		"/api/v1/search?service=payments&minDuration=1h"+window)

	// The UI's trace page, in Chromium, shows the same on both: waterfall,
	// lines, metrics.
	require.Eventually(t, func() bool {
		want := redValues(getTrace(t, local, id))
		return len(want) > 0 && sameValues(want, redValues(getTrace(t, remote, id)))
	}, time.Minute, 500*time.Millisecond, "the trace's span metrics written by both")
	node, chromium := browserTools(t, remoteScript)
	require.NoError(t, runBrowserScript(t, node, remoteScript, 2*time.Minute, "LUMEN_LOCAL_URL="+local.api(""), "LUMEN_REMOTE_URL="+remote.api(""),
		"LUMEN_TRACE_IDS="+id, "LUMEN_CHROMIUM="+chromium), "browser test of the trace page over Tempo failed: see the log above")
}

// tempoAnswer is an answer of Tempo's (status and body) as two asks of
// the same agree: without the "metrics" of a search or tag answer (the
// bytes Tempo inspected change as it cuts its blocks), every list of
// attributes in one order (Tempo lists a span set's in any).
func tempoAnswer(t *testing.T, answer string) string {
	t.Helper()
	status, body, _ := strings.Cut(answer, " ")
	var a map[string]any
	if json.Unmarshal([]byte(body), &a) != nil {
		return answer
	}
	delete(a, "metrics")
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if list, ok := x.([]any); ok && k == "attributes" {
					sortByJSON(list)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(a)
	b, err := json.Marshal(a)
	require.NoError(t, err)
	return status + " " + string(b)
}
