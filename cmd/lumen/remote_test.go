package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/lumenobs/lumen/internal/promtest"
)

// TestMetricsInRemoteBackend: with storage.metrics.backend remote, what
// Lumen acknowledged while the backend — a real Prometheus — was not
// running, across a restart of Lumen, is in the backend once it runs;
// Lumen's Prometheus API answers as the backend does, byte for byte, and a
// backend down is a 503 naming it.
func TestMetricsInRemoteBackend(t *testing.T) {
	cfg, promAddr := remoteConfig(t)
	cfg.Storage.Metrics.Remote.QueryTimeout = Duration(5 * time.Second)
	cfg.SpanMetrics.Interval = time.Second
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)

	s := startServer(t, cfg)
	code, _, body := remoteWrite(t, s, v1Request(t, map[string]string{"queue_depth": "a:1"}, "batch", start, 20, 15*time.Second), 1)
	require.Equal(t, http.StatusNoContent, code, body)
	code, resp := promGet(t, s, "/api/v1/query", url.Values{"query": {"queue_depth"}})
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "unavailable", resp.ErrorType)
	require.Contains(t, resp.Error, "metrics backend http://"+promAddr)
	// The correlated answer without its metrics backend: the spans, and a
	// warning naming the backend.
	down := getTrace(t, s, sendTrace(t, s, "billing", "GET /invoice"))
	require.Equal(t, 1, down.SpanCount)
	require.Len(t, down.Warnings, 2, "%v", down.Warnings)
	require.Contains(t, down.Warnings[0], "metrics backend http://"+promAddr)
	s.stop()

	s = startServer(t, cfg) // what the first acknowledged is still queued
	code, _, body = remoteWrite(t, s, v1Request(t, map[string]string{"queue_depth": "b:1"}, "batch", start, 20, 15*time.Second), 1)
	require.Equal(t, http.StatusNoContent, code, body)
	promtest.StartPrometheus(t, promAddr, true)

	at := strconv.FormatInt(start.Add(5*time.Minute).Unix(), 10)
	query := url.Values{"query": {"sum by (instance) (queue_depth)"}, "time": {at}}
	require.Eventually(t, func() bool {
		code, resp := promGet(t, s, "/api/v1/query", query)
		return code == http.StatusOK && len(resp.Data) > 0 && strings.Count(string(resp.Data), `"instance"`) == 2
	}, 30*time.Second, 100*time.Millisecond, "both writes reach the backend")
	for _, q := range []string{
		"/api/v1/query?" + query.Encode(),
		"/api/v1/query_range?" + url.Values{"query": {"rate(queue_depth[1m])"}, "start": {strconv.FormatInt(start.Unix(), 10)}, "end": {at}, "step": {"30"}}.Encode(),
		"/api/v1/series?match[]=queue_depth&start=" + strconv.FormatInt(start.Unix(), 10),
		"/api/v1/labels",
		"/api/v1/label/instance/values",
	} {
		require.Equal(t, httpGet(t, "http://"+promAddr+q), httpGet(t, s.api(q)), q)
	}
	code, _ = promGet(t, s, "/api/v1/rules", nil)
	require.Equal(t, http.StatusOK, code, "Lumen's rules API stays Lumen's")

	// The correlated answer's metrics are read from the backend: the span
	// metrics of a trace, written there, come back with it.
	id := sendTrace(t, s, "billing", "GET /invoice")
	require.Eventually(t, func() bool {
		got := getTrace(t, s, id)
		if got.Metrics == nil {
			return false
		}
		for _, ss := range got.Metrics.Series {
			if ss.Metric.Get("__name__") == "traces_spanmetrics_calls_total" && ss.Metric.Get("span_name") == "GET /invoice" && len(ss.Values) > 0 {
				return true
			}
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "the trace's RED series, from the backend")
	code, resp = promGet(t, s, "/api/v1/query", url.Values{"query": {`traces_spanmetrics_calls_total{service="billing"}`}})
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(resp.Data), "GET /invoice", "span metrics are in the backend")
}

