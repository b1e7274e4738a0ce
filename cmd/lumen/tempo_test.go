package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of the API tests")

// seqIDs gives the SDK predictable ids: trace n is 0000…n, spans count up.
type seqIDs struct{ trace, span atomic.Uint64 }

func (g *seqIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	n := g.trace.Add(1)
	tid[14], tid[15], tid[0] = byte(n>>8), byte(n), 0x7e
	return tid, g.NewSpanID(context.Background(), tid)
}

func (g *seqIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	var sid trace.SpanID
	n := g.span.Add(1)
	sid[6], sid[7], sid[0] = byte(n>>8), byte(n), 0x5b
	return sid
}

// sendCallTrees sends, with the OTel Go SDK over OTLP gRPC, n traces of
// client → frontend → backend → db (one tracer provider per service, as
// four processes would), their ids from ids. The third trace of each call
// fails in the backend; the fourth is slow.
func sendCallTrees(t *testing.T, s *server, ids *seqIDs, n int, base time.Time) {
	t.Helper()
	ctx := context.Background()
	tracers := map[string]trace.Tracer{}
	var providers []*sdktrace.TracerProvider
	for _, svc := range []string{"client", "frontend", "backend", "db"} {
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.cfg.OTLP.GRPCAddr), otlptracegrpc.WithInsecure())
		require.NoError(t, err)
		res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(svc), attribute.String("deployment.environment.name", "prod"))
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res), sdktrace.WithIDGenerator(ids))
		providers = append(providers, tp)
		tracers[svc] = tp.Tracer("shop")
	}
	for i := 1; i <= n; i++ {
		start := base.Add(time.Duration(i) * time.Second)
		slow := 20 * time.Millisecond
		if i == 4 {
			slow = 1500 * time.Millisecond
		}
		c1, root := tracers["client"].Start(ctx, "checkout", trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindClient))
		c2, fe := tracers["frontend"].Start(c1, "GET /cart/{id}", trace.WithTimestamp(start.Add(time.Millisecond)), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.route", "/cart/{id}"), attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 200)))
		c3, be := tracers["backend"].Start(c2, "reserve", trace.WithTimestamp(start.Add(2*time.Millisecond)), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("rpc.method", "Reserve"), attribute.String("order.id", fmt.Sprint("o-", i))))
		_, dbs := tracers["db"].Start(c3, "SELECT stock", trace.WithTimestamp(start.Add(3*time.Millisecond)), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system", "postgresql")))
		dbs.End(trace.WithTimestamp(start.Add(8 * time.Millisecond)))
		if i == 3 {
			be.SetStatus(codes.Error, "out of stock")
		}
		be.End(trace.WithTimestamp(start.Add(10 * time.Millisecond)))
		fe.End(trace.WithTimestamp(start.Add(slow + 5*time.Millisecond)))
		root.End(trace.WithTimestamp(start.Add(slow + 10*time.Millisecond)))
	}
	for _, tp := range providers {
		require.NoError(t, tp.Shutdown(ctx))
	}
}

// golden compares a JSON answer with testdata/<name>.json, times (unix ns
// strings, unix µs numbers) relative to base written as offsets so the
// file does not depend on the day.
func golden(t *testing.T, name string, got []byte, base time.Time) {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(got, &v), string(got))
	pretty, err := json.MarshalIndent(v, "", "  ")
	require.NoError(t, err)
	baseNs := base.UnixNano()
	re := regexp.MustCompile(`"(\d{19})"`)
	pretty = re.ReplaceAllFunc(pretty, func(m []byte) []byte {
		var ns int64
		_, _ = fmt.Sscanf(string(m[1:len(m)-1]), "%d", &ns)
		return []byte(fmt.Sprintf(`"base+%s"`, time.Duration(ns-baseNs)))
	})
	// Jaeger writes times as unix microseconds, as numbers.
	reUs := regexp.MustCompile(`: (\d{16})([,\n])`)
	pretty = reUs.ReplaceAllFunc(pretty, func(m []byte) []byte {
		sub := reUs.FindSubmatch(m)
		var us int64
		_, _ = fmt.Sscanf(string(sub[1]), "%d", &us)
		return []byte(fmt.Sprintf(`: "base+%s"%s`, time.Duration(us*1000-baseNs), sub[2]))
	})
	path := filepath.Join("testdata", name+".json")
	if *updateGolden {
		require.NoError(t, os.MkdirAll("testdata", 0o750))
		require.NoError(t, os.WriteFile(path, append(pretty, '\n'), 0o600))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "golden file missing: run go test ./cmd/lumen/ -run %s -update", t.Name())
	require.JSONEq(t, string(want), string(pretty), "%s differs from the golden file", name)
}

