package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/stretchr/testify/require"
)

// TestQueryStepIsChecked: a step under a millisecond made LogQL's
// query_range divide by zero (the connection dropped) and Prometheus'
// engine panic (a 422 "integer divide by zero"); now both are a 400 that
// says why, as is a step that makes more than 11,000 points.
func TestQueryStepIsChecked(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	now := time.Now()
	ns := func(t time.Time) string { return fmt.Sprint(t.UnixNano()) }
	sec := func(t time.Time) string { return fmt.Sprint(t.Unix()) }
	for _, tc := range []struct {
		name, path string
		params     url.Values
		want       string
	}{
		{"LogQL step under a nanosecond", "/loki/api/v1/query_range", url.Values{"query": {`rate({app="api"}[1m])`}, "step": {"0.0000000001"}},
			`step="0.0000000001": the query resolution step must be at least 1ms`},
		{"LogQL step under a millisecond, empty range", "/loki/api/v1/query_range",
			url.Values{"query": {`rate({app="api"}[1m])`}, "step": {"0.0001"}, "start": {ns(now)}, "end": {ns(now)}},
			`step="0.0001": the query resolution step must be at least 1ms`},
		{"LogQL step in microseconds", "/loki/api/v1/query_range", url.Values{"query": {`rate({app="api"}[1m])`}, "step": {"500us"}, "start": {ns(now)}, "end": {ns(now)}},
			`step="500us": the query resolution step must be at least 1ms`},
		{"LogQL too many points", "/loki/api/v1/query_range", url.Values{"query": {`rate({app="api"}[1m])`}, "step": {"1ms"}},
			"exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"},
		{"PromQL step under a millisecond", "/api/v1/query_range",
			url.Values{"query": {`up`}, "step": {"0.0001"}, "start": {sec(now.Add(-time.Second))}, "end": {sec(now)}},
			`step=\"0.0001\": the query resolution step must be at least 1ms`},
		{"PromQL step under a millisecond, empty range", "/api/v1/query_range",
			url.Values{"query": {`up`}, "step": {"0.0001"}, "start": {sec(now)}, "end": {sec(now)}},
			`step=\"0.0001\": the query resolution step must be at least 1ms`},
		{"PromQL zero step (Prometheus' own check)", "/api/v1/query_range", url.Values{"query": {`up`}, "step": {"0"}, "start": {sec(now)}, "end": {sec(now)}},
			"zero or negative query resolution step widths are not accepted"},
		{"PromQL too many points", "/api/v1/query_range", url.Values{"query": {`up`}, "step": {"0.001"}, "start": {sec(now.Add(-time.Minute))}, "end": {sec(now)}},
			"exceeded maximum resolution of 11,000 points per timeseries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := apiGet(t, s, tc.path, tc.params)
			require.Equal(t, http.StatusBadRequest, code, string(body))
			require.Contains(t, string(body), tc.want)
			if strings.HasPrefix(tc.path, "/api/v1/") {
				require.Contains(t, string(body), `"errorType":"bad_data"`)
			}
		})
	}
	require.InDelta(t, 4, metricValue(t, s, `lumen_query_rejected_total{api="loki",reason="step"}`), 0)
	require.InDelta(t, 3, metricValue(t, s, `lumen_query_rejected_total{api="prometheus",reason="step"}`), 0)
	code, body := apiGet(t, s, "/api/v1/query_range", url.Values{"query": {`up`}, "step": {"0.001"}, "start": {sec(now)}, "end": {sec(now)}})
	require.Equal(t, http.StatusOK, code, "a 1 ms step is fine: %s", body)
}

