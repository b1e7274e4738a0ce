package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/query"
	"github.com/lumenobs/lumen/query/ruler"
)

const (
	// browserScript drives the UI in Chromium with Playwright; it lives with
	// the UI's sources.
	browserScript = "../../ui/e2e/browser.mjs"
	// tokenScript drives the UI against a server that asks for tokens.
	tokenScript = "../../ui/e2e/token.mjs"
	// tenantsScript drives the UI against a server with tenants.
	tenantsScript = "../../ui/e2e/tenants.mjs"
	// alertsScript drives the Alerts page.
	alertsScript  = "../../ui/e2e/alerts.mjs"
	remoteScript  = "../../ui/e2e/remote.mjs"
	playwrightDir = "../../ui/node_modules/playwright-core"
	uiNotBuilt    = "the UI is not built: run `make ui` before the tests"
	// bigSpans is the size of the trace the render benchmark opens.
	bigSpans = 5000
)

// uiFixture tells the browser script what the server holds.
type uiFixture struct {
	TraceID         string `json:"traceId"`
	ErrorTraceID    string `json:"errorTraceId"`
	SlowTraceID     string `json:"slowTraceId"`
	ExemplarTraceID string `json:"exemplarTraceId"`
	FrontendSpanID  string `json:"frontendSpanId"`
	BackendSpanID   string `json:"backendSpanId"`
	Service         string `json:"service"`
	SpanName        string `json:"spanName"`
	LogLine         string `json:"logLine"`
	BigTraceID      string `json:"bigTraceId"`
	BigSpanCount    int    `json:"bigSpanCount"`
	LokiPushURL     string `json:"lokiPushURL"`
	// From and To are unix milliseconds: a window around everything sent.
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// TestUIInBrowser fills a server with traces (OTLP), logs (Loki push) and
// metrics (remote write) that link to each other, then runs the UI's
// browser script against it in a real Chromium.
func TestUIInBrowser(t *testing.T) {
	node := lookTool(t, "node", "apt-get install nodejs")
	chromium := lookTool(t, "chromium", "apt-get install chromium")
	uiMissing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	for _, p := range []string{browserScript, playwrightDir} {
		if _, err := os.Stat(p); err != nil {
			uiMissing("%s (%v)", uiNotBuilt, err)
		}
	}

	cfg := testConfig(t, t.TempDir())
	// Span metrics and the service graph written often, so the pages that
	// chart them have points seconds after the traces arrive.
	cfg.SpanMetrics.Interval = 200 * time.Millisecond
	cfg.SpanMetrics.EdgeWait = 200 * time.Millisecond
	s := startServer(t, cfg)
	code, page := apiGet(t, s, "/", nil)
	if code != http.StatusOK || !strings.Contains(string(page), `id="app"`) {
		uiMissing("%s (GET / answered %d without id=\"app\")", uiNotBuilt, code)
	}

	now := time.Now()
	base := now.Add(-5 * time.Minute)

	// Traces: client → frontend → backend → db, six times over OTLP gRPC;
	// the server derives span metrics and the service graph from them.
	callIDs := &seqIDs{}
	sendCallTrees(t, s, callIDs, 6, base)
	ids := callTreeIDs(t, s, now)
	// A second wave (traces 7…12, two hours back, out of the pages' time
	// window) after the span metrics were first written, so their counters
	// increase and rates, error rates and quantiles have values, as with
	// live traffic.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, err := queryVector(s, `sum by (service) (traces_spanmetrics_calls_total)`, "service")
		assert.NoError(c, err)
		assert.Contains(c, got, "frontend")
	}, 10*time.Second, 50*time.Millisecond, "span metrics were not written")
	time.Sleep(2 * cfg.SpanMetrics.Interval)
	sendCallTrees(t, s, callIDs, 6, now.Add(-2*time.Hour))
	trace1 := getTrace(t, s, ids[1])
	spans := spansByName(trace1.Spans)
	frontendSpan := spans["GET /cart/{id}"].Span
	backendSpan := spans["reserve"].Span
	require.False(t, frontendSpan.SpanID().IsEmpty(), "trace 1 has no GET /cart/{id} span")
	require.False(t, backendSpan.SpanID().IsEmpty(), "trace 1 has no reserve span")
	feSpanID, beSpanID := frontendSpan.SpanID().String(), backendSpan.SpanID().String()
	t1 := frontendSpan.StartTimestamp().AsTime() // inside trace 1, as are t1+1ms…t1+5ms

	// Logs: lines that carry trace 1's id in each way a Loki client can,
	// and lines that carry none.
	at := func(d time.Duration) time.Time { return t1.Add(d) }
	backendLines := []push.Entry{{Timestamp: at(5 * time.Millisecond), Line: "stock reserved",
		StructuredMetadata: push.LabelsAdapter{{Name: "trace_id", Value: ids[1]}}}}
	for i := range 20 {
		backendLines = append(backendLines, push.Entry{Timestamp: now.Add(-time.Duration(20-i) * 15 * time.Second), Line: fmt.Sprintf("heartbeat ok n=%d", i)})
	}
	slices.SortFunc(backendLines, func(a, b push.Entry) int { return a.Timestamp.Compare(b.Timestamp) })
	code, body := lokiPush(t, s, "application/x-protobuf", promtailBody(t,
		push.Stream{Labels: `{service_name="frontend", env="prod"}`, Entries: []push.Entry{
			{Timestamp: at(time.Millisecond), Line: fmt.Sprintf(`level=info msg="cart loaded" trace_id=%s span_id=%s`, ids[1], feSpanID)},
			{Timestamp: at(2 * time.Millisecond), Line: fmt.Sprintf(`{"level":"warn","msg":"slow cache","traceId":"%s","spanId":"%s"}`, ids[1], feSpanID)},
			{Timestamp: at(3 * time.Millisecond), Line: "reserving stock",
				StructuredMetadata: push.LabelsAdapter{{Name: "trace_id", Value: ids[1]}, {Name: "span_id", Value: beSpanID}}},
		}},
		push.Stream{Labels: `{service_name="backend", env="prod"}`, Entries: backendLines},
	))
	require.Equal(t, http.StatusNoContent, code, body)

	// Metrics: request counters of both services, and a histogram bucket
	// whose exemplar names trace 2.
	const step, samples = 15 * time.Second, 40
	mstart := now.Add(-(samples - 1) * step)
	for _, job := range []string{"frontend", "backend"} {
		code, _, body := remoteWrite(t, s, v1Request(t, map[string]string{"http_requests_total": job + ":8080"}, job, mstart, samples, step), 1)
		require.Equal(t, http.StatusNoContent, code, body)
	}
	bucket := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "http_request_duration_seconds_bucket"}, {Name: "job", Value: "frontend"}, {Name: "le", Value: "0.5"}}}
	for i := range samples {
		bucket.Samples = append(bucket.Samples, prompb.Sample{Timestamp: mstart.Add(time.Duration(i) * step).UnixMilli(), Value: float64(3 * i)})
	}
	trace2Start := base.Add(2 * time.Second) // as sendCallTrees starts trace 2
	bucket.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: ids[2]}}, Value: 0.03, Timestamp: trace2Start.UnixMilli()}}
	pb, err := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{bucket}}).Marshal()
	require.NoError(t, err)
	code, _, body = remoteWrite(t, s, snappy.Encode(nil, pb), 1)
	require.Equal(t, http.StatusNoContent, code, body)

	// The big trace, for the render benchmark, over OTLP/HTTP protobuf.
	big, bigID := bigTrace(now.Add(-4*time.Minute), bigSpans)
	pb, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(big)
	require.NoError(t, err)
	code, body = post(t, "http://"+s.cfg.OTLP.HTTPAddr+"/v1/traces", "application/x-protobuf", pb)
	require.Equal(t, http.StatusOK, code, body)

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		r1, err := traceSummary(s, ids[1], "logs")
		if assert.NoError(c, err) {
			assert.Equal(c, 4, r1.SpanCount, "trace 1's spans")
			assert.GreaterOrEqual(c, r1.LogCount, 4, "trace 1's log lines")
		}
		rb, err := traceSummary(s, bigID, "logs")
		if assert.NoError(c, err) {
			assert.Equal(c, bigSpans, rb.SpanCount, "the big trace's spans")
		}
		r2, err := traceSummary(s, ids[2], "metrics")
		if assert.NoError(c, err) && assert.NotNil(c, r2.Metrics, "trace 2's metrics") {
			assert.True(c, slices.ContainsFunc(r2.Metrics.Exemplars, func(e query.ExemplarSeries) bool {
				return e.SeriesLabels["__name__"] == "http_request_duration_seconds_bucket"
			}), "trace 2's exemplar on the histogram bucket: %+v", r2.Metrics.Exemplars)
		}
		rate, err := queryVector(s, `sum by (service) (rate(traces_spanmetrics_calls_total[1m]))`, "service")
		assert.NoError(c, err)
		for _, svc := range []string{"client", "frontend", "backend", "db"} {
			assert.Contains(c, rate, svc, "span metrics of %s", svc)
		}
		edges, err := queryVector(s, `sum by (server) (increase(traces_service_graph_request_total[1m]))`, "server")
		assert.NoError(c, err)
		assert.GreaterOrEqual(c, len(edges), 3, "service graph edges")
	}, 20*time.Second, 100*time.Millisecond, "the data sent did not become visible")

	fixture := uiFixture{
		TraceID:         ids[1],
		ErrorTraceID:    ids[3],
		SlowTraceID:     ids[4],
		ExemplarTraceID: ids[2],
		FrontendSpanID:  feSpanID,
		BackendSpanID:   beSpanID,
		Service:         "frontend",
		SpanName:        "GET /cart/{id}",
		LogLine:         "cart loaded",
		BigTraceID:      bigID,
		BigSpanCount:    bigSpans,
		LokiPushURL:     s.api("/loki/api/v1/push"),
		From:            now.Add(-15 * time.Minute).UnixMilli(),
		To:              now.Add(time.Minute).UnixMilli(),
	}
	fixtureJSON, err := json.MarshalIndent(fixture, "", "  ")
	require.NoError(t, err)
	fixturePath := filepath.Join(t.TempDir(), "fixture.json")
	require.NoError(t, os.WriteFile(fixturePath, fixtureJSON, 0o600))
	t.Logf("fixture: %s", fixtureJSON)
	screenshots, err := filepath.Abs("../../test-results/ui")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(screenshots, 0o750))

	err = runBrowserScript(t, node, browserScript, 4*time.Minute,
		"LUMEN_URL="+s.api(""),
		"LUMEN_FIXTURE="+fixturePath,
		"LUMEN_CHROMIUM="+chromium,
		"LUMEN_SCREENSHOTS="+screenshots,
	)
	require.NoError(t, err, "browser test failed: see the log above and the screenshots in test-results/ui")
}

