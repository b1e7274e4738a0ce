package store_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/store"
)

// discardFiles returns the allocated bytes of every partition's DISCARD
// file under dir, and their sizes.
func discardFiles(t *testing.T, dir string) (allocated, size []int64) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "partitions", "*", "DISCARD"))
	require.NoError(t, err)
	require.NotEmpty(t, paths, "a partition was written")
	for _, p := range paths {
		var st syscall.Stat_t
		require.NoError(t, syscall.Stat(p, &st))
		allocated = append(allocated, st.Blocks*512)
		size = append(size, st.Size)
	}
	return allocated, size
}

// punchesHoles reports whether dir's file system frees the blocks of a
// punched hole.
func punchesHoles(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe")
	require.NoError(t, err)
	defer os.Remove(f.Name())
	defer f.Close()
	require.NoError(t, syscall.Fallocate(int(f.Fd()), 0, 0, 1<<20))
	if err := syscall.Fallocate(int(f.Fd()), 0x01|0x02, 0, 1<<20); err != nil { // KEEP_SIZE | PUNCH_HOLE
		return false
	}
	var st syscall.Stat_t
	require.NoError(t, syscall.Fstat(int(f.Fd()), &st))
	return st.Blocks*512 < 1<<20
}

// A partition's DISCARD file (Badger's, 1 MiB) takes its whole megabyte on
// disk only while a writable Badger maps it: closed, the zero pages are
// given back; opened writable again, they are reserved again before Badger
// maps the file (a write into a hole would fault on a full disk); and the
// store reads and writes as before across both.
func TestDiscardFileReleasedWhenClosed(t *testing.T) {
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	rounds := scrapeData(start)
	dir := t.TempDir()
	opts := func(o *store.Options) { o.Retention = 0 }

	db := openStore(t, dir, opts)
	appendRounds(t, db, rounds[:300])
	open, size := discardFiles(t, dir)
	require.Equal(t, []int64{1 << 20}, size)
	require.Equal(t, []int64{1 << 20}, open, "reserved whole while mapped")
	require.NoError(t, db.Close())

	closed, size := discardFiles(t, dir)
	require.Equal(t, []int64{1 << 20}, size, "the size stays")
	if !punchesHoles(t, dir) {
		t.Skip("this file system keeps the blocks of punched holes")
	}
	require.LessOrEqual(t, closed[0], int64(64<<10), "the unused pages are given back")

	db = openStore(t, dir, opts)
	reopened, _ := discardFiles(t, dir)
	require.Equal(t, []int64{1 << 20}, reopened, "reserved again before Badger maps it")
	appendRounds(t, db, rounds[300:])
	require.NoError(t, db.Close())

	db = openStore(t, dir, opts)
	defer db.Close()
	ref := teststorage.New(t)
	defer ref.Close()
	appendRounds(t, ref, rounds)
	checkAgainst(t, db, ref, start)
}

// A partition sealed at the end of its day gives back its DISCARD file's
// unused pages at once; the new head's is reserved whole.
func TestDiscardFileReleasedWhenSealed(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 20, 23, 59, 0, 0, time.UTC)}
	dir := t.TempDir()
	db := openStore(t, dir, func(o *store.Options) { o.Now = clk.Now })
	defer db.Close()
	g := otlptest.New(3)
	first := g.Traces(5, 3)
	ids := otlptest.TraceIDs(first)
	require.NoError(t, db.WriteTraces(context.Background(), first))
	clk.Add(2 * time.Minute)
	require.NoError(t, db.WriteTraces(context.Background(), g.Traces(5, 3)))
	if !punchesHoles(t, dir) {
		t.Skip("this file system keeps the blocks of punched holes")
	}
	allocated, _ := discardFiles(t, dir) // in the partitions' order: by start
	require.Len(t, allocated, 2)
	require.LessOrEqual(t, allocated[0], int64(64<<10), "the sealed partition's")
	require.Equal(t, int64(1<<20), allocated[1], "the head's")
	for _, id := range ids {
		got, err := db.Trace(context.Background(), model.TraceID(id))
		require.NoError(t, err)
		require.Equal(t, 3, got.Spans.SpanCount(), "a trace of the sealed partition reads")
	}
}
