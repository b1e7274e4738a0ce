package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/query"
)

// childEnv makes the test binary run `lumen` itself, for the crash test.
const childEnv = "LUMEN_TEST_RUN_AS_LUMEN"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		os.Exit(mainExit(strings.Fields(args)))
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string { return loopback.FreeAddr(t) }

// server is a `lumen serve` running in this process on loopback ports.
type server struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan error
}

func testConfig(t *testing.T, dir string) Config {
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.HTTPAddr = freeAddr(t)
	cfg.OTLP.GRPCAddr = freeAddr(t)
	cfg.OTLP.HTTPAddr = freeAddr(t)
	cfg.Log.Level = "warn"
	// Fixtures are on fixed dates: keep everything, refuse nothing as old.
	cfg.Retention = 0
	return cfg
}

func startServer(t *testing.T, cfg Config) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	started := make(chan struct{})
	go func() { s.done <- serve(ctx, cfg, io.Discard, func() { close(started) }) }()
	select {
	case <-started:
	case err := <-s.done:
		t.Fatalf("server did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("server did not start in 20s")
	}
	t.Cleanup(s.stop)
	return s
}

func (s *server) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	if err := <-s.done; err != nil {
		panic(fmt.Sprintf("server stopped with %v", err))
	}
}

func (s *server) api(path string) string { return "http://" + s.cfg.HTTPAddr + path }

// traceResponse is the API's answer, with its OTLP/JSON trace decoded by
// pdata's own decoder.
type traceResponse struct {
	query.TraceResponse
	Spans ptrace.Traces
}

func getTrace(t *testing.T, s *server, id string) traceResponse {
	t.Helper()
	out, found := findTrace(t, s, id)
	require.True(t, found, "trace %s: 404", id)
	return out
}

// findTrace is getTrace, but a trace not found (yet) is false, not a
// failure: for polling inside require.Eventually, whose condition must
// not fail the test.
func findTrace(t *testing.T, s *server, id string) (traceResponse, bool) {
	t.Helper()
	resp, err := http.Get(s.api("/api/v1/traces/" + id))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusNotFound {
		return traceResponse{}, false
	}
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var out traceResponse
	require.NoError(t, json.Unmarshal(body, &out.TraceResponse))
	out.Spans, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(out.Trace)
	require.NoError(t, err)
	return out, true
}

func spansByName(td ptrace.Traces) map[string]struct {
	Res   pcommon.Resource
	Scope pcommon.InstrumentationScope
	Span  ptrace.Span
} {
	out := map[string]struct {
		Res   pcommon.Resource
		Scope pcommon.InstrumentationScope
		Span  ptrace.Span
	}{}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				out[sp.Name()] = struct {
					Res   pcommon.Resource
					Scope pcommon.InstrumentationScope
					Span  ptrace.Span
				}{rs.Resource(), ss.Scope(), sp}
			}
		}
	}
	return out
}

func attr(t *testing.T, m pcommon.Map, key string) pcommon.Value {
	t.Helper()
	v, ok := m.Get(key)
	require.True(t, ok, "attribute %q missing from %v", key, m.AsRaw())
	return v
}

// sdkExporters are the OpenTelemetry Go SDK's real OTLP exporters, over one
// transport.
type sdkExporters struct {
	traces sdktrace.SpanExporter
	logs   sdklog.Exporter
}

func TestOTelSDKExportersEndToEnd(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			var ex sdkExporters
			var err error
			switch transport {
			case "grpc":
				ex.traces, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.cfg.OTLP.GRPCAddr), otlptracegrpc.WithInsecure())
				require.NoError(t, err)
				ex.logs, err = otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(s.cfg.OTLP.GRPCAddr), otlploggrpc.WithInsecure())
			case "http":
				ex.traces, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.cfg.OTLP.HTTPAddr), otlptracehttp.WithInsecure(), otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
				require.NoError(t, err)
				ex.logs, err = otlploghttp.New(ctx, otlploghttp.WithEndpoint(s.cfg.OTLP.HTTPAddr), otlploghttp.WithInsecure(), otlploghttp.WithCompression(otlploghttp.GzipCompression))
			}
			require.NoError(t, err)
			exportAndCheck(t, s, ex, transport)
		})
	}
}