// browserTools are node and Chromium, for script; the test fails in CI
// (skips elsewhere) when the UI or its packages are not built.
func browserTools(t *testing.T, script string) (node, chromium string) {
	t.Helper()
	node = lookTool(t, "node", "apt-get install nodejs")
	chromium = lookTool(t, "chromium", "apt-get install chromium")
	for _, p := range []string{script, playwrightDir} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s (%v)", uiNotBuilt, err)
			}
			t.Skipf("%s (%v)", uiNotBuilt, err)
		}
	}
	return node, chromium
}

// runBrowserScript runs a Playwright script with node, its environment
// env, for at most limit, logging its output and METRIC lines.
func runBrowserScript(t *testing.T, node, script string, limit time.Duration, env ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = append(os.Environ(), env...)
	// On timeout, an interrupt lets Playwright close the browser; a kill
	// follows if the script has not exited 15 s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second
	var mu sync.Mutex
	var metrics []string
	stdout := &lineLogger{t: t, prefix: "browser: ", mu: &mu, metrics: &metrics}
	stderr := &lineLogger{t: t, prefix: "browser stderr: ", mu: &mu, metrics: &metrics}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	began := time.Now()
	err := cmd.Run()
	stdout.flush()
	stderr.flush()
	t.Logf("browser script %s ran for %s", filepath.Base(script), time.Since(began).Round(time.Millisecond))
	for _, m := range metrics {
		t.Logf("%s", m)
	}
	if ctx.Err() != nil {
		t.Logf("the browser script did not finish within %s", limit)
	}
	return err
}

