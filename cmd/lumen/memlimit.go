package main

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"

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
// in force and whether it is the setting's.
func setGCPercent(log *zap.Logger, percent int) (int, bool) {
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		prev := debug.SetGCPercent(-1)
		debug.SetGCPercent(prev)
		log.Info("GOGC set in the environment: the gogc and gc_min_heap settings are not used", zap.String("GOGC", v))
		return prev, false
	}
	debug.SetGCPercent(percent)
	return percent, true
}

// defaultGCMinHeap is the heap the collector may let grow to before
// collecting, however little is live: with 40 MB live and GOGC 50 a
// collection came every ~20 MB allocated — every ~60 ms while queries were
// answered — and their marking and assists were the reads' tail.
const defaultGCMinHeap = 128 << 20

// gcMinHeap keeps the collector's heap goal at least floor bytes: after
// each collection it sets the target percentage to what lets the heap
// reach floor from what that collection left live, never below base (the
// gogc setting) — so a busy store's heap (live × 1.5 past floor) is
// unchanged, and an idle or small one collects less often. GOMEMLIMIT
// still bounds it.
type gcMinHeap struct {
	floor   uint64
	base    int
	stopped atomic.Bool
	sample  []metrics.Sample
	percent atomic.Int64
}

// startGCMinHeap starts keeping the heap goal at least floor (0: off) with
// base percent at least, until stopped. The floor is at most half of limit
// when limit (GOMEMLIMIT) is set, so that the soft limit keeps its room to
// work. It returns nil when off.
func startGCMinHeap(log *zap.Logger, floor int64, base int, limit int64) *gcMinHeap {
	if limit > 0 && limit != math.MaxInt64 && floor > limit/2 {
		log.Info("gc_min_heap lowered to half of GOMEMLIMIT", zap.Int64("gc_min_heap", floor), zap.Int64("bytes", limit/2))
		floor = limit / 2
	}
	if floor <= 0 {
		return nil
	}
	g := &gcMinHeap{floor: uint64(floor), base: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}}
	g.percent.Store(int64(base))
	g.arm()
	return g
}

// stop stops the tuning; the percentage stays as last set.
func (g *gcMinHeap) stop() {
	if g != nil {
		g.stopped.Store(true)
	}
}

// goHeapMinimum is the Go runtime's least heap goal at GOGC 100
// (defaultHeapMinimum); it scales with the percentage.
const goHeapMinimum = 4 << 20

// gcSentinel is garbage from the moment it is made: its finalizer runs
// once after each collection, on the runtime's finalizer goroutine.
type gcSentinel struct{ g *gcMinHeap }

func (g *gcMinHeap) arm() {
	runtime.SetFinalizer(&gcSentinel{g: g}, func(s *gcSentinel) {
		if s.g.stopped.Load() {
			return
		}
		s.g.tune()
		s.g.arm()
	})
}

// tune sets the percentage for the live heap the last collection left.
func (g *gcMinHeap) tune() {
	metrics.Read(g.sample)
	var v [3]uint64
	for i, s := range g.sample {
		if s.Value.Kind() != metrics.KindUint64 {
			return
		}
		v[i] = s.Value.Uint64()
	}
	p := minHeapPercent(v[0], v[1]+v[2], g.floor, g.base)
	if g.percent.Swap(int64(p)) != int64(p) {
		debug.SetGCPercent(p)
	}
}

// minHeapPercent is the target percentage that lets a heap of live bytes
// grow to floor before the next collection, at least base, at most 10000.
// Go's goal is live + (live + roots) × percent / 100, roots being the
// stacks and globals the last collection scanned, and at least its 4 MiB
// minimum × percent / 100.
func minHeapPercent(live, roots, floor uint64, base int) int {
	if live == 0 || live >= floor {
		return base
	}
	p := (floor - live) * 100 / max(live+roots, goHeapMinimum)
	if p > 10000 {
		p = 10000
	}
	return max(base, int(p))
}