func exportAndCheck(t *testing.T, s *server, ex sdkExporters, transport string) {
	ctx := context.Background()
	res := resource.NewSchemaless(
		attribute.String("service.name", "checkout-"+transport),
		attribute.String("service.version", "2.1.0"),
		attribute.String("k8s.pod.name", "checkout-5f7d8-abcde"),
	)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(ex.traces), sdktrace.WithResource(res))
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(ex.logs)), sdklog.WithResource(res))
	tracer := tp.Tracer("shop/checkout", trace.WithInstrumentationVersion("0.9.1"))

	linked := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		SpanID:  trace.SpanID{0xbb, 1, 2, 3, 4, 5, 6, 7},
	})
	rootCtx, root := tracer.Start(ctx, "POST /checkout", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", "POST"), attribute.Int("http.response.status_code", 500)))
	childCtx, child := tracer.Start(rootCtx, "charge card", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.String("link.reason", "retry of")}}),
		trace.WithAttributes(attribute.Bool("payment.retry", true), attribute.Float64("payment.amount", 12.5), attribute.StringSlice("payment.tags", []string{"a", "b"})))
	child.AddEvent("card declined", trace.WithAttributes(attribute.String("decline.code", "insufficient_funds")))
	child.SetStatus(otelcodes.Error, "payment provider said no")

	logger := lp.Logger("shop/checkout")
	var rec otellog.Record
	rec.SetTimestamp(time.Now())
	rec.SetSeverity(otellog.SeverityError)
	rec.SetSeverityText("ERROR")
	rec.SetBody(attribute.StringValue("charge failed for order 1234"))
	rec.AddAttributes(attribute.String("order.id", "1234"), attribute.Int("attempt", 2))
	logger.Emit(childCtx, rec)
	var untraced otellog.Record
	untraced.SetBody(attribute.StringValue("a line with no trace"))
	logger.Emit(ctx, untraced)

	child.End()
	root.End()
	require.NoError(t, tp.Shutdown(ctx))
	require.NoError(t, lp.Shutdown(ctx))

	traceID := root.SpanContext().TraceID().String()
	got := getTrace(t, s, strings.ToUpper(traceID)) // ids are case-insensitive
	require.Equal(t, traceID, got.TraceID)
	require.Equal(t, 2, got.SpanCount)
	require.Equal(t, 1, got.LogCount)
	require.Equal(t, []string{"checkout-" + transport}, got.Services)

	spans := spansByName(got.Spans)
	r, c := spans["POST /checkout"], spans["charge card"]
	require.Equal(t, "checkout-"+transport, attr(t, r.Res.Attributes(), "service.name").Str())
	require.Equal(t, "checkout-5f7d8-abcde", attr(t, r.Res.Attributes(), "k8s.pod.name").Str())
	require.Equal(t, "shop/checkout", r.Scope.Name())
	require.Equal(t, "0.9.1", r.Scope.Version())

	require.Equal(t, ptrace.SpanKindServer, r.Span.Kind())
	require.True(t, r.Span.ParentSpanID().IsEmpty())
	require.Equal(t, root.SpanContext().SpanID().String(), r.Span.SpanID().String())
	require.Equal(t, "POST", attr(t, r.Span.Attributes(), "http.request.method").Str())
	require.Equal(t, int64(500), attr(t, r.Span.Attributes(), "http.response.status_code").Int())

	require.Equal(t, ptrace.SpanKindClient, c.Span.Kind())
	require.Equal(t, r.Span.SpanID(), c.Span.ParentSpanID())
	require.True(t, attr(t, c.Span.Attributes(), "payment.retry").Bool())
	require.InDelta(t, 12.5, attr(t, c.Span.Attributes(), "payment.amount").Double(), 0)
	require.Equal(t, []any{"a", "b"}, attr(t, c.Span.Attributes(), "payment.tags").Slice().AsRaw())
	require.Equal(t, 1, c.Span.Events().Len())
	require.Equal(t, "card declined", c.Span.Events().At(0).Name())
	require.Equal(t, "insufficient_funds", attr(t, c.Span.Events().At(0).Attributes(), "decline.code").Str())
	require.Equal(t, 1, c.Span.Links().Len())
	require.Equal(t, linked.TraceID().String(), c.Span.Links().At(0).TraceID().String())
	require.Equal(t, linked.SpanID().String(), c.Span.Links().At(0).SpanID().String())
	require.Equal(t, "retry of", attr(t, c.Span.Links().At(0).Attributes(), "link.reason").Str())
	require.Equal(t, ptrace.StatusCodeError, c.Span.Status().Code())
	require.Equal(t, "payment provider said no", c.Span.Status().Message())
	require.Greater(t, c.Span.EndTimestamp(), c.Span.StartTimestamp())

	require.Len(t, got.Logs, 1)
	lr := got.Logs[0]
	require.Equal(t, "checkout-"+transport, lr.Stream["service_name"], "the resource is the stream, as Loki maps it")
	require.Equal(t, "charge failed for order 1234", lr.Line)
	require.Equal(t, "17", lr.StructuredMetadata["severity_number"])
	require.Equal(t, "ERROR", lr.StructuredMetadata["severity_text"])
	require.Equal(t, traceID, lr.StructuredMetadata["trace_id"])
	require.Equal(t, child.SpanContext().SpanID().String(), lr.SpanID)
	require.Equal(t, "1234", lr.StructuredMetadata["order_id"])
	require.Equal(t, "2", lr.StructuredMetadata["attempt"])

	// The answer's time range is the trace's.
	require.Equal(t, fmt.Sprint(uint64(r.Span.StartTimestamp())), got.StartTimeUnixNano)
	require.Equal(t, fmt.Sprint(uint64(r.Span.EndTimestamp())), got.EndTimeUnixNano)
	require.Equal(t, int64(r.Span.EndTimestamp()-r.Span.StartTimestamp()), got.DurationNanos)
}