// callTreeIDs finds the traces of sendCallTrees through the UI's search,
// as ids[1] … ids[6] in the order they were sent, and checks them against
// the ids seqIDs gives.
func callTreeIDs(t *testing.T, s *server, now time.Time) map[int]string {
	t.Helper()
	code, body := apiGet(t, s, "/api/v1/search", url.Values{
		"service": {"frontend"}, "limit": {"20"},
		"start": {fmt.Sprint(now.Add(-10 * time.Minute).Unix())}, "end": {fmt.Sprint(now.Add(time.Minute).Unix())},
	})
	require.Equal(t, http.StatusOK, code, string(body))
	var r query.SearchResponse
	require.NoError(t, json.Unmarshal(body, &r))
	require.Len(t, r.Traces, 6, "%s", body)
	sort.Slice(r.Traces, func(i, j int) bool { return r.Traces[i].StartTime.Before(r.Traces[j].StartTime) })
	ids := map[int]string{}
	for i, tr := range r.Traces {
		n := i + 1
		require.Equal(t, fmt.Sprintf("7e00000000000000000000000000%04x", n), tr.TraceID, "trace %d", n)
		require.Equal(t, "client", tr.RootService)
		require.Equal(t, "checkout", tr.RootName)
		require.Equal(t, 4, tr.SpanCount)
		require.Equal(t, n == 3, tr.ErrorCount > 0, "only trace 3 fails")
		require.Equal(t, n == 4, tr.DurationNanos > int64(time.Second), "only trace 4 is slow")
		ids[n] = tr.TraceID
	}
	return ids
}

