package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/lumenobs/lumen/internal/jaegertest"
)

// remoteTracesConfig is a test server's configuration with its spans in a
// remote Jaeger (which the test starts when it wants).
func remoteTracesConfig(t *testing.T, j *jaegertest.Jaeger) Config {
	cfg := testConfig(t, t.TempDir())
	cfg.Storage.Traces.Backend = backendRemote
	cfg.Storage.Traces.Remote.OTLPURL = j.OTLP
	cfg.Storage.Traces.Remote.QueryURL = j.Query
	cfg.Storage.Traces.Remote.QueryTimeout = Duration(5 * time.Second)
	return cfg
}

// comparableSpans is a trace's spans as lines of what both modes keep:
// ids, name, kind, times, status, attributes, events, links, and the
// resource's and scope's names.
func comparableSpans(td ptrace.Traces) []string {
	var out []string
	attrs := func(m pcommon.Map) string {
		var kv []string
		for k, v := range m.All() {
			kv = append(kv, k+"="+v.AsString())
		}
		slices.Sort(kv)
		return strings.Join(kv, ",")
	}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				var events []string
				for _, e := range sp.Events().All() {
					events = append(events, fmt.Sprintf("%s@%d{%s}", e.Name(), e.Timestamp(), attrs(e.Attributes())))
				}
				var links []string
				for _, l := range sp.Links().All() {
					links = append(links, l.TraceID().String()+"/"+l.SpanID().String())
				}
				out = append(out, fmt.Sprintf("%s %s parent=%s %q kind=%s %d-%d status=%s:%q attrs={%s} events=%v links=%v resource={%s} scope=%s",
					sp.TraceID(), sp.SpanID(), sp.ParentSpanID(), sp.Name(), sp.Kind(), sp.StartTimestamp(), sp.EndTimestamp(),
					sp.Status().Code(), sp.Status().Message(), attrs(sp.Attributes()), events, links, attrs(rs.Resource().Attributes()), ss.Scope().Name()))
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestTracesInRemoteBackend: with storage.traces.backend remote (metrics
// and lines local), spans Lumen acknowledged while the backend — a real
// Jaeger v2 — was not running, across a restart of Lumen, are in it once
// it runs; the correlated answer then holds the spans a local Lumen fed
// the same data answers, with the lines and span metrics kept locally;
// Lumen's Jaeger API answers as Jaeger does; while Jaeger is down the
// correlated answer gives the lines and says the spans were left out, the
// Jaeger API is a 503 naming the backend; the tag catalogs list the
// backend's services and span names as the local Lumen lists them.
func TestTracesInRemoteBackend(t *testing.T) {
	jaeger := jaegertest.New(t, freeAddr(t))
	cfg := remoteTracesConfig(t, jaeger)
	local := startServer(t, testConfig(t, t.TempDir()))
	remote := startServer(t, cfg)
	id := sendTraceAndLog(t, []*server{local, remote}, "payments")

	requireSpansLeftOut(t, remote, id, jaeger.Query)
	code, body := fetch(t, remote.api("/jaeger/api/services"))
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "traces backend "+jaeger.Query)
	code, body = fetch(t, remote.api("/api/search?tags=service.name%3Dpayments"))
	require.Equal(t, http.StatusServiceUnavailable, code, "a search is the backend's: %s", body)
	require.Contains(t, body, "traces backend "+jaeger.Query)
	code, body = fetch(t, remote.api("/api/search/tag/service.name/values"))
	require.Equal(t, http.StatusServiceUnavailable, code, "the services are the backend's: %s", body)
	require.Contains(t, body, "traces backend "+jaeger.Query)

	remote.stop()
	remote = startServer(t, cfg) // what the first acknowledged is still queued
	jaeger.Start()

	awaitSameTrace(t, local, remote, id, 2)

	start := strconv.FormatInt(time.Now().Add(-time.Hour).UnixMicro(), 10)
	for _, q := range []string{
		"/api/services",
		"/api/services/payments/operations",
		"/api/traces/" + id,
		"/api/traces?" + url.Values{"service": {"payments"}, "start": {start}, "limit": {"20"}}.Encode(),
		"/api/traces/00000000000000000000000000000abc",
	} {
		require.Equal(t, jaegerAnswer(t, jaeger.Query+q), jaegerAnswer(t, remote.api("/jaeger"+q)), q)
	}
	// Tempo's trace by id reads the spans through the store, from Jaeger.
	code, body = fetch(t, remote.api("/api/traces/"+id))
	require.Equal(t, http.StatusOK, code, body)

	// Searches: the backend finds the candidates, Lumen checks and
	// summarizes them as it does its own: the same traces and matched
	// spans as the local Lumen's.
	now := time.Now()
	window := "&start=" + strconv.FormatInt(now.Add(-time.Hour).UnixNano(), 10) + "&end=" + strconv.FormatInt(now.Add(time.Minute).UnixNano(), 10)
	requireSameSearches(t, local, remote, id, "/api/v1/search?service=payments"+window,
		"/api/v1/search?service=payments&name=charge"+window,
		"/api/v1/search?service=payments&root=true"+window,
		"/api/v1/search?service=payments&minDuration=1h"+window,
		"/api/search?"+url.Values{"q": {`{ resource.service.name = "payments" && kind = client }`}}.Encode()+
			"&start="+strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)+"&end="+strconv.FormatInt(now.Add(time.Minute).Unix(), 10))
	// The tag catalogs: what the backend's API lists — its services and
	// their span names — as the local Lumen lists them; attributes, which
	// no backend API lists, are not.
	for _, q := range []string{
		"/api/search/tag/service.name/values",
		"/api/v2/search/tag/resource.service.name/values",
		"/api/v2/search/tag/name/values",
		"/api/v2/search/tag/name/values?" + url.Values{"q": {`{ resource.service.name = "payments" }`}}.Encode(),
		"/api/v2/search/tag/status/values",
	} {
		require.Equal(t, httpGet(t, local.api(q)), httpGet(t, remote.api(q)), q)
	}
	code, body = fetch(t, remote.api("/api/v2/search/tags?scope=resource"))
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"service.name"`)
	code, body = fetch(t, remote.api("/api/v1/search?name=charge"))
	require.Equal(t, http.StatusBadRequest, code, "a remote search needs a service: %s", body)
	require.Contains(t, body, "needs a service")
}

// requireSpansLeftOut: with the traces backend at url down, the
// correlated answer of trace id holds its line, kept locally, and says
// the spans were left out, naming the backend.
func requireSpansLeftOut(t *testing.T, remote *server, id, url string) {
	t.Helper()
	down := getTrace(t, remote, id)
	require.Zero(t, down.SpanCount)
	require.Equal(t, 1, down.LogCount, "the lines are kept locally")
	require.NotEmpty(t, down.Warnings)
	require.Contains(t, down.Warnings[0], "spans left out")
	require.Contains(t, down.Warnings[0], "traces backend "+url)
}

// awaitSameTrace waits until remote answers trace id with spans spans,
// then requires its correlated answer to be local's — spans, services,
// lines, times — without a warning.
func awaitSameTrace(t *testing.T, local, remote *server, id string, spans int) {
	t.Helper()
	want := getTrace(t, local, id)
	require.Equal(t, spans, want.SpanCount)
	var got traceResponse
	require.Eventually(t, func() bool {
		got = getTrace(t, remote, id)
		return got.SpanCount == want.SpanCount
	}, time.Minute, 200*time.Millisecond, "the trace's spans in the backend")
	require.Empty(t, got.Warnings)
	require.Equal(t, comparableSpans(want.Spans), comparableSpans(got.Spans))
	require.Equal(t, want.Services, got.Services)
	require.Equal(t, comparableLogs(want.Logs), comparableLogs(got.Logs))
	require.Equal(t, want.StartTime, got.StartTime)
	require.Equal(t, want.EndTime, got.EndTime)
}

// requireSameSearches: each search finds on remote the traces and
// matched spans it finds on local, trace id among them unless the search
// is for an hour-long span.
func requireSameSearches(t *testing.T, local, remote *server, id string, queries ...string) {
	t.Helper()
	for _, q := range queries {
		want, got := searchTraces(t, local.api(q)), searchTraces(t, remote.api(q))
		require.Equal(t, want, got, q)
		if !strings.Contains(q, "minDuration") {
			require.Contains(t, got, id, q)
		}
	}
}

// searchTraces is the traces part of a search's answer (Lumen's or
// Tempo's), as JSON: what was inspected to find them is left out.
func searchTraces(t *testing.T, u string) string {
	t.Helper()
	code, body := fetch(t, u)
	require.Equal(t, http.StatusOK, code, "%s: %s", u, body)
	var a struct {
		Traces json.RawMessage `json:"traces"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &a), body)
	return string(a.Traces)
}

