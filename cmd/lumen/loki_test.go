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

	"github.com/gorilla/websocket"
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
	// service_name and detected_level are added at ingest, as Loki 3 does.
	require.Equal(t, map[string]string{"app": "cart", "env": "prod", "service_name": "cart"}, got.Logs[0].Stream)
	require.Equal(t, "unknown", got.Logs[0].StructuredMetadata["detected_level"])
	require.Equal(t, "error", got.Logs[1].StructuredMetadata["detected_level"], "from the JSON line's level")
	require.Equal(t, "warn", got.Logs[2].StructuredMetadata["detected_level"], "from the logfmt line's level")
	require.Equal(t, lokiSpan, got.Logs[0].SpanID)
	require.Equal(t, "u42", got.Logs[0].StructuredMetadata["user"])
	require.Empty(t, got.Logs[1].SpanID, "the JSON line names no span")
	require.Equal(t, lokiSpan, got.Logs[2].SpanID)
	require.Equal(t, lokiSpan, got.Logs[3].SpanID)
	require.Equal(t, "cart-1", got.Logs[4].StructuredMetadata["pod"])

	// Labels, label values and series, as Loki answers them.
	window := url.Values{"start": {fmt.Sprint(now.Add(-time.Minute).UnixNano())}, "end": {fmt.Sprint(now.Add(time.Minute).UnixNano())}}
	code, body := apiGet(t, s, "/loki/api/v1/labels", window)
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"status":"success","data":["app","env","service_name"]}`, string(body))
	code, body = apiGet(t, s, "/loki/api/v1/label/app/values", window)
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"status":"success","data":["cart","checkout"]}`, string(body))
	q := url.Values{"match[]": {`{app="cart"}`}, "start": window["start"], "end": window["end"]}
	code, body = apiGet(t, s, "/loki/api/v1/series", q)
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"status":"success","data":[{"app":"cart","env":"dev","service_name":"cart"},{"app":"cart","env":"prod","service_name":"cart"}]}`, string(body))
	old := url.Values{"start": {fmt.Sprint(now.Add(-3 * time.Hour).Unix())}, "end": {fmt.Sprint(now.Add(-2 * time.Hour).Unix())}}
	code, body = apiGet(t, s, "/loki/api/v1/labels", old)
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"status":"success","data":[]}`, string(body), "no lines in that hour")
	code, body = apiGet(t, s, "/loki/api/v1/series", url.Values{"match[]": {`{app=`}})
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
		// Only the types clients send: a browser page's text/plain body
		// (a simple cross-site request) is not read as protobuf.
		{"text/plain", "text/plain", snappy.Encode(nil, raw), nil, 415, `push Content-Type "text/plain" is not taken`},
		{"form", "application/x-www-form-urlencoded", []byte("a=b"), nil, 415, "is not taken"},
		{"no content type", "", snappy.Encode(nil, raw), nil, 415, "push without a Content-Type"},
		{"content type that does not parse", "application/;;", snappy.Encode(nil, raw), nil, 415, "does not parse"},
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
	code, raw2 := apiGet(t, s, "/loki/api/v1/label/app/values", nil)
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

type lokiQueryResponse struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

type lokiStreamResult struct {
	Stream map[string]string `json:"stream"`
	Values [][2]string       `json:"values"`
}

type lokiMatrixResult struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
	Value  [2]any            `json:"value"`
}

func lokiQuery(t *testing.T, s *server, path string, params url.Values) (int, lokiQueryResponse, string) {
	t.Helper()
	code, body := apiGet(t, s, path, params)
	var out lokiQueryResponse
	if code == http.StatusOK {
		require.NoError(t, json.Unmarshal(body, &out), string(body))
	}
	return code, out, string(body)
}

