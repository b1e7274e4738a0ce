// Command lumen is the whole observability stack in one binary: `lumen serve`
// (the default) ingests, stores and answers; `lumen version` and
// `lumen check-config` are the usual.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(mainExit(os.Args[1:])) }

// mainExit runs a command until it finishes or SIGINT/SIGTERM asks it to
// stop, and returns the process exit code.
func mainExit(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "lumen:", err)
		return 1
	}
	return 0
}
