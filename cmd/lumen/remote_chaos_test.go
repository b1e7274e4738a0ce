package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/jaegertest"
	"github.com/lumenobs/lumen/internal/lokitest"
	"github.com/lumenobs/lumen/internal/promtest"
)

// TestBackendsKilledMidLoad: a Lumen with every signal remote takes a
// steady load of spans, lines and samples while its three backends — a
// real Prometheus, Loki and Jaeger v2 — are killed (SIGKILL) and started
// again; every span, line and sample Lumen acknowledged is in them
// afterwards, each once.
func TestBackendsKilledMidLoad(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("prometheus is not installed: .ci/run must install it (%v)", err)
		}
		t.Skip("prometheus not on PATH: apt-get install prometheus")
	}
	promAddr, promDir := freeAddr(t), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(promDir, "prometheus.yml"), []byte("global: {}\n"), 0o644))
	startProm := func() func() {
		stop, _ := promtest.RunPrometheus(t, bin, promDir, promAddr, "--web.enable-remote-write-receiver")
		require.Eventually(t, func() bool { code, _ := fetchE("http://" + promAddr + "/-/ready"); return code == http.StatusOK },
			30*time.Second, 50*time.Millisecond, "prometheus ready")
		return stop
	}
	stopProm := startProm()
	loki := lokitest.New(t, freeAddr(t))
	loki.Start()
	jaeger := jaegertest.New(t, freeAddr(t))
	jaeger.Start()
	cfg := allRemoteConfig(t, promAddr, loki, jaeger)
	cfg.SpanMetrics.Enabled = false // the samples counted are the load's alone
	s := startServer(t, cfg)

	// The load: every 20 ms a trace of 3 spans, a line and a sample, each
	// kept when Lumen acknowledged it.
	var (
		mu             sync.Mutex
		traces         []string
		lines, samples int
		step           atomic.Int64
		stopLoad       = make(chan struct{})
		loadDone       = make(chan error, 1)
		base           = time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	)
	go func() {
		loadDone <- func() error {
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return nil
				case <-time.After(20 * time.Millisecond):
				}
				step.Store(int64(i))
				id, body := traceRequest("chaos", i, 3, 0)
				code, msg := postE("http://"+cfg.OTLP.HTTPAddr+"/v1/traces", "application/x-protobuf", body)
				if code == 0 {
					return fmt.Errorf("post a trace: %s", msg)
				}
				ackTrace := code == http.StatusOK
				line := fmt.Sprintf(`{"streams":[{"stream":{"app":"chaos"},"values":[["%d","chaos line %d"]]}]}`, time.Now().UnixNano(), i)
				lcode, msg := postE(s.api("/loki/api/v1/push"), "application/json", []byte(line))
				if lcode == 0 {
					return fmt.Errorf("push a line: %s", msg)
				}
				scode, msg := postE(s.api("/api/v1/write"), "application/x-protobuf",
					v1Request(t, map[string]string{"chaos_total": "load"}, "chaos", base.Add(time.Duration(i)*time.Second), 1, time.Second),
					"Content-Encoding", "snappy", "X-Prometheus-Remote-Write-Version", "0.1.0")
				if scode == 0 {
					return fmt.Errorf("remote write: %s", msg)
				}
				for _, c := range []int{code, lcode, scode} {
					if c != http.StatusOK && c != http.StatusNoContent && c != http.StatusTooManyRequests {
						return fmt.Errorf("step %d: answered %d", i, c)
					}
				}
				mu.Lock()
				if ackTrace {
					traces = append(traces, id)
				}
				if lcode == http.StatusNoContent {
					lines++
				}
				if scode == http.StatusNoContent {
					samples++
				}
				mu.Unlock()
			}
		}()
	}()
	waitStep := func(n int64) {
		require.Eventually(t, func() bool { return step.Load() >= n }, time.Minute, 10*time.Millisecond)
	}
	waitStep(20)
	stopProm()
	loki.Stop()
	jaeger.Stop()
	waitStep(step.Load() + 20) // taken while every backend is down
	stopProm = startProm()
	loki.Start()
	jaeger.Start()
	waitStep(step.Load() + 20)
	close(stopLoad)
	require.NoError(t, <-loadDone)
	mu.Lock()
	defer mu.Unlock()
	require.Greater(t, len(traces), 60)
	t.Logf("acknowledged %d traces, %d lines, %d samples", len(traces), lines, samples)

	for _, id := range traces {
		require.Eventually(t, func() bool {
			got, found := findTrace(t, s, id)
			return found && got.SpanCount == 3
		}, 2*time.Minute, 100*time.Millisecond, "acknowledged trace %s whole", id)
	}
	count := func(path, query string) string {
		code, body := fetch(t, s.api(path+"?"+url.Values{"query": {query}, "time": {strconv.FormatInt(time.Now().Unix(), 10)}}.Encode()))
		if code != http.StatusOK {
			return body
		}
		if i := strings.Index(body, `"value":[`); i >= 0 {
			v := body[i+len(`"value":[`):]
			v = v[strings.Index(v, `"`)+1:]
			return v[:strings.Index(v, `"`)]
		}
		return body
	}
	require.Eventually(t, func() bool {
		return count("/loki/api/v1/query", `sum(count_over_time({app="chaos"}[1h]))`) == strconv.Itoa(lines)
	}, 2*time.Minute, 200*time.Millisecond, "%d acknowledged lines in loki, each once", lines)
	require.Eventually(t, func() bool {
		return count("/api/v1/query", `count_over_time(chaos_total[1h])`) == strconv.Itoa(samples)
	}, 2*time.Minute, 200*time.Millisecond, "%d acknowledged samples in prometheus, each once", samples)
}

// fetchE is fetch's status without failing the test.
func fetchE(u string) (int, error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
