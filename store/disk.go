package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The partition lifecycle's view of the disk: the free-space floor below
// which every write is refused (queries, retention and the budget go on),
// and the bytes written since the budget was last enforced, which start an
// enforcement early so a burst cannot overrun the budget by more than
// budgetMargin.

// DefaultMinFreeDiskBytes is the free-space floor when none is set: 1 GiB,
// or 5 % of the file system when that is smaller.
const DefaultMinFreeDiskBytes = 1 << 30

// fsSpace is what a file system reports: bytes free to an unprivileged
// writer, and its size.
type fsSpace struct{ free, total int64 }

// diskGuard checks the free space of the data dir's file system.
type diskGuard struct {
	dir    string
	floor  int64 // 0: no floor
	statfs func(dir string) (fsSpace, error)
	now    func() time.Time
	// reserve is what the heads hold in memory and will write at their
	// next checkpoint: writes are refused while the free space, less
	// that, is below the floor, so that what was admitted can always be
	// written.
	reserve func() int64
	// ahead is the room the head partition may take at once for new
	// files, each reserved whole (filesAhead): kept free besides the
	// floor, so that the store's own files never take it below. The disk
	// reserve (res) is for what the store does not control: another
	// process filling the disk, a restart on a full one.
	ahead int64
	res   *diskReserve // nil without a floor

	// lastCheck (unix ns) and written since it decide when to look again:
	// every second, or sooner after a floor's eighth is written.
	lastCheck atomic.Int64
	written   atomic.Int64
	full      atomic.Bool
	free      atomic.Int64
	reserved  atomic.Int64
	refused   atomic.Uint64

	mu sync.Mutex // one statfs at a time
}

const diskCheckEvery = time.Second

// newDiskGuard resolves the floor: o.MinFreeDiskBytes when positive, none
// when negative, else the default for the file system's size.
func newDiskGuard(o Options) (*diskGuard, error) {
	g := &diskGuard{dir: o.Dir, statfs: o.statfs, now: o.Now, ahead: filesAhead(o)}
	if g.statfs == nil {
		g.statfs = statfs
	}
	switch {
	case o.MinFreeDiskBytes < 0:
		return g, nil
	case o.MinFreeDiskBytes > 0:
		g.floor = o.MinFreeDiskBytes
	default:
		sp, err := g.statfs(o.Dir)
		if err != nil {
			return nil, fmt.Errorf("free space of %q: %w", o.Dir, err)
		}
		g.floor = min(DefaultMinFreeDiskBytes, sp.total/20)
	}
	switch {
	case o.DiskReserveBytes > 0:
		g.res = newDiskReserve(o.Dir, o.DiskReserveBytes, o.Logger)
	case o.DiskReserveBytes == 0:
		g.res = newDiskReserve(o.Dir, reserveBytes(o), o.Logger)
	}
	if err := g.check(); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

func (g *diskGuard) close() {
	if g.res != nil {
		g.res.close()
	}
}

// belowFloor says whether the free space, less what the heads will
// write, was below the floor when last looked at.
func (g *diskGuard) belowFloor() bool {
	return g.floor > 0 && g.free.Load()-g.reserved.Load() < g.floor
}

// reserveSpent says whether the disk reserve was spent and is not back.
func (g *diskGuard) reserveSpent() bool { return g.res != nil && !g.res.inPlace() }

// spare is the room the disk reserve holds for the store's files.
func (g *diskGuard) spare() int64 {
	if g.res == nil {
		return 0
	}
	return g.res.held()
}

// check reads the free space now.
func (g *diskGuard) check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	sp, err := g.statfs(g.dir)
	if err != nil {
		return fmt.Errorf("free space of %q: %w", g.dir, err)
	}
	var reserved int64
	if g.reserve != nil {
		reserved = g.reserve()
	}
	if g.res != nil && !g.res.present.Load() && g.res.restore(sp.free, g.floor+reserved) && g.res.present.Load() {
		sp.free -= g.res.size
	}
	reserved += g.ahead
	g.free.Store(sp.free)
	g.written.Store(0)
	g.lastCheck.Store(g.now().UnixNano())
	g.reserved.Store(reserved)
	g.full.Store(g.floor > 0 && (sp.free-reserved < g.floor || g.reserveSpent()))
	return nil
}

