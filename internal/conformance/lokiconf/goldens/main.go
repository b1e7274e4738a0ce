// Command goldens runs a real Loki on loopback, pushes the LogQL
// conformance corpus to it, runs every query of the queries file and
// writes Loki's normalised answers as the goldens Lumen is compared with
// (`make logql-goldens`).
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
	"github.com/lumenobs/lumen/internal/conformance/lokiconf"
)

const config = `auth_enabled: false
server:
  http_listen_address: 127.0.0.1
  http_listen_port: %d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: %d
  log_level: warn
common:
  instance_addr: 127.0.0.1
  path_prefix: %[3]s
  storage:
    filesystem:
      chunks_directory: %[3]s/chunks
      rules_directory: %[3]s/rules
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory
ingester:
  lifecycler:
    min_ready_duration: 0s
    final_sleep: 0s
memberlist:
  bind_addr: [127.0.0.1]
  bind_port: %[4]d
  join_members: []
schema_config:
  configs:
    - from: 2020-10-24
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
limits_config:
  allow_structured_metadata: true
  volume_enabled: true
  max_query_length: 0
  ingestion_rate_mb: 64
  ingestion_burst_size_mb: 128
querier:
  # The corpus is hours old and still in the ingester: always ask it.
  query_ingesters_within: 0
query_range:
  cache_results: false
  results_cache:
    cache:
      embedded_cache:
        enabled: false
pattern_ingester:
  enabled: true
analytics:
  reporting_enabled: false
`

func main() {
	lokiBin := flag.String("loki", "", "the loki binary")
	queries := flag.String("queries", "internal/conformance/lokiconf/testdata/queries.txt", "the queries file")
	out := flag.String("out", "internal/conformance/lokiconf/testdata/goldens.json", "where to write the goldens")
	version := flag.String("version", "Loki", "the reference's name and version, recorded in the goldens")
	hold := flag.Duration("hold", 0, "keep Loki running this long after the goldens are written, to look at it")
	flag.Parse()
	log, _ := zap.NewDevelopment()
	if err := run(log, *lokiBin, *queries, *out, *version, *hold); err != nil {
		log.Fatal("goldens", zap.Error(err))
	}
}

func run(log *zap.Logger, lokiBin, queriesPath, out, version string, hold time.Duration) error {
	qs, err := lokiconf.LoadQueries(queriesPath)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "loki-goldens-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	ports, err := golden.FreePorts(3) // HTTP, gRPC, memberlist
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "loki.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, config, ports[0], ports[1], dir, ports[2]), 0o644); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	loki, err := golden.StartPeer("loki", exec.CommandContext(ctx, lokiBin, "-config.file="+cfgPath))
	if err != nil {
		return err
	}
	defer loki.Stop()
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	c := &http.Client{Timeout: time.Minute}
	if err := loki.WaitReady(ctx, c, base, "/ready", 3*time.Minute, time.Second); err != nil {
		return loki.Said(err)
	}
	log.Info("loki ready", zap.String("url", base))
	t0 := lokiconf.T0(time.Now())
	if err := lokiconf.Push(ctx, c, base, t0); err != nil {
		return err
	}
	// Let the ingester and the pattern ingester take the lines in.
	time.Sleep(5 * time.Second)
	g := lokiconf.Goldens{Reference: version, Answers: map[string]lokiconf.Answer{}}
	failed := 0
	for _, q := range qs {
		a, err := lokiconf.Run(ctx, c, base, q, t0)
		if err != nil {
			return err
		}
		if a.Status != http.StatusOK {
			failed++
			log.Info("loki refused", zap.Int("line", q.Line), zap.String("query", q.Key), zap.Int("status", a.Status), zap.String("error", a.Error))
		}
		g.Answers[q.Key] = a
	}
	log.Info("answers", zap.Int("queries", len(qs)), zap.Int("refused", failed))
	if err := g.Write(out); err != nil {
		return err
	}
	if hold > 0 {
		log.Info("holding loki", zap.String("url", base), zap.Time("t0", t0), zap.Duration("for", hold))
		time.Sleep(hold)
	}
	return nil
}
