package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/jaegertest"
	"github.com/lumenobs/lumen/internal/lokitest"
	"github.com/lumenobs/lumen/internal/promtest"
)

// TestMigrateLocalStoreToRemoteBackends: what a local Lumen kept — spans and
// OTLP lines of traces, Loki pushes with trace ids in metadata, JSON, logfmt
// and traceparent, remote-written samples and its span metrics — copied
// by `lumen migrate` into a real Prometheus, Loki and Jaeger v2, answers
// through a Lumen with every signal remote as the local one answered: each
// trace's correlated answer (spans, lines, services, span metrics), PromQL
// and LogQL; a run after a finished or interrupted one sends nothing twice.
func TestMigrateLocalStoreToRemoteBackends(t *testing.T) {
	localCfg := testConfig(t, t.TempDir())
	localCfg.SpanMetrics.Interval = time.Second
	local := startServer(t, localCfg)
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	code, _, body := remoteWrite(t, local, v1Request(t, map[string]string{"queue_depth": "a:1"}, "batch", start, 20, 15*time.Second), 1)
	require.Equal(t, http.StatusNoContent, code, body)
	pushLokiFixture(t, local, time.Now().Add(-2*time.Minute).Truncate(time.Millisecond))
	ids := []string{sendTraceAndLog(t, []*server{local}, "payments"), sendTraceAndLog(t, []*server{local}, "orders"), lokiTrace}
	want := map[string]traceResponse{}
	for _, id := range ids[:2] {
		require.Eventually(t, func() bool {
			want[id] = getTrace(t, local, id)
			return len(redValues(want[id])) > 0
		}, 30*time.Second, 200*time.Millisecond, "the span metrics written")
	}
	want[lokiTrace] = getTrace(t, local, lokiTrace)
	at := strconv.FormatInt(start.Add(4*time.Minute).Unix(), 10)
	promQ := "/api/v1/query?" + url.Values{"query": {"queue_depth"}, "time": {at}}.Encode()
	now := time.Now()
	lokiQ := "/loki/api/v1/query_range?" + url.Values{"query": {`{app=~".+"} |= "card"`}, "start": {strconv.FormatInt(now.Add(-time.Hour).UnixNano(), 10)},
		"end": {strconv.FormatInt(now.UnixNano(), 10)}, "limit": {"100"}}.Encode()
	wantProm, wantLoki := httpGet(t, local.api(promQ)), lokiLines(t, local.api(lokiQ))
	require.Contains(t, wantProm, `"queue_depth"`)
	require.Len(t, wantLoki, 2)
	local.stop()

	promAddr := freeAddr(t)
	promtest.StartPrometheus(t, promAddr, true)
	loki := lokitest.New(t, freeAddr(t))
	loki.Start()
	jaeger := jaegertest.New(t, freeAddr(t))
	jaeger.Start()
	cfg := allRemoteConfig(t, promAddr, loki, jaeger)

	var out bytes.Buffer
	o, rest, err := parseMigrate([]string{"--from", localCfg.DataDir, "--log-level=warn"}, time.Now())
	require.NoError(t, err)
	require.Equal(t, []string{"--log-level=warn"}, rest)
	require.NoError(t, migrate(context.Background(), o, cfg, &out))
	t.Log(out.String())
	require.Contains(t, out.String(), "traces: 4 spans sent")
	require.Contains(t, out.String(), "logs: 9 lines sent")
	require.NotContains(t, out.String(), "refused")
	// Run again: nothing to do. As after an interruption (every request
	// queued, none known done): what an earlier run queued is not sent
	// again — a backend would refuse the whole request as out of order.
	out.Reset()
	require.NoError(t, migrate(context.Background(), o, cfg, &out))
	require.Equal(t, 3, strings.Count(out.String(), "copied by an earlier run"), out.String())
	progressFile := filepath.Join(localCfg.DataDir, "queue-migrate", "progress.json")
	b, err := os.ReadFile(progressFile)
	require.NoError(t, err)
	var progress map[string]any
	require.NoError(t, json.Unmarshal(b, &progress))
	progress["done"] = []string{}
	b, err = json.Marshal(progress)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(progressFile, b, 0o600))
	out.Reset()
	require.NoError(t, migrate(context.Background(), o, cfg, &out))
	require.Contains(t, out.String(), "metrics: 0 samples sent")
	require.Contains(t, out.String(), "queued by an earlier run")
	require.Contains(t, out.String(), "traces: 0 spans sent")
	require.NotContains(t, out.String(), "refused", "nothing sent twice")

	remote := startServer(t, cfg)
	for _, id := range ids {
		w := want[id]
		var got traceResponse
		require.Eventually(t, func() bool {
			got, _ = findTrace(t, remote, id)
			return got.SpanCount == w.SpanCount && got.LogCount == w.LogCount && sameValues(redValues(w), redValues(got))
		}, time.Minute, 200*time.Millisecond, "trace %s in the backends", id)
		require.Empty(t, got.Warnings)
		require.Equal(t, comparableSpans(w.Spans), comparableSpans(got.Spans))
		require.Equal(t, w.Services, got.Services)
		require.Equal(t, comparableLogs(w.Logs), comparableLogs(got.Logs))
	}
	require.Equal(t, wantProm, httpGet(t, remote.api(promQ)))
	require.Equal(t, wantLoki, lokiLines(t, remote.api(lokiQ)))

	// Flags: a signal kept locally cannot be migrated; times are checked.
	_, _, err = parseMigrate([]string{"--start", "yesterday"}, time.Now())
	require.ErrorContains(t, err, "neither an RFC 3339 time nor a duration")
	o, _, err = parseMigrate([]string{"--signals", "metrics"}, time.Now())
	require.NoError(t, err)
	require.ErrorContains(t, migrate(context.Background(), o, testConfig(t, t.TempDir()), &out), "whose backend is local")
}

// lokiLines are the lines (time and text, sorted) of a Loki query_range
// answer: what two stores answer alike whatever stream labels each adds.
func lokiLines(t *testing.T, u string) []string {
	t.Helper()
	code, body := fetch(t, u)
	require.Equal(t, http.StatusOK, code, body)
	var resp struct {
		Data struct {
			Result []struct {
				Values [][]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &resp), body)
	var out []string
	for _, r := range resp.Data.Result {
		for _, v := range r.Values {
			out = append(out, fmt.Sprint(v[0], " ", v[1]))
		}
	}
	slices.Sort(out)
	return out
}

// FuzzDecodeProgress: a migration's progress file, whatever it holds, is
// read or refused with an error; what is read has no negative count and
// names only signals.
func FuzzDecodeProgress(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeProgress(b)
		if err != nil {
			return
		}
		for s, n := range p.Queued {
			if n < 0 || !slices.Contains([]string{"metrics", "logs", "traces"}, s) {
				t.Fatalf("read %q: %d", s, n)
			}
		}
	})
}
