package wlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func readAll(t *testing.T, path string) ([]string, Counts) {
	t.Helper()
	var got []string
	var c Counts
	require.NoError(t, Read(path, func(body []byte) error {
		got = append(got, string(body))
		c.Records++
		return nil
	}, &c))
	return got, c
}

// Concurrent appends are all durable and read back whole, each once.
func TestAppendConcurrentlyThenRead(t *testing.T) {
	path := SegmentPath(t.TempDir(), 1)
	s, err := Create(path, true)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				require.NoError(t, s.Append([]byte(fmt.Sprintf("w%d-%d", w, i))))
			}
		})
	}
	wg.Wait()
	require.NoError(t, s.Close())
	got, c := readAll(t, path)
	require.Len(t, got, 400)
	require.Empty(t, c.Skipped)
	seen := map[string]bool{}
	for _, g := range got {
		require.False(t, seen[g], "%s read twice", g)
		seen[g] = true
	}
}

// A torn tail ends the segment, a bad checksum skips one frame, zeros
// (space allocated but not written) end it: each counted, never an error.
func TestReadCountsWhatItSkips(t *testing.T) {
	dir := t.TempDir()
	write := func(t *testing.T, bodies ...string) (string, []int64) {
		path := SegmentPath(dir, uint64(len(bodies))+uint64(len(t.Name())))
		s, err := Create(path, false)
		require.NoError(t, err)
		var ends []int64
		for _, b := range bodies {
			require.NoError(t, s.Append([]byte(b)))
			fi, err := os.Stat(path)
			require.NoError(t, err)
			ends = append(ends, fi.Size())
		}
		require.NoError(t, s.Close())
		return path, ends
	}
	t.Run("torn tail", func(t *testing.T) {
		path, ends := write(t, "a", "b", "c")
		require.NoError(t, os.Truncate(path, ends[2]-1))
		got, c := readAll(t, path)
		require.Equal(t, []string{"a", "b"}, got)
		require.Equal(t, map[string]int{SkipTornTail: 1}, c.Skipped)
	})
	t.Run("checksum", func(t *testing.T) {
		path, ends := write(t, "aa", "bb", "cc")
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		b[ends[1]-1] ^= 0xff // the last byte of the second body
		require.NoError(t, os.WriteFile(path, b, 0o640))
		got, c := readAll(t, path)
		require.Equal(t, []string{"aa", "cc"}, got)
		require.Equal(t, map[string]int{SkipChecksum: 1}, c.Skipped)
	})
	t.Run("zeros after the last frame", func(t *testing.T) {
		path, ends := write(t, "x", "y")
		require.NoError(t, os.Truncate(path, ends[1]+4096))
		got, c := readAll(t, path)
		require.Equal(t, []string{"x", "y"}, got)
		require.Equal(t, map[string]int{SkipTornTail: 1}, c.Skipped)
	})
	t.Run("not a segment", func(t *testing.T) {
		path := filepath.Join(dir, "other.wal")
		require.NoError(t, os.WriteFile(path, []byte("NOPE!"), 0o640))
		got, c := readAll(t, path)
		require.Empty(t, got)
		require.Equal(t, map[string]int{SkipUndecodable: 1}, c.Skipped)
	})
}

// A failed segment refuses appends until repaired; what was appended
// before and after reads back, and nothing in between.
func TestFailedAppendsLeaveNothingBehind(t *testing.T) {
	path := SegmentPath(t.TempDir(), 7)
	s, err := Create(path, true)
	require.NoError(t, err)
	require.NoError(t, s.Append([]byte("before")))
	s.Fail(errors.New("injected"))
	require.ErrorContains(t, s.Append([]byte("lost")), "injected")
	s.Fail(nil)
	require.NoError(t, s.Append([]byte("after")))
	require.NoError(t, s.Close())
	got, c := readAll(t, path)
	require.Equal(t, []string{"before", "after"}, got)
	require.Empty(t, c.Skipped)
}

// Generations list oldest first, a legacy directory before a segment of
// the same number, other files ignored; Remove deletes either kind.
func TestListAndRemove(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []uint64{3, 1, 2} {
		s, err := Create(SegmentPath(dir, n), false)
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
	require.NoError(t, os.MkdirAll(LegacyDir(dir, 2), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "12.wal"), nil, 0o640))
	gens, err := List(dir)
	require.NoError(t, err)
	require.Equal(t, []Gen{{N: 1}, {N: 2, Legacy: true}, {N: 2}, {N: 3}}, gens)
	for _, g := range gens[:3] {
		require.NoError(t, Remove(dir, g))
	}
	gens, err = List(dir)
	require.NoError(t, err)
	require.Equal(t, []Gen{{N: 3}}, gens)
	require.NoError(t, Remove(dir, Gen{N: 9}), "removing what is gone is not an error")
	gens, err = List(filepath.Join(dir, "absent"))
	require.NoError(t, err)
	require.Empty(t, gens)
}

// FuzzReadFrames: any bytes after a segment header read without a panic
// or an error, every body handed on has its checksum, and what cannot be
// read is counted.
func FuzzReadFrames(f *testing.F) {
	frame := func(body string) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		b = binary.BigEndian.AppendUint32(b, crc32.Checksum([]byte(body), castagnoli))
		return append(b, body...)
	}
	f.Add(append(frame("a"), frame("bc")...))
	f.Add(append(frame("a"), 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add(frame("abc")[:9])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Counts
		err := ReadFrames(bytes.NewReader(b), func(body []byte) error {
			c.Records++
			return nil
		}, &c)
		require.NoError(t, err)
		require.LessOrEqual(t, c.Skipped[SkipTornTail], 1, "a torn frame ends the segment")
		require.LessOrEqual(t, (c.Records+c.Skipped[SkipChecksum])*FrameHeader, len(b), "each frame read had a header")
	})
}
