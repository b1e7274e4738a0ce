// Package jaegertest runs a real Jaeger v2 (built from its Go module by
// `make jaeger-peer`, a test reference never imported) for the tests: one
// process on loopback, OTLP/HTTP in, its query API, spans kept in Badger
// under a directory of the test's so that a restart keeps them.
package jaegertest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/internal/peertest"
)

// Version is the Jaeger the tests run.
const Version = "v1.76.0"

// Jaeger is a Jaeger the test runs: Start, Stop and Start again keep its
// spans.
type Jaeger struct {
	// OTLP is its OTLP/HTTP traces endpoint; Query the base of its query
	// API.
	OTLP, Query string
	health      string
	*peertest.Process
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
// runs it. The binary is $LUMEN_JAEGER or what `make jaeger-peer` built.
func New(t testing.TB, otlpAddr string) *Jaeger {
	t.Helper()
	bin := peertest.Bin(t, "jaeger", "LUMEN_JAEGER", Version)
	health, query, grpc := loopback.FreeAddr(t), loopback.FreeAddr(t), loopback.FreeAddr(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, config, health, query, grpc, otlpAddr, filepath.Join(dir, "badger")), 0o644))
	return &Jaeger{OTLP: "http://" + otlpAddr + "/v1/traces", Query: "http://" + query, health: "http://" + health + "/status",
		Process: peertest.New(t, "jaeger", bin, "--config", cfg)}
}

// Start runs Jaeger and waits until it is ready (health, query API and
// the OTLP port); again after Stop, on the same data.
func (j *Jaeger) Start() {
	otlp := strings.TrimSuffix(strings.TrimPrefix(j.OTLP, "http://"), "/v1/traces")
	j.Process.Start(func() bool {
		return peertest.OK(j.health, j.Query+"/api/services") && peertest.Dials(otlp)
	}, time.Minute)
}
