package main

import (
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/telemetry"
)

// memoryLimit is where GOMEMLIMIT comes from when it is not set: the
// container's memory limit (cgroup v1 or v2), else the machine's memory —
// what Prometheus' --auto-gomemlimit reads, with the same library.
var memoryLimit = memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem)

// setMemoryLimit gives Go's garbage collector a soft memory limit of ratio
// times what provider reports, as Prometheus does by default: near the
// limit the collector works harder instead of letting the heap double, so
// a pod under churn or overload keeps under its limit rather than being
// OOM-killed. An explicit GOMEMLIMIT wins; ratio 0 turns it off. It returns
// the limit set (0: none).
func setMemoryLimit(log *zap.Logger, ratio float64, provider memlimit.Provider) int64 {
	if ratio <= 0 {
		return 0
	}
	limit, err := memlimit.SetGoMemLimitWithOpts(memlimit.WithRatio(ratio), memlimit.WithProvider(provider),
		memlimit.WithLogger(telemetry.Slog(log.Named("memlimit"))))
	switch {
	case err != nil:
		log.Warn("GOMEMLIMIT not set from the memory limit", zap.Error(err))
	case limit > 0:
		log.Info("GOMEMLIMIT set from the memory limit", zap.Int64("bytes", limit), zap.Float64("ratio", ratio))
	}
	return limit
}

// defaultGOGC is Lumen's GC target percentage: half Go's default. The
// heap of a store with many active series is mostly long-lived (series,
// open chunks, memtables), and at Go's 100 its peak is twice that; at 50,
// 100k active series peak near 300 MiB instead of ~390 MB (BENCHMARKS.md), for
// about 5 % more CPU for spans and log lines.
const defaultGOGC = 50

// setGCPercent sets the garbage collector's target percentage unless the
// GOGC environment variable is set, which wins. It returns the percentage
// in force.
func setGCPercent(log *zap.Logger, percent int) int {
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		prev := debug.SetGCPercent(-1)
		debug.SetGCPercent(prev)
		log.Info("GOGC set in the environment: the gogc setting is not used", zap.String("GOGC", v))
		return prev
	}
	debug.SetGCPercent(percent)
	return percent
}
