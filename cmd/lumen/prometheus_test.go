package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/promtest"
)

// lookTool finds a program that .ci/run installs; outside CI the test is
// skipped when it is missing.
func lookTool(t *testing.T, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed: .ci/run must install it (%v)", name, err)
		}
		t.Skipf("%s not on PATH: %s", name, install)
	}
	return path
}

// TestRealPrometheusRemoteWrite runs a real Prometheus that scrapes itself
// and Lumen and remote-writes everything to Lumen, then asks promtool the
// same questions of both.
func TestRealPrometheusRemoteWrite(t *testing.T) {
	prom := lookTool(t, "prometheus", "apt-get install prometheus")
	promtool := lookTool(t, "promtool", "apt-get install prometheus")
	s := startServer(t, testConfig(t, t.TempDir()))
	promAddr := freeAddr(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: lumen
    static_configs: [{targets: [%q]}]
  - job_name: prometheus
    static_configs: [{targets: [%q]}]
remote_write:
  - url: http://%s/api/v1/write
    send_exemplars: true
    send_native_histograms: true
    queue_config: {batch_send_deadline: 200ms, max_shards: 2}
    metadata_config: {send_interval: 1s}
`, s.cfg.HTTPAddr, promAddr, s.cfg.HTTPAddr)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600))
	stop, logs := promtest.RunPrometheus(t, prom, dir, promAddr, "--enable-feature=native-histograms,exemplar-storage")

	query := func(server string, args ...string) string {
		out, err := exec.Command(promtool, append([]string{"query"}, append(args[:1:1], append([]string{"http://" + server}, args[1:]...)...)...)...).CombinedOutput()
		require.NoError(t, err, "promtool %v against %s: %s", args, server, out)
		return string(out)
	}
	// Wait until ten scrapes of both targets have reached Lumen, so that the
	// query time below (3 s ago) is well after the first.
	var start time.Time
	require.Eventually(t, func() bool {
		resp, err := http.Get(s.api("/api/v1/query?query=count(count_over_time(up[30s])>=10)"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if strings.Contains(b.String(), `"value":[`) && strings.Contains(b.String(), `"2"]`) {
			start = time.Now().Add(-3 * time.Second)
			return true
		}
		return false
	}, 60*time.Second, 250*time.Millisecond, "Prometheus' samples did not reach Lumen")
	// Let the remote-write queue deliver everything up to start.
	time.Sleep(2 * time.Second)
	ts := fmt.Sprint(start.Unix())
	for _, q := range [][]string{
		{"instant", `up`, "--time=" + ts},
		{"instant", `sum by (job) (up)`, "--time=" + ts},
		{"instant", `count by (job) (prometheus_build_info or lumen_store_partitions)`, "--time=" + ts},
		{"range", `sum by (job) (up)`, "--start=" + fmt.Sprint(start.Add(-2*time.Second).Unix()), "--end=" + ts, "--step=1s"},
		{"instant", `max by (job) (up{job=~"lum.*"})`, "--time=" + ts},
		// Lumen's own request durations, scraped as native histograms.
		// (Not histogram_quantile: Debian's Prometheus 2.x interpolates
		// within native buckets linearly, the 3.x engine exponentially.)
		{"instant", `histogram_count(sum by (handler) (lumen_http_request_duration_seconds{handler="/api/v1/write"}))`, "--time=" + ts},
		{"instant", `histogram_sum(sum(increase(lumen_http_request_duration_seconds{handler="/api/v1/write"}[5s])))`, "--time=" + ts},
	} {
		want := query(promAddr, q...)
		got := query(s.cfg.HTTPAddr, q...)
		require.Equal(t, want, got, "promtool query %v", q)
		require.NotEmpty(t, strings.TrimSpace(want), "promtool query %v", q)
	}
	stop() // the log is read once Prometheus has stopped writing it
	require.NotContains(t, logs.String(), "Failed to send batch", "Prometheus reports no remote-write errors")
}
