package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
)

// ensureSuite returns the suite's test binary, building it into cache when
// it is not there: the module is downloaded through the module proxy,
// copied somewhere writable, replace directives pointing at directories
// (inside its repository, left out of the module zip) are dropped, and
// `go test -c` builds it. The binary is renamed into place, so a build cut
// short leaves nothing behind.
func ensureSuite(ctx context.Context, goBin, cache, module string, log *zap.Logger) (string, error) {
	path, version, ok := strings.Cut(module, "@")
	if !ok || version == "" {
		return "", fmt.Errorf("suite %q: want module@version", module)
	}
	bin := filepath.Join(cache, strings.ReplaceAll(path, "/", "_")+"@"+version, "receiver.test")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("suite cache: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(bin), "build-")
	if err != nil {
		return "", fmt.Errorf("suite cache: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	start := time.Now()
	log.Info("building the compliance suite (once)", zap.String("module", module), zap.String("into", bin))

	// Outside any module (tmp holds no go.mod), so nothing is added to ours.
	var dl struct{ Dir, Error string }
	out, err := goOutput(ctx, goBin, tmp, "mod", "download", "-json", module)
	if jerr := json.Unmarshal(out, &dl); jerr != nil && err == nil {
		err = fmt.Errorf("read go mod download -json: %w", jerr)
	}
	if err != nil || dl.Error != "" || dl.Dir == "" {
		return "", fmt.Errorf("download %s: %s: %w", module, dl.Error, err)
	}
	src := filepath.Join(tmp, "src")
	// The module cache is read-only; CopyFS makes files 0666 and
	// directories 0777 before the umask.
	if err := os.CopyFS(src, os.DirFS(dl.Dir)); err != nil {
		return "", fmt.Errorf("copy %s: %w", dl.Dir, err)
	}
	if err := dropLocalReplaces(ctx, goBin, src); err != nil {
		return "", err
	}
	if err := goCmd(ctx, goBin, src, nil, "test", "-c", "-o", filepath.Join(tmp, "receiver.test"), "."); err != nil {
		return "", fmt.Errorf("build the suite: %w", err)
	}
	if err := os.Rename(filepath.Join(tmp, "receiver.test"), bin); err != nil {
		return "", fmt.Errorf("suite cache: %w", err)
	}
	log.Info("compliance suite built", zap.Duration("took", time.Since(start).Round(time.Second)))
	return bin, nil
}

// dropLocalReplaces drops the replace directives of dir's go.mod that
// point at a directory.
func dropLocalReplaces(ctx context.Context, goBin, dir string) error {
	out, err := goOutput(ctx, goBin, dir, "mod", "edit", "-json")
	if err != nil {
		return fmt.Errorf("read the suite's go.mod: %w", err)
	}
	var mod struct {
		Replace []struct {
			Old, New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		return fmt.Errorf("read the suite's go.mod: %w", err)
	}
	for _, r := range mod.Replace {
		if r.New.Version != "" { // a module, not a directory
			continue
		}
		old := r.Old.Path
		if r.Old.Version != "" {
			old += "@" + r.Old.Version
		}
		if err := goCmd(ctx, goBin, dir, nil, "mod", "edit", "-dropreplace="+old); err != nil {
			return fmt.Errorf("drop replace %s => %s: %w", old, r.New.Path, err)
		}
	}
	return nil
}

// runSuite runs the suite's binary through test2json against the
// receiver at url and parses its events (written to out too, if set).
func runSuite(ctx context.Context, goBin, suite, url, tmp, out string, log *zap.Logger) (result, error) {
	cfg := filepath.Join(tmp, "config.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "remote_write:\n  - name: %s\n    url: %s\n", receiver, url), 0o644); err != nil {
		return result{}, fmt.Errorf("suite config: %w", err)
	}
	timeout := "2m"
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d).Round(time.Second).String()
	}
	var events bytes.Buffer
	cmd := exec.CommandContext(ctx, goBin, "tool", "test2json", "-p", "rw-receiver", suite, "-test.v=test2json", "-test.count=1", "-test.timeout="+timeout)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "PROMETHEUS_RW2_COMPLIANCE_CONFIG_FILE="+cfg, "PROMETHEUS_RW2_COMPLIANCE_RECEIVERS="+receiver)
	cmd.Stdout = &events
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run() // fails when a test fails: the events say which
	if out != "" {
		if werr := os.WriteFile(out, events.Bytes(), 0o644); werr != nil {
			log.Warn("test2json events not written", zap.String("file", out), zap.Error(werr))
		}
	}
	if ctx.Err() != nil {
		return result{}, fmt.Errorf("run the suite: %w", ctx.Err())
	}
	res, perr := parse(&events)
	if perr != nil {
		return result{}, perr
	}
	if err != nil && len(res.failed) == 0 {
		return result{}, fmt.Errorf("the suite failed without a failing test: %w", err)
	}
	log.Info("suite done", zap.Duration("took", time.Since(start).Round(time.Millisecond)))
	return res, nil
}

// goCmd runs the go command in dir, its output going to stderr.
func goCmd(ctx context.Context, goBin, dir string, stdout *bytes.Buffer, args ...string) error {
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	if dir == "" { // lumen itself: its own go.mod and vendoring rules
		cmd.Env = os.Environ()
	}
	cmd.Stderr = os.Stderr
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = os.Stderr
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", goBin, strings.Join(args, " "), err)
	}
	return nil
}

// goOutput runs the go command in dir and returns its standard output.
func goOutput(ctx context.Context, goBin, dir string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	err := goCmd(ctx, goBin, dir, &out, args...)
	return out.Bytes(), err
}
