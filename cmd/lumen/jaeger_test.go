package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestJaegerAPI: the Jaeger query API under /jaeger answers in Jaeger's
// JSON model, checked against golden files, for traces sent with the OTel
// Go SDK; dependencies come from the service graph.
func TestJaegerAPI(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SpanMetrics.Interval = 100 * time.Millisecond
	s := startServer(t, cfg)
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	sendCallTrees(t, s, &seqIDs{}, 6, base)
	window := func(kv ...string) url.Values {
		q := url.Values{"start": {fmt.Sprint(base.UnixMicro())}, "end": {fmt.Sprint(base.Add(time.Minute).UnixMicro())}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == "tag" {
				q.Add(kv[i], kv[i+1])
			} else {
				q.Set(kv[i], kv[i+1])
			}
		}
		return q
	}
	type envelope struct {
		Data   json.RawMessage `json:"data"`
		Total  int             `json:"total"`
		Errors []struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		} `json:"errors"`
	}
	get := func(path string, q url.Values) (int, envelope, []byte) {
		code, body := apiGet(t, s, "/jaeger"+path, q)
		var e envelope
		require.NoError(t, json.Unmarshal(body, &e), string(body))
		return code, e, body
	}

	code, e, _ := get("/api/services", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `["backend","client","db","frontend"]`, string(e.Data))
	code, e, _ = get("/api/services/frontend/operations", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `["GET /cart/{id}"]`, string(e.Data))
	code, e, _ = get("/api/operations", url.Values{"service": {"db"}})
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `[{"name":"SELECT stock","spanKind":"client"}]`, string(e.Data))

	traceIDs := func(q url.Values) []string {
		code, e, body := get("/api/traces", q)
		require.Equal(t, http.StatusOK, code, string(body))
		var ts []struct {
			TraceID string `json:"traceID"`
		}
		require.NoError(t, json.Unmarshal(e.Data, &ts))
		var out []string
		for _, tr := range ts {
			out = append(out, tr.TraceID[30:])
		}
		return out
	}
	require.Equal(t, []string{"06", "05", "04", "03", "02", "01"}, traceIDs(window("service", "backend")))
	require.Equal(t, []string{"03"}, traceIDs(window("service", "backend", "tags", `{"error":"true"}`)))
	require.Equal(t, []string{"02"}, traceIDs(window("service", "backend", "tag", "order.id:o-2")))
	require.Equal(t, []string{"04"}, traceIDs(window("service", "frontend", "operation", "GET /cart/{id}", "minDuration", "1s")))
	require.Equal(t, []string{"06", "05"}, traceIDs(window("service", "db", "maxDuration", "10ms", "limit", "2")))
	require.Equal(t, []string{"01"}, traceIDs(window("service", "client", "tags", `{"deployment.environment.name":"prod","span.kind":"client"}`, "end", fmt.Sprint(base.Add(1500*time.Millisecond).UnixMicro()))))

	code, _, body := get("/api/traces", window("service", "backend", "tags", `{"error":"true"}`))
	require.Equal(t, http.StatusOK, code)
	golden(t, "jaeger_search", body, base)
	code, _, body = get("/api/traces/7e000000000000000000000000000003", nil)
	require.Equal(t, http.StatusOK, code)
	golden(t, "jaeger_trace", body, base)

	// Dependencies: the service graph over the window, once written.
	deps := func() string {
		code, e, body := get("/api/dependencies", url.Values{"endTs": {fmt.Sprint(time.Now().Add(time.Minute).UnixMilli())}, "lookback": {fmt.Sprint(time.Hour.Milliseconds())}})
		require.Equal(t, http.StatusOK, code, string(body))
		return string(e.Data)
	}
	want := `[{"parent":"backend","child":"db","callCount":6},{"parent":"client","child":"frontend","callCount":6},{"parent":"frontend","child":"backend","callCount":6}]`
	var last string
	require.Eventually(t, func() bool {
		last = deps()
		var a, b any
		_ = json.Unmarshal([]byte(last), &a)
		_ = json.Unmarshal([]byte(want), &b)
		return fmt.Sprint(a) == fmt.Sprint(b)
	}, 10*time.Second, 100*time.Millisecond, "dependencies: %s", last)

	for _, tc := range []struct {
		path string
		q    url.Values
		code int
		want string
	}{
		{"/api/traces", url.Values{}, 400, "service= is required"},
		{"/api/traces", url.Values{"service": {"a"}, "tags": {"{not json"}}, 400, "is not a JSON object"},
		{"/api/traces", url.Values{"service": {"a"}, "minDuration": {"long"}}, 400, `minDuration="long" is not a duration`},
		{"/api/traces", url.Values{"service": {"a"}, "start": {"monday"}}, 400, "is not unix microseconds"},
		{"/api/traces", url.Values{"service": {"a"}, "tag": {"nocolon"}}, 400, "is not key:value"},
		{"/api/traces/zz", nil, 400, "invalid trace id"},
		{"/api/traces/7e000000000000000000000000000999", nil, 404, "not found"},
		{"/api/dependencies", url.Values{"lookback": {"-5"}}, 400, "lookback"},
		{"/api/operations", nil, 400, "service= is required"},
	} {
		code, e, body := get(tc.path, tc.q)
		require.Equal(t, tc.code, code, "%s %v: %s", tc.path, tc.q, body)
		require.Len(t, e.Errors, 1)
		require.Contains(t, e.Errors[0].Msg, tc.want)
		require.Equal(t, tc.code, e.Errors[0].Code)
	}
}
