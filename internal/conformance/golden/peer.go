//go:build unix

package golden

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Peer is a reference server (Loki, Jaeger) run as a child process on
// loopback to record goldens. It runs in a process group of its own, so
// that Stop stops whatever it started too (hence unix only).
type Peer struct {
	name   string
	cmd    *exec.Cmd
	stderr lockedBuffer
}

// StartPeer starts cmd as the reference server name ("loki"): its
// standard output is discarded, its standard error kept for Said.
func StartPeer(name string, cmd *exec.Cmd) (*Peer, error) {
	p := &Peer{name: name, cmd: cmd}
	cmd.Stdout, cmd.Stderr = io.Discard, &p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// Stop kills the peer's process group and waits for the peer.
func (p *Peer) Stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// Said is err with the last 20 lines the peer wrote to its standard
// error.
func (p *Peer) Said(err error) error {
	lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return fmt.Errorf("%w; %s said: %s", err, p.name, strings.Join(lines, "\n"))
}

// WaitReady asks base+path every poll until it answers 200, for at most
// within or until ctx's deadline.
func (p *Peer) WaitReady(ctx context.Context, c *http.Client, base, path string, within, poll time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			break
		}
		time.Sleep(poll)
	}
	return fmt.Errorf("%s not ready at %s", p.name, base)
}

// FreePorts returns n distinct loopback ports free a moment ago.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// lockedBuffer is a bytes.Buffer the peer's output copier writes while
// Said reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
