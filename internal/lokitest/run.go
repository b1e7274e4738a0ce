package lokitest

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/loopback"
)

// Bin is the Loki binary: $LUMEN_LOKI, or where `make loki-peer` builds
// it. Without it the test fails in CI (.ci/run's `make test` builds it)
// and is skipped elsewhere.
func Bin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("LUMEN_LOKI")
	if bin == "" {
		home, _ := os.UserHomeDir()
		bin = filepath.Join(home, ".cache", "lumen-peers", "loki-"+Version)
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("loki is not built: `make test` builds it with `make loki-peer` (%v)", err)
		}
		t.Skipf("loki not built (%v): make loki-peer", err)
	}
	return bin
}

// Loki is a Loki the test runs.
type Loki struct {
	// URL is its HTTP API's base, http://addr.
	URL string
	t   testing.TB
	bin string
	dir string
	cfg string

	mu   sync.Mutex
	stop func()
	logs *bytes.Buffer
}

// New prepares a Loki on addr (its HTTP API) with its data in a
// directory of the test's; Start runs it.
func New(t testing.TB, addr string) *Loki {
	t.Helper()
	bin := Bin(t)
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	httpPort, err := strconv.Atoi(port)
	require.NoError(t, err)
	ports := make([]int, 2) // gRPC, memberlist
	for i := range ports {
		_, p, err := net.SplitHostPort(loopback.FreeAddr(t))
		require.NoError(t, err)
		ports[i], _ = strconv.Atoi(p)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "loki.yaml")
	require.NoError(t, os.WriteFile(cfg, Config(httpPort, ports[0], filepath.Join(dir, "data"), ports[1], false), 0o644))
	l := &Loki{URL: "http://" + addr, t: t, bin: bin, dir: dir, cfg: cfg}
	t.Cleanup(func() {
		l.Stop()
		if t.Failed() && l.logs != nil {
			t.Logf("loki output:\n%s", l.logs.String())
		}
	})
	return l
}

// Start runs Loki and waits until it is ready (its ring joined); again
// after Stop, on the same data.
func (l *Loki) Start() {
	l.t.Helper()
	l.mu.Lock()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &bytes.Buffer{}
	cmd := exec.CommandContext(ctx, l.bin, "-config.file="+l.cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(l.t, cmd.Start())
	var once sync.Once
	l.stop = func() { once.Do(func() { cancel(); _ = cmd.Wait() }) }
	l.logs = logs
	l.mu.Unlock()
	require.Eventually(l.t, func() bool {
		resp, err := http.Get(l.URL + "/ready")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 2*time.Minute, 200*time.Millisecond, "loki ready")
}

// Stop ends Loki (SIGKILL: what it had not flushed is in its WAL).
func (l *Loki) Stop() {
	l.mu.Lock()
	stop := l.stop
	l.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Start runs a Loki on a free address until the test ends.
func Start(t testing.TB) *Loki {
	t.Helper()
	l := New(t, loopback.FreeAddr(t))
	l.Start()
	return l
}