// TestLogQLOverHTTP runs logcli-style queries against lines pushed through
// the HTTP port.
func TestLogQLOverHTTP(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	s := startServer(t, cfg)
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	var entries []push.Entry
	for i := range 120 { // one line a second for two minutes
		level := "info"
		if i%4 == 0 {
			level = "error"
		}
		entries = append(entries, push.Entry{Timestamp: base.Add(time.Duration(i) * time.Second), Line: fmt.Sprintf("level=%s msg=\"request %d\" status=%d", level, i, 200+100*(i%4/3))})
	}
	code, body := lokiPush(t, s, "application/x-protobuf", promtailBody(t, push.Stream{Labels: `{app="api", env="prod"}`, Entries: entries}))
	require.Equal(t, http.StatusNoContent, code, body)

	rangeOf := func(from, to time.Duration) url.Values {
		return url.Values{"start": {fmt.Sprint(base.Add(from).UnixNano())}, "end": {fmt.Sprint(base.Add(to).UnixNano())}}
	}

	// A log query: streams, newest first, limited.
	q := rangeOf(0, 2*time.Minute)
	q.Set("query", `{app="api"} | logfmt | level="error"`)
	q.Set("limit", "5")
	code, res, raw := lokiQuery(t, s, "/loki/api/v1/query_range", q)
	require.Equal(t, http.StatusOK, code, raw)
	require.Equal(t, "streams", res.Data.ResultType)
	var streams []lokiStreamResult
	require.NoError(t, json.Unmarshal(res.Data.Result, &streams))
	require.Len(t, streams, 5, "each parsed line has its own label set (msg differs)")
	newest := streams[0]
	for _, st := range streams {
		if st.Values[0][0] > newest.Values[0][0] {
			newest = st
		}
	}
	require.Equal(t, fmt.Sprint(base.Add(116*time.Second).UnixNano()), newest.Values[0][0], "backward: the newest error first")
	require.Equal(t, "error", newest.Stream["level"])
	require.Equal(t, "api", newest.Stream["app"])

	q.Set("direction", "forward")
	q.Set("query", `{app="api"} |= "request 1"`)
	q.Set("limit", "3")
	code, res, raw = lokiQuery(t, s, "/loki/api/v1/query_range", q)
	require.Equal(t, http.StatusOK, code, raw)
	streams = nil
	require.NoError(t, json.Unmarshal(res.Data.Result, &streams))
	require.Len(t, streams, 1)
	require.Equal(t, []string{`level=info msg="request 1" status=200`, `level=info msg="request 10" status=200`, `level=info msg="request 11" status=300`},
		[]string{streams[0].Values[0][1], streams[0].Values[1][1], streams[0].Values[2][1]}, "forward: the oldest first")

	// A metric range query: start aligned down and end up to the step, as
	// Loki's query frontend aligns them, every step to end evaluated.
	q = rangeOf(30*time.Second+500*time.Millisecond, 90*time.Second+500*time.Millisecond)
	q.Set("query", `sum by (level) (count_over_time({app="api"} | logfmt [30s]))`)
	q.Set("step", "30s")
	code, res, raw = lokiQuery(t, s, "/loki/api/v1/query_range", q)
	require.Equal(t, http.StatusOK, code, raw)
	require.Equal(t, "matrix", res.Data.ResultType)
	var matrix []lokiMatrixResult
	require.NoError(t, json.Unmarshal(res.Data.Result, &matrix))
	require.Len(t, matrix, 2)
	byLevel := map[string][][2]any{}
	for _, m := range matrix {
		byLevel[m.Metric["level"]] = m.Values
	}
	sec := func(d time.Duration) float64 { return float64(base.Add(d).UnixMilli()) / 1000 }
	require.Equal(t, [][2]any{{sec(30 * time.Second), "7"}, {sec(60 * time.Second), "8"}, {sec(90 * time.Second), "7"}, {sec(120 * time.Second), "7"}}, byLevel["error"])
	require.Equal(t, [][2]any{{sec(30 * time.Second), "23"}, {sec(60 * time.Second), "22"}, {sec(90 * time.Second), "23"}, {sec(120 * time.Second), "22"}}, byLevel["info"])

	// The default step gives about 250 points (here: 1 s over 2 minutes).
	q = rangeOf(0, 2*time.Minute)
	q.Set("query", `sum(count_over_time({app="api"}[1s]))`)
	code, res, raw = lokiQuery(t, s, "/loki/api/v1/query_range", q)
	require.Equal(t, http.StatusOK, code, raw)
	var perSecond []lokiMatrixResult
	require.NoError(t, json.Unmarshal(res.Data.Result, &perSecond))
	require.Len(t, perSecond[0].Values, 120)

	// An instant metric query: a vector.
	code, res, raw = lokiQuery(t, s, "/loki/api/v1/query", url.Values{
		"query": {`topk(1, sum by (status) (count_over_time({app="api"} | logfmt [2m])))`},
		"time":  {fmt.Sprint(base.Add(2 * time.Minute).UnixNano())},
	})
	require.Equal(t, http.StatusOK, code, raw)
	require.Equal(t, "vector", res.Data.ResultType)
	var vector []lokiMatrixResult
	require.NoError(t, json.Unmarshal(res.Data.Result, &vector))
	require.Len(t, vector, 1)
	require.Equal(t, map[string]string{"status": "200"}, vector[0].Metric)
	require.Equal(t, "89", vector[0].Value[1], "(t-2m, t]: lines 1..119, of which 30 are status 300")

	// Bad queries: 400 with Loki's message and the position.
	for _, tc := range []struct {
		path   string
		params url.Values
		want   string
	}{
		{"/loki/api/v1/query_range", url.Values{"query": {`{app="api"} |= `}}, "parse error at line 1, col 16"},
		{"/loki/api/v1/query_range", url.Values{"query": {`{app="api"}`}, "direction": {"sideways"}}, `direction="sideways"`},
		{"/loki/api/v1/query_range", url.Values{"query": {`{app="api"}`}, "limit": {"100000"}}, "max entries limit per query exceeded"},
		{"/loki/api/v1/query_range", url.Values{"query": {`rate({app="api"}[1m])`}, "step": {"0"}}, "zero or negative query resolution step"},
		{"/loki/api/v1/query_range", url.Values{"query": {`rate({app="api"}[1m])`}, "step": {"1ms"}}, "exceeded maximum resolution of 11,000 points"},
		{"/loki/api/v1/query_range", url.Values{"query": {`{app="api"}`}, "start": {"yesterday"}}, `start="yesterday" is not a time`},
		{"/loki/api/v1/query", url.Values{"query": {`{app="api"}`}}, "log queries are not supported as an instant query type"},
		{"/loki/api/v1/query", url.Values{}, "query= is required"},
	} {
		code, _, raw := lokiQuery(t, s, tc.path, tc.params)
		require.Equal(t, http.StatusBadRequest, code, raw)
		require.Contains(t, raw, tc.want)
	}
}

