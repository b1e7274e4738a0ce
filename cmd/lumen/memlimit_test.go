package main

import (
	"os"
	"runtime/debug"
	"testing"

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

	require.Equal(t, 50, setGCPercent(log, 50))
	require.Equal(t, 50, debug.SetGCPercent(100))

	t.Setenv("GOGC", "200")
	require.Equal(t, 100, setGCPercent(log, 50), "GOGC in the environment wins")
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
