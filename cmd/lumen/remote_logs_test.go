package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/lumenobs/lumen/internal/lokitest"
	"github.com/lumenobs/lumen/query"
)

// remoteLogsConfig is a test server's configuration with its lines in a
// remote Loki (which the test starts when it wants).
func remoteLogsConfig(t *testing.T, loki *lokitest.Loki) Config {
	cfg := testConfig(t, t.TempDir())
	cfg.Storage.Logs.Backend = backendRemote
	cfg.Storage.Logs.Remote.PushURL = loki.URL + "/loki/api/v1/push"
	cfg.Storage.Logs.Remote.QueryURL = loki.URL
	cfg.Storage.Logs.Remote.QueryTimeout = Duration(5 * time.Second)
	return cfg
}

// sendTraceAndLog sends, with the OTel SDK's OTLP/HTTP exporters, the same
// trace (a server span and its client child) and a log record emitted in
// the child to every server, and returns the trace's id.
func sendTraceAndLog(t *testing.T, servers []*server, service string) string {
	t.Helper()
	ctx := context.Background()
	res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("k8s.pod.name", service+"-0"))
	var (
		topts []sdktrace.TracerProviderOption
		lopts []sdklog.LoggerProviderOption
	)
	for _, s := range servers {
		te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.cfg.OTLP.HTTPAddr), otlptracehttp.WithInsecure())
		require.NoError(t, err)
		le, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(s.cfg.OTLP.HTTPAddr), otlploghttp.WithInsecure())
		require.NoError(t, err)
		topts = append(topts, sdktrace.WithSyncer(te))
		lopts = append(lopts, sdklog.WithProcessor(sdklog.NewSimpleProcessor(le)))
	}
	tp := sdktrace.NewTracerProvider(append(topts, sdktrace.WithResource(res))...)
	lp := sdklog.NewLoggerProvider(append(lopts, sdklog.WithResource(res))...)
	tracer := tp.Tracer("shop")
	rootCtx, root := tracer.Start(ctx, "POST /pay", trace.WithSpanKind(trace.SpanKindServer))
	childCtx, child := tracer.Start(rootCtx, "charge", trace.WithSpanKind(trace.SpanKindClient))
	var rec otellog.Record
	rec.SetTimestamp(time.Now())
	rec.SetSeverity(otellog.SeverityError)
	rec.SetSeverityText("ERROR")
	rec.SetBody(attribute.StringValue("charge failed for order 77"))
	rec.AddAttributes(attribute.String("order.id", "77"))
	lp.Logger("shop").Emit(childCtx, rec)
	child.End()
	root.End()
	require.NoError(t, tp.Shutdown(ctx))
	require.NoError(t, lp.Shutdown(ctx))
	return root.SpanContext().TraceID().String()
}

// comparableLogs is a trace's lines as both modes answer them: in Loki a
// line's ids are structured metadata (how its lines are found there), so
// trace_id and span_id are left out of the metadata compared.
func comparableLogs(logs []query.TraceLog) []query.TraceLog {
	out := make([]query.TraceLog, len(logs))
	for i, l := range logs {
		md := map[string]string{}
		for k, v := range l.StructuredMetadata {
			if k != "trace_id" && k != "span_id" {
				md[k] = v
			}
		}
		l.StructuredMetadata = md
		out[i] = l
	}
	return out
}