// remoteConfig is a test server's configuration with its metrics in a
// remote backend at promAddr (a Prometheus the test starts when it wants).
func remoteConfig(t *testing.T) (cfg Config, promAddr string) {
	promAddr = freeAddr(t)
	cfg = testConfig(t, t.TempDir())
	cfg.Storage.Metrics.Backend = backendRemote
	cfg.Storage.Metrics.Remote.WriteURL = "http://" + promAddr + "/api/v1/write"
	cfg.Storage.Metrics.Remote.QueryURL = "http://" + promAddr
	return cfg, promAddr
}

// sendTrace sends a trace of one server span with the OTel SDK's OTLP/HTTP
// exporter and returns its id.
func sendTrace(t *testing.T, s *server, service, name string) string {
	t.Helper()
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.cfg.OTLP.HTTPAddr), otlptracehttp.WithInsecure())
	require.NoError(t, err)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
	_, span := tp.Tracer(service).Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	span.End()
	require.NoError(t, tp.Shutdown(ctx))
	return span.SpanContext().TraceID().String()
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	code, body := fetch(t, u)
	return strconv.Itoa(code) + " " + body
}

// TestStorageConfig: the storage block and its flags are read and
// checked.
func TestStorageConfig(t *testing.T) {
	none := func(string) string { return "" }
	def, err := loadConfig(nil, none, "serve")
	require.NoError(t, err)
	require.Equal(t, backendLocal, def.Storage.Metrics.Backend)

	file := filepath.Join(t.TempDir(), "lumen.yml")
	require.NoError(t, os.WriteFile(file, []byte(`storage:
  metrics:
    backend: remote
    remote:
      write_url: http://mimir:8080/api/v1/push
      query_url: http://mimir:8080/prometheus
      tenant_header: X-Scope-OrgID
      http_client:
        basic_auth: {username: lumen, password: secret}
      queue: {max_bytes: 2GiB, senders: 8}
`), 0o600))
	cfg, err := loadConfig([]string{"--config", file}, none, "serve")
	require.NoError(t, err)
	r := cfg.Storage.Metrics.Remote
	require.Equal(t, backendRemote, cfg.Storage.Metrics.Backend)
	require.Equal(t, "http://mimir:8080/prometheus", r.QueryURL)
	require.Equal(t, "lumen", r.HTTPClient.BasicAuth.Username)
	require.EqualValues(t, 2<<30, r.Queue.MaxBytes)
	require.Equal(t, 8, r.Queue.Senders)
	require.Equal(t, 2000, r.Queue.MaxSamplesPerRequest, "defaults kept where not set")

	cfg, err = loadConfig([]string{"--metrics-backend", "remote", "--metrics-remote-write-url", "http://vm:8428/api/v1/write",
		"--metrics-remote-query-url", "http://vm:8428"}, none, "serve")
	require.NoError(t, err)
	require.Equal(t, "http://vm:8428/api/v1/write", cfg.Storage.Metrics.Remote.WriteURL)
	_, err = loadConfig([]string{"--metrics-backend", "remote"}, none, "serve")
	require.ErrorContains(t, err, "write_url and query_url are needed")
	_, err = loadConfig([]string{"--metrics-backend", "mimir"}, none, "serve")
	require.ErrorContains(t, err, `storage.metrics.backend "mimir": local or remote`)

	require.Equal(t, backendLocal, def.Storage.Logs.Backend)
	require.NoError(t, os.WriteFile(file, []byte(`storage:
  logs:
    backend: remote
    remote:
      push_url: http://loki-gateway/loki/api/v1/push
      query_url: http://loki-gateway
      tenant_header: X-Scope-OrgID
      trace_selector: '{service_name=~"$services"}'
      http_client:
        authorization: {credentials: token}
      queue: {max_request_bytes: 512KiB}
`), 0o600))
	cfg, err = loadConfig([]string{"--config", file}, none, "serve")
	require.NoError(t, err)
	l := cfg.Storage.Logs.Remote
	require.Equal(t, backendRemote, cfg.Storage.Logs.Backend)
	require.Equal(t, backendLocal, cfg.Storage.Metrics.Backend, "each signal on its own")
	require.Equal(t, "http://loki-gateway", l.QueryURL)
	require.Equal(t, `{service_name=~"$services"}`, l.TraceSelector)
	require.EqualValues(t, 512<<10, l.Queue.MaxRequestBytes)
	require.EqualValues(t, 1<<30, l.Queue.MaxBytes, "defaults kept where not set")
	require.Equal(t, 5000, l.MaxEntriesPerQuery)
	cfg, err = loadConfig([]string{"--logs-backend", "remote", "--logs-remote-push-url", "http://loki:3100/loki/api/v1/push",
		"--logs-remote-query-url", "http://loki:3100"}, none, "serve")
	require.NoError(t, err)
	require.Equal(t, "http://loki:3100", cfg.Storage.Logs.Remote.QueryURL)
	_, err = loadConfig([]string{"--logs-backend", "remote"}, none, "serve")
	require.ErrorContains(t, err, "storage.logs.remote: push_url and query_url are needed")
	_, err = loadConfig([]string{"--logs-backend", "loki"}, none, "serve")
	require.ErrorContains(t, err, `storage.logs.backend "loki": local or remote`)
	cfg, err = loadConfig([]string{"--traces-backend", "remote", "--traces-remote-otlp-url", "http://jaeger:4318/v1/traces",
		"--traces-remote-query-url", "http://jaeger:16686"}, none, "serve")
	require.NoError(t, err)
	require.Equal(t, "http://jaeger:4318/v1/traces", cfg.Storage.Traces.Remote.OTLPURL)
	require.Equal(t, "jaeger", cfg.Storage.Traces.Remote.API)
	_, err = loadConfig([]string{"--traces-backend", "remote"}, none, "serve")
	require.ErrorContains(t, err, "storage.traces.remote: otlp_url and query_url are needed")
	bad := DefaultStorageConfig()
	bad.Traces.Backend, bad.Traces.Remote.OTLPURL, bad.Traces.Remote.QueryURL, bad.Traces.Remote.API = backendRemote, "http://t/v1/traces", "http://t", "zipkin"
	require.ErrorContains(t, bad.Validate(), `storage.traces.remote.api "zipkin"`)
	bad = DefaultStorageConfig()
	bad.Logs.Backend, bad.Logs.Remote.PushURL, bad.Logs.Remote.QueryURL = backendRemote, "http://l/loki/api/v1/push", "http://l"
	bad.Logs.Remote.TraceSelector = `trace_id="x"`
	require.ErrorContains(t, bad.Validate(), "trace_selector")
}

