package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// TestAutoGoMemLimit: without GOMEMLIMIT, Go's soft limit becomes the
// ratio of the memory limit found; an explicit GOMEMLIMIT and ratio 0 leave
// it alone; the ratio is a flag and is validated.
func TestAutoGoMemLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	t.Setenv("GOMEMLIMIT", "")
	require.NoError(t, os.Unsetenv("GOMEMLIMIT"))
	t.Setenv("AUTOMEMLIMIT", "")
	require.NoError(t, os.Unsetenv("AUTOMEMLIMIT"))
	log := zap.NewNop()

	require.Equal(t, int64(1<<30), setMemoryLimit(log, 0.5, memlimit.Limit(2<<30)))
	require.Equal(t, int64(1<<30), debug.SetMemoryLimit(-1))

	debug.SetMemoryLimit(prev)
	require.Zero(t, setMemoryLimit(log, 0, memlimit.Limit(2<<30)), "ratio 0 is off")
	require.Equal(t, prev, debug.SetMemoryLimit(-1))

	t.Setenv("GOMEMLIMIT", "3GiB")
	require.Zero(t, setMemoryLimit(log, 0.9, memlimit.Limit(2<<30)), "an explicit GOMEMLIMIT wins")
	require.Equal(t, prev, debug.SetMemoryLimit(-1))

	none := func(string) string { return "" }
	def, err := loadConfig(nil, none, "serve")
	require.NoError(t, err)
	require.Equal(t, 0.9, def.AutoGoMemLimitRatio, "Prometheus' default")
	cfg, err := loadConfig([]string{"--auto-gomemlimit-ratio", "0.5"}, none, "serve")
	require.NoError(t, err)
	require.Equal(t, 0.5, cfg.AutoGoMemLimitRatio)
	_, err = loadConfig([]string{"--auto-gomemlimit-ratio", "1.5"}, none, "serve")
	require.ErrorContains(t, err, "auto_gomemlimit_ratio 1.5 is not between 0 (off) and 1")
}

// TestGOGC: without GOGC in the environment the gogc setting is the
// collector's target (50 unless set); GOGC in the environment wins; the
// setting is a flag and is validated.
func TestGOGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	t.Setenv("GOGC", "")
	require.NoError(t, os.Unsetenv("GOGC"))
	log := zap.NewNop()

	got, ours := setGCPercent(log, 50)
	require.Equal(t, 50, got)
	require.True(t, ours)
	require.Equal(t, 50, debug.SetGCPercent(100))

	t.Setenv("GOGC", "200")
	got, ours = setGCPercent(log, 50)
	require.Equal(t, 100, got, "GOGC in the environment wins")
	require.False(t, ours)
	require.Equal(t, 100, debug.SetGCPercent(100))

	none := func(string) string { return "" }
	def, err := loadConfig(nil, none, "serve")
	require.NoError(t, err)
	require.Equal(t, 50, def.GOGC)
	cfg, err := loadConfig([]string{"--gogc", "75"}, none, "serve")
	require.NoError(t, err)
	require.Equal(t, 75, cfg.GOGC)
	cfg, err = loadConfig(nil, func(k string) string {
		if k == "LUMEN_GOGC" {
			return "120"
		}
		return ""
	}, "serve")
	require.NoError(t, err)
	require.Equal(t, 120, cfg.GOGC)
	_, err = loadConfig([]string{"--gogc", "0"}, none, "serve")
	require.ErrorContains(t, err, "gogc 0 is not between 1 and 10000")
	_, err = loadConfig([]string{"--gogc", "off"}, none, "serve")
	require.ErrorContains(t, err, `"off" is not a whole number`)
}

// TestGCMinHeap: below the floor the target percentage lets the heap grow
// to it from what is live, never below the gogc setting; once started, a
// collection sets it; the floor is at most half of GOMEMLIMIT; it is a
// flag, 128MiB unless set, and GOGC in the environment turns it off.
func TestGCMinHeap(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, roots, floor uint64
		want               int
	}{
		{40 * mib, 0, 128 * mib, 220},
		{40 * mib, 4 * mib, 128 * mib, 200}, // stacks and globals count in Go's goal
		{100 * mib, 0, 128 * mib, 50},       // 28 % would reach the floor: the setting's 50
		{128 * mib, 0, 128 * mib, 50},
		{400 * mib, 0, 128 * mib, 50},
		{0, 0, 128 * mib, 50},
		{1000, 0, 128 * mib, 3199}, // Go's least goal is 4 MiB × percent / 100
		{1000, 0, 1 << 40, 10000},
	} {
		require.Equal(t, c.want, minHeapPercent(c.live, c.roots, c.floor, 50), "live %d", c.live)
	}

	prev := debug.SetGCPercent(50)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	percent := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	live := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	log := zap.NewNop()
	g := startGCMinHeap(log, 1<<40, 50, 0) // far above this test's live heap
	require.NotNil(t, g)
	require.Eventually(t, func() bool { runtime.GC(); return percent() > 50 }, 10*time.Second, 10*time.Millisecond,
		"a collection raises the percentage (live %d bytes)", live())
	g.stop()
	g = startGCMinHeap(log, 64*mib, 50, 0)
	require.Eventually(t, func() bool {
		runtime.GC()
		goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
		metrics.Read(goal)
		return goal[0].Value.Uint64() >= 60*mib && goal[0].Value.Uint64() <= 68*mib
	}, 10*time.Second, 10*time.Millisecond, "the heap's goal is the floor (live %d bytes)", live())
	g.stop()
	runtime.GC()
	debug.SetGCPercent(50)
	runtime.GC()
	time.Sleep(10 * time.Millisecond) // the finalizer of the last sentinel, if any, has run
	require.EqualValues(t, 50, percent(), "stopped: the percentage is left as set")

	require.Nil(t, startGCMinHeap(log, 0, 50, 0), "0 is off")
	g = startGCMinHeap(log, 128*mib, 50, 100*mib)
	require.EqualValues(t, 50*mib, g.floor, "at most half of GOMEMLIMIT")
	g.stop()

	none := func(string) string { return "" }
	def, err := loadConfig(nil, none, "serve")
	require.NoError(t, err)
	require.EqualValues(t, 128*mib, def.GCMinHeap)
	cfg, err := loadConfig([]string{"--gc-min-heap", "256MiB"}, none, "serve")
	require.NoError(t, err)
	require.EqualValues(t, 256*mib, cfg.GCMinHeap)
	cfg, err = loadConfig([]string{"--gc-min-heap", "0"}, none, "serve")
	require.NoError(t, err)
	require.Zero(t, cfg.GCMinHeap)
	_, err = loadConfig([]string{"--gc-min-heap", "lots"}, none, "serve")
	require.ErrorContains(t, err, `size "lots"`)

	t.Setenv("GOGC", "200")
	_, ours := setGCPercent(log, 50)
	require.False(t, ours, "GOGC in the environment: neither gogc nor gc_min_heap is used")
}