const jsonTrace = `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
 "scopeSpans":[{"scope":{"name":"manual"},"spans":[
  {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","name":"GET /cart","kind":2,
   "startTimeUnixNano":"1763800000000000000","endTimeUnixNano":"1763800000100000000",
   "attributes":[{"key":"http.route","value":{"stringValue":"/cart"}}],"status":{"code":2,"message":"boom"}},
  {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaa19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b174","name":"load cart",
   "startTimeUnixNano":"1763800000010000000","endTimeUnixNano":"1763800000020000000"}]}]}]}`

const jsonLogs = `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
 "scopeLogs":[{"logRecords":[
  {"timeUnixNano":"1763800000015000000","severityNumber":17,"severityText":"ERROR","body":{"stringValue":"cart failed"},
   "traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaa19b7ec3c1b174"},
  {"timeUnixNano":"1763800000005000000","severityNumber":9,"body":{"stringValue":"loading cart"},
   "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}`

func post(t *testing.T, url, contentType string, body []byte, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// apiGet GETs one of the server's HTTP endpoints.
func apiGet(t *testing.T, s *server, path string, params url.Values, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.api(path)+"?"+params.Encode(), nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestJSONOverPlainHTTPAndRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	s := startServer(t, cfg)
	code, body := post(t, "http://"+cfg.OTLP.HTTPAddr+"/v1/traces", "application/json", []byte(jsonTrace))
	require.Equal(t, http.StatusOK, code, body)
	code, body = post(t, "http://"+cfg.OTLP.HTTPAddr+"/v1/logs", "application/json", gz(t, []byte(jsonLogs)), "Content-Encoding", "gzip")
	require.Equal(t, http.StatusOK, code, body)

	check := func(s *server) {
		got := getTrace(t, s, "5b8efff798038103d269b633813fc60c")
		require.Equal(t, 2, got.SpanCount)
		require.Equal(t, 2, got.LogCount)
		require.Equal(t, []string{"cart"}, got.Services)
		// Spans and logs come back sorted by time.
		spans := got.Spans.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
		require.Equal(t, "GET /cart", spans.At(0).Name())
		require.Equal(t, "load cart", spans.At(1).Name())
		require.Equal(t, "loading cart", got.Logs[0].Line)
		require.Equal(t, "cart failed", got.Logs[1].Line)
		require.Equal(t, map[string]string{"service_name": "cart"}, got.Logs[1].Stream)
		require.Equal(t, "1763800000000000000", got.StartTimeUnixNano)
		require.Equal(t, "1763800000100000000", got.EndTimeUnixNano)
	}
	check(s)

	// include= chooses the parts.
	resp, err := http.Get(s.api("/api/v1/traces/5b8efff798038103d269b633813fc60c?include=logs"))
	require.NoError(t, err)
	var partial map[string]json.RawMessage
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&partial))
	resp.Body.Close()
	require.NotContains(t, partial, "trace")
	require.Contains(t, partial, "logs")

	// Stop and start again on the same data dir: everything is still there.
	s.stop()
	s = startServer(t, cfg)
	check(s)
}

