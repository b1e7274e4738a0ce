package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/gorilla/websocket"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lumenobs/lumen/internal/otlptest"
)

// Tokens of the two-tenant test: each team's bound to its tenant, and an
// operator's that may read either.
const (
	teamASecret = "team-a-secret-0123456789"
	teamBSecret = "team-b-secret-0123456789"
	opsSecret   = "ops-secret-0123456789"
)

func tenantAuthFile(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "auth.yml")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`tokens:
  - {name: team-a, sha256: %q, scopes: [read, write], tenant: team-a}
  - {name: team-b, sha256: %q, scopes: [read, write], tenant: team-b}
  - {name: ops, sha256: %q, scopes: [read], tenants: [team-a, team-b]}
`, sha(teamASecret), sha(teamBSecret), sha(opsSecret))), 0o600))
	return path
}

// TestTenantsAreIsolated: two tenants write the same trace id, the same
// service names and the same label sets; each sees only its own in the
// trace by id (correlated, Tempo, Jaeger), trace search, LogQL, PromQL,
// span metrics and the live tail. A token bound to a tenant cannot name
// another; a token with a choice picks with X-Scope-OrgID; IDs that are
// not IDs are refused (400) before anything is stored.
func TestTenantsAreIsolated(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.AuthFile = tenantAuthFile(t, dir)
	cfg.Tenants.Enabled = true
	cfg.SpanMetrics.Interval = 200 * time.Millisecond
	cfg.SpanMetrics.EdgeWait = 200 * time.Millisecond
	s := startServer(t, cfg)
	ctx := context.Background()

	// The same trace for both: same id, same services, a span attribute
	// saying whose it is.
	base := otlptest.New(42).Traces(1, 3)
	traceID := otlptest.TraceIDs(base)[0].String()
	conn, err := grpc.NewClient(cfg.OTLP.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	sendTrace := func(secret, team string, extra ...string) error {
		td := ptrace.NewTraces()
		base.CopyTo(td)
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					sp.Attributes().PutStr("team", team)
				}
			}
		}
		md := metadata.Pairs(append([]string{"authorization", bearer(secret)}, extra...)...)
		_, err := client.Export(metadata.NewOutgoingContext(ctx, md), ptraceotlp.NewExportRequestFromTraces(td))
		return err
	}
	now := time.Now()
	pushLines := func(secret, team string) {
		body := fmt.Sprintf(`{"streams":[{"stream":{"app":"shop"},"values":[["%d","checkout of %s trace_id=%s"]]}]}`, now.UnixNano(), team, traceID)
		code, resp := post(t, s.api("/loki/api/v1/push"), "application/json", []byte(body), "Authorization", bearer(secret))
		require.Equal(t, http.StatusNoContent, code, resp)
	}
	spanOf := map[string]string{"team-a": "aaaaaaaaaaaaaaaa", "team-b": "bbbbbbbbbbbbbbbb"}
	writeMetric := func(secret string, v float64) {
		team := map[string]string{teamASecret: "team-a", teamBSecret: "team-b"}[secret]
		req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "orders_total"}, {Name: "job", Value: "shop"}},
			Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: v}},
		}, {
			// The same series in both, with an exemplar of the same trace.
			Labels:    []prompb.Label{{Name: "__name__", Value: "checkout_seconds_bucket"}, {Name: "job", Value: "shop"}, {Name: "le", Value: "1"}},
			Samples:   []prompb.Sample{{Timestamp: now.UnixMilli(), Value: v}},
			Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: traceID}, {Name: "span_id", Value: spanOf[team]}}, Value: 0.5, Timestamp: now.UnixMilli()}},
		}}}
		pb, err := req.Marshal()
		require.NoError(t, err)
		code, resp := post(t, s.api("/api/v1/write"), "application/x-protobuf", snappy.Encode(nil, pb),
			"Authorization", bearer(secret), "Content-Encoding", "snappy", "X-Prometheus-Remote-Write-Version", "0.1.0")
		require.Equal(t, http.StatusNoContent, code, resp)
	}
	for team, secret := range map[string]string{"team-a": teamASecret, "team-b": teamBSecret} {
		require.NoError(t, sendTrace(secret, team))
		pushLines(secret, team)
		writeMetric(secret, map[string]float64{"team-a": 1, "team-b": 2}[team])
	}

	get := func(secret, path string, header ...string) (int, string) {
		code, body, _ := do(t, nil, http.MethodGet, s.api(path), bearer(secret), header...)
		return code, body
	}
	for team, secret := range map[string]string{"team-a": teamASecret, "team-b": teamBSecret} {
		other := map[string]string{"team-a": "team-b", "team-b": "team-a"}[team]
		code, body := get(secret, "/api/v1/traces/"+traceID)
		require.Equal(t, 200, code, body)
		require.Contains(t, body, `"stringValue":"`+team+`"`)
		require.NotContains(t, body, `"stringValue":"`+other+`"`, "%s sees %s's spans", team, other)
		require.Contains(t, body, "checkout of "+team)
		require.NotContains(t, body, "checkout of "+other, "%s sees %s's lines", team, other)
		for _, path := range []string{"/api/traces/" + traceID, "/jaeger/api/traces/" + traceID} {
			code, body = get(secret, path)
			require.Equal(t, 200, code, "%s %s", path, body)
			require.Contains(t, body, team, path)
			require.NotContains(t, body, other, "%s: %s sees %s's spans", path, team, other)
		}
		code, body = get(secret, "/api/search?"+url.Values{"tags": {"team=" + other}, "start": {fmt.Sprint(now.Add(-time.Hour).Unix())}, "end": {fmt.Sprint(now.Add(time.Hour).Unix())}}.Encode())
		require.Equal(t, 200, code, body)
		require.NotContains(t, body, traceID, "%s finds %s's trace by its attribute", team, other)
		code, body = get(secret, "/loki/api/v1/query_range?"+url.Values{"query": {`{app="shop"}`}, "start": {fmt.Sprint(now.Add(-time.Hour).UnixNano())}, "end": {fmt.Sprint(now.Add(time.Minute).UnixNano())}}.Encode())
		require.Equal(t, 200, code, body)
		require.Contains(t, body, "checkout of "+team)
		require.NotContains(t, body, "checkout of "+other)
		code, body = get(secret, "/api/v1/query?"+url.Values{"query": {`orders_total{job="shop"}`}, "time": {fmt.Sprint(now.Unix() + 1)}}.Encode())
		require.Equal(t, 200, code, body)
		want := map[string]string{"team-a": `"1"]`, "team-b": `"2"]`}[team]
		require.Contains(t, body, want, "%s's sample", team)
		require.Equal(t, 1, strings.Count(body, `"metric"`), "one series, its own: %s", body)
		code, body = get(secret, "/api/v1/query_exemplars?"+url.Values{"query": {`checkout_seconds_bucket`}, "start": {fmt.Sprint(now.Add(-time.Hour).Unix())}, "end": {fmt.Sprint(now.Add(time.Hour).Unix())}}.Encode())
		require.Equal(t, 200, code, body)
		require.Contains(t, body, spanOf[team], "%s's exemplar", team)
		require.NotContains(t, body, spanOf[other], "%s sees %s's exemplar", team, other)
		// Span metrics: each tenant counts its own 3 spans.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, body := get(secret, "/api/v1/query?"+url.Values{"query": {`sum(traces_spanmetrics_calls_total)`}}.Encode())
			assert.Contains(c, body, `"3"]`, "%s's span metrics: %s", team, body)
		}, 10*time.Second, 100*time.Millisecond)

		// Bound to its tenant: naming the other is refused.
		code, body = get(secret, "/api/v1/traces/"+traceID, "X-Scope-OrgID", other)
		require.Equal(t, http.StatusForbidden, code, body)
		require.Contains(t, body, "bound to tenant")
	}

	// The operator's token: either tenant by X-Scope-OrgID, no other.
	code, body := get(opsSecret, "/api/v1/traces/"+traceID, "X-Scope-OrgID", "team-b")
	require.Equal(t, 200, code, body)
	require.Contains(t, body, "checkout of team-b")
	require.NotContains(t, body, "checkout of team-a")
	code, body = get(opsSecret, "/api/v1/traces/"+traceID, "X-Scope-OrgID", "team-c")
	require.Equal(t, http.StatusForbidden, code, body)
	code, body = get(opsSecret, "/api/v1/tenants", "X-Scope-OrgID", "team-b")
	require.Equal(t, 200, code, body)
	var info struct {
		Data struct {
			Tenant  string   `json:"tenant"`
			Allowed []string `json:"allowed"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	require.Equal(t, "team-b", info.Data.Tenant)
	require.Equal(t, []string{"team-a", "team-b"}, info.Data.Allowed)

	// The live tail: team-a's websocket sees team-a's new lines only.
	tail := "ws://" + cfg.HTTPAddr + "/loki/api/v1/tail?" + url.Values{"query": {`{app="shop"}`}, "start": {fmt.Sprint(time.Now().UnixNano())}}.Encode()
	ws, _, err := websocket.DefaultDialer.Dial(tail, http.Header{"Authorization": {bearer(teamASecret)}})
	require.NoError(t, err)
	defer ws.Close()
	now = time.Now()
	pushLines(teamBSecret, "team-b")
	pushLines(teamASecret, "team-a")
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, msg, err := ws.ReadMessage()
	require.NoError(t, err)
	require.Contains(t, string(msg), "checkout of team-a")
	require.NotContains(t, string(msg), "team-b")

	// IDs that are not IDs: refused, on every path, before anything is
	// stored.
	for _, bad := range []string{"../etc", "a/b", "team a", "..", "x%00", strings.Repeat("x", 151)} {
		code, body := get(opsSecret, "/api/v1/tenants", "X-Scope-OrgID", bad)
		require.Equal(t, http.StatusBadRequest, code, "%q: %s", bad, body)
		code, body = post(t, s.api("/loki/api/v1/push"), "application/json", []byte(`{"streams":[{"stream":{"app":"x"},"values":[["1","x"]]}]}`),
			"X-Scope-OrgID", bad)
		require.Equal(t, http.StatusUnauthorized, code, "no token: refused before the tenant is read: %s", body)
		code, body = post(t, s.api("/loki/api/v1/push"), "application/json", []byte(`{"streams":[{"stream":{"app":"x"},"values":[["1","stored?"]]}]}`),
			"X-Scope-OrgID", bad, "Authorization", bearer(teamASecret))
		require.Equal(t, http.StatusBadRequest, code, "%q with a token: %s", bad, body)
		require.Contains(t, body, "X-Scope-OrgID")
	}
	err = sendTrace(opsSecret, "ops") // read scope only
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	entries, err := os.ReadDir(filepath.Join(cfg.DataDir, tenantsDir))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"team-a", "team-b"}, names, "a store per tenant that wrote, nothing else")
	code, body = get(opsSecret, "/api/v1/query?"+url.Values{"query": {`orders_total`}}.Encode(), "X-Scope-OrgID", "team-a")
	require.Equal(t, 200, code, body)
}

// TestTenantIDsRefusedOnOTLP: with tenants and no authentication, the
// tenant is X-Scope-OrgID; one that is not an ID is INVALID_ARGUMENT on
// gRPC and 400 on OTLP/HTTP, and nothing is stored; the default tenant
// is the data dir's own store, so data written before tenants were on is
// the default tenant's.
func TestTenantIDsRefusedOnOTLP(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	s := startServer(t, cfg)
	td := otlptest.New(7).Traces(1, 2)
	traceID := otlptest.TraceIDs(td)[0].String()
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	require.NoError(t, err)
	code, resp := post(t, "http://"+cfg.OTLP.HTTPAddr+"/v1/traces", "application/x-protobuf", body)
	require.Equal(t, 200, code, resp)
	s.stop()

	cfg.Tenants.Enabled = true
	s = startServer(t, cfg)
	code, got := apiGet(t, s, "/api/v1/traces/"+traceID, nil)
	require.Equal(t, 200, code, "written before tenants: the default tenant's: %s", got)
	code, got = apiGet(t, s, "/api/v1/traces/"+traceID, nil, "X-Scope-OrgID", "other")
	require.Equal(t, 404, code, "another tenant does not see it: %s", got)

	conn, err := grpc.NewClient(cfg.OTLP.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	md := metadata.Pairs("x-scope-orgid", "../../etc")
	_, err = ptraceotlp.NewGRPCClient(conn).Export(metadata.NewOutgoingContext(context.Background(), md), ptraceotlp.NewExportRequestFromTraces(td))
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	code, resp = post(t, "http://"+cfg.OTLP.HTTPAddr+"/v1/traces", "application/x-protobuf", body, "X-Scope-OrgID", "a/b")
	require.Equal(t, http.StatusBadRequest, code, resp)
	require.Contains(t, resp, "X-Scope-OrgID")
	entries, err := os.ReadDir(filepath.Join(dir, tenantsDir))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no store made for refused IDs, nor for the tenant that only read")
	require.Equal(t, emptyDir, entries[0].Name(), "reads of a tenant with no data are answered by an empty store")
}

// TestTenantLimitsAndTheAgentsTenant: a tenant's own limits
// (tenants.limits) bound it and not the others; the agent ships to the
// tenant it is told (X-Scope-OrgID).
func TestTenantLimitsAndTheAgentsTenant(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Tenants.Enabled = true
	var n yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte("max_active_series: 1"), &n))
	cfg.Tenants.Limits = map[string]yaml.Node{"small": *n.Content[0]}
	require.NoError(t, cfg.Validate())
	s := startServer(t, cfg)
	write := func(tenantID string, series int) (int, string) {
		var ts []prompb.TimeSeries
		for i := range series {
			ts = append(ts, prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "i", Value: fmt.Sprint(i)}},
				Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: 1}}})
		}
		pb, err := (&prompb.WriteRequest{Timeseries: ts}).Marshal()
		require.NoError(t, err)
		return post(t, s.api("/api/v1/write"), "application/x-protobuf", snappy.Encode(nil, pb),
			"Content-Encoding", "snappy", "X-Prometheus-Remote-Write-Version", "0.1.0", "X-Scope-OrgID", tenantID)
	}
	code, body := write("small", 2)
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "series")
	code, body = write("large", 2)
	require.Equal(t, http.StatusNoContent, code, body)

	acfg := agentConfig(t, t.TempDir(), cfg.OTLP.HTTPAddr)
	acfg.Tenant = "nodes"
	acfg.Logs.Glob = ""
	acfg.NodeMetrics.Interval = 100 * time.Millisecond
	startAgent(t, acfg)
	q := url.Values{"query": {`count(node_memory_MemTotal_bytes)`}}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, body := apiGet(t, s, "/api/v1/query", q, "X-Scope-OrgID", "nodes")
		assert.Contains(c, string(body), `"1"]`)
	}, 10*time.Second, 100*time.Millisecond, "the agent's node metrics in its tenant")
	_, got := apiGet(t, s, "/api/v1/query", q)
	require.NotContains(t, string(got), `"1"]`, "nor in the default tenant")
}

// TestNewTenantsOpenTogether: first writes of several new tenants at once
// each open their store once (the others' requests do not wait for it),
// and a live tail of a tenant that has written nothing yet sees its first
// lines.
func TestNewTenantsOpenTogether(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Tenants.Enabled = true
	s := startServer(t, cfg)
	tail := "ws://" + cfg.HTTPAddr + "/loki/api/v1/tail?" + url.Values{"query": {`{app="new"}`}}.Encode()
	ws, _, err := websocket.DefaultDialer.Dial(tail, http.Header{"X-Scope-OrgID": {"t0"}})
	require.NoError(t, err)
	defer ws.Close()
	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for i := range 16 {
		wg.Go(func() {
			body := fmt.Sprintf(`{"streams":[{"stream":{"app":"new"},"values":[["%d","line %d"]]}]}`, time.Now().UnixNano(), i)
			code, resp := postE(s.api("/loki/api/v1/push"), "application/json", []byte(body), "X-Scope-OrgID", fmt.Sprintf("t%d", i%4))
			if code != http.StatusNoContent {
				errs <- fmt.Sprintf("t%d: %d %s", i%4, code, resp)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for i := range 4 {
		_, body := apiGet(t, s, "/loki/api/v1/query_range", url.Values{"query": {`{app="new"}`}, "start": {fmt.Sprint(time.Now().Add(-time.Hour).UnixNano())}},
			"X-Scope-OrgID", fmt.Sprintf("t%d", i))
		require.Equal(t, 4, strings.Count(string(body), "line "), "t%d: %s", i, body)
	}
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, msg, err := ws.ReadMessage()
	require.NoError(t, err)
	require.Contains(t, string(msg), "line ", "the tail opened before t0 wrote sees t0's lines")
}

// postE is post for goroutines: the error is a status 0.
func postE(u, contentType string, body []byte, header ...string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(string(body)))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMaxTenants: a write for one tenant more than tenants.max_tenants is
// refused as a limit (400, INVALID_ARGUMENT on gRPC) and makes no store.
func TestMaxTenants(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Tenants.Enabled = true
	cfg.Tenants.MaxTenants = 2 // the default tenant and one more
	s := startServer(t, cfg)
	push := func(id string) (int, string) {
		return post(t, s.api("/loki/api/v1/push"), "application/json", []byte(`{"streams":[{"stream":{"app":"x"},"values":[["1","x"]]}]}`), "X-Scope-OrgID", id)
	}
	code, body := push("one")
	require.Equal(t, http.StatusNoContent, code, body)
	code, body = push("two")
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "too many tenants")
	td := otlptest.New(3).Traces(1, 1)
	conn, err := grpc.NewClient(cfg.OTLP.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(metadata.NewOutgoingContext(context.Background(), metadata.Pairs("x-scope-orgid", "three")),
		ptraceotlp.NewExportRequestFromTraces(td))
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "too many tenants")
	_, err = os.Stat(filepath.Join(dir, tenantsDir, "two"))
	require.True(t, os.IsNotExist(err), "no store for the refused tenant")
}