func TestTempoAPI(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	s := startServer(t, cfg)
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	sendCallTrees(t, s, &seqIDs{}, 6, base)
	window := url.Values{"start": {fmt.Sprint(base.Unix())}, "end": {fmt.Sprint(base.Add(time.Minute).Unix())}}
	with := func(kv ...string) url.Values {
		q := url.Values{"start": window["start"], "end": window["end"]}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		return q
	}
	type result struct {
		Traces []struct {
			TraceID         string `json:"traceID"`
			RootServiceName string `json:"rootServiceName"`
			RootTraceName   string `json:"rootTraceName"`
			DurationMs      int64  `json:"durationMs"`
			SpanSet         struct {
				Matched int `json:"matched"`
				Spans   []struct {
					SpanID string `json:"spanID"`
				} `json:"spans"`
			} `json:"spanSet"`
		} `json:"traces"`
	}
	search := func(q url.Values) []string {
		code, body := apiGet(t, s, "/api/search", q)
		require.Equal(t, http.StatusOK, code, string(body))
		var r result
		require.NoError(t, json.Unmarshal(body, &r))
		var out []string
		for _, tr := range r.Traces {
			out = append(out, tr.TraceID[30:])
		}
		return out
	}
	id := func(n int) string { return fmt.Sprintf("7e00000000000000000000000000%04x", n) }

	require.Equal(t, []string{"06", "05", "04", "03", "02", "01"}, search(with()), "every trace, newest first")
	require.Equal(t, []string{"03"}, search(with("tags", "error=true")))
	require.Equal(t, []string{"03"}, search(with("q", `{ status = error }`)))
	require.Equal(t, []string{"04"}, search(with("minDuration", "1s")), "minDuration is the trace's")
	require.Equal(t, []string{"06", "05", "03", "02", "01"}, search(with("maxDuration", "1s")))
	require.Equal(t, []string{"04"}, search(with("q", `{ resource.service.name = "frontend" && duration > 1s }`)))
	require.Equal(t, []string{"02"}, search(with("q", `{ span.order.id = "o-2" }`)), "a non-indexed attribute: checked on the candidates' spans")
	require.Equal(t, []string{"06", "05"}, search(with("tags", "service.name=backend", "limit", "2")))
	require.Equal(t, []string{"06", "05", "04", "03", "02", "01"}, search(with("q", `{ span.http.route = "/cart/{id}" && kind = server }`)))
	require.Equal(t, []string{"03", "01"}, search(with("q", `{ .order.id =~ "o-[13]" || (name = "nope" && status = ok) }`)))
	require.Empty(t, search(with("q", `{ resource.service.name = "db" && status = error }`)))
	require.Empty(t, search(url.Values{"start": {fmt.Sprint(base.Add(-time.Hour).Unix())}, "end": {fmt.Sprint(base.Add(-30 * time.Minute).Unix())}}))

	// Lumen's own search: the summaries the UI lists, root-only too.
	lumen := func(kv ...string) []string {
		q := url.Values{"start": {fmt.Sprint(base.UnixNano())}, "end": {fmt.Sprint(base.Add(time.Minute).UnixNano())}}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Add(kv[i], kv[i+1])
		}
		code, body := apiGet(t, s, "/api/v1/search", q)
		require.Equal(t, http.StatusOK, code, string(body))
		var r struct {
			Traces []struct {
				TraceID     string   `json:"traceId"`
				RootService string   `json:"rootService"`
				SpanCount   int      `json:"spanCount"`
				ErrorCount  int      `json:"errorCount"`
				Services    []string `json:"services"`
				Matched     []struct {
					Name string `json:"name"`
				} `json:"matched"`
			} `json:"traces"`
		}
		require.NoError(t, json.Unmarshal(body, &r))
		var out []string
		for _, tr := range r.Traces {
			require.Equal(t, "client", tr.RootService)
			require.Equal(t, 4, tr.SpanCount)
			require.Equal(t, []string{"backend", "client", "db", "frontend"}, tr.Services)
			out = append(out, tr.TraceID[30:])
		}
		return out
	}
	require.Equal(t, []string{"03"}, lumen("service", "backend", "status", "error"))
	require.Equal(t, []string{"06", "05", "04", "03", "02", "01"}, lumen("root", "true", "service", "client"))
	require.Equal(t, []string{"06", "05"}, lumen("root", "true", "service", "client", "name", "checkout", "limit", "2"))
	require.Empty(t, lumen("root", "true", "service", "frontend"), "the frontend's spans are not roots")
	require.Equal(t, []string{"04"}, lumen("service", "frontend", "minDuration", "1s"))
	require.Equal(t, []string{"02"}, lumen("attr", "order.id=o-2", "attr", "rpc.method=Reserve"))
	require.Equal(t, []string{"06", "05", "04", "03", "02", "01"}, lumen("name", "SELECT stock", "maxDuration", "10ms"))
	for q, want := range map[string]string{
		"status=bad": `status="bad"`, "minDuration=x": `minDuration="x" is not a duration`,
		"attr=noeq": `attr="noeq" is not key=value`, "limit=0": `limit="0" is not an integer`, "start=soon": `start="soon" is not a time`,
	} {
		params, err := url.ParseQuery(q)
		require.NoError(t, err)
		code, body := apiGet(t, s, "/api/v1/search", params)
		require.Equal(t, http.StatusBadRequest, code, q)
		require.Contains(t, string(body), want)
	}

	code, body := apiGet(t, s, "/api/search", with("q", `{ resource.service.name = "backend" && status = error }`))
	require.Equal(t, http.StatusOK, code, string(body))
	golden(t, "tempo_search", body, base)

	// TraceQL beyond one filter: structure, trace intrinsics, pipelines.
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{`{ resource.service.name = "frontend" } >> { status = error }`, []string{"03"}},
		{`{ resource.service.name = "frontend" } > { kind = server }`, []string{"06", "05", "04", "03", "02", "01"}},
		{`{ resource.service.name = "client" } > { resource.service.name = "db" }`, nil},
		{`{ resource.service.name = "db" } << { status = error }`, []string{"03"}},
		{`{ name = "reserve" } ~ { }`, nil},
		{`{ nestedSetParent < 0 && true && resource.service.name = "client" } &>> { kind = server && duration > 1s }`, []string{"04"}},
		{`{ status = error } && { resource.service.name = "db" }`, []string{"03"}},
		{`{ status = error } || { .order.id = "o-5" }`, []string{"05", "03"}},
		{`{ traceDuration > 1s }`, []string{"04"}},
		{`{ rootServiceName = "client" && rootName = "checkout" && resource.service.name = "db" }`, []string{"06", "05", "04", "03", "02", "01"}},
		{`{ kind = server } | count() > 1`, []string{"06", "05", "04", "03", "02", "01"}},
		{`{ kind = server } | count() > 2`, nil},
		{`{ } | avg(duration) > 500ms`, []string{"04"}},
		{`{ resource.service.name = "frontend" } | max(duration) > 1s`, []string{"04"}},
		{`{ span.http.response.status_code = 200 }`, []string{"06", "05", "04", "03", "02", "01"}},
		{`{ span.http.response.status_code = "200" }`, nil},
	} {
		require.Equal(t, tc.want, search(with("q", tc.query)), tc.query)
	}
	// A structural query, a by() and a select(): the shapes Grafana's
	// trace table reads (spanSets, their attributes, the spans' attributes).
	code, body = apiGet(t, s, "/api/search", with("q", `{ resource.service.name = "client" } >> { kind = server } | by(resource.service.name) | select(span.order.id, status)`, "limit", "1"))
	require.Equal(t, http.StatusOK, code, string(body))
	golden(t, "tempo_search_pipeline", body, base)
	code, body = apiGet(t, s, "/api/search", with("q", `{ } | count() > 3`, "limit", "1", "spss", "2"))
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"key":"count()","value":{"intValue":"4"}}`, jsonPath(t, body, "traces", 0, "spanSet", "attributes", 0))
	require.JSONEq(t, `4`, jsonPath(t, body, "traces", 0, "spanSet", "matched"))
	require.JSONEq(t, `2`, jsonPath(t, body, "traces", 0, "spanSets", 0, "spans", "#"), "spss bounds the spans shown")
	require.JSONEq(t, `{"backend":{"spanCount":1},"client":{"spanCount":1},"db":{"spanCount":1},"frontend":{"spanCount":1}}`, jsonPath(t, body, "traces", 0, "serviceStats"))

	code, body = apiGet(t, s, "/api/traces/"+id(3), nil)
	require.Equal(t, http.StatusOK, code, string(body))
	golden(t, "tempo_trace_v1", body, base)
	code, pb := apiGet(t, s, "/api/traces/"+id(3), nil, "Accept", "application/protobuf")
	require.Equal(t, http.StatusOK, code)
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(pb)
	require.NoError(t, err, "the protobuf answer is tempopb.Trace, which OTLP's decoder reads")
	require.Equal(t, 4, td.SpanCount())
	code, body = apiGet(t, s, "/api/v2/traces/"+id(3), nil)
	require.Equal(t, http.StatusOK, code, string(body))
	var v2 struct{ Trace json.RawMessage }
	require.NoError(t, json.Unmarshal(body, &v2))
	td, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(v2.Trace)
	require.NoError(t, err)
	require.Equal(t, 4, td.SpanCount())
	// Grafana's Tempo data source asks v2 for protobuf and decodes
	// tempopb.TraceByIDResponse: the trace is its field 1.
	code, pb = apiGet(t, s, "/api/v2/traces/"+id(3), url.Values{"start": window["start"], "end": window["end"]}, "Accept", "application/protobuf")
	require.Equal(t, http.StatusOK, code)
	num, typ, n := protowire.ConsumeTag(pb)
	require.Equal(t, protowire.Number(1), num)
	require.Equal(t, protowire.BytesType, typ)
	inner, m := protowire.ConsumeBytes(pb[n:])
	require.Equal(t, len(pb), n+m, "nothing after the trace: the trace is complete")
	td, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(inner)
	require.NoError(t, err)
	require.Equal(t, 4, td.SpanCount())
	code, _ = apiGet(t, s, "/api/v2/traces/"+id(999), nil, "Accept", "application/protobuf")
	require.Equal(t, http.StatusNotFound, code)

	code, body = apiGet(t, s, "/api/search/tags", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"tagNames":["db.system","deployment.environment.name","http.request.method","http.response.status_code","http.route","rpc.method","service.name"]}`, string(body))
	code, body = apiGet(t, s, "/api/v2/search/tags", nil)
	require.Equal(t, http.StatusOK, code)
	golden(t, "tempo_tags_v2", body, base)
	code, body = apiGet(t, s, "/api/search/tag/service.name/values", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"tagValues":["backend","client","db","frontend"]}`, string(body))
	code, body = apiGet(t, s, "/api/v2/search/tag/span.http.route/values", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"tagValues":[{"type":"string","value":"/cart/{id}"}]}`, string(body))
	code, body = apiGet(t, s, "/api/search/tag/name/values", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"tagValues":["GET /cart/{id}","SELECT stock","checkout","reserve"]}`, string(body))
	for _, tc := range []struct {
		path   string
		params url.Values
		want   string
	}{
		{"/api/v2/search/tag/span.http.response.status_code/values", nil, `[{"type":"int","value":"200"}]`},
		{"/api/v2/search/tag/status/values", nil, `[{"type":"keyword","value":"error"},{"type":"keyword","value":"ok"},{"type":"keyword","value":"unset"}]`},
		{"/api/v2/search/tag/resource.service.name/values", nil, `[{"type":"string","value":"backend"},{"type":"string","value":"client"},{"type":"string","value":"db"},{"type":"string","value":"frontend"}]`},
		{"/api/v2/search/tag/name/values", url.Values{"q": {`{resource.service.name="db"}`}}, `[{"type":"string","value":"SELECT stock"}]`},
		{"/api/v2/search/tag/span.order.id/values", url.Values{"q": {`{ status = error }`}}, `[{"type":"string","value":"o-3"}]`},
		{"/api/v2/search/tag/resource.service.name/values", url.Values{"q": {`{ duration > 1s }`}}, `[{"type":"string","value":"client"},{"type":"string","value":"frontend"}]`},
		{"/api/v2/search/tag/kind/values", url.Values{"q": {`{ resource.service.name = "db" }`}}, `[{"type":"keyword","value":"client"}]`},
		{"/api/v2/search/tag/span.http.response.status_code/values", url.Values{"q": {`{ kind = server }`}}, `[{"type":"int","value":"200"}]`},
		{"/api/v2/search/tag/span.nope/values", nil, `[]`},
	} {
		code, body := apiGet(t, s, tc.path, tc.params)
		require.Equal(t, http.StatusOK, code, string(body))
		require.JSONEq(t, `{"tagValues":`+tc.want+`}`, string(body), "%s %v", tc.path, tc.params)
	}
	code, body = apiGet(t, s, "/api/v2/search/tags", url.Values{"scope": {"resource"}})
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"scopes":[{"name":"resource","tags":["deployment.environment.name","service.name"]}]}`, string(body))
	code, body = apiGet(t, s, "/api/search/tags", url.Values{"scope": {"span"}})
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"tagNames":["db.system","http.request.method","http.response.status_code","http.route","rpc.method"]}`, string(body))

	code, body = apiGet(t, s, "/api/echo", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "echo", string(body))
	code, body = apiGet(t, s, "/api/status/buildinfo", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), `"version"`)

	// Bad input: a 400 that names the problem.
	for _, tc := range []struct {
		path   string
		params url.Values
		code   int
		want   string
	}{
		{"/api/search", url.Values{"q": {`{ .a = `}}, 400, "expected a value"},
		{"/api/search", url.Values{"q": {`{ duration > fast }`}}, 400, "duration compares with a duration"},
		{"/api/search", url.Values{"q": {`{ foo = 1 }`}}, 400, `unknown attribute "foo"`},
		{"/api/search", url.Values{"q": {`{ } | rate() by(resource.service.name)`}}, 400, "the metrics function rate() is not supported"},
		{"/api/search", url.Values{"q": {`{ .a + 1 = 2 }`}}, 400, "arithmetic (+) is not supported"},
		{"/api/search", url.Values{"q": {`{ .a = 1 } | count()`}}, 400, "count() as a stage of its own is not supported"},
		{"/api/v2/search/tag/name/values", url.Values{"q": {`{ .a = `}}, 400, "expected a value"},
		{"/api/v2/search/tags", url.Values{"scope": {"everything"}}, 400, `scope="everything"`},
		{"/api/search", url.Values{"minDuration": {"soon"}}, 400, `minDuration="soon" is not a duration`},
		{"/api/search", url.Values{"start": {"yesterday"}}, 400, `start="yesterday" is not unix seconds`},
		{"/api/search", url.Values{"limit": {"0"}}, 400, `limit="0" is not a positive integer`},
		{"/api/search", url.Values{"tags": {"service.name"}}, 400, `"service.name" is not key=value`},
		{"/api/traces/xyz", nil, 400, "invalid trace id"},
		{"/api/traces/" + id(999), nil, 404, "not found"},
	} {
		code, body := apiGet(t, s, tc.path, tc.params)
		require.Equal(t, tc.code, code, "%s %v: %s", tc.path, tc.params, body)
		require.Contains(t, string(body), tc.want)
	}
}

// jsonPath returns the JSON at a path of object keys and array indexes in
// body; "#" gives an array's length.
func jsonPath(t *testing.T, body []byte, path ...any) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(body, &v), string(body))
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if p == "#" {
				a, ok := v.([]any)
				require.True(t, ok, "%v is not an array", path)
				v = len(a)
				continue
			}
			m, ok := v.(map[string]any)
			require.True(t, ok, "%v: not an object at %q", path, p)
			v = m[p]
		case int:
			a, ok := v.([]any)
			require.True(t, ok && p < len(a), "%v: no element %d", path, p)
			v = a[p]
		}
	}
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