// TestRemoteTracesSurviveSIGKILL: spans Lumen acknowledged while its
// traces backend was down, the process then killed with SIGKILL, are in
// the backend — a real Jaeger v2 — once Lumen runs again and Jaeger is up.
func TestRemoteTracesSurviveSIGKILL(t *testing.T) {
	jaeger := jaegertest.New(t, freeAddr(t))
	cfg := remoteTracesConfig(t, jaeger)
	args := fmt.Sprintf("serve --data-dir %s --http-addr %s --otlp-grpc-addr %s --otlp-http-addr %s --log-level warn --retention 0 "+
		"--traces-backend remote --traces-remote-otlp-url %s --traces-remote-query-url %s",
		cfg.DataDir, cfg.HTTPAddr, cfg.OTLP.GRPCAddr, cfg.OTLP.HTTPAddr, cfg.Storage.Traces.Remote.OTLPURL, cfg.Storage.Traces.Remote.QueryURL)
	child := startLumenChild(t, args, cfg.HTTPAddr, io.Discard)
	s := &server{cfg: cfg}
	var ids []string
	for i := range 20 {
		ids = append(ids, sendTrace(t, s, "kill", "op-"+strconv.Itoa(i)))
	}
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_, _ = child.Process.Wait()

	jaeger.Start()
	s = startServer(t, cfg)
	for _, id := range ids {
		require.Eventually(t, func() bool {
			code, _ := fetch(t, jaeger.Query+"/api/traces/"+id)
			return code == http.StatusOK
		}, time.Minute, 100*time.Millisecond, "acknowledged trace %s in jaeger", id)
		require.Equal(t, 1, getTrace(t, s, id).SpanCount)
	}
}