// TestLogsInRemoteBackend: with storage.logs.backend remote (metrics and
// traces local), lines Lumen acknowledged while Loki — a real one — was
// not running, across a restart of Lumen, are in Loki once it runs; the
// correlated answer then holds the same lines a local Lumen fed the same
// data answers (OTLP records, and Loki pushes with the id in metadata,
// JSON, logfmt or a traceparent); Lumen's Loki API answers as Loki does;
// while Loki is down the correlated answer gives the spans and says the
// logs backend could not be read, and the Loki API is a 503 naming it.
func TestLogsInRemoteBackend(t *testing.T) {
	loki := lokitest.New(t, freeAddr(t))
	cfg := remoteLogsConfig(t, loki)
	local := startServer(t, testConfig(t, t.TempDir()))
	remote := startServer(t, cfg)
	now := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	pushLokiFixture(t, local, now)
	pushLokiFixture(t, remote, now)
	id := sendTraceAndLog(t, []*server{local, remote}, "payments")

	down := getTrace(t, remote, id)
	require.Equal(t, 2, down.SpanCount)
	require.Zero(t, down.LogCount)
	require.Len(t, down.Warnings, 1, "%v", down.Warnings)
	require.Contains(t, down.Warnings[0], "log lines left out")
	require.Contains(t, down.Warnings[0], "logs backend "+loki.URL)
	code, body := fetch(t, remote.api("/loki/api/v1/labels"))
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "logs backend "+loki.URL)
	code, body = fetch(t, remote.api("/api/v1/traces/"+lokiTrace))
	require.Equal(t, http.StatusServiceUnavailable, code, "a trace known only from its lines: %s", body)
	require.Contains(t, body, "logs backend "+loki.URL)

	remote.stop()
	remote = startServer(t, cfg) // what the first acknowledged is still queued
	require.DirExists(t, filepath.Join(cfg.DataDir, "queue", "logs"))
	loki.Start()

	for _, tid := range []string{id, lokiTrace} {
		want := getTrace(t, local, tid)
		require.NotZero(t, want.LogCount)
		var got traceResponse
		require.Eventually(t, func() bool {
			got = getTrace(t, remote, tid)
			return got.LogCount == want.LogCount
		}, time.Minute, 200*time.Millisecond, "trace %s's lines in loki", tid)
		require.Empty(t, got.Warnings)
		require.Equal(t, comparableLogs(want.Logs), comparableLogs(got.Logs), "trace %s", tid)
		require.Equal(t, want.SpanCount, got.SpanCount)
		require.Equal(t, want.Services, got.Services)
	}

	start := strconv.FormatInt(now.Add(-time.Hour).UnixNano(), 10)
	for _, q := range []string{
		"/loki/api/v1/query_range?" + url.Values{"query": {`{app="cart"} |= "card"`}, "start": {start}}.Encode(),
		"/loki/api/v1/query?" + url.Values{"query": {`sum by (app) (count_over_time({env="prod"}[1h]))`}, "time": {strconv.FormatInt(now.Add(time.Minute).UnixNano(), 10)}}.Encode(),
		"/loki/api/v1/labels?start=" + start,
		"/loki/api/v1/label/app/values?start=" + start,
		"/loki/api/v1/series?" + url.Values{"match[]": {`{env="prod"}`}, "start": {start}}.Encode(),
		"/loki/api/v1/index/stats?" + url.Values{"query": {`{env="prod"}`}, "start": {start}}.Encode(),
		"/loki/api/v1/query_range?" + url.Values{"query": {`{app="cart"`}}.Encode(),
	} {
		require.Equal(t, lokiAnswer(t, loki.URL+q), lokiAnswer(t, remote.api(q)), q)
	}

	// The live tail: Loki's, behind Lumen's handshake checks.
	tail := "ws://" + cfg.HTTPAddr + "/loki/api/v1/tail?" + url.Values{"query": {`{app="tailed"}`}}.Encode()
	_, resp, err := websocket.DefaultDialer.Dial(tail, http.Header{"Origin": {"https://evil.example"}})
	require.Error(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a foreign page's handshake")
	_, resp, err = websocket.DefaultDialer.Dial("ws://"+cfg.HTTPAddr+"/loki/api/v1/tail?query="+url.QueryEscape(`{app=`), nil)
	require.Error(t, err)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "a query that does not parse")
	conn, _, err := websocket.DefaultDialer.Dial(tail, nil)
	require.NoError(t, err)
	defer conn.Close()
	var msg struct {
		Streams []struct {
			Stream map[string]string `json:"stream"`
			Values [][]string        `json:"values"`
		} `json:"streams"`
	}
	// Lines are pushed until one is tailed: Loki's tail may start after the
	// first reaches it.
	pushed := promtailBody(t, push.Stream{Labels: `{app="tailed"}`, Entries: []push.Entry{{Timestamp: time.Now(), Line: "followed"}}})
	done, exited := make(chan struct{}), make(chan struct{})
	defer func() { close(done); <-exited }()
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			case <-time.After(300 * time.Millisecond):
			}
			if resp, err := http.Post(remote.api("/loki/api/v1/push"), "application/x-protobuf", bytes.NewReader(pushed)); err == nil {
				_ = resp.Body.Close()
			}
		}
	}()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	require.NoError(t, conn.ReadJSON(&msg))
	var lines []string
	for _, st := range msg.Streams {
		require.Equal(t, "tailed", st.Stream["app"])
		for _, v := range st.Values {
			lines = append(lines, v[1])
		}
	}
	require.Contains(t, lines, "followed", "a line pushed to Lumen, tailed from Loki")
}

