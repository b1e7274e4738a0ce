package query

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/limits"
	"github.com/lumenobs/lumen/store"
)

// limitedAPIs is every query API over a real store, served on loopback,
// each with concurrent slots and a queue of queued.
type limitedAPIs struct {
	db     *store.DB
	srv    *httptest.Server
	m      *Metrics
	prom   *PromAPI
	loki   *LokiAPI
	tempo  *TempoAPI
	jaeger *JaegerAPI
	traces *API
	reg    *prometheus.Registry
}

func startLimitedAPIs(t *testing.T, concurrent, queued int) *limitedAPIs {
	t.Helper()
	o := store.DefaultOptions(t.TempDir())
	db, err := store.Open(o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	promCfg, lokiCfg, traceCfg := DefaultPromConfig(), DefaultLokiConfig(), DefaultTraceConfig()
	promCfg.MaxConcurrent, promCfg.MaxQueued = concurrent, queued
	lokiCfg.MaxConcurrent, lokiCfg.MaxQueued = concurrent, queued
	traceCfg.MaxConcurrent, traceCfg.MaxQueued = concurrent, queued
	reg := prometheus.NewRegistry()
	a := &limitedAPIs{db: db, m: NewMetrics(reg), reg: reg}
	a.traces = New(db, traceCfg, a.m, nil)
	a.loki = NewLoki(db, lokiCfg, a.m, nil)
	a.tempo = NewTempo(db, store.DefaultSearchAttributes, "test", traceCfg, a.m, nil)
	a.jaeger = NewJaeger(db, traceCfg, a.m, nil)
	a.prom = NewPromAPI(promCfg, NewPromEngine(promCfg, nil, reg), db, db, PromSources{}, nil, reg, reg, a.m, "test")
	mux := http.NewServeMux()
	for _, r := range []interface{ Register(Mux, Wrap) }{a.traces, a.loki, a.tempo, a.jaeger} {
		r.Register(mux, nil)
	}
	mux.Handle("/api/v1/", a.prom)
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// limitedRoutes are a request of each limited API, and the limiter it
// waits for.
func (a *limitedAPIs) limitedRoutes() []limitedRoute {
	return []limitedRoute{
		{"PromQL instant", apiPrometheus, "/api/v1/query?" + url.Values{"query": {"up"}}.Encode(), a.prom.lim},
		{"PromQL range", apiPrometheus, "/api/v1/query_range?" + url.Values{"query": {"up"}, "start": {"0"}, "end": {"3600"}, "step": {"1"}}.Encode(), a.prom.lim},
		{"LogQL range", apiLoki, "/loki/api/v1/query_range?" + url.Values{"query": {`{app="x"}`}}.Encode(), a.loki.lim},
		{"LogQL instant", apiLoki, "/loki/api/v1/query?" + url.Values{"query": {`count_over_time({app="x"}[1m])`}}.Encode(), a.loki.lim},
		{"Tempo search", apiTempo, "/api/search", a.tempo.lim},
		{"Lumen search", apiTempo, "/api/v1/search", a.tempo.lim},
		{"Jaeger search", apiJaeger, "/jaeger/api/traces?service=cart", a.jaeger.lim},
		{"correlated trace", apiTraces, "/api/v1/traces/5b8efff798038103d269b633813fc60c", a.traces.lim},
	}
}

type limitedRoute struct {
	name, api, path string
	lim             *limits.Limiter
}

func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// TestQueriesPastTheLimitAreTurnedAway: with every slot taken and no
// queue, a query of each API is a 503 with Retry-After at once (PromQL's
// max_concurrent was never used: eight heavy range queries all ran at
// once); once the slot is free, it is served.
func TestQueriesPastTheLimitAreTurnedAway(t *testing.T) {
	a := startLimitedAPIs(t, 1, 0)
	for _, rt := range a.limitedRoutes() {
		t.Run(rt.name, func(t *testing.T) {
			release, err := rt.lim.Acquire(context.Background())
			require.NoError(t, err)
			began := time.Now()
			resp, body := get(t, a.srv.URL+rt.path)
			release()
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
			require.Equal(t, "1", resp.Header.Get("Retry-After"))
			require.Contains(t, body, "too many requests at once")
			require.Less(t, time.Since(began), 5*time.Second, "turned away at once, not queued")
			if rt.api == apiPrometheus || rt.api == apiTraces {
				var e errorBody
				require.NoError(t, json.Unmarshal([]byte(body), &e), body)
				require.Equal(t, errorBody{Status: "error", ErrorType: errUnavailable, Error: e.Error}, e)
			}

			resp, body = get(t, a.srv.URL+rt.path)
			require.NotEqual(t, http.StatusServiceUnavailable, resp.StatusCode, "served once the slot is free: %s", body)
		})
	}
	for api, n := range map[string]float64{apiPrometheus: 2, apiLoki: 2, apiTempo: 2, apiJaeger: 1, apiTraces: 1} {
		require.InDelta(t, n, testutil.ToFloat64(a.m.rejected.WithLabelValues(api, reasonConcurrency)), 0, api)
	}
}

// TestQueuedQueriesRunWhenASlotFrees: a query past the running bound waits
// in the queue and runs once a slot frees; a queued query whose timeout
// passes first is a 503.
func TestQueuedQueriesRunWhenASlotFrees(t *testing.T) {
	a := startLimitedAPIs(t, 1, 1)
	for _, rt := range a.limitedRoutes() {
		t.Run(rt.name, func(t *testing.T) {
			release, err := rt.lim.Acquire(context.Background())
			require.NoError(t, err)
			// The start is taken before the release is timed, so the wait
			// measured is never shorter than the timer's.
			began := time.Now()
			time.AfterFunc(200*time.Millisecond, release)
			resp, body := get(t, a.srv.URL+rt.path)
			require.NotEqual(t, http.StatusServiceUnavailable, resp.StatusCode, body)
			require.GreaterOrEqual(t, time.Since(began), 200*time.Millisecond, "it waited for the slot")
		})
	}

	cfg := DefaultLokiConfig()
	cfg.MaxConcurrent, cfg.MaxQueued, cfg.Timeout = 1, 1, 100*time.Millisecond
	loki := NewLoki(a.db, cfg, nil, nil)
	mux := http.NewServeMux()
	loki.Register(mux, nil)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	release, err := loki.lim.Acquire(context.Background())
	require.NoError(t, err)
	defer release()
	resp, body := get(t, srv.URL+"/loki/api/v1/query_range?"+url.Values{"query": {`{app="x"}`}}.Encode())
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	require.Contains(t, body, "no slot for LogQL queries freed in time")
}

// A metric query answering more series than max_query_series is a 400 in
// Loki's words; at the bound it is answered.
func TestLogQLSeriesPerQueryIsBounded(t *testing.T) {
	a := startLimitedAPIs(t, 4, 4)
	now := time.Now()
	var streams []store.LogStream
	for i := range 4 {
		streams = append(streams, store.LogStream{Labels: labels.FromStrings("app", "x", "pod", string(rune('a'+i))),
			Entries: []store.LogEntry{{T: now.Add(-time.Second).UnixNano(), Line: "hello"}}})
	}
	require.NoError(t, a.db.WriteLogStreams(context.Background(), streams))
	cfg := DefaultLokiConfig()
	cfg.MaxQuerySeries = 3
	loki := NewLoki(a.db, cfg, nil, nil)
	mux := http.NewServeMux()
	loki.Register(mux, nil)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for query, code := range map[string]int{
		`count_over_time({app="x"}[1m])`:                http.StatusBadRequest,
		`sum by (app) (count_over_time({app="x"}[1m]))`: http.StatusOK,
		`count_over_time({app="x", pod=~"a|b|c"}[1m])`:  http.StatusOK,
	} {
		resp, body := get(t, srv.URL+"/loki/api/v1/query?"+url.Values{"query": {query}, "time": {strconv.FormatInt(now.Unix(), 10)}}.Encode())
		require.Equal(t, code, resp.StatusCode, "%s: %s", query, body)
		if code == http.StatusBadRequest {
			require.Contains(t, body, "maximum number of series (3) reached for a single query")
		}
	}
}

// TestPromRangeQueriesFromTheResultsCache: the API answers a range query
// asked again from its results cache (internal/promcache), the same answer.
func TestPromRangeQueriesFromTheResultsCache(t *testing.T) {
	a := startLimitedAPIs(t, 4, 10)
	app := a.db.Appender(context.Background())
	start := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	for i := range 120 {
		_, err := app.Append(0, labels.FromStrings("__name__", "up", "job", "a"), start.Add(time.Duration(i)*15*time.Second).UnixMilli(), float64(i%2))
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	u := a.srv.URL + "/api/v1/query_range?" + url.Values{"query": {"sum(up)"}, "start": {fmt.Sprint(start.Unix())},
		"end": {fmt.Sprint(start.Add(30 * time.Minute).Unix())}, "step": {"60"}}.Encode()
	_, first := get(t, u)
	_, again := get(t, u)
	require.Contains(t, first, `"values":[[`)
	require.Equal(t, first, again)
	hits := 0.0
	mfs, err := a.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "lumen_promql_results_cache_steps_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "hit" {
					hits = m.GetCounter().GetValue()
				}
			}
		}
	}
	require.Equal(t, 31.0, hits, "every step of the second answer from the cache")
}