// startChild runs `lumen serve` in a child process (this test binary, told
// by childEnv to be lumen) and waits until it is ready.
func startChild(t *testing.T, cfg Config, stderr io.Writer) *exec.Cmd {
	t.Helper()
	args := fmt.Sprintf("serve --data-dir %s --http-addr %s --otlp-grpc-addr %s --otlp-http-addr %s --log-level info --retention %s",
		cfg.DataDir, cfg.HTTPAddr, cfg.OTLP.GRPCAddr, cfg.OTLP.HTTPAddr, cfg.Retention)
	return startLumenChild(t, args, cfg.HTTPAddr, stderr)
}

// startLumenChild runs `lumen <args>` in a child process and waits until
// http://<httpAddr>/-/ready answers 200.
func startLumenChild(t *testing.T, args, httpAddr string, stderr io.Writer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+args)
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	// A race-built child on a busy 2-core machine can take a while to
	// open its store.
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 20*time.Millisecond, "lumen %s did not become ready", args)
	return cmd
}

func TestAcknowledgedDataSurvivesSIGKILL(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cmd := startChild(t, cfg, io.Discard)

	// Batches acknowledged over both transports, then SIGKILL at once.
	g := otlptest.New(42)
	conn, err := grpc.NewClient(cfg.OTLP.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	var ids []pcommon.TraceID
	for range 5 {
		td := g.Traces(50, 4)
		ids = append(ids, otlptest.TraceIDs(td)...)
		_, err := client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td))
		require.NoError(t, err)
	}
	code, body := post(t, "http://"+cfg.OTLP.HTTPAddr+"/v1/logs", "application/json", []byte(jsonLogs))
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	s := startServer(t, cfg)
	for _, id := range ids {
		got := getTrace(t, s, id.String())
		require.Equal(t, 4, got.SpanCount)
	}
	require.Equal(t, 2, getTrace(t, s, "5b8efff798038103d269b633813fc60c").LogCount)
}

func TestSIGTERMShutsDownCleanly(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	var logs bytes.Buffer
	cmd := startChild(t, cfg, &logs)
	code, body := post(t, "http://"+cfg.OTLP.HTTPAddr+"/v1/traces", "application/json", []byte(jsonTrace))
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "exit status 0 after SIGTERM")
	out := logs.String()
	require.Contains(t, out, "shutting down")
	require.Contains(t, out, "store closed")
	// A clean close flushes every memtable: no write-ahead files are left.
	mems, err := filepath.Glob(filepath.Join(cfg.DataDir, "partitions", "*", "*.mem"))
	require.NoError(t, err)
	require.Empty(t, mems)
	s := startServer(t, cfg)
	require.Equal(t, 2, getTrace(t, s, "5b8efff798038103d269b633813fc60c").SpanCount)
}