// TestQueryRangeIsBounded: a range query over max_query_length is a 400
// in Loki's words; the default bound is the retention plus an hour.
func TestQueryRangeIsBounded(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.LogQL.MaxQueryLength = time.Hour
	cfg.Retention = Duration(7 * 24 * time.Hour)
	s := startServer(t, cfg) // PromQL: the default, 7d retention + 1h
	now := time.Now()
	for _, tc := range []struct {
		name, path string
		params     url.Values
		code       int
		want       string
	}{
		{"LogQL log query over the limit", "/loki/api/v1/query_range",
			url.Values{"query": {`{app="api"}`}, "start": {fmt.Sprint(now.Add(-2 * time.Hour).Unix())}, "end": {fmt.Sprint(now.Unix())}},
			400, "the query time range exceeds the limit (query length: 2h, limit: 1h)"},
		{"LogQL metric query over the limit", "/loki/api/v1/query_range",
			url.Values{"query": {`rate({app="api"}[1m])`}, "since": {"90m"}},
			400, "the query time range exceeds the limit (query length: 1h30m, limit: 1h)"},
		{"LogQL at the limit", "/loki/api/v1/query_range", url.Values{"query": {`{app="api"}`}, "since": {"1h"}}, 200, `"status":"success"`},
		{"PromQL over the default limit", "/api/v1/query_range",
			url.Values{"query": {`up`}, "step": {"1h"}, "start": {fmt.Sprint(now.Add(-8 * 24 * time.Hour).Unix())}, "end": {fmt.Sprint(now.Unix())}},
			400, "the query time range exceeds the limit (query length: 8d, limit: 7d1h)"},
		{"PromQL from Prometheus' minimum time", "/api/v1/query_range",
			url.Values{"query": {`up`}, "step": {"1000000000"}, "start": {"-292273086-05-16T16:47:06Z"}, "end": {fmt.Sprint(now.Unix())}},
			400, "the query time range exceeds the limit"},
		{"PromQL within the default limit", "/api/v1/query_range",
			url.Values{"query": {`up`}, "step": {"1h"}, "start": {fmt.Sprint(now.Add(-7 * 24 * time.Hour).Unix())}, "end": {fmt.Sprint(now.Unix())}},
			200, `"status":"success"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := apiGet(t, s, tc.path, tc.params)
			require.Equal(t, tc.code, code, string(body))
			require.Contains(t, string(body), tc.want)
		})
	}
	require.InDelta(t, 2, metricValue(t, s, `lumen_query_rejected_total{api="loki",reason="range"}`), 0)
	require.InDelta(t, 2, metricValue(t, s, `lumen_query_rejected_total{api="prometheus",reason="range"}`), 0)
}

// TestTraceSearchLimitsAreCapped: Tempo's limit is lowered to
// max_search_limit and Jaeger's to max_jaeger_limit (Jaeger returned every
// full trace asked for); spss and Lumen's own limit over theirs are 400s.
func TestTraceSearchLimitsAreCapped(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Traces.MaxSearchLimit, cfg.Traces.MaxJaegerLimit = 2, 3
	s := startServer(t, cfg)
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	sendCallTrees(t, s, &seqIDs{}, 6, base)
	tempoWindow := url.Values{"start": {fmt.Sprint(base.Unix())}, "end": {fmt.Sprint(base.Add(time.Minute).Unix())}}
	with := func(q url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, v := range q {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	count := func(path string, q url.Values, field string) int {
		t.Helper()
		code, body := apiGet(t, s, path, q)
		require.Equal(t, http.StatusOK, code, string(body))
		var out map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(body, &out))
		var list []json.RawMessage
		require.NoError(t, json.Unmarshal(out[field], &list), string(body))
		return len(list)
	}
	require.Equal(t, 2, count("/api/search", with(tempoWindow, "limit", "100000"), "traces"), "Tempo's limit lowered to max_search_limit")
	require.Equal(t, 1, count("/api/search", with(tempoWindow, "limit", "1"), "traces"))
	jaegerWindow := url.Values{"service": {"frontend"}, "start": {fmt.Sprint(base.UnixMicro())}, "end": {fmt.Sprint(base.Add(time.Minute).UnixMicro())}}
	require.Equal(t, 3, count("/jaeger/api/traces", with(jaegerWindow, "limit", "100000"), "data"), "Jaeger's limit lowered to max_jaeger_limit")
	require.Equal(t, 3, count("/jaeger/api/traces", jaegerWindow, "data"), "the default (20) lowered too")

	for _, tc := range []struct {
		name, path string
		params     url.Values
		want       string
	}{
		{"Tempo spss over the maximum", "/api/search", with(tempoWindow, "spss", "101"), "spans per span set exceeds 100. received 101"},
		{"Lumen search limit over the maximum", "/api/v1/search", url.Values{"limit": {"3"}}, `limit="3" is not an integer in 1..2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := apiGet(t, s, tc.path, tc.params)
			require.Equal(t, http.StatusBadRequest, code, string(body))
			require.Contains(t, string(body), tc.want)
		})
	}
	require.InDelta(t, 2, metricValue(t, s, `lumen_query_rejected_total{api="tempo",reason="limit"}`), 0)
}

