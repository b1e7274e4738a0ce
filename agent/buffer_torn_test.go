//go:build linux

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// withFileSizeLimit runs fn with the process's file size limit
// (RLIMIT_FSIZE) at limit bytes: a write across it is cut short by the
// kernel (EFBIG) after writing what fits — a real torn write, as a full
// disk makes. Go ignores the SIGXFSZ that comes with it.
func withFileSizeLimit(t *testing.T, limit uint64, fn func()) {
	t.Helper()
	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old))
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: old.Max}))
	defer func() { require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)) }()
	fn()
}

// TestBufferRepairsATornWrite: a write that fails half way leaves part of
// a frame in the segment; every record appended after it is read back, in
// order, by the same buffer and after a restart. When the torn frame
// cannot be cut, the buffer goes on in a new segment; after a restart the
// torn bytes at the end of the old one are skipped, counted.
func TestBufferRepairsATornWrite(t *testing.T) {
	for _, tc := range []struct {
		name      string
		truncate  func(*os.File, int64) error
		segments  int
		skipAfter int64 // torn bytes skipped after the restart
	}{
		{"torn frame cut", (*os.File).Truncate, 1, 0},
		{"cut fails: new segment", func(*os.File, int64) error { return errors.New("injected truncate failure") }, 2, 500},
	} {
		want := []int{0, 1, 2, 4, 5, 6, 7}
		t.Run(tc.name, func(t *testing.T) {
			b, dir := tornBuffer(t, tc.truncate)
			defer b.Close()
			segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
			require.Len(t, segs, tc.segments)
			for _, i := range want {
				r := next(t, b)
				require.Equal(t, i+1, r.Items, "records after the torn write are read back in order")
				require.Equal(t, rec(i).Body, r.Body)
				require.NoError(t, b.Ack(r))
			}
		})
		t.Run(tc.name+", after a restart", func(t *testing.T) {
			b, dir := tornBuffer(t, tc.truncate)
			require.NoError(t, b.Close())
			m := NewMetrics(nil)
			b, err := OpenBuffer(dir, 64<<20, m)
			require.NoError(t, err)
			defer b.Close()
			for _, i := range want {
				r := nextSkipping(t, b)
				require.Equal(t, i+1, r.Items, "records after the torn write are read back in order")
				require.NoError(t, b.Ack(r))
			}
			require.Equal(t, float64(tc.skipAfter), testutil.ToFloat64(m.corruptBytes))
		})
	}
}

// tornBuffer is a buffer of records 0…7 but 3, whose write failed half way.
func tornBuffer(t *testing.T, truncate func(*os.File, int64) error) (*Buffer, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := OpenBuffer(dir, 64<<20, NewMetrics(nil))
	require.NoError(t, err)
	b.truncate = truncate
	for i := range 3 {
		require.NoError(t, b.Append(rec(i)))
	}
	info, err := os.Stat(filepath.Join(dir, "00000000000000000001.seg"))
	require.NoError(t, err)
	withFileSizeLimit(t, uint64(info.Size())+500, func() { // half of rec(3)'s frame fits
		err = b.Append(rec(3))
	})
	require.ErrorIs(t, err, syscall.EFBIG)
	for i := 4; i < 8; i++ {
		require.NoError(t, b.Append(rec(i)))
	}
	return b, dir
}

// nextSkipping is next that goes on past records the buffer skipped.
func nextSkipping(t *testing.T, b *Buffer) Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		r, err := b.Next(ctx)
		if errors.Is(err, ErrCorrupt) {
			continue
		}
		require.NoError(t, err)
		return r
	}
}