// jaegerAnswer is u's status and body with what Jaeger answers in no set
// order sorted: the data list (operations, traces) and each trace's spans.
func jaegerAnswer(t *testing.T, u string) string {
	t.Helper()
	code, body := fetch(t, u)
	var a map[string]any
	if json.Unmarshal([]byte(body), &a) != nil {
		return strconv.Itoa(code) + " " + strings.TrimSpace(body)
	}
	if data, ok := a["data"].([]any); ok {
		for _, d := range data {
			if tr, ok := d.(map[string]any); ok {
				if spans, ok := tr["spans"].([]any); ok {
					sortByJSON(spans)
				}
			}
		}
		sortByJSON(data)
	}
	b, err := json.Marshal(a)
	require.NoError(t, err)
	return strconv.Itoa(code) + " " + string(b)
}

// sortByJSON orders a decoded JSON list by its elements' encodings: an
// order for lists whose order an answer does not promise.
func sortByJSON(list []any) {
	slices.SortFunc(list, func(x, y any) int {
		bx, _ := json.Marshal(x)
		by, _ := json.Marshal(y)
		return strings.Compare(string(bx), string(by))
	})
}

// TestRemoteTracesFullQueueThenSIGKILL: with Jaeger down and a queue of
// 1 MiB, requests are taken until the queue is full, then refused with a
// 429 and a retry hint; the real binary killed right after, every trace it
// acknowledged is in Jaeger once both run again, and none it refused.
func TestRemoteTracesFullQueueThenSIGKILL(t *testing.T) {
	jaeger := jaegertest.New(t, freeAddr(t))
	cfg := remoteTracesConfig(t, jaeger)
	cfg.Storage.Traces.Remote.Queue.MaxBytes = 1 << 20
	conf := filepath.Join(t.TempDir(), "lumen.yaml")
	require.NoError(t, os.WriteFile(conf, []byte("storage:\n  traces:\n    remote:\n      queue:\n        max_bytes: 1MiB\n"), 0o600))
	args := fmt.Sprintf("serve --config %s --data-dir %s --http-addr %s --otlp-grpc-addr %s --otlp-http-addr %s --log-level warn --retention 0 "+
		"--traces-backend remote --traces-remote-otlp-url %s --traces-remote-query-url %s",
		conf, cfg.DataDir, cfg.HTTPAddr, cfg.OTLP.GRPCAddr, cfg.OTLP.HTTPAddr, cfg.Storage.Traces.Remote.OTLPURL, cfg.Storage.Traces.Remote.QueryURL)
	child := startLumenChild(t, args, cfg.HTTPAddr, io.Discard)
	var taken, refused []string
	for i := 0; i < 200 && len(refused) < 3; i++ {
		id, body := traceRequest("filler", i, 500, 200)
		req, err := http.NewRequest(http.MethodPost, "http://"+cfg.OTLP.HTTPAddr+"/v1/traces", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			taken = append(taken, id)
		case http.StatusTooManyRequests:
			require.NotEmpty(t, resp.Header.Get("Retry-After"), "a refusal says when to retry")
			refused = append(refused, id)
		default:
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	require.NotEmpty(t, taken)
	require.Len(t, refused, 3, "the queue filled")
	t.Logf("%d requests taken, then refused", len(taken))
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_, _ = child.Process.Wait()

	jaeger.Start()
	s := startServer(t, cfg)
	for _, id := range taken {
		require.Eventually(t, func() bool {
			got, found := findTrace(t, s, id)
			return found && got.SpanCount == 500
		}, time.Minute, 100*time.Millisecond, "acknowledged trace %s whole in jaeger", id)
	}
	for _, id := range refused {
		code, _ := fetch(t, jaeger.Query+"/api/traces/"+id)
		require.Equal(t, http.StatusNotFound, code, "refused trace %s is not in jaeger", id)
	}
}

// traceRequest is an OTLP request of one trace of n spans of service
// svc, the i-th (its id made of svc and i), each span with an attribute of
// payload bytes: its id and its protobuf.
func traceRequest(svc string, i, n, payload int) (string, []byte) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", svc)
	ss := rs.ScopeSpans().AppendEmpty()
	var id pcommon.TraceID // svc's first 8 bytes, then i
	copy(id[:8], svc)
	binary.BigEndian.PutUint64(id[8:], uint64(i))
	now := time.Now()
	for j := range n {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(id)
		sp.SetSpanID(pcommon.SpanID{byte(j), byte(j >> 8), 7})
		sp.SetName("step " + strconv.Itoa(j))
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
		if payload > 0 {
			sp.Attributes().PutStr("payload", strings.Repeat("x", payload))
		}
	}
	body, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	return id.String(), body
}