// TestDeeplyNestedQueriesAreRefused: 100,000 parentheses are a 400 that
// names the depth limit, not a stack overflow that ends the process.
func TestDeeplyNestedQueriesAreRefused(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	deep := strings.Repeat("(", 100_000)
	for _, tc := range []struct {
		name, path string
		params     url.Values
	}{
		{"LogQL", "/loki/api/v1/query_range", url.Values{"query": {deep}}},
		{"LogQL label filter", "/loki/api/v1/query_range", url.Values{"query": {`{app="x"} | ` + deep}}},
		{"TraceQL", "/api/search", url.Values{"q": {"{ " + deep}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := apiGet(t, s, tc.path, tc.params)
			require.Equal(t, http.StatusBadRequest, code, string(body))
			require.Contains(t, string(body), "nested too deeply (at most 128)")
		})
	}
	require.InDelta(t, 2, metricValue(t, s, `lumen_query_rejected_total{api="loki",reason="depth"}`), 0)
	require.InDelta(t, 1, metricValue(t, s, `lumen_query_rejected_total{api="tempo",reason="depth"}`), 0)
}

// TestPrometheusRemoteRead: /api/v1/read hung for ever (a concurrency
// limit of 0), and made every shutdown wait its full timeout; now it
// answers samples and streamed chunks, and the server stops at once.
func TestPrometheusRemoteRead(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	start := time.Now().Add(-30 * time.Minute).Truncate(time.Minute)
	code, _, body := remoteWrite(t, s, v1Request(t, map[string]string{"up": "a:9100"}, "node", start, 5, 15*time.Second), 1)
	require.Equal(t, http.StatusNoContent, code, body)
	query := &prompb.Query{
		StartTimestampMs: start.UnixMilli(), EndTimestampMs: start.Add(time.Minute).UnixMilli(),
		Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "up"}},
	}
	want := []prompb.Sample{}
	for i := range 5 {
		want = append(want, prompb.Sample{Timestamp: start.Add(time.Duration(i) * 15 * time.Second).UnixMilli(), Value: float64(i * 10)})
	}

	resp := remoteRead(t, s, &prompb.ReadRequest{Queries: []*prompb.Query{query}})
	require.Equal(t, "application/x-protobuf", resp.Header.Get("Content-Type"))
	compressed, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	raw, err := snappy.Decode(nil, compressed)
	require.NoError(t, err)
	var rr prompb.ReadResponse
	require.NoError(t, rr.Unmarshal(raw))
	require.Len(t, rr.Results, 1)
	require.Len(t, rr.Results[0].Timeseries, 1)
	require.Equal(t, []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "instance", Value: "a:9100"}, {Name: "job", Value: "node"}}, rr.Results[0].Timeseries[0].Labels)
	require.Equal(t, want, rr.Results[0].Timeseries[0].Samples)

	resp = remoteRead(t, s, &prompb.ReadRequest{Queries: []*prompb.Query{query},
		AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{prompb.ReadRequest_STREAMED_XOR_CHUNKS}})
	require.Equal(t, "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse", resp.Header.Get("Content-Type"))
	var chunked prompb.ChunkedReadResponse
	require.NoError(t, remote.NewChunkedReader(resp.Body, 50e6, nil).NextProto(&chunked))
	require.Len(t, chunked.ChunkedSeries, 1)
	require.NotEmpty(t, chunked.ChunkedSeries[0].Chunks)

	began := time.Now()
	s.stop()
	require.Less(t, time.Since(began), 10*time.Second, "no remote read keeps the server from stopping")
}

