// Package peertest runs a peer server (Loki, Jaeger: built from its Go
// module by `make loki-peer` / `make jaeger-peer`, a test reference never
// imported) as a child process of a test, on loopback, restartable on the
// same data; its output is shown when the test fails.
package peertest

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Bin is the peer's binary: $env, or ~/.cache/lumen-peers/<name>-<version>
// where `make <name>-peer` builds it. Without it the test fails in CI
// (`make test` builds it) and is skipped elsewhere.
func Bin(t testing.TB, name, env, version string) string {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		home, _ := os.UserHomeDir()
		bin = filepath.Join(home, ".cache", "lumen-peers", name+"-"+version)
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not built: `make test` builds it with `make %s-peer` (%v)", name, name, err)
		}
		t.Skipf("%s not built (%v): make %s-peer", name, err, name)
	}
	return bin
}

// Process is a peer the test runs: bin with args.
type Process struct {
	t    testing.TB
	name string
	bin  string
	args []string

	mu   sync.Mutex
	stop func()
	logs *bytes.Buffer
}

// New prepares the peer name (bin with args); Start runs it. It is
// stopped when the test ends, and its output logged if the test failed.
func New(t testing.TB, name, bin string, args ...string) *Process {
	p := &Process{t: t, name: name, bin: bin, args: args}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() && p.logs != nil {
			t.Logf("%s output:\n%s", name, p.logs.String())
		}
	})
	return p
}

// Start runs the peer and waits, at most within, until ready says it is;
// again after Stop.
func (p *Process) Start(ready func() bool, within time.Duration) {
	p.t.Helper()
	p.mu.Lock()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &bytes.Buffer{}
	cmd := exec.CommandContext(ctx, p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(p.t, cmd.Start())
	var once sync.Once
	p.stop = func() { once.Do(func() { cancel(); _ = cmd.Wait() }) }
	p.logs = logs
	p.mu.Unlock()
	require.Eventually(p.t, ready, within, 100*time.Millisecond, "%s ready", p.name)
}

// Stop ends the peer with SIGKILL (what it had not flushed is in its WAL
// or store).
func (p *Process) Stop() {
	p.mu.Lock()
	stop := p.stop
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// OK reports whether every URL answers 200.
func OK(urls ...string) bool {
	for _, u := range urls {
		resp, err := http.Get(u)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
	}
	return true
}

// Dials reports whether addr takes a TCP connection.
func Dials(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
