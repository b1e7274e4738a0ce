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
