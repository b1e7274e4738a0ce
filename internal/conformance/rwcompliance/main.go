// Command rwcompliance runs the Prometheus remote-write receiver
// compliance suite (github.com/prometheus/compliance/remotewrite/receiver,
// a test reference, never imported) against `lumen serve` on loopback
// (`make compliance-rw`): it builds the suite's test binary from the module
// proxy into a cache directory once, builds lumen, starts it with a
// temporary data directory, runs the suite, prints a one-line summary and
// fails when a test fails that the allow-list does not name. Every step is
// bounded in time, and the lumen process is always stopped.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/telemetry"
)

// The receiver's name in the suite's config; its subtests end in it.
const receiver = "lumen"

type options struct {
	goBin, suite, cache, known, out string
	lumen                           string // a built lumen; empty builds ./cmd/lumen
	buildTimeout, runTimeout        time.Duration
	readyTimeout                    time.Duration
	verbose                         bool
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	flag.StringVar(&o.goBin, "go", "go", "the go command")
	flag.StringVar(&o.suite, "suite", "", "the suite's module@version (required)")
	flag.StringVar(&o.cache, "cache", "", "where the suite's test binary is kept (default: the user cache dir/lumen-compliance)")
	flag.StringVar(&o.known, "known", "", "allow-list of tests known to fail (required)")
	flag.StringVar(&o.out, "json", "", "also write the suite's test2json events to this file")
	flag.StringVar(&o.lumen, "lumen", "", "lumen binary to test (default: build ./cmd/lumen)")
	flag.DurationVar(&o.buildTimeout, "build-timeout", 15*time.Minute, "bound on building the suite (a first build downloads its modules) and lumen")
	flag.DurationVar(&o.runTimeout, "run-timeout", 3*time.Minute, "bound on starting lumen and running the suite")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", time.Minute, "bound on lumen becoming ready")
	flag.BoolVar(&o.verbose, "v", false, "print the output of every failing test, known ones too")
	flag.Parse()

	log, err := telemetry.NewLogger("console", "info")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log = log.Named("compliance-rw")
	if o.suite == "" || o.known == "" {
		log.Error("-suite and -known are required")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res, err := check(ctx, o, log)
	if err != nil {
		log.Error("remote-write compliance suite did not run", zap.Error(err))
		return 1
	}
	known, err := readKnown(o.known)
	if err != nil {
		log.Error("remote-write compliance suite", zap.Error(err))
		return 1
	}
	unexpected, stale := judge(res, known)
	for _, k := range stale {
		log.Warn("known failure passes now (or is gone): remove it from the allow-list", zap.String("test", k), zap.String("file", o.known))
	}
	show := unexpected
	if o.verbose {
		show = res.leafFailures()
	}
	for _, t := range show { // its output runs from "=== RUN" to "--- FAIL"
		fmt.Print(strings.Join(res.output[t], ""))
	}
	fmt.Println(res.summary())
	if dir := os.Getenv("LUMEN_REPORT_DIR"); dir != "" {
		// For `make test` to print with the other conformance scores.
		if err := os.MkdirAll(dir, 0o755); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "remote-write.txt"), []byte(res.summary()+"\n"), 0o644)
		}
	}
	if res.total() == 0 {
		log.Error("the suite ran no test")
		return 1
	}
	if len(unexpected) > 0 {
		log.Error("remote-write compliance: tests fail that are not known failures", zap.Strings("tests", unexpected), zap.String("allow-list", o.known))
		return 1
	}
	return 0
}

// check builds what it needs, runs the suite against a fresh lumen and
// returns what the suite did.
func check(ctx context.Context, o options, log *zap.Logger) (result, error) {
	tmp, err := os.MkdirTemp("", "lumen-compliance-rw-")
	if err != nil {
		return result{}, fmt.Errorf("temp dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	bctx, cancel := context.WithTimeout(ctx, o.buildTimeout)
	defer cancel()
	if o.cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return result{}, fmt.Errorf("no -cache and no user cache dir: %w", err)
		}
		o.cache = filepath.Join(dir, "lumen-compliance")
	}
	suite, err := ensureSuite(bctx, o.goBin, o.cache, o.suite, log)
	if err != nil {
		return result{}, err
	}
	lumen := o.lumen
	if lumen == "" {
		lumen = filepath.Join(tmp, "lumen")
		start := time.Now()
		if err := goCmd(bctx, o.goBin, "", nil, "build", "-o", lumen, "./cmd/lumen"); err != nil {
			return result{}, fmt.Errorf("build lumen: %w", err)
		}
		log.Info("lumen built", zap.Duration("took", time.Since(start).Round(time.Millisecond)))
	}

	rctx, cancel := context.WithTimeout(ctx, o.runTimeout)
	defer cancel()
	srv, err := startLumen(rctx, lumen, tmp, o.readyTimeout, log)
	if err != nil {
		return result{}, err
	}
	defer srv.stop(log)
	res, err := runSuite(rctx, o.goBin, suite, srv.url+"/api/v1/write", tmp, o.out, log)
	if err != nil {
		if errors.Is(rctx.Err(), context.DeadlineExceeded) {
			return result{}, fmt.Errorf("suite not done within %s: %w", o.runTimeout, err)
		}
		return result{}, err
	}
	return res, nil
}