// traceSummary reads a trace's summary, with only the parts named, without
// failing the test: it is polled.
func traceSummary(s *server, id, include string) (query.TraceResponse, error) {
	var out query.TraceResponse
	resp, err := http.Get(s.api("/api/v1/traces/" + id + "?include=" + include))
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return out, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("trace %s: %d %s", id, resp.StatusCode, b)
	}
	return out, json.Unmarshal(b, &out)
}

// bigTrace builds one trace of n spans of service bigsvc: a tree in which
// span h's children are 5h+1 … 5h+5 (depth 6 for 5000 spans), laid out in
// time depth first, each span inside its parent, start times increasing in
// the order of the names op-0, op-1, …
func bigTrace(start time.Time, n int) (ptrace.Traces, string) {
	tid := pcommon.TraceID{0xb1, 0x90, 14: byte(n >> 8), 15: byte(n)}
	const fanout, unit = 5, time.Millisecond
	size, depth := make([]int, n), make([]int, n)
	for h := range n {
		size[h] = 1
		if h > 0 {
			depth[h] = depth[(h-1)/fanout] + 1
		}
	}
	for h := n - 1; h > 0; h-- {
		size[(h-1)/fanout] += size[h]
	}

	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "bigsvc")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("bench")
	spans := ss.Spans()
	spans.EnsureCapacity(n)
	var visit func(h int, at time.Time, parent pcommon.SpanID)
	visit = func(h int, at time.Time, parent pcommon.SpanID) {
		i := spans.Len()
		sid := pcommon.SpanID{0xb1, 0x90, 6: byte((i + 1) >> 8), 7: byte(i + 1)}
		sp := spans.AppendEmpty()
		sp.SetTraceID(tid)
		sp.SetSpanID(sid)
		sp.SetParentSpanID(parent)
		sp.SetName(fmt.Sprintf("op-%d", i))
		sp.SetKind(ptrace.SpanKindInternal)
		if h == 0 {
			sp.SetKind(ptrace.SpanKindServer)
		}
		sp.Attributes().PutInt("bench.depth", int64(depth[h]))
		// A span lasts its subtree's slot, less a tenth of a unit per level:
		// strictly inside its parent.
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(at))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(size[h])*unit - time.Duration(depth[h])*unit/10)))
		next := at.Add(unit)
		for c := fanout*h + 1; c <= fanout*h+fanout && c < n; c++ {
			visit(c, next, sid)
			next = next.Add(time.Duration(size[c]) * unit)
		}
	}
	visit(0, start, pcommon.SpanID{})
	return td, tid.String()
}

