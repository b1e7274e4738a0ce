package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2/z"
	"go.uber.org/zap"
)

// The disk reserve is a file kept in the data dir, its space allocated,
// so that the store always has room for the files Badger reserves whole
// when it makes them (a value-log file, a memtable's log; see
// third_party/ristretto) — even when something else filled the disk. When
// such a reservation finds the disk full, the reserve is deleted and the
// reservation tried again (z.OnNoSpace): Badger never meets a full disk
// where failing would stop it (a memtable it cannot make ends the
// process), and a store that crashed on a full disk opens again. While
// the reserve is spent, writes are refused; it is made again once the
// disk has room for it above the floor.

// reserveFileName is the reserve's file in the data dir.
const reserveFileName = "disk-reserve"

// reserveBytes is the reserve's size: what opening a writable partition
// reserves at once, and a little for Badger's tables and manifest.
func reserveBytes(o Options) int64 { return filesAhead(o) + 16<<20 }

// diskReserve is the reserve file's state.
type diskReserve struct {
	path string
	size int64
	log  *zap.Logger

	mu          sync.Mutex
	present     atomic.Bool // the file is there, its space allocated
	unsupported atomic.Bool // the file system cannot allocate (no reserve)
	spent       atomic.Uint64
	unregister  func()
}

func newDiskReserve(dir string, size int64, log *zap.Logger) *diskReserve {
	r := &diskReserve{path: filepath.Join(dir, reserveFileName), size: size, log: log}
	if fi, err := os.Stat(r.path); err == nil && allocatedBytes(fi) >= size {
		r.present.Store(true)
	}
	root := filepath.Clean(dir) + string(filepath.Separator)
	r.unregister = z.OnNoSpace(func(path string, need int64) bool {
		return strings.HasPrefix(path, root) && r.release(path, need)
	})
	return r
}

// release deletes the reserve so that a file of need bytes at path can be
// made; false when there was none.
func (r *diskReserve) release(path string, need int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.present.Load() {
		return false
	}
	if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Error("release the disk reserve", zap.Error(err))
		return false
	}
	r.present.Store(false)
	r.spent.Add(1)
	r.log.Warn("the disk is full: the disk reserve was released to make a store file; writes are refused until the disk has room for the reserve again",
		zap.String("file", path), zap.Int64("need_bytes", need), zap.Int64("reserve_bytes", r.size))
	return true
}

// restore makes the reserve when it is missing and the file system has
// more than keep bytes free besides it; it says whether the reserve is in
// place (always, when the file system cannot allocate).
func (r *diskReserve) restore(free, keep int64) bool {
	if r.present.Load() || r.unsupported.Load() {
		return true
	}
	if free-r.size < keep {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.present.Load() {
		return true
	}
	switch err := allocateFile(r.path, r.size); {
	case err == nil:
		r.present.Store(true)
		r.log.Info("disk reserve in place", zap.String("file", r.path), zap.Int64("bytes", r.size))
		return true
	case errors.Is(err, errCannotAllocate):
		r.unsupported.Store(true)
		r.log.Warn("this file system cannot allocate space ahead: no disk reserve, and a full disk can stop the process", zap.Error(err))
		return true
	default:
		_ = os.Remove(r.path)
		r.log.Warn("make the disk reserve", zap.Error(err))
		return false
	}
}

// inPlace says whether writes may go on: the reserve is there, or cannot be.
func (r *diskReserve) inPlace() bool { return r.present.Load() || r.unsupported.Load() }

// held is the reserve's space while it is there, for what the store holds
// beyond its data.
func (r *diskReserve) held() int64 {
	if r.present.Load() {
		return r.size
	}
	return 0
}

func (r *diskReserve) close() { r.unregister() }

// errCannotAllocate is the file system refusing to allocate space ahead.
var errCannotAllocate = errors.New("the file system cannot allocate space ahead")

// allocateFile makes the file at path with size bytes allocated.
func allocateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return fmt.Errorf("disk reserve: %w", err)
	}
	err = fallocate(f, size)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("disk reserve: %w", cerr)
	}
	return err
}
