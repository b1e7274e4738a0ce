package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/snappy"
	"github.com/stretchr/testify/require"
)

// promtailBody builds a push body exactly as promtail and Alloy send it:
// push.PushRequest, protobuf, snappy block format.
func promtailBody(t *testing.T, streams ...push.Stream) []byte {
	t.Helper()
	req := push.PushRequest{Streams: streams}
	pb, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, pb)
}

func lokiPush(t *testing.T, s *server, contentType string, body []byte, header ...string) (int, string) {
	t.Helper()
	return post(t, s.api("/loki/api/v1/push"), contentType, body, header...)
}

func lokiGet(t *testing.T, s *server, path string, params url.Values) (int, []byte) {
	t.Helper()
	resp, err := http.Get(s.api(path) + "?" + params.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

const (
	lokiTrace = "0af7651916cd43dd8448eb211c80319c"
	lokiSpan  = "b7ad6b7169203331"
)

// pushLokiFixture pushes, through the HTTP port, lines that carry the trace
// id in each of the places a Loki client can put it.
func pushLokiFixture(t *testing.T, s *server, now time.Time) {
	t.Helper()
	ts := func(i int) time.Time { return now.Add(time.Duration(i) * time.Millisecond) }
	code, body := lokiPush(t, s, "application/x-protobuf", promtailBody(t,
		push.Stream{Labels: `{app="cart", env="prod"}`, Entries: []push.Entry{
			{Timestamp: ts(0), Line: "GET /cart 200"},
			{Timestamp: ts(1), Line: "charging card", StructuredMetadata: push.LabelsAdapter{{Name: "trace_id", Value: lokiTrace}, {Name: "span_id", Value: lokiSpan}, {Name: "user", Value: "u42"}}},
			{Timestamp: ts(2), Line: `{"level":"error","msg":"card declined","traceId":"` + lokiTrace + `"}`},
		}},
		push.Stream{Labels: `{app="checkout", env="prod"}`, Entries: []push.Entry{
			{Timestamp: ts(3), Line: "level=warn msg=retrying traceID=" + lokiTrace + " spanID=" + lokiSpan},
			{Timestamp: ts(4), Line: "POST /checkout traceparent=00-" + lokiTrace + "-" + lokiSpan + "-01"},
		}},
	))
	require.Equal(t, http.StatusNoContent, code, body)

	// The JSON API, gzip-encoded, with structured metadata and a tenant.
	js := fmt.Sprintf(`{"streams":[{"stream":{"app":"cart","env":"dev"},"values":[
		["%d","plain line without ids"],
		["%d","line with metadata",{"trace_id":"%s","pod":"cart-1"}]]}]}`, ts(5).UnixNano(), ts(6).UnixNano(), lokiTrace)
	code, body = lokiPush(t, s, "application/json", gz(t, []byte(js)), "Content-Encoding", "gzip", "X-Scope-OrgID", "team-a")
	require.Equal(t, http.StatusNoContent, code, body)
}

func TestLokiPushEndToEnd(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	s := startServer(t, cfg)
	now := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	pushLokiFixture(t, s, now)

	// The trace's correlated view holds every line that carried its id,
	// wherever it was: structured metadata, JSON, logfmt, traceparent.
	got := getTrace(t, s, lokiTrace)
	require.Equal(t, 5, got.LogCount)
	lines := make([]string, len(got.Logs))
	for i, l := range got.Logs {
		lines[i] = l.Line
	}
	require.Equal(t, []string{
		"charging card",
		`{"level":"error","msg":"card declined","traceId":"` + lokiTrace + `"}`,
		"level=warn msg=retrying traceID=" + lokiTrace + " spanID=" + lokiSpan,
		"POST /checkout traceparent=00-" + lokiTrace + "-" + lokiSpan + "-01",
		"line with metadata",
	}, lines, "in time order")
	require.Equal(t, map[string]string{"app": "cart", "env": "prod"}, got.Logs[0].Stream)
	require.Equal(t, lokiSpan, got.Logs[0].SpanID)
	require.Equal(t, "u42", got.Logs[0].StructuredMetadata["user"])
	require.Empty(t, got.Logs[1].SpanID, "the JSON line names no span")
	require.Equal(t, lokiSpan, got.Logs[2].SpanID)
	require.Equal(t, lokiSpan, got.Logs[3].SpanID)
	require.Equal(t, "cart-1", got.Logs[4].StructuredMetadata["pod"])

	// Labels, label values and series, as Loki answers them.
	window := url.Values{"start": {fmt.Sprint(now.Add(-time.Minute).UnixNano())}, "end": {fmt.Sprint(now.Add(time.Minute).UnixNano())}}
	code, body := lokiGet(t, s, "/loki/api/v1/labels", window)
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"status":"success","data":["app","env"]}`, string(body))
	code, body = lokiGet(t, s, "/loki/api/v1/label/app/values", window)
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"status":"success","data":["cart","checkout"]}`, string(body))
	q := url.Values{"match[]": {`{app="cart"}`}, "start": window["start"], "end": window["end"]}
	code, body = lokiGet(t, s, "/loki/api/v1/series", q)
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"status":"success","data":[{"app":"cart","env":"dev"},{"app":"cart","env":"prod"}]}`, string(body))
	old := url.Values{"start": {fmt.Sprint(now.Add(-3 * time.Hour).Unix())}, "end": {fmt.Sprint(now.Add(-2 * time.Hour).Unix())}}
	code, body = lokiGet(t, s, "/loki/api/v1/labels", old)
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"status":"success","data":[]}`, string(body), "no lines in that hour")
	code, body = lokiGet(t, s, "/loki/api/v1/series", url.Values{"match[]": {`{app=`}})
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, string(body), "match[]")

	// Every line pushed was counted as stored.
	require.InDelta(t, 7, metricValue(t, s, `lumen_ingest_items_stored_total{signal="logs"}`), 0)
}