// lineLogger writes what the browser script prints to the test log, line
// by line, and keeps its render_ metrics (lines METRIC name=value).
type lineLogger struct {
	t       *testing.T
	prefix  string
	buf     bytes.Buffer
	mu      *sync.Mutex
	metrics *[]string
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil { // no newline yet: keep the start of the line
			l.buf.Reset()
			l.buf.WriteString(line)
			return len(p), nil
		}
		l.logLine(strings.TrimRight(line, "\r\n"))
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.logLine(l.buf.String())
		l.buf.Reset()
	}
}

func (l *lineLogger) logLine(line string) {
	l.t.Log(l.prefix + line)
	if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "METRIC "); ok && strings.HasPrefix(rest, "render_") {
		*l.metrics = append(*l.metrics, rest)
	}
}

// TestUIAsksForAToken: against a server with an auth file, the UI asks
// for a token, refuses a wrong one, keeps the right one in the tab (never
// in a URL), sends it on every call and on the live tail's websocket.
func TestUIAsksForAToken(t *testing.T) {
	node, chromium := browserTools(t, tokenScript)
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.AuthFile = writeAuthFile(t, dir, "")
	s := startServer(t, cfg)
	const line = "a line only a token shows"
	code, body := post(t, s.api("/loki/api/v1/push"), "application/json",
		[]byte(fmt.Sprintf(`{"streams":[{"stream":{"app":"tokentest"},"values":[["%d","%s"]]}]}`, time.Now().Add(-time.Minute).UnixNano(), line)),
		"Authorization", bearer(writeSecret))
	require.Equal(t, http.StatusNoContent, code, body)

	err := runBrowserScript(t, node, tokenScript, 2*time.Minute, "LUMEN_URL="+s.api(""), "LUMEN_READ_TOKEN="+readSecret,
		"LUMEN_WRITE_TOKEN="+writeSecret, "LUMEN_LINE="+line, "LUMEN_CHROMIUM="+chromium)
	require.NoError(t, err, "browser token test failed: see the log above")
}

// TestUISwitchesTenants: with tenants, the UI shows the tenant its pages
// read and lets a token that may read two switch between them; each
// shows only its own lines, the live tail included.
func TestUISwitchesTenants(t *testing.T) {
	node, chromium := browserTools(t, tenantsScript)
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.AuthFile = tenantAuthFile(t, dir)
	cfg.Tenants.Enabled = true
	s := startServer(t, cfg)
	for team, secret := range map[string]string{"team-a": teamASecret, "team-b": teamBSecret} {
		code, body := post(t, s.api("/loki/api/v1/push"), "application/json",
			[]byte(fmt.Sprintf(`{"streams":[{"stream":{"app":"shop"},"values":[["%d","checkout of %s"]]}]}`, time.Now().Add(-time.Minute).UnixNano(), team)),
			"Authorization", bearer(secret))
		require.Equal(t, http.StatusNoContent, code, body)
	}
	err := runBrowserScript(t, node, tenantsScript, 2*time.Minute, "LUMEN_URL="+s.api(""), "LUMEN_OPS_TOKEN="+opsSecret,
		"LUMEN_TEAM_A_TOKEN="+teamASecret, "LUMEN_TEAM_B_TOKEN="+teamBSecret, "LUMEN_CHROMIUM="+chromium)
	require.NoError(t, err, "browser tenants test failed: see the log above")
}

