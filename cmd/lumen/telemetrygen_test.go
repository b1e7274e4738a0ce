package main

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// telemetrygen is the OpenTelemetry Collector's load generator; .ci/run
// installs it. Outside CI the test is skipped when it is not on PATH.
func telemetrygen(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("telemetrygen")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("telemetrygen is not installed: .ci/run must install it (%v)", err)
		}
		t.Skip("telemetrygen not on PATH: go install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v0.160.0")
	}
	return path
}

func metricValue(t *testing.T, s *server, series string) float64 {
	t.Helper()
	resp, err := http.Get(s.api("/metrics"))
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return 0
}

func TestTelemetrygenTracesAndLogs(t *testing.T) {
	bin := telemetrygen(t)
	s := startServer(t, testConfig(t, t.TempDir()))
	gen := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, append(args, "--otlp-insecure", "--otlp-endpoint", s.cfg.OTLP.GRPCAddr, "--rate", "0")...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	// 3 workers x 40 traces x (1 root + 2 children).
	gen("traces", "--workers", "3", "--traces", "40", "--child-spans", "2")
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	gen("logs", "--workers", "2", "--logs", "25", "--trace-id", traceID, "--span-id", spanID, "--body", "payment declined")
	gen("logs", "--logs", "10")

	require.InDelta(t, 360, metricValue(t, s, `lumen_ingest_items_stored_total{signal="traces"}`), 0, "every span telemetrygen sent is stored")
	require.InDelta(t, 60, metricValue(t, s, `lumen_ingest_items_stored_total{signal="logs"}`), 0, "every log record telemetrygen sent is stored")

	got := getTrace(t, s, traceID)
	require.Equal(t, 50, got.LogCount)
	require.Equal(t, []string{"telemetrygen"}, got.Services)
	for _, l := range got.Logs {
		require.Equal(t, "payment declined", l.Line)
		require.Equal(t, spanID, l.SpanID)
	}
}
