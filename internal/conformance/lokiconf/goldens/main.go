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
	"github.com/lumenobs/lumen/internal/lokitest"
)

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
	if err := os.WriteFile(cfgPath, lokitest.Config(ports[0], ports[1], dir, ports[2], true), 0o644); err != nil {
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
