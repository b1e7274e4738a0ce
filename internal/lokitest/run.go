package lokitest

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/internal/peertest"
)

// Loki is a Loki the test runs: Start, Stop and Start again keep its data.
type Loki struct {
	// URL is its HTTP API's base, http://addr.
	URL string
	*peertest.Process
}

// New prepares a Loki on addr (its HTTP API) with its data in a
// directory of the test's; Start runs it. The binary is $LUMEN_LOKI or
// what `make loki-peer` built.
func New(t testing.TB, addr string) *Loki {
	t.Helper()
	bin := peertest.Bin(t, "loki", "LUMEN_LOKI", Version)
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
	return &Loki{URL: "http://" + addr, Process: peertest.New(t, "loki", bin, "-config.file="+cfg)}
}

// Start runs Loki and waits until it is ready (its ring joined); again
// after Stop, on the same data.
func (l *Loki) Start() {
	l.Process.Start(func() bool { return peertest.OK(l.URL + "/ready") }, 2*time.Minute)
}

// Start runs a Loki on a free address until the test ends.
func Start(t testing.TB) *Loki {
	t.Helper()
	l := New(t, loopback.FreeAddr(t))
	l.Start()
	return l
}