// TestLokiTail: a websocket client gets the recent past, then every line
// pushed after it connected, in order, none lost.
func TestLokiTail(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	s := startServer(t, cfg)
	now := time.Now()
	code, body := lokiPush(t, s, "application/x-protobuf", promtailBody(t, push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{
		{Timestamp: now.Add(-2 * time.Second), Line: "level=info msg=before"},
	}}))
	require.Equal(t, http.StatusNoContent, code, body)

	u := "ws://" + cfg.HTTPAddr + "/loki/api/v1/tail?" + url.Values{"query": {`{app="api"} != "skip"`}}.Encode()
	conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
	require.NoError(t, err)
	defer conn.Close()
	defer resp.Body.Close()
	type msg struct {
		Streams []lokiStreamResult `json:"streams"`
	}
	read := func() msg {
		var m msg
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		require.NoError(t, conn.ReadJSON(&m))
		return m
	}
	first := read()
	require.Equal(t, "level=info msg=before", first.Streams[0].Values[0][1], "the recent past first")

	const pushes, perPush = 50, 20
	go func() {
		for i := range pushes {
			var es []push.Entry
			for j := range perPush {
				line := fmt.Sprintf("line %d", i*perPush+j)
				if j == 7 {
					line += " skip"
				}
				es = append(es, push.Entry{Timestamp: now.Add(time.Duration(i*perPush+j) * time.Microsecond), Line: line})
			}
			code, _ := post(t, s.api("/loki/api/v1/push"), "application/x-protobuf", promtailBody(t,
				push.Stream{Labels: `{app="api"}`, Entries: es}, push.Stream{Labels: `{app="other"}`, Entries: es}))
			if code != http.StatusNoContent {
				return
			}
		}
	}()
	var got []string
	for len(got) < pushes*(perPush-1) {
		for _, st := range read().Streams {
			require.Equal(t, map[string]string{"app": "api", "service_name": "api", "detected_level": "unknown"}, st.Stream)
			for _, v := range st.Values {
				got = append(got, v[1])
			}
		}
	}
	var want []string
	for i := range pushes * perPush {
		if i%perPush != 7 {
			want = append(want, fmt.Sprintf("line %d", i))
		}
	}
	require.Equal(t, want, got, "every matching line, in order, once")

	// A metric query cannot be tailed.
	_, resp2, err := websocket.DefaultDialer.Dial("ws://"+cfg.HTTPAddr+"/loki/api/v1/tail?"+url.Values{"query": {`rate({app="api"}[1m])`}}.Encode(), nil)
	require.Error(t, err)
	require.Equal(t, http.StatusBadRequest, resp2.StatusCode)
	resp2.Body.Close()
}
