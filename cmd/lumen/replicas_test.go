package main

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/lumenobs/lumen/internal/jaegertest"
	"github.com/lumenobs/lumen/internal/lokitest"
	"github.com/lumenobs/lumen/internal/promtest"
	"github.com/lumenobs/lumen/internal/replica"
	"github.com/lumenobs/lumen/query"
)

// sendCalls sends, with the OTel SDK's OTLP/HTTP exporters, n traces of a
// call from web to api — web's server span and its client span, api's
// server span under that client span, from two services' providers, so
// each service's spans come in their own requests — and a line api logs
// in its span, to every OTLP/HTTP address in otlp; it returns the ids.
func sendCalls(t *testing.T, otlp []string, n int) []string {
	t.Helper()
	ctx := context.Background()
	provider := func(service string) (*sdktrace.TracerProvider, *sdklog.LoggerProvider) {
		res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("k8s.pod.name", service+"-0"))
		var (
			topts = []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
			lopts = []sdklog.LoggerProviderOption{sdklog.WithResource(res)}
		)
		for _, addr := range otlp {
			te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(addr), otlptracehttp.WithInsecure())
			require.NoError(t, err)
			le, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(addr), otlploghttp.WithInsecure())
			require.NoError(t, err)
			topts = append(topts, sdktrace.WithBatcher(te))
			lopts = append(lopts, sdklog.WithProcessor(sdklog.NewBatchProcessor(le)))
		}
		return sdktrace.NewTracerProvider(topts...), sdklog.NewLoggerProvider(lopts...)
	}
	webT, webL := provider("web")
	apiT, apiL := provider("api")
	var ids []string
	for i := range n {
		rootCtx, root := webT.Tracer("web").Start(ctx, "GET /checkout", trace.WithSpanKind(trace.SpanKindServer))
		callCtx, call := webT.Tracer("web").Start(rootCtx, "POST /pay", trace.WithSpanKind(trace.SpanKindClient))
		srvCtx, srv := apiT.Tracer("api").Start(callCtx, "POST /pay", trace.WithSpanKind(trace.SpanKindServer))
		var rec otellog.Record
		rec.SetTimestamp(time.Now())
		rec.SetSeverity(otellog.SeverityInfo)
		rec.SetSeverityText("INFO")
		rec.SetBody(attribute.StringValue("paid order " + string(rune('a'+i))))
		apiL.Logger("api").Emit(srvCtx, rec)
		srv.End()
		call.End()
		root.End()
		ids = append(ids, root.SpanContext().TraceID().String())
	}
	for _, p := range []interface{ Shutdown(context.Context) error }{webT, webL, apiT, apiL} {
		require.NoError(t, p.Shutdown(ctx))
	}
	return ids
}

// allRemoteConfig is a test server's configuration with every signal in a
// remote backend: metrics in the Prometheus at promAddr, lines in loki,
// spans in jaeger.
func allRemoteConfig(t *testing.T, promAddr string, loki *lokitest.Loki, jaeger *jaegertest.Jaeger) Config {
	cfg := remoteTracesConfig(t, jaeger)
	cfg.Storage.Metrics.Backend = backendRemote
	cfg.Storage.Metrics.Remote.WriteURL = "http://" + promAddr + "/api/v1/write"
	cfg.Storage.Metrics.Remote.QueryURL = "http://" + promAddr
	cfg.Storage.Logs.Backend = backendRemote
	cfg.Storage.Logs.Remote.PushURL = loki.URL + "/loki/api/v1/push"
	cfg.Storage.Logs.Remote.QueryURL = loki.URL
	return cfg
}

// redValues are the last values of a correlated answer's span-metric
// series, by their labels.
func redValues(got traceResponse) map[string]float64 {
	out := map[string]float64{}
	if got.Metrics == nil {
		return out
	}
	for _, ss := range got.Metrics.Series {
		if strings.HasPrefix(ss.Metric.Get(labels.MetricName), "traces_spanmetrics_") && len(ss.Values) > 0 {
			out[ss.Metric.String()] = ss.Values[len(ss.Values)-1].V
		}
	}
	return out
}