func TestBadInputIsRefusedClearlyAndTheServerKeepsServing(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.OTLP.MaxRequestBytes = 64 << 10
	s := startServer(t, cfg)
	otlpHTTP := "http://" + cfg.OTLP.HTTPAddr

	valid := otlptest.New(7).Traces(3, 2)
	pb, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(valid)
	require.NoError(t, err)
	big := otlptest.New(8).Traces(400, 5)
	bigJSON, err := (&ptrace.JSONMarshaler{}).MarshalTraces(big)
	require.NoError(t, err)
	require.Greater(t, len(bigJSON), 64<<10)

	for _, tc := range []struct {
		name, path, contentType string
		body                    []byte
		header                  []string
		wantCode                int
		wantBody                string
	}{
		{"truncated protobuf", "/v1/traces", "application/x-protobuf", pb[:len(pb)/2], nil, http.StatusBadRequest, "unexpected EOF"},
		{"garbage protobuf", "/v1/logs", "application/x-protobuf", []byte{0xff, 0xff, 0xff}, nil, http.StatusBadRequest, ""},
		{"invalid JSON", "/v1/traces", "application/json", []byte(`{"resourceSpans":[`), nil, http.StatusBadRequest, "resourceSpans"},
		{"wrong content type", "/v1/traces", "text/plain", []byte("hello"), nil, http.StatusUnsupportedMediaType, "unsupported media type"},
		{"oversize body", "/v1/traces", "application/json", bigJSON, nil, http.StatusBadRequest, "too large"},
		{"bad gzip", "/v1/traces", "application/json", []byte("not gzip"), []string{"Content-Encoding", "gzip"}, http.StatusBadRequest, ""},
		{"zero trace id", "/v1/traces", "application/json", []byte(strings.ReplaceAll(jsonTrace, "5B8EFFF798038103D269B633813FC60C", "00000000000000000000000000000000")), nil, http.StatusBadRequest, "all-zero trace_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, otlpHTTP+tc.path, tc.contentType, tc.body, tc.header...)
			require.Equal(t, tc.wantCode, code, body)
			require.Contains(t, body, tc.wantBody)
		})
	}

	t.Run("gRPC span without trace id", func(t *testing.T) {
		conn, err := grpc.NewClient(cfg.OTLP.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer conn.Close()
		td := otlptest.New(9).Traces(1, 2)
		td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).SetTraceID(pcommon.TraceID{})
		_, err = ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td))
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), "all-zero trace_id")
	})

	for _, tc := range []struct{ name, id, want string }{
		{"short id", "abc", "want 32 hex characters, got 3"},
		{"non-hex id", strings.Repeat("z", 32), "not hexadecimal"},
		{"zero id", strings.Repeat("0", 32), "all zeros"},
	} {
		t.Run("trace API "+tc.name, func(t *testing.T) {
			resp, err := http.Get(s.api("/api/v1/traces/" + tc.id))
			require.NoError(t, err)
			defer resp.Body.Close()
			var e struct{ Status, ErrorType, Error string }
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
			require.Equal(t, http.StatusBadRequest, resp.StatusCode)
			require.Equal(t, "error", e.Status)
			require.Equal(t, "bad_data", e.ErrorType)
			require.Contains(t, e.Error, tc.want)
		})
	}
	t.Run("trace API unknown id", func(t *testing.T) {
		resp, err := http.Get(s.api("/api/v1/traces/" + strings.Repeat("ab", 16)))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		require.JSONEq(t, `{"status":"error","errorType":"not_found","error":"trace abababababababababababababababab: not found"}`, string(b))
	})
	t.Run("trace API unknown include", func(t *testing.T) {
		resp, err := http.Get(s.api("/api/v1/traces/" + strings.Repeat("ab", 16) + "?include=spans"))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.Contains(t, string(b), `unknown part \"spans\"`)
	})

	// After all that, valid data still goes in and comes out.
	code, body := post(t, otlpHTTP+"/v1/traces", "application/x-protobuf", pb)
	require.Equal(t, http.StatusOK, code, body)
	for _, id := range otlptest.TraceIDs(valid) {
		require.Equal(t, 2, getTrace(t, s, id.String()).SpanCount)
	}
	// Nothing of the refused requests was stored.
	resp, err := http.Get(s.api("/api/v1/traces/" + otlptest.TraceIDs(big)[0].String()))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestOperationalEndpoints(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Pprof = true
	s := startServer(t, cfg)
	code, body := post(t, "http://"+cfg.OTLP.HTTPAddr+"/v1/traces", "application/json", []byte(jsonTrace))
	require.Equal(t, http.StatusOK, code, body)
	code, body = post(t, "http://"+cfg.OTLP.HTTPAddr+"/v1/traces", "application/json", []byte(strings.ReplaceAll(jsonTrace, "5B8EFFF798038103D269B633813FC60C", strings.Repeat("0", 32))))
	require.Equal(t, http.StatusBadRequest, code, body)
	getTrace(t, s, "5b8efff798038103d269b633813fc60c")

	get := func(path string) (int, string) {
		resp, err := http.Get(s.api(path))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body = get("/-/healthy")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "Healthy")
	code, body = get("/-/ready")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "Ready")
	code, body = get("/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		`lumen_ingest_items_received_total{signal="traces"} 4`,
		`lumen_ingest_items_stored_total{signal="traces"} 2`,
		`lumen_ingest_items_rejected_total{reason="invalid",signal="traces"} 2`,
		`lumen_http_request_duration_seconds_count{code="200",handler="/api/v1/traces/{trace_id}"} 1`,
		`lumen_store_partitions 1`,
		`lumen_store_disk_bytes `,
		`lumen_store_disk_full 0`,
		`lumen_store_min_free_disk_bytes `,
		`lumen_store_free_disk_bytes `,
		`lumen_store_writes_refused_disk_full_total 0`,
		`lumen_head_series `,
		`lumen_head_streams 0`,
		`lumen_head_series_removed_total 0`,
		`lumen_spanmetrics_keys 2`,
		`lumen_spanmetrics_overflow_spans_total 0`,
		`go_goroutines `,
	} {
		require.Contains(t, body, want)
	}
	code, _ = get("/debug/pprof/")
	require.Equal(t, http.StatusOK, code)
	code, body = get("/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "Lumen")
}

func TestConfigSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lumen.yaml")
	require.NoError(t, os.WriteFile(file, []byte("data_dir: /from/yaml\nhttp_addr: 127.0.0.1:1111\nretention: 3d\nmax_disk_bytes: 2GiB\notlp:\n  grpc_addr: 127.0.0.1:2222\nlog:\n  format: json\n"), 0o600))
	env := map[string]string{"LUMEN_CONFIG": file, "LUMEN_HTTP_ADDR": "127.0.0.1:3333", "LUMEN_RETENTION": "36h"}
	cfg, err := loadConfig([]string{"--retention", "48h", "--otlp-http-addr", "", "--pprof"}, func(k string) string { return env[k] }, "serve")
	require.NoError(t, err)
	require.Equal(t, "/from/yaml", cfg.DataDir, "yaml over default")
	require.Equal(t, "127.0.0.1:3333", cfg.HTTPAddr, "env over yaml")
	require.Equal(t, 48*time.Hour, time.Duration(cfg.Retention), "flag over env")
	require.Equal(t, ByteSize(2<<30), cfg.MaxDiskBytes)
	require.Equal(t, "127.0.0.1:2222", cfg.OTLP.GRPCAddr)
	require.Empty(t, cfg.OTLP.HTTPAddr, "a flag can disable OTLP HTTP")
	require.Equal(t, "json", cfg.Log.Format)
	require.Equal(t, "info", cfg.Log.Level, "default kept")
	require.True(t, cfg.Pprof, "a bare --pprof turns it on")

	none := func(string) string { return "" }
	def, err := loadConfig(nil, none, "serve")
	require.NoError(t, err)
	require.Equal(t, DefaultConfig(), def)
	require.Equal(t, "./data", def.DataDir)

	for _, tc := range []struct {
		name string
		args []string
		yaml string
		want string
	}{
		{"unknown flag", []string{"--nope"}, "", "flag provided but not defined: -nope"},
		{"bad retention", []string{"--retention", "soon"}, "", `--retention="soon": duration "soon"`},
		{"bad size", []string{"--max-disk-bytes", "lots"}, "", `size "lots"`},
		{"bad boolean", []string{"--pprof=maybe"}, "", `--pprof="maybe"`},
		{"no OTLP at all", []string{"--otlp-grpc-addr", "", "--otlp-http-addr", ""}, "", "both the gRPC and the HTTP address are empty"},
		{"unknown yaml key", nil, "data_dirr: x\n", "field data_dirr not found"},
		{"stray argument", []string{"extra"}, "", `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := none
			if tc.yaml != "" {
				f := filepath.Join(t.TempDir(), "c.yaml")
				require.NoError(t, os.WriteFile(f, []byte(tc.yaml), 0o600))
				env = func(k string) string {
					if k == "LUMEN_CONFIG" {
						return f
					}
					return ""
				}
			}
			_, err := loadConfig(tc.args, env, "serve")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestCommands(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"version"}, &out, io.Discard))
	require.Contains(t, out.String(), "lumen dev")
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"check-config", "--data-dir", "/tmp/x"}, &out, io.Discard))
	require.Contains(t, out.String(), "configuration is valid: data dir /tmp/x")
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"serve", "-h"}, &out, io.Discard))
	require.Contains(t, out.String(), "-otlp-grpc-addr")
	require.ErrorContains(t, run(context.Background(), []string{"frobnicate"}, &out, io.Discard), `unknown command "frobnicate"`)
}
