package store

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2/z"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/internal/smalldisk"
)

// TestPartitionFilesAreReserved: every file Badger maps for writing — the
// memtables' logs, the value log — has its whole size allocated on disk
// before anything is written into it (Lumen's build of Badger's file layer,
// third_party/ristretto), so a full disk cannot fault a write into a hole.
func TestPartitionFilesAreReserved(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions(dir)
	o.Retention = 0
	db, err := Open(o)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.WriteTraces(context.Background(), otlptest.New(1).Traces(50, 5)))
	if z.UnreservedFiles() > 0 {
		t.Skip("this file system cannot reserve space (fallocate is not supported)")
	}

	head := db.head.dir
	mapped := 0
	for _, pattern := range []string{"*.mem", "*.vlog"} {
		files, err := filepath.Glob(filepath.Join(head, pattern))
		require.NoError(t, err)
		for _, f := range files {
			fi, err := os.Stat(f)
			require.NoError(t, err)
			require.GreaterOrEqual(t, allocatedBytes(fi), fi.Size(), "%s: %d bytes, %d allocated", filepath.Base(f), fi.Size(), allocatedBytes(fi))
			mapped++
		}
	}
	require.GreaterOrEqual(t, mapped, 2, "a writable partition has a memtable log and a value log")
	require.Positive(t, db.head.reservedBytes())
}

// TestPartitionWritesOnAFullDiskFail: with no free-space floor to stop
// them first, partition writes run the disk out of space. Each then fails
// with ErrDiskFull — before, Badger wrote into holes of memory-mapped files
// and the process died of SIGBUS. Writes resume once space returns, with
// everything acknowledged readable, and a restart on the full disk opens
// the store.
func TestPartitionWritesOnAFullDiskFail(t *testing.T) {
	disk := smalldisk.Mount(t, 256<<20)
	dir := filepath.Join(disk, "data")
	o := DefaultOptions(dir)
	o.Retention = 0
	o.MinFreeDiskBytes = -1 // no floor: the writes themselves meet the full disk
	o.MemTableBytes = 1 << 20
	db, err := Open(o)
	require.NoError(t, err)
	defer func() { _ = db.Close() }()

	// The head partition is made (its files reserved), then someone
	// else's file takes all but 24 MiB.
	first := otlptest.New(100000).Traces(1, 1)
	acked := []model.TraceID{model.TraceID(otlptest.TraceIDs(first)[0])}
	require.NoError(t, db.WriteTraces(context.Background(), first))
	filler := filepath.Join(disk, "someone-elses-file")
	require.NoError(t, os.WriteFile(filler, nil, 0o644))
	require.NoError(t, exec.Command("fallocate", "-l", strconv.FormatInt(smalldisk.Free(t, disk)-24<<20, 10), filler).Run())

	var failed error
	for i := range 2000 {
		td := otlptest.New(uint64(i)).Traces(20, 5)
		randomizeBytes(td, 8<<10)
		ids := otlptest.TraceIDs(td) // before the write, which takes the spans
		if err := db.WriteTraces(context.Background(), td); err != nil {
			failed = err
			break
		}
		for _, id := range ids {
			acked = append(acked, model.TraceID(id))
		}
	}
	require.Error(t, failed, "24 MiB cannot hold 2000 batches of 800 KiB of incompressible spans")
	require.ErrorIs(t, failed, ErrDiskFull, "a full disk is an error to answer: %v", failed)
	t.Logf("%d traces acknowledged, then: %v", len(acked), failed)
	readable := func(why string) {
		t.Helper()
		for _, id := range sample(acked) {
			_, err := db.Trace(context.Background(), id)
			require.NoError(t, err, why)
		}
	}
	readable("queries are answered while the disk is full")
	err = db.WriteTraces(context.Background(), otlptest.New(9999).Traces(1, 1))
	require.ErrorIs(t, err, ErrDiskFull, "still full")
	readable("the partition reopened read-only answers queries")

	// Space returns: writes resume (the partition is reopened, at most
	// once a second).
	require.NoError(t, os.Remove(filler))
	require.Eventually(t, func() bool {
		return db.WriteTraces(context.Background(), otlptest.New(10000).Traces(1, 1)) == nil
	}, 10*time.Second, 100*time.Millisecond)
	readable("readable once space returns")

	// Full again, and a restart on the full disk: the store opens (the head
	// read-only when there is no room for its files), writes are refused,
	// and queries are answered.
	require.NoError(t, db.Close())
	require.NoError(t, os.WriteFile(filler, nil, 0o644))
	require.NoError(t, exec.Command("fallocate", "-l", strconv.FormatInt(smalldisk.Free(t, disk)-(1<<20), 10), filler).Run())
	db, err = Open(o)
	require.NoError(t, err, "a store opens on a full disk")
	require.ErrorIs(t, db.WriteTraces(context.Background(), otlptest.New(10001).Traces(1, 1)), ErrDiskFull)
	readable("readable after a restart on the full disk")
	require.NoError(t, os.Remove(filler))
	require.Eventually(t, func() bool {
		return db.WriteTraces(context.Background(), otlptest.New(10002).Traces(1, 1)) == nil
	}, 10*time.Second, 100*time.Millisecond, "writable again once there is room")
}