// admit returns ErrDiskFull (wrapped, naming the floor) while the file
// system's free space, less what the heads will write, is below the floor.
// It looks at the disk again when a second has passed or a sixteenth of the
// floor was written since it last did, so writes stop before the floor is
// gone and resume within a second of space coming back.
func (g *diskGuard) admit() error {
	if g.floor <= 0 {
		return nil
	}
	g.refresh()
	if g.reserveSpent() && !g.belowFloor() {
		g.refused.Add(1)
		return fmt.Errorf("%w: the disk reserve (%s, %s in the data dir) is not in place — spent making room for the store's files, or no room to make it: %s free on the data dir's file system; writes resume when it has room for the reserve above the floor of %s (--min-free-disk-bytes)",
			ErrDiskFull, formatBytes(g.res.size), reserveFileName, formatBytes(g.free.Load()), formatBytes(g.floor))
	}
	if !g.full.Load() {
		return nil
	}
	g.refused.Add(1)
	held := ""
	if r := g.reserved.Load(); r > 0 {
		held = fmt.Sprintf(" (%s of it kept for what memory holds and the store's next files)", formatBytes(r))
	}
	return fmt.Errorf("%w: %s free on the data dir's file system%s, below the floor of %s (--min-free-disk-bytes); writes resume when space returns",
		ErrDiskFull, formatBytes(g.free.Load()), held, formatBytes(g.floor))
}

// admitFlush lets the head's own writes of size bytes (checkpoints, full
// chunks and blocks of requests already in the WAL) go on below the floor,
// as long as half of it is left after them: what they write is already
// bounded by the head's memory. Otherwise they wait in the head and the WAL
// too, so nothing writes into the last of the space.
func (g *diskGuard) admitFlush(size int64) error {
	if g.floor <= 0 {
		return nil
	}
	g.refresh()
	if g.reserveSpent() {
		return fmt.Errorf("%w: the disk reserve is not in place: the head keeps its data until space returns", ErrDiskFull)
	}
	if free := g.free.Load(); free-size-g.ahead < g.floor/2 {
		return fmt.Errorf("%w: %s free on the data dir's file system; writing %s would leave less than half the floor of %s: the head keeps its data until space returns",
			ErrDiskFull, formatBytes(free), formatBytes(size), formatBytes(g.floor))
	}
	return nil
}

// refresh looks at the disk again when a second has passed or a
// sixteenth of the floor has been written since it last did.
func (g *diskGuard) refresh() {
	if g.now().UnixNano()-g.lastCheck.Load() >= int64(diskCheckEvery) || g.written.Load() >= g.floor/16 {
		// A failed statfs leaves the last reading: the write finds out.
		_ = g.check()
	}
}

// wrote counts bytes written.
func (g *diskGuard) wrote(n int) { g.written.Add(int64(n)) }

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// DiskStatus is the free-space floor's state.
type DiskStatus struct {
	FreeBytes  int64 // free on the data dir's file system, when last looked at
	FloorBytes int64 // the floor (0: none)
	// ReserveBytes is the disk reserve's space while it is in place (0
	// while spent, or with no reserve).
	ReserveBytes int64
	// ReserveSpent counts the times the reserve was released to make room
	// for a store file.
	ReserveSpent uint64
	Full         bool   // writes are refused
	Refused      uint64 // writes refused for lack of space since start
}

// DiskStatus reports the free-space floor's state.
func (db *DB) DiskStatus() DiskStatus {
	g := db.disk
	st := DiskStatus{FreeBytes: g.free.Load(), FloorBytes: g.floor, Full: g.full.Load() || g.reserveSpent(), Refused: g.refused.Load()}
	if g.res != nil {
		st.ReserveBytes, st.ReserveSpent = g.res.held(), g.res.spent.Load()
	}
	return st
}

// admitWrite is called by every write path before it writes: ErrDiskFull
// below the floor.
func (db *DB) admitWrite() error {
	if err := db.disk.admit(); err != nil {
		return err
	}
	// Writes wait for the partitions a full disk left read-only or closed
	// to open as they should (new refs must follow theirs).
	if err := db.reopenWaiting(); err != nil {
		db.disk.refused.Add(1)
		return err
	}
	return nil
}

// headReserve is what the heads will write at their next checkpoint: the
// log head's open lines and about two bytes per metric sample since the
// last checkpoint (XOR chunks take 1–2).
func (db *DB) headReserve() int64 {
	var n int64
	if db.logs != nil {
		n += db.logs.headBytes.Load()
	}
	if db.metrics != nil {
		n += 2 * db.metrics.unwritten.Load()
	}
	return n
}

// wrote counts n bytes written, for the floor and the budget.
func (db *DB) wrote(n int) {
	db.disk.wrote(n)
	if db.opts.MaxDiskBytes > 0 && db.budgetWritten.Add(int64(n)) >= db.budgetMargin() {
		db.budgetWritten.Store(0)
		select {
		case db.enforce <- struct{}{}:
		default:
		}
	}
}

// budgetMargin is how many bytes written start an enforcement of the disk
// budget before the timer does: 1 % of the budget, at least 4 MiB and at
// most 256 MiB.
func (db *DB) budgetMargin() int64 {
	return min(max(db.opts.MaxDiskBytes/100, 4<<20), 256<<20)
}
