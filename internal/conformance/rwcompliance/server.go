package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// server is a running `lumen serve`.
type server struct {
	cmd    *exec.Cmd
	url    string
	logf   string
	exited chan struct{}
}

// startLumen starts lumen serve on loopback ports with a data directory
// under tmp and waits until it is ready; a port taken between choosing and
// binding it is tried again with other ports.
func startLumen(ctx context.Context, bin, tmp string, ready time.Duration, log *zap.Logger) (*server, error) {
	var err error
	for attempt := range 3 {
		var s *server
		if s, err = start(ctx, bin, filepath.Join(tmp, fmt.Sprintf("lumen-%d", attempt)), ready); err == nil {
			log.Info("lumen ready", zap.String("url", s.url))
			return s, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func start(ctx context.Context, bin, dir string, ready time.Duration) (*server, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lumen dir: %w", err)
	}
	logf := filepath.Join(dir, "lumen.log")
	lf, err := os.Create(logf)
	if err != nil {
		return nil, fmt.Errorf("lumen log: %w", err)
	}
	defer func() { _ = lf.Close() }() // the child has its own descriptor
	addr := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	cmd := exec.Command(bin, "serve", "-data-dir", filepath.Join(dir, "data"),
		"-http-addr", addr(ports[0]), "-otlp-grpc-addr", addr(ports[1]), "-otlp-http-addr", addr(ports[2]),
		// a nearly full CI disk must not turn writes into 507s
		"-min-free-disk-bytes", "0", "-log-level", "warn")
	cmd.Env = withoutLumenEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start lumen: %w", err)
	}
	s := &server{cmd: cmd, url: "http://" + addr(ports[0]), logf: logf, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(ctx, ready); err != nil {
		s.stop(zap.NewNop())
		return nil, fmt.Errorf("%w; lumen's log:\n%s", err, s.logTail())
	}
	return s, nil
}

// waitReady polls /-/ready until it answers 200.
func (s *server) waitReady(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/-/ready", nil)
		if err != nil {
			return fmt.Errorf("ready request: %w", err)
		}
		if resp, err := c.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("lumen exited before it was ready: %v", s.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("lumen not ready within %s: %w", within, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop asks lumen to stop (SIGTERM), then kills it after 10 s.
func (s *server) stop(log *zap.Logger) {
	select {
	case <-s.exited:
		return
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		log.Warn("lumen not signalled; killing it", zap.Error(err))
	}
	select {
	case <-s.exited:
		return
	case <-time.After(10 * time.Second):
	}
	log.Warn("lumen did not stop within 10s; killing it", zap.Int("pid", s.cmd.Process.Pid))
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// logTail is the end of lumen's log.
func (s *server) logTail() string {
	b, err := os.ReadFile(s.logf)
	if err != nil {
		return err.Error()
	}
	if lines := bytes.Split(b, []byte("\n")); len(lines) > 30 {
		b = bytes.Join(lines[len(lines)-30:], []byte("\n"))
	}
	return string(b)
}

// freePorts returns n distinct loopback ports free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer func() { _ = l.Close() }()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// withoutLumenEnv drops LUMEN_* settings, so the flags alone configure
// the server under test.
func withoutLumenEnv(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, "LUMEN_") {
			out = append(out, e)
		}
	}
	return out
}
