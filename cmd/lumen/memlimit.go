package main

import (
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
