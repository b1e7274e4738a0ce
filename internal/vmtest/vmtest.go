// Package vmtest runs a real single-node VictoriaMetrics (built from its Go
// module by `make vm-peer`, a test reference never imported) for the
// tests: one process on loopback, Prometheus remote write in, its
// Prometheus query API out, its data under a directory of the test's so
// that a restart keeps it. It runs with VictoriaMetrics' defaults but for
// where it listens and keeps its data.
package vmtest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/internal/peertest"
)

// Version is the VictoriaMetrics the tests run.
const Version = "v1.140.0"

// VM is a VictoriaMetrics the test runs.
type VM struct {
	// URL is the base of its HTTP API: remote write at URL+"/api/v1/write",
	// the Prometheus query API at URL+"/api/v1/…".
	URL string
	*peertest.Process
}

// New prepares a VictoriaMetrics; Start runs it. The binary is
// $LUMEN_VICTORIA_METRICS or what `make vm-peer` built.
func New(t testing.TB) *VM {
	t.Helper()
	bin := peertest.Bin(t, "victoria-metrics", "LUMEN_VICTORIA_METRICS", Version)
	addr := loopback.FreeAddr(t)
	return &VM{URL: "http://" + addr, Process: peertest.New(t, "victoria-metrics", bin,
		"-httpListenAddr="+addr, "-storageDataPath="+filepath.Join(t.TempDir(), "vm"), "-loggerLevel=WARN")}
}

// Start runs VictoriaMetrics and waits until it is ready; again after
// Stop, on the same data.
func (v *VM) Start() {
	v.Process.Start(func() bool { return peertest.OK(v.URL + "/health") }, time.Minute)
}