// TestUIShowsAlertsAndTheirTraces: an alert over span metrics fires; its
// evidence is the exemplar traces of its series, the failed one first;
// the Alerts page in Chromium shows it and opens that trace.
func TestUIShowsAlertsAndTheirTraces(t *testing.T) {
	node, chromium := browserTools(t, alertsScript)
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.SpanMetrics.Interval = 200 * time.Millisecond
	cfg.Rules.EvaluationInterval = time.Second
	cfg.RuleFiles = []string{writeFile(t, dir, "shop.yml", `groups:
  - name: shop
    interval: 1s
    rules:
      - alert: BackendCalls
        expr: sum by (service) (traces_spanmetrics_calls_total{service="backend"}) > 0
        labels:
          severity: page
        annotations:
          summary: "backend serves calls"
`)}
	s := startServer(t, cfg)
	now := time.Now()
	sendCallTrees(t, s, &seqIDs{}, 6, now.Add(-time.Minute))
	errorTrace := fmt.Sprintf("7e00000000000000000000000000%04x", 3)
	firing := waitFiring(t, s.api(""), "/api/v1/alerts", 20*time.Second)
	require.Equal(t, "backend", firing.Labels["service"])

	// The evidence API: the backend's exemplar traces, the failed first,
	// with its span's name, duration and status read from the store.
	var ev ruler.Evidence
	require.Eventually(t, func() bool {
		code, body := apiGet(t, s, "/api/v1/alert_evidence", url.Values{"expr": {`sum by (service) (traces_spanmetrics_calls_total{service="backend"}) > 0`},
			"labels": {`{alertname="BackendCalls", service="backend", severity="page"}`}, "start": {fmt.Sprint(now.Add(-10 * time.Minute).UnixMilli())}})
		require.Equal(t, http.StatusOK, code, string(body))
		var r struct{ Data ruler.Evidence }
		require.NoError(t, json.Unmarshal(body, &r))
		ev = r.Data
		return len(ev.Traces) >= 2
	}, 10*time.Second, 100*time.Millisecond, "fewer than two exemplar traces")
	require.Equal(t, errorTrace, ev.Traces[0].TraceID)
	require.True(t, ev.Traces[0].Error && ev.Traces[0].Found)
	require.Equal(t, "reserve", ev.Traces[0].Name)
	require.Equal(t, "backend", ev.Traces[0].Service)
	require.InDelta(t, 0.008, ev.Traces[0].Duration, 1e-6)
	for _, tr := range ev.Traces {
		require.Equal(t, "backend", tr.Series["service"], "an exemplar of another service")
	}
	// Bad parameters are a 400 naming them.
	code, body := apiGet(t, s, "/api/v1/alert_evidence", url.Values{"expr": {"sum("}})
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, string(body), "alert_evidence: expr")
	code, body = apiGet(t, s, "/api/v1/alert_evidence", url.Values{"expr": {"up"}, "lang": {"sql"}})
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, string(body), `lang \"sql\" is neither promql nor logql`)

	screenshots, err := filepath.Abs("../../test-results/ui")
	require.NoError(t, err)
	err = runBrowserScript(t, node, alertsScript, 2*time.Minute, "LUMEN_URL="+s.api(""), "LUMEN_ERROR_TRACE="+errorTrace,
		"LUMEN_CHROMIUM="+chromium, "LUMEN_SCREENSHOTS="+screenshots)
	require.NoError(t, err, "browser alerts test failed: see the log above")
}
