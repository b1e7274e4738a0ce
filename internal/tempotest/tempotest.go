// Package tempotest runs a real Tempo (built from its Go module by `make
// tempo-peer`, a test reference never imported) for the tests: the single
// binary on loopback, OTLP/HTTP in, its query API out, its blocks and WAL
// on the local backend under a directory of the test's so that a restart
// keeps them.
package tempotest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/internal/peertest"
)

// Version is the Tempo the tests run: a commit of its main branch of
// 2025-05-29 (between v2.7 and v2.8), the newest the module proxy serves
// here; tagged v2 releases are not served (Tempo's module path has no
// /v2).
const Version = "v1.5.1-0.20250529124718-87c2dc380cec"

// Tempo is a Tempo the test runs: Start, Stop and Start again keep its
// spans.
type Tempo struct {
	// OTLP is its OTLP/HTTP traces endpoint; URL the base of its query API.
	OTLP, URL string
	*peertest.Process
}

// config: one process, every ring in memory, memberlist on loopback, no
// waits for a ring to settle (one member); an idle trace is cut after a
// second, so that a search finds it soon.
const config = `target: all
stream_over_http_enabled: true
usage_report:
  reporting_enabled: false
server:
  http_listen_address: 127.0.0.1
  http_listen_port: %[1]s
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: %[2]s
  log_level: warn
memberlist:
  bind_addr: [127.0.0.1]
  bind_port: %[3]s
  advertise_addr: 127.0.0.1
distributor:
  receivers:
    otlp:
      protocols:
        http:
          endpoint: %[4]s
ingester:
  trace_idle_period: 1s
  flush_check_period: 1s
  max_block_duration: 5m
  lifecycler:
    address: 127.0.0.1
    final_sleep: 0s
    min_ready_duration: 0s
    join_after: 0s
    ring:
      replication_factor: 1
      kvstore:
        store: inmemory
compactor:
  ring:
    wait_stability_min_duration: 0s
    kvstore:
      store: inmemory
metrics_generator:
  ring:
    kvstore:
      store: inmemory
storage:
  trace:
    backend: local
    wal:
      path: %[5]s/wal
    local:
      path: %[5]s/blocks
`

// New prepares a Tempo whose OTLP/HTTP receiver is on otlpAddr; Start runs
// it. The binary is $LUMEN_TEMPO or what `make tempo-peer` built.
func New(t testing.TB, otlpAddr string) *Tempo {
	t.Helper()
	bin := peertest.Bin(t, "tempo", "LUMEN_TEMPO", Version)
	port := func() string {
		_, p, err := net.SplitHostPort(loopback.FreeAddr(t))
		require.NoError(t, err)
		return p
	}
	httpPort := port()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tempo.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, config, httpPort, port(), port(), otlpAddr, filepath.Join(dir, "data")), 0o644))
	return &Tempo{OTLP: "http://" + otlpAddr + "/v1/traces", URL: "http://127.0.0.1:" + httpPort,
		Process: peertest.New(t, "tempo", bin, "-config.file="+cfg)}
}

// Start runs Tempo and waits until it is ready (its /ready and the OTLP
// port); again after Stop, on the same data.
func (p *Tempo) Start() {
	otlp := strings.TrimSuffix(strings.TrimPrefix(p.OTLP, "http://"), "/v1/traces")
	p.Process.Start(func() bool {
		return peertest.OK(p.URL+"/ready") && peertest.Dials(otlp)
	}, time.Minute)
}