func TestLokiPushBadInput(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.LokiPush.MaxLineBytes = 1024
	s := startServer(t, cfg)
	now := time.Now()
	good := push.Entry{Timestamp: now, Line: "fine"}
	pb := func(streams ...push.Stream) []byte { return promtailBody(t, streams...) }
	raw, err := (&push.PushRequest{Streams: []push.Stream{{Labels: `{app="x"}`, Entries: []push.Entry{good}}}}).Marshal()
	require.NoError(t, err)

	for _, tc := range []struct {
		name, contentType string
		body              []byte
		header            []string
		code              int
		want              string
	}{
		{"not snappy", "application/x-protobuf", []byte("definitely not snappy"), nil, 400, "not snappy-compressed"},
		{"truncated protobuf", "application/x-protobuf", snappy.Encode(nil, raw[:len(raw)-3]), nil, 400, "not a Loki PushRequest protobuf"},
		{"invalid JSON", "application/json", []byte(`{"streams":[{"stream":`), nil, 400, "not a Loki JSON push"},
		{"timestamp as a number", "application/json", []byte(`{"streams":[{"stream":{"app":"x"},"values":[[1700000000000000000,"line"]]}]}`), nil, 400, "timestamp 1700000000000000000 is not a string"},
		{"timestamp not a number", "application/json", []byte(`{"streams":[{"stream":{"app":"x"},"values":[["yesterday","line"]]}]}`), nil, 400, `timestamp "yesterday" is not unix epoch nanoseconds`},
		{"line not a string", "application/json", []byte(fmt.Sprintf(`{"streams":[{"stream":{"app":"x"},"values":[["%d",{"a":1}]]}]}`, now.UnixNano())), nil, 400, "log line"},
		{"empty stream labels", "application/x-protobuf", pb(push.Stream{Labels: `{}`, Entries: []push.Entry{good}}), nil, 400, "a stream needs at least one label"},
		{"no stream labels at all", "application/x-protobuf", pb(push.Stream{Labels: ``, Entries: []push.Entry{good}}), nil, 400, "stream labels are empty"},
		{"empty JSON stream", "application/json", []byte(fmt.Sprintf(`{"streams":[{"stream":{},"values":[["%d","x"]]}]}`, now.UnixNano())), nil, 400, "at least one label"},
		{"invalid label name", "application/x-protobuf", pb(push.Stream{Labels: `{"app.name"="x"}`, Entries: []push.Entry{good}}), nil, 400, `invalid label name "app.name"`},
		{"labels that do not parse", "application/x-protobuf", pb(push.Stream{Labels: `{app="x"`, Entries: []push.Entry{good}}), nil, 400, "do not parse"},
		{"line over the limit", "application/x-protobuf", pb(push.Stream{Labels: `{app="x"}`, Entries: []push.Entry{{Timestamp: now, Line: strings.Repeat("a", 2000)}}}), nil, 400, "2000 bytes, over the limit of 1024"},
		{"far in the future", "application/x-protobuf", pb(push.Stream{Labels: `{app="x"}`, Entries: []push.Entry{{Timestamp: now.Add(time.Hour), Line: "x"}}}), nil, 400, "ahead of the server's clock"},
		{"bad metadata name", "application/json", []byte(fmt.Sprintf(`{"streams":[{"stream":{"app":"x"},"values":[["%d","x",{"a-b":"c"}]]}]}`, now.UnixNano())), nil, 400, `structured metadata name "a-b"`},
		{"not gzip", "application/json", []byte(`{}`), []string{"Content-Encoding", "gzip"}, 400, "not gzip-compressed"},
		{"unknown encoding", "application/json", []byte(`{}`), []string{"Content-Encoding", "br"}, 415, `content encoding "br"`},
		{"too large", "application/json", []byte(`{"streams":[]}` + strings.Repeat(" ", 17<<20)), nil, 413, "body over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := lokiPush(t, s, tc.contentType, tc.body, tc.header...)
			require.Equal(t, tc.code, code, body)
			require.Contains(t, body, tc.want)
		})
	}

	// A push with one bad stream keeps the good one, as Loki does.
	code, body := lokiPush(t, s, "application/x-protobuf", pb(
		push.Stream{Labels: `{app="kept"}`, Entries: []push.Entry{good}},
		push.Stream{Labels: `{"bad-name"="x"}`, Entries: []push.Entry{good}},
	))
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "1 of 2 lines refused")
	code, raw2 := lokiGet(t, s, "/loki/api/v1/label/app/values", nil)
	require.Equal(t, http.StatusOK, code)
	var got struct{ Data []string }
	require.NoError(t, json.Unmarshal(raw2, &got))
	require.Equal(t, []string{"kept"}, got.Data)

	// And the server keeps serving.
	code, body = lokiPush(t, s, "application/x-protobuf", pb(push.Stream{Labels: `{app="x"}`, Entries: []push.Entry{good}}))
	require.Equal(t, http.StatusNoContent, code, body)
}

func TestLokiPushSurvivesSIGKILL(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cmd := startChild(t, cfg, io.Discard)
	now := time.Now().Add(-time.Minute)
	for i := range 20 {
		var entries []push.Entry
		for j := range 50 {
			line := fmt.Sprintf("request %d.%d done", i, j)
			if j == 0 {
				line += " trace_id=" + lokiTrace
			}
			entries = append(entries, push.Entry{Timestamp: now.Add(time.Duration(i*50+j) * time.Millisecond), Line: line})
		}
		code, body := post(t, "http://"+cfg.HTTPAddr+"/loki/api/v1/push", "application/x-protobuf", promtailBody(t, push.Stream{Labels: `{app="api"}`, Entries: entries}))
		require.Equal(t, http.StatusNoContent, code, body)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	s := startServer(t, cfg)
	require.Equal(t, 20, getTrace(t, s, lokiTrace).LogCount, "every acknowledged line is back")
}
