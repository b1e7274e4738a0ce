// Command goldens runs a real Jaeger v2 on loopback (in-memory storage),
// sends it the Jaeger conformance corpus over OTLP/HTTP, makes every query
// of the corpus and writes Jaeger's normalised answers as the goldens
// Lumen is compared with (`make jaeger-goldens`).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/conformance/jaegerconf"
)

// config is Jaeger v2's (an OpenTelemetry Collector's) configuration:
// OTLP/HTTP in, the in-memory store, the query API; every listener on
// 127.0.0.1, no metrics listener. Clock skew adjustment stays off, its
// default.
const config = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%d
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

func main() {
	jaegerBin := flag.String("jaeger", "", "the jaeger (v2) binary")
	out := flag.String("out", "internal/conformance/jaegerconf/testdata/goldens.json", "where to write the goldens")
	version := flag.String("version", "Jaeger", "the reference's name and version, recorded in the goldens")
	flag.Parse()
	log, _ := zap.NewDevelopment()
	if err := run(log, *jaegerBin, *out, *version); err != nil {
		log.Fatal("goldens", zap.Error(err))
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func run(log *zap.Logger, jaegerBin, out, version string) error {
	dir, err := os.MkdirTemp("", "jaeger-goldens-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	var ports [4]int // health, query HTTP, query gRPC, OTLP/HTTP
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, config, ports[0], ports[1], ports[2], ports[3]), 0o644); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, jaegerBin, "--config", cfgPath)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start jaeger: %w", err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	c := &http.Client{Timeout: time.Minute}
	if err := waitReady(ctx, c, base); err != nil {
		return fmt.Errorf("%w; jaeger said: %s", err, tail(stderr.String()))
	}
	log.Info("jaeger ready", zap.String("url", base))
	t0 := jaegerconf.T0(time.Now())
	if err := jaegerconf.Push(ctx, c, fmt.Sprintf("http://127.0.0.1:%d/v1/traces", ports[3]), t0); err != nil {
		return fmt.Errorf("%w; jaeger said: %s", err, tail(stderr.String()))
	}
	time.Sleep(2 * time.Second) // the exporter writes asynchronously
	g := jaegerconf.Goldens{Reference: version, Answers: map[string]jaegerconf.Answer{}}
	failed := 0
	qs := jaegerconf.Queries(t0, time.Now())
	for _, q := range qs {
		a, err := jaegerconf.Run(ctx, c, base, q, t0)
		if err != nil {
			return err
		}
		if a.Status != http.StatusOK {
			failed++
			log.Info("jaeger answered an error", zap.String("query", q.Name), zap.Int("status", a.Status), zap.String("error", a.Error))
		}
		g.Answers[q.Name] = a
	}
	log.Info("answers", zap.Int("queries", len(qs)), zap.Int("errors", failed))
	return g.Write(out)
}

// waitReady waits until the query API answers /api/services.
func waitReady(ctx context.Context, c *http.Client, base string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/services", nil)
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
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("jaeger not ready at %s", base)
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