func remoteRead(t *testing.T, s *server, rr *prompb.ReadRequest) *http.Response {
	t.Helper()
	pb, err := rr.Marshal()
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, s.api("/api/v1/read"), bytes.NewReader(snappy.Encode(nil, pb)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Read-Version", "0.1.0")
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	require.NoError(t, err, "remote read answers, rather than hang")
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return resp
}

// TestLokiTailLimits: tails at once are capped (503 before the upgrade), a
// tail ends after tail_max_duration, a client message is bounded, and the
// HTTP server's read and write timeouts do not cut a tail.
func TestLokiTailLimits(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.LogQL.MaxTails = 1
	cfg.LogQL.TailMaxDuration = 3 * time.Second
	cfg.HTTP.ReadTimeout, cfg.HTTP.WriteTimeout = Duration(500*time.Millisecond), Duration(500*time.Millisecond)
	s := startServer(t, cfg)
	u := "ws://" + cfg.HTTPAddr + "/loki/api/v1/tail?" + url.Values{"query": {`{app="api"}`}}.Encode()
	conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
	require.NoError(t, err)
	defer conn.Close()
	resp.Body.Close()

	_, resp2, err := websocket.DefaultDialer.Dial(u, nil)
	require.Error(t, err, "a second tail is one too many")
	require.Equal(t, http.StatusServiceUnavailable, resp2.StatusCode)
	require.NotEmpty(t, resp2.Header.Get("Retry-After"))
	resp2.Body.Close()
	require.InDelta(t, 1, metricValue(t, s, `lumen_query_rejected_total{api="loki",reason="concurrency"}`), 0)
	_, resp4, err := websocket.DefaultDialer.Dial(u+"&start=0", nil)
	require.Error(t, err, "a backfill from 1970 is longer than the maximum query length")
	require.Equal(t, http.StatusBadRequest, resp4.StatusCode)
	resp4.Body.Close()

	// Past the server's read and write timeouts, the tail still delivers.
	time.Sleep(time.Second)
	code, body := lokiPush(t, s, "application/x-protobuf", promtailBody(t, push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: time.Now(), Line: "late line"}}}))
	require.Equal(t, http.StatusNoContent, code, body)
	var m struct {
		Streams []lokiStreamResult `json:"streams"`
	}
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, conn.ReadJSON(&m))
	require.Equal(t, "late line", m.Streams[0].Values[0][1])

	// Then the server ends it, saying why.
	_, _, err = conn.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, websocket.CloseNormalClosure, ce.Code)
	require.Contains(t, ce.Text, "reached tail max duration limit (3s)")

	// A client message over the read limit ends the tail too (a close
	// 1009, or a reset if the server is gone before it is read).
	var conn3 *websocket.Conn
	require.Eventually(t, func() bool {
		c, resp, err := websocket.DefaultDialer.Dial(u, nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		conn3 = c
		return true
	}, 5*time.Second, 50*time.Millisecond, "the ended tail's slot is freed")
	defer conn3.Close()
	_ = conn3.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 64<<10))
	require.NoError(t, conn3.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, _, err = conn3.ReadMessage()
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server ended the tail: %v", err)
	if errors.As(err, &ce) {
		require.Equal(t, websocket.CloseMessageTooBig, ce.Code)
	}
}

// TestSlowClientIsCutOff: a client that sends its headers and then
// dribbles its body is cut off after the read timeout, instead of holding
// a connection and a handler for as long as it likes.
func TestSlowClientIsCutOff(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.HTTP.ReadTimeout = Duration(500 * time.Millisecond)
	startServer(t, cfg)
	conn, err := net.Dial("tcp", cfg.HTTPAddr)
	require.NoError(t, err)
	defer conn.Close()
	const bodyBytes = 100
	// A query sent as a form: the body is read by the server's own form
	// parsing, under nothing but the server's read timeout.
	_, err = fmt.Fprintf(conn, "POST /loki/api/v1/query_range HTTP/1.1\r\nHost: lumen\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", bodyBytes)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sent := make(chan int, 1)
	go func() { // a byte every 100 ms: the whole body would take 10 s
		n := 0
		defer func() { sent <- n }()
		for ; n < bodyBytes; n++ {
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	began := time.Now()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(8*time.Second)))
	_, err = io.Copy(io.Discard, conn) // until the server closes the connection
	if errors.Is(err, syscall.ECONNRESET) {
		// Closed with the client's bytes unread: the kernel answers the
		// next of them with a reset, which is a close too.
		err = nil
	}
	require.NoError(t, err, "the server closed the connection before the client's deadline")
	require.Less(t, time.Since(began), 3*time.Second)
	stop()
	require.Less(t, <-sent, bodyBytes, "the body was not read to its end")
}