// sameValues: the same series, with values equal but for the rounding of
// a sum taken in another order (partial sums of durations added).
func sameValues(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || math.Abs(v-w) > 1e-9*math.Max(math.Abs(v), 1) {
			return false
		}
	}
	return true
}

func graphOf(got traceResponse) []query.Dependency {
	if got.Metrics == nil {
		return nil
	}
	return got.Metrics.ServiceGraph
}

// TestReplicasShareRemoteBackends: two `lumen serve` replicas with every
// signal in remote backends — a real Prometheus, Loki and Jaeger v2 —
// behind one name, fed by a `lumen agent` that shards spans by trace id
// among the name's addresses; a single local Lumen fed the same data
// through an agent of its own.
// Each replica's correlated answer for every trace is the local one's:
// spans, lines, services, the service graph and the span metrics (each
// replica's partial series, summed); both replicas made span metrics,
// each under its lumen_replica. With one replica stopped and gone from
// the name, the other answers every query and takes the agent's new
// traces whole. The UI's trace page, in Chromium, shows the same on a
// replica as on the local Lumen.
func TestReplicasShareRemoteBackends(t *testing.T) {
	promAddr := freeAddr(t)
	promtest.StartPrometheus(t, promAddr, true)
	loki := lokitest.New(t, freeAddr(t))
	loki.Start()
	jaeger := jaegertest.New(t, freeAddr(t))
	jaeger.Start()

	localCfg := testConfig(t, t.TempDir())
	localCfg.SpanMetrics.Interval = time.Second
	local := startServer(t, localCfg)

	// The replicas' OTLP/HTTP ports: one port on the two loopback
	// addresses, as a headless Service's name resolves to its pods.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, ln.Close())
	hosts := []string{"127.0.0.1", "::1"}
	var replicas []*server
	for i, host := range hosts {
		cfg := allRemoteConfig(t, promAddr, loki, jaeger)
		cfg.Replica = "lumen-" + string(rune('0'+i))
		cfg.OTLP.HTTPAddr = net.JoinHostPort(host, port)
		cfg.SpanMetrics.Interval = time.Second
		replicas = append(replicas, startServer(t, cfg))
	}
	var lookMu sync.Mutex
	addrs := slices.Clone(hosts)
	acfg := agentConfig(t, t.TempDir(), "lumen-replicas.test:"+port)
	acfg.Ship.ShardByTraceID = true
	acfg.Ship.ResolveInterval = 100 * time.Millisecond
	acfg.lookupHost = func(context.Context, string) ([]string, error) {
		lookMu.Lock()
		defer lookMu.Unlock()
		return slices.Clone(addrs), nil
	}
	acfg.NodeMetrics.Interval = 0
	startAgent(t, acfg)
	// The local Lumen is fed through an agent too (they add the node).
	lcfg := agentConfig(t, t.TempDir(), local.cfg.OTLP.HTTPAddr)
	lcfg.NodeMetrics.Interval = 0
	startAgent(t, lcfg)

	ids := sendCalls(t, []string{acfg.OTLPHTTPAddr, lcfg.OTLPHTTPAddr}, 8)
	want := map[string]traceResponse{}
	for _, id := range ids {
		require.Eventually(t, func() bool {
			w, _ := findTrace(t, local, id)
			want[id] = w
			return w.SpanCount == 3 && w.LogCount == 1 && len(graphOf(w)) == 1 && graphOf(w)[0].CallCount == 8
		}, time.Minute, 200*time.Millisecond, "the local Lumen's answer, with every call in its graph")
	}
	for ri, r := range replicas {
		for _, id := range ids {
			w := want[id]
			var got traceResponse
			require.Eventually(t, func() bool {
				got, _ = findTrace(t, r, id)
				return got.SpanCount == w.SpanCount && got.LogCount == w.LogCount && slices.Equal(graphOf(got), graphOf(w)) &&
					len(redValues(got)) == len(redValues(w))
			}, time.Minute, 200*time.Millisecond, "replica %d: trace %s whole, its lines, the graph of every call", ri, id)
			require.Empty(t, got.Warnings)
			require.Equal(t, comparableSpans(w.Spans), comparableSpans(got.Spans))
			require.Equal(t, w.Services, got.Services)
			require.Equal(t, comparableLogs(w.Logs), comparableLogs(got.Logs))
			require.Equal(t, w.StartTime, got.StartTime)
			require.Equal(t, w.EndTime, got.EndTime)
			// The span metrics come to the same counts once every replica
			// wrote its last: compared without the replica label.
			var wantRED, gotRED map[string]float64
			if !assert.Eventually(t, func() bool {
				got = getTrace(t, r, id)
				wantRED, gotRED = redValues(getTrace(t, local, id)), redValues(got)
				return sameValues(wantRED, gotRED)
			}, time.Minute, 500*time.Millisecond, "replica %d: the span metrics of trace %s summed over the replicas", ri, id) {
				require.Equal(t, wantRED, gotRED)
			}
			for _, ss := range got.Metrics.Series {
				require.False(t, ss.Metric.Has(replica.Label), "%s", ss.Metric)
			}
		}
	}
	// The UI's trace page shows the same on a replica as on the local
	// Lumen: waterfall, lines, metrics.
	node, chromium := browserTools(t, remoteScript)
	err = runBrowserScript(t, node, remoteScript, 3*time.Minute, "LUMEN_LOCAL_URL="+local.api(""), "LUMEN_REMOTE_URL="+replicas[1].api(""),
		"LUMEN_TRACE_IDS="+strings.Join(ids[:3], ","), "LUMEN_CHROMIUM="+chromium)
	require.NoError(t, err, "browser test of the trace page over remote backends failed: see the log above")

	// Both replicas took traces and wrote their part of the span metrics.
	code, resp := promGet(t, replicas[0], "/api/v1/query", url.Values{"query": {"count by (lumen_replica) (traces_spanmetrics_calls_total)"}})
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(resp.Data), `"lumen-0"`)
	require.Contains(t, string(resp.Data), `"lumen-1"`)

	// lumen-0 stops and leaves the name: lumen-1 answers every query, and
	// the agent's new traces go to it whole.
	replicas[0].stop()
	lookMu.Lock()
	addrs = hosts[1:]
	lookMu.Unlock()
	r := replicas[1]
	for _, id := range ids {
		got := getTrace(t, r, id)
		require.Empty(t, got.Warnings)
		require.Equal(t, comparableSpans(want[id].Spans), comparableSpans(got.Spans))
		require.Equal(t, comparableLogs(want[id].Logs), comparableLogs(got.Logs))
	}
	for _, q := range []string{
		"/api/v1/query?" + url.Values{"query": {`sum without (lumen_replica) (traces_spanmetrics_calls_total{service="api"})`}}.Encode(),
		"/loki/api/v1/query_range?" + url.Values{"query": {`{service_name="api"}`}, "limit": {"100"}}.Encode(),
		"/jaeger/api/traces/" + ids[0],
		"/api/traces/" + ids[0],
		"/api/v1/search?service=api",
	} {
		code, body := fetch(t, r.api(q))
		require.Equal(t, http.StatusOK, code, "%s: %s", q, body)
	}
	code, body := fetch(t, r.api("/loki/api/v1/query_range?"+url.Values{"query": {`{service_name="api"}`}, "limit": {"100"}}.Encode()))
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 8, strings.Count(body, "paid order"), body)
	more := sendCalls(t, []string{acfg.OTLPHTTPAddr}, 2)
	for _, id := range more {
		require.Eventually(t, func() bool {
			got, _ := findTrace(t, r, id)
			return got.SpanCount == 3 && got.LogCount == 1
		}, time.Minute, 200*time.Millisecond, "a new trace whole on the replica left")
	}
}
