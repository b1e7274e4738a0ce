// Package jaegertest runs a real Jaeger v2 (built from its Go module by
// `make jaeger-peer`, a test reference never imported) for the tests: one
// process on loopback, OTLP/HTTP in, its query API, spans kept in Badger
// under a directory of the test's so that a restart keeps them.
package jaegertest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/loopback"
)

// Version is the Jaeger the tests run.
const Version = "v1.76.0"

// Bin is the Jaeger binary: $LUMEN_JAEGER, or where `make jaeger-peer`
// builds it. Without it the test fails in CI (`make test` builds it) and
// is skipped elsewhere.
func Bin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("LUMEN_JAEGER")
	if bin == "" {
		home, _ := os.UserHomeDir()
		bin = filepath.Join(home, ".cache", "lumen-peers", "jaeger-"+Version)
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("jaeger is not built: `make test` builds it with `make jaeger-peer` (%v)", err)
		}
		t.Skipf("jaeger not built (%v): make jaeger-peer", err)
	}
	return bin
}

// Jaeger is a Jaeger the test runs.
type Jaeger struct {
	// OTLP is its OTLP/HTTP traces endpoint; Query the base of its query
	// API.
	OTLP, Query string
	t           testing.TB
	bin, cfg    string
	health      string

	mu   sync.Mutex
	stop func()
	logs *bytes.Buffer
}

const config = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %s
  jaeger_query:
    storage:
      traces: badger_store
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      badger_store:
        badger:
          directories:
            keys: %[5]s/keys
            values: %[5]s/values
          ephemeral: false
          ttl:
            spans: 48h
receivers:
  otlp:
    protocols:
      http:
        endpoint: %[4]s
exporters:
  jaeger_storage_exporter:
    trace_storage: badger_store
`

// New prepares a Jaeger whose OTLP/HTTP receiver is on otlpAddr; Start
// runs it.
func New(t testing.TB, otlpAddr string) *Jaeger {
	t.Helper()
	bin := Bin(t)
	health, query, grpc := loopback.FreeAddr(t), loopback.FreeAddr(t), loopback.FreeAddr(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, config, health, query, grpc, otlpAddr, filepath.Join(dir, "badger")), 0o644))
	j := &Jaeger{OTLP: "http://" + otlpAddr + "/v1/traces", Query: "http://" + query, t: t, bin: bin, cfg: cfg, health: "http://" + health + "/status"}
	t.Cleanup(func() {
		j.Stop()
		if t.Failed() && j.logs != nil {
			t.Logf("jaeger output:\n%s", j.logs.String())
		}
	})
	return j
}

// Start runs Jaeger and waits until it is ready; again after Stop, on the
// same data.
func (j *Jaeger) Start() {
	j.t.Helper()
	j.mu.Lock()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &bytes.Buffer{}
	cmd := exec.CommandContext(ctx, j.bin, "--config", j.cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(j.t, cmd.Start())
	var once sync.Once
	j.stop = func() { once.Do(func() { cancel(); _ = cmd.Wait() }) }
	j.logs = logs
	j.mu.Unlock()
	require.Eventually(j.t, func() bool {
		for _, u := range []string{j.health, j.Query + "/api/services"} {
			resp, err := http.Get(u)
			if err != nil {
				return false
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		c, err := net.Dial("tcp", j.OTLP[len("http://"):len(j.OTLP)-len("/v1/traces")])
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, time.Minute, 100*time.Millisecond, "jaeger ready")
}

// Stop ends Jaeger (SIGKILL).
func (j *Jaeger) Stop() {
	j.mu.Lock()
	stop := j.stop
	j.mu.Unlock()
	if stop != nil {
		stop()
	}
}