// TestConnectionsAreCapped: past max_connections, a new connection waits
// until one closes.
func TestConnectionsAreCapped(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.HTTP.MaxConnections = 2
	s := startServer(t, cfg)
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", cfg.HTTPAddr)
		require.NoError(t, err)
		defer c.Close()
		// A request answered, so that the server has taken the connection.
		_, err = fmt.Fprint(c, "GET /-/healthy HTTP/1.1\r\nHost: lumen\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		held = append(held, c)
	}
	client := http.Client{Timeout: 500 * time.Millisecond}
	_, err := client.Get(s.api("/-/healthy"))
	require.Error(t, err, "a third connection is not served while two are open")
	require.NoError(t, held[0].Close())
	client.Timeout = 5 * time.Second
	resp, err := client.Get(s.api("/-/healthy"))
	require.NoError(t, err, "served once one closed")
	resp.Body.Close()
}

func TestLimitsConfig(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := loadConfig([]string{"--http-max-connections", "10", "--promql-max-query-length", "30d", "--logql-max-tails", "3",
		"--http-read-timeout", "30s", "--traces-max-concurrent", "2"}, none, "serve")
	require.NoError(t, err)
	require.Equal(t, 10, cfg.HTTP.MaxConnections)
	require.Equal(t, 30*24*time.Hour, cfg.PromQL.MaxQueryLength)
	require.Equal(t, 3, cfg.LogQL.MaxTails)
	require.Equal(t, Duration(30*time.Second), cfg.HTTP.ReadTimeout)
	require.Equal(t, 2, cfg.Traces.MaxConcurrent)

	file := filepath.Join(t.TempDir(), "lumen.yaml")
	require.NoError(t, os.WriteFile(file, []byte("http:\n  read_timeout: 45s\n  max_connections: 7\n  max_header_bytes: 64KiB\n"+
		"promql:\n  max_queued: 5\n  remote_read_concurrency: 2\n"+
		"logql:\n  max_query_length: 720h\n  tail_max_duration: 10m\n"+
		"traces:\n  max_jaeger_limit: 50\n  timeout: 30s\n"), 0o600))
	cfg, err = loadConfig(nil, func(k string) string {
		if k == "LUMEN_CONFIG" {
			return file
		}
		return ""
	}, "serve")
	require.NoError(t, err)
	require.Equal(t, Duration(45*time.Second), cfg.HTTP.ReadTimeout)
	require.Equal(t, 7, cfg.HTTP.MaxConnections)
	require.Equal(t, ByteSize(64<<10), cfg.HTTP.MaxHeaderBytes)
	require.Equal(t, 5, cfg.PromQL.MaxQueued)
	require.Equal(t, 2, cfg.PromQL.RemoteReadConcurrency)
	require.Equal(t, 720*time.Hour, cfg.LogQL.MaxQueryLength)
	require.Equal(t, 10*time.Minute, cfg.LogQL.TailMaxDuration)
	require.Equal(t, 50, cfg.Traces.MaxJaegerLimit)
	require.Equal(t, 30*time.Second, cfg.Traces.Timeout)
	require.Equal(t, 4, cfg.Traces.MaxConcurrent, "default kept")

	def := DefaultConfig()
	require.Equal(t, 3*time.Minute, def.writeTimeout(), "the longest query timeout (PromQL's 2m) plus a minute")
	require.Equal(t, 7*24*time.Hour+time.Hour, def.queryLength(0), "the retention plus an hour")
	def.Retention = 0
	require.Equal(t, 721*time.Hour, def.queryLength(0), "Loki's default when everything is kept")
	require.Equal(t, time.Hour, def.queryLength(time.Hour))

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no connections", []string{"--http-max-connections", "0"}, "max_connections 0 must be positive"},
		{"not a number", []string{"--promql-max-concurrent", "many"}, `"many" is not an integer`},
		{"no PromQL slots", []string{"--promql-max-concurrent", "0"}, "max_concurrent 0"},
		{"no tails", []string{"--logql-max-tails", "0"}, "max_tails 0"},
		{"negative range", []string{"--logql-max-query-length", "-1h"}, "max_query_length -1h0m0s must not be negative"},
		{"no read timeout", []string{"--http-read-timeout", "0s"}, "read_timeout 0s"},
		{"unknown compression", []string{"--log-compression", "gzip"}, `log_compression "gzip": fast or better`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(tc.args, none, "serve")
			require.ErrorContains(t, err, tc.want)
		})
	}
}
