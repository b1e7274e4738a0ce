package promtest

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// RunPrometheus runs a real Prometheus, bin, with dir/prometheus.yml and
// its TSDB under dir, on addr, with the extra flags; stop ends it (then its
// output is all in logs), and it is shown when the test fails.
func RunPrometheus(t *testing.T, bin, dir, addr string, extra ...string) (stop func(), logs *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = &bytes.Buffer{}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "tsdb"), "--web.listen-address=" + addr, "--log.level=warn"}, extra...)...)
	cmd.Stderr, cmd.Stdout = logs, logs
	require.NoError(t, cmd.Start())
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); _ = cmd.Wait() }) }
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	return stop, logs
}

// StartPrometheus runs Debian's Prometheus (which .ci/run installs;
// outside CI the test is skipped without it) on addr with an empty
// configuration, its remote-write receiver, native histograms and
// exemplars on, until the test ends; with wait, until it answers.
func StartPrometheus(t *testing.T, addr string, wait bool) {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("prometheus is not installed: .ci/run must install it (%v)", err)
		}
		t.Skip("prometheus not on PATH: apt-get install prometheus")
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte("global: {}\n"), 0o644))
	RunPrometheus(t, bin, dir, addr, "--web.enable-remote-write-receiver", "--enable-feature=native-histograms,exemplar-storage")
	if wait {
		require.Eventually(t, func() bool {
			resp, err := http.Get("http://" + addr + "/-/ready")
			if err != nil {
				return false
			}
			_ = resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, 30*time.Second, 20*time.Millisecond, "prometheus ready")
	}
}