// lokiAnswer is u's status and body, comparable with another answer.
func lokiAnswer(t *testing.T, u string) string {
	t.Helper()
	code, body := fetch(t, u)
	return strconv.Itoa(code) + " " + lokitest.Comparable(body)
}

// TestRemoteLogsSurviveSIGKILL: Loki pushes Lumen acknowledged while its
// logs backend was down, the process then killed with SIGKILL, are in the
// backend — a real Loki — once Lumen runs again and Loki is up; every
// line, none twice.
func TestRemoteLogsSurviveSIGKILL(t *testing.T) {
	loki := lokitest.New(t, freeAddr(t))
	cfg := remoteLogsConfig(t, loki)
	args := fmt.Sprintf("serve --data-dir %s --http-addr %s --otlp-grpc-addr %s --otlp-http-addr %s --log-level warn --retention 0 "+
		"--logs-backend remote --logs-remote-push-url %s --logs-remote-query-url %s",
		cfg.DataDir, cfg.HTTPAddr, cfg.OTLP.GRPCAddr, cfg.OTLP.HTTPAddr, cfg.Storage.Logs.Remote.PushURL, cfg.Storage.Logs.Remote.QueryURL)
	child := startLumenChild(t, args, cfg.HTTPAddr, io.Discard)
	s := &server{cfg: cfg}
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	const requests, lines = 30, 10
	for i := range requests {
		st := push.Stream{Labels: fmt.Sprintf(`{app="kill", request="%d"}`, i)}
		for j := range lines {
			st.Entries = append(st.Entries, push.Entry{Timestamp: start.Add(time.Duration(j) * time.Second), Line: fmt.Sprintf("request %d line %d", i, j)})
		}
		code, body := lokiPush(t, s, "application/x-protobuf", promtailBody(t, st))
		require.Equal(t, http.StatusNoContent, code, body)
	}
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_, _ = child.Process.Wait()

	loki.Start()
	s = startServer(t, cfg)
	at := strconv.FormatInt(start.Add(time.Minute).UnixNano(), 10)
	var got string
	require.Eventually(t, func() bool {
		code, body := fetch(t, s.api("/loki/api/v1/query?"+url.Values{"query": {`count_over_time({app="kill"}[5m])`}, "time": {at}}.Encode()))
		got = body
		return code == http.StatusOK && strings.Count(got, `"request"`) == requests
	}, time.Minute, 200*time.Millisecond, "every acknowledged request in loki")
	require.Equal(t, requests, strings.Count(got, `"10"]`), "ten lines of each stream, none twice: %s", got)
}

// TestLogQLRulesOnRemoteLogs: with the lines in Loki, Lumen's LogQL rules
// are evaluated by Loki (as Loki's ruler evaluates remotely), their
// results recorded in Lumen's metrics.
func TestLogQLRulesOnRemoteLogs(t *testing.T) {
	loki := lokitest.New(t, freeAddr(t))
	loki.Start()
	cfg := remoteLogsConfig(t, loki)
	dir := t.TempDir()
	cfg.LogQLRuleFiles = []string{writeFile(t, dir, "shop.yml", shopLogRules)}
	cfg.Rules.EvaluationInterval = time.Second
	s := startServer(t, cfg)
	st := push.Stream{Labels: `{app="shop"}`}
	for i := range 4 {
		st.Entries = append(st.Entries, push.Entry{Timestamp: time.Now().Add(-time.Duration(i) * time.Second), Line: "error: card declined " + strconv.Itoa(i)})
	}
	code, body := lokiPush(t, s, "application/x-protobuf", promtailBody(t, st))
	require.Equal(t, http.StatusNoContent, code, body)
	require.Eventually(t, func() bool {
		code, resp := promGet(t, s, "/api/v1/query", url.Values{"query": {`app:errors:count1m{app="shop"}`}})
		return code == http.StatusOK && strings.Contains(string(resp.Data), `"4"]`)
	}, 30*time.Second, 200*time.Millisecond, "the recording rule's result, counted by loki")
}
