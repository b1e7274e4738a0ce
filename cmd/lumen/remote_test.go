package main

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
// backend down is a 503 naming it; Lumen's own data dir holds no samples.
func TestMetricsInRemoteBackend(t *testing.T) {
	promAddr := freeAddr(t)
	cfg := testConfig(t, t.TempDir())
	cfg.Storage.Metrics.Backend = backendRemote
	cfg.Storage.Metrics.Remote.WriteURL = "http://" + promAddr + "/api/v1/write"
	cfg.Storage.Metrics.Remote.QueryURL = "http://" + promAddr
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
}