// TestRemoteMetricsSurviveSIGKILL: remote writes Lumen acknowledged while
// its metrics backend was down, the process then killed with SIGKILL, are
// in the backend — a real Prometheus — once Lumen runs again and the
// backend is up; every one, none twice.
func TestRemoteMetricsSurviveSIGKILL(t *testing.T) {
	cfg, promAddr := remoteConfig(t)
	args := fmt.Sprintf("serve --data-dir %s --http-addr %s --otlp-grpc-addr %s --otlp-http-addr %s --log-level warn --retention 0 "+
		"--metrics-backend remote --metrics-remote-write-url %s --metrics-remote-query-url %s",
		cfg.DataDir, cfg.HTTPAddr, cfg.OTLP.GRPCAddr, cfg.OTLP.HTTPAddr, cfg.Storage.Metrics.Remote.WriteURL, cfg.Storage.Metrics.Remote.QueryURL)
	child := startLumenChild(t, args, cfg.HTTPAddr, io.Discard)
	s := &server{cfg: cfg}
	start := time.Now().Add(-20 * time.Minute).Truncate(time.Minute)
	const requests = 30
	for i := range requests {
		body := v1Request(t, map[string]string{"jobs_queued": "w:" + strconv.Itoa(i)}, "kill", start, 10, 15*time.Second)
		code, _, msg := remoteWrite(t, s, body, 1)
		require.Equal(t, http.StatusNoContent, code, msg)
	}
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_, _ = child.Process.Wait()

	promtest.StartPrometheus(t, promAddr, true)
	s = startServer(t, cfg)
	at := strconv.FormatInt(start.Add(3*time.Minute).Unix(), 10)
	var got string
	require.Eventually(t, func() bool {
		code, resp := promGet(t, s, "/api/v1/query", url.Values{"query": {`count_over_time(jobs_queued{job="kill"}[5m])`}, "time": {at}})
		got = string(resp.Data)
		return code == http.StatusOK && strings.Count(got, `"instance"`) == requests
	}, 60*time.Second, 200*time.Millisecond, "every acknowledged request in the backend")
	require.Equal(t, requests, strings.Count(got, `"10"]`), "ten samples of each series, none twice: %s", got)
}