// crashImage copies the files of a running store in src to dst, as they
// are on disk: what a kill -9 would leave (Badger's memtable logs
// included, which only a writable open can take).
func crashImage(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o750)
		}
		if d.Name() == reserveFileName || d.Name() == "LOCK" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o640)
	}))
}

// TestStoreOpensOnAFullDiskAfterACrash: a store that crashed and restarts
// on a full disk opens. With the disk reserve, the head partition opens
// writable on the reserve's space, writes are refused until the disk has
// room for the reserve again, and everything acknowledged is read. Without
// one, the head is left closed (Badger cannot open a crashed partition
// read-only) until there is room, then opens with all its data and goes
// on numbering after it.
func TestStoreOpensOnAFullDiskAfterACrash(t *testing.T) {
	for _, withReserve := range []bool{true, false} {
		t.Run(fmt.Sprintf("reserve=%v", withReserve), func(t *testing.T) {
			src := t.TempDir()
			o := DefaultOptions(src)
			o.Retention = 0
			running, err := Open(o)
			require.NoError(t, err)
			var acked []model.TraceID
			// About 28 MiB of incompressible spans: the value log the
			// crash leaves is nearly full, so reopening it gives back
			// little of what a writable open reserves.
			for i := range 36 {
				td := otlptest.New(uint64(i)).Traces(20, 5)
				randomizeBytes(td, 8<<10)
				for _, id := range otlptest.TraceIDs(td) {
					acked = append(acked, model.TraceID(id))
				}
				require.NoError(t, running.WriteTraces(context.Background(), td))
			}
			disk := smalldisk.Mount(t, 512<<20)
			dir := filepath.Join(disk, "data")
			crashImage(t, src, dir)
			require.NoError(t, running.Close())
			mems, _ := filepath.Glob(filepath.Join(dir, "partitions", "*", "*.mem"))
			require.NotEmpty(t, mems, "a crash leaves memtable logs")

			o.Dir = dir
			o.Logger = zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
			if withReserve {
				require.NoError(t, allocateFile(filepath.Join(dir, reserveFileName), reserveBytes(o)))
			} else {
				o.DiskReserveBytes = -1
			}
			filler := filepath.Join(disk, "someone-elses-file")
			require.NoError(t, allocateFile(filler, smalldisk.Free(t, disk)-(2<<20)))

			db, err := Open(o)
			require.NoError(t, err, "a store opens on a full disk after a crash")
			defer func() { _ = db.Close() }()
			fresh := otlptest.New(1000).Traces(3, 2)
			freshIDs := otlptest.TraceIDs(fresh)
			require.ErrorIs(t, db.WriteTraces(context.Background(), otlptest.New(999).Traces(1, 1)), ErrDiskFull)
			if withReserve {
				require.Equal(t, uint64(1), db.DiskStatus().ReserveSpent, "the head opened on the reserve's space")
				require.True(t, db.DiskStatus().Full)
				for _, id := range sample(acked) {
					_, err := db.Trace(context.Background(), id)
					require.NoError(t, err, "everything acknowledged is read on the full disk")
				}
			} else {
				_, err := db.Trace(context.Background(), acked[0])
				require.ErrorIs(t, err, ErrNotFound, "the head is closed until there is room")
			}

			require.NoError(t, os.Remove(filler))
			require.Eventually(t, func() bool {
				return db.WriteTraces(context.Background(), fresh) == nil
			}, 10*time.Second, 100*time.Millisecond, "writes resume once there is room")
			if withReserve {
				require.Equal(t, reserveBytes(o), db.DiskStatus().ReserveBytes, "the reserve is made again")
			}
			for _, id := range sample(acked) {
				tr, err := db.Trace(context.Background(), id)
				require.NoError(t, err)
				require.Equal(t, 5, tr.Spans.SpanCount(), "trace %s whole: nothing written since overwrote it", id)
			}
			for _, id := range freshIDs {
				tr, err := db.Trace(context.Background(), model.TraceID(id))
				require.NoError(t, err)
				require.Equal(t, 2, tr.Spans.SpanCount())
			}
		})
	}
}

// sample is every 50th id and the last 20: those written just before the
// disk filled, or the crash, are the ones at risk.
func sample(ids []model.TraceID) []model.TraceID {
	var out []model.TraceID
	for i, id := range ids {
		if i%50 == 0 || i >= len(ids)-20 {
			out = append(out, id)
		}
	}
	return out
}
