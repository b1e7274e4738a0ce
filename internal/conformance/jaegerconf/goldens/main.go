// Command goldens runs a real Jaeger v2 on loopback (in-memory storage),
// sends it the Jaeger conformance corpus over OTLP/HTTP, makes every query
// of the corpus and writes Jaeger's normalised answers as the goldens
// Lumen is compared with (`make jaeger-goldens`).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/conformance/golden"
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

func run(log *zap.Logger, jaegerBin, out, version string) error {
	dir, err := os.MkdirTemp("", "jaeger-goldens-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	ports, err := golden.FreePorts(4) // health, query HTTP, query gRPC, OTLP/HTTP
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, config, ports[0], ports[1], ports[2], ports[3]), 0o644); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, jaegerBin, "--config", cfgPath)
	cmd.Dir = dir
	jaeger, err := golden.StartPeer("jaeger", cmd)
	if err != nil {
		return err
	}
	defer jaeger.Stop()
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	c := &http.Client{Timeout: time.Minute}
	if err := jaeger.WaitReady(ctx, c, base, "/api/services", 2*time.Minute, 500*time.Millisecond); err != nil {
		return jaeger.Said(err)
	}
	log.Info("jaeger ready", zap.String("url", base))
	t0 := jaegerconf.T0(time.Now())
	if err := jaegerconf.Push(ctx, c, fmt.Sprintf("http://127.0.0.1:%d/v1/traces", ports[3]), t0); err != nil {
		return jaeger.Said(err)
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