// TestRemoteMetricsPerTenant: with tenants, each tenant's writes and reads
// of metrics and of lines carry its id in tenant_header, in queues of its
// own.
func TestRemoteMetricsPerTenant(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path+" "+r.Header.Get("X-Scope-OrgID")]++
		mu.Unlock()
		if r.URL.Path == "/api/v1/write" || r.URL.Path == "/loki/api/v1/push" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	defer backend.Close()
	cfg := testConfig(t, t.TempDir())
	cfg.Tenants.Enabled = true
	cfg.Storage.Metrics.Backend = backendRemote
	cfg.Storage.Metrics.Remote.WriteURL = backend.URL + "/api/v1/write"
	cfg.Storage.Metrics.Remote.QueryURL = backend.URL
	cfg.Storage.Metrics.Remote.TenantHeader = "X-Scope-OrgID"
	cfg.Storage.Logs.Backend = backendRemote
	cfg.Storage.Logs.Remote.PushURL = backend.URL + "/loki/api/v1/push"
	cfg.Storage.Logs.Remote.QueryURL = backend.URL
	cfg.Storage.Logs.Remote.TenantHeader = "X-Scope-OrgID"
	s := startServer(t, cfg)
	for _, tenant := range []string{"team-a", "team-b"} {
		req, err := http.NewRequest(http.MethodPost, s.api("/api/v1/write"), bytes.NewReader(v1Request(t, map[string]string{"up": "x:1"}, "t", time.Now(), 1, time.Second)))
		require.NoError(t, err)
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
		req.Header.Set("X-Scope-OrgID", tenant)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		req, err = http.NewRequest(http.MethodGet, s.api("/api/v1/query?query=up"), nil)
		require.NoError(t, err)
		req.Header.Set("X-Scope-OrgID", tenant)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.DirExists(t, filepath.Join(cfg.DataDir, tenantsDir, tenant, "queue", "metrics"))
		code, body := lokiPush(t, s, "application/x-protobuf", promtailBody(t, push.Stream{Labels: `{app="x"}`, Entries: []push.Entry{{Timestamp: time.Now(), Line: "hello"}}}), "X-Scope-OrgID", tenant)
		require.Equal(t, http.StatusNoContent, code, body)
		req, err = http.NewRequest(http.MethodGet, s.api("/loki/api/v1/labels"), nil)
		require.NoError(t, err)
		req.Header.Set("X-Scope-OrgID", tenant)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.DirExists(t, filepath.Join(cfg.DataDir, tenantsDir, tenant, "queue", "logs"))
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["/api/v1/write team-a"] > 0 && seen["/api/v1/write team-b"] > 0 &&
			seen["/loki/api/v1/push team-a"] > 0 && seen["/loki/api/v1/push team-b"] > 0
	}, 10*time.Second, 20*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, seen["/api/v1/query team-a"])
	require.Equal(t, 1, seen["/api/v1/query team-b"])
	require.Equal(t, 1, seen["/loki/api/v1/labels team-a"])
	require.Equal(t, 1, seen["/loki/api/v1/labels team-b"])
	// Both queues' metrics, as the Collector's exporters name them.
	code, body := fetch(t, s.api("/metrics"))
	require.Equal(t, http.StatusOK, code)
	// (The metrics queue is one per sender: lumen/metrics, lumen/metrics-1…)
	for _, want := range []string{`otelcol_exporter_sent_metric_points_total{exporter="lumen/metrics`, `otelcol_exporter_sent_log_records_total{exporter="lumen/logs"`,
		`otelcol_exporter_queue_capacity{data_type="logs",exporter="lumen/logs",tenant="team-a"}`} {
		require.Contains(t, body, want, "%s", grepLines(body, "otelcol_exporter_"))
	}
	for k := range seen {
		require.False(t, strings.HasSuffix(k, " "), "nothing sent without its tenant: %v", seen)
	}
}

// grepLines are the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
