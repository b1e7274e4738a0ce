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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "lumen:", err)
		stop()
		os.Exit(1)
	}
}
