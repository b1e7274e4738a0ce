// Package store is Lumen's embedded storage: Badger, partitioned by arrival
// time, with every record reachable from its trace id. FORMAT.md describes
// the layout on disk.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// DB is the store. It is safe for concurrent use.
type DB struct {
	opts  Options
	log   *zap.Logger
	root  string
	codec *codec

	// lastReopen (unix ns) is when reopenWaiting last tried.
	lastReopen atomic.Int64

	mu     sync.RWMutex
	parts  []*partition // ordered by start time, oldest first
	head   *partition   // the partition being written; also in parts
	closed bool

	lastSeq atomic.Uint64

	metrics *metricsHead
	logs    *logHead
	// walSkips counts what WAL replays skipped, by WAL and reason.
	walSkips walSkips

	// disk is the free-space floor; budgetWritten counts bytes written
	// since the budget was enforced, and enforce asks the retention loop to
	// enforce it now.
	disk          *diskGuard
	budgetWritten atomic.Int64
	enforce       chan struct{}

	searchAttrs keySet // the attribute keys indexed for search
	past        metricsPast
	catalog     searchCatalog
	metadata    metadataStore

	stop chan struct{}
	wg   sync.WaitGroup
}

// Open opens the store in o.Dir, creating it when missing, and starts the
// retention loop. Close releases it.
func Open(o Options) (*DB, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c, err := newCodec(o.LogCompression)
	if err != nil {
		return nil, err
	}
	db := &DB{
		opts:  o,
		log:   o.Logger,
		root:  filepath.Join(o.Dir, "partitions"),
		codec: c,
		stop:  make(chan struct{}),

		enforce: make(chan struct{}, 1),
	}
	for _, a := range o.SearchAttributes {
		db.searchAttrs.add(a)
	}
	if err := os.MkdirAll(db.root, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir %q: %w", db.root, err)
	}
	if db.disk, err = newDiskGuard(o); err != nil {
		return nil, err
	}
	db.disk.reserve = db.headReserve
	db.opts.spareRoom = db.disk.spare
	if err := db.openPartitions(); err != nil {
		_ = db.closePartitions()
		db.disk.close()
		return nil, err
	}
	// Retention and the budget before the WALs replay: a store that was
	// stopped by a full disk makes room before it writes.
	db.EnforceRetention()
	if err := db.loadMetadata(); err != nil {
		_ = db.closePartitions()
		db.disk.close()
		return nil, err
	}
	if err := db.openMetrics(); err != nil {
		if db.metrics != nil && db.metrics.wal != nil {
			_ = db.metrics.wal.close(true)
		}
		_ = db.closePartitions()
		db.disk.close()
		return nil, err
	}
	if err := db.openLogs(); err != nil {
		if db.logs != nil && db.logs.wal != nil {
			_ = db.logs.wal.close(true)
		}
		_ = db.closeMetrics()
		_ = db.closePartitions()
		db.disk.close()
		return nil, err
	}
	// Retention and the budget every RetentionInterval, and at once when
	// enough has been written since the last time (wrote).
	if o.DiskGroup != nil {
		o.DiskGroup.add(db)
	}
	db.every(o.RetentionInterval, db.enforce, func() { db.EnforceRetention() })
	return db, nil
}

// openPartitions opens every partition on disk: the current one writable,
// the others read-only.
func (db *DB) openPartitions() error {
	entries, err := os.ReadDir(db.root)
	if err != nil {
		return fmt.Errorf("list partitions in %q: %w", db.root, err)
	}
	// The head is the partition for now, or a newer one if the clock went
	// back since it was made: partitions only ever roll forward.
	var starts []time.Time
	head := db.partitionStart(db.opts.Now())
	for _, e := range entries {
		start, ok := parsePartitionName(e.Name())
		if !e.IsDir() || !ok {
			db.log.Warn("ignoring unknown entry in partitions directory", zap.String("name", e.Name()))
			continue
		}
		starts = append(starts, start)
		if start.After(head) {
			head = start
		}
	}
	for _, start := range starts {
		p, err := openPartition(db.root, start, db.opts, !start.Equal(head))
		if err != nil && errors.Is(err, ErrDiskFull) {
			p, err = db.openOnAFullDisk(start, start.Equal(head), err)
		}
		if err != nil {
			return err
		}
		db.parts = append(db.parts, p)
		if start.Equal(head) {
			db.head = p
		}
	}
	slices.SortFunc(db.parts, func(a, b *partition) int { return a.start.Compare(b.start) })
	for _, p := range db.parts {
		if p.db == nil {
			continue // left closed by a full disk: see partitionOpened
		}
		if err := db.restoreSeq(p); err != nil {
			return err
		}
	}
	db.log.Info("store opened", zap.String("dir", db.opts.Dir), zap.Int("partitions", len(db.parts)))
	return nil
}

// openOnAFullDisk is the partition starting at start when the disk has no
// room to open it as it should be (cause): the head, which should be
// writable, is opened read-only so that queries see it; a partition a
// crash left with memtable logs, which Badger takes only in a writable
// open, is not opened at all, its data out of queries until there is room.
// Either way writes are refused (ErrDiskFull) until reopenWaiting opens it
// as it should be: the store always opens.
func (db *DB) openOnAFullDisk(start time.Time, head bool, cause error) (*partition, error) {
	if head {
		p, err := openPartition(db.root, start, db.opts, true)
		if err == nil {
			db.log.Warn("the disk has no room to open the head partition writable: it is read-only, and writes are refused until space returns", zap.String("partition", p.name), zap.Error(cause))
			p.awaitingSpace.Store(true)
			return p, nil
		}
		if !errors.Is(err, ErrDiskFull) {
			return nil, err
		}
		cause = err
	}
	p := newPartition(db.root, start, db.opts)
	db.log.Error("the disk has no room to open a partition: its data is out of queries, and writes are refused, until space returns", zap.String("partition", p.name), zap.Error(cause))
	p.awaitingSpace.Store(true)
	return p, nil
}

// partitionOpened runs when a partition left closed at open
// (openOnAFullDisk) opens, before anything writes to it: batch sequence
// numbers and series and stream refs continue after the largest it holds.
// Nothing made new ones meanwhile: writes were refused.
func (db *DB) partitionOpened(p *partition) error {
	if err := db.restoreSeq(p); err != nil {
		return err
	}
	raise := func(next *atomic.Uint64, ns byte) error {
		ref, err := maxSetRef(p, ns)
		for err == nil {
			cur := next.Load()
			if ref <= cur || next.CompareAndSwap(cur, ref) {
				return nil
			}
		}
		return err
	}
	if db.metrics != nil {
		if err := raise(&db.metrics.nextRef, nsSeries); err != nil {
			return err
		}
	}
	if db.logs != nil {
		return raise(&db.logs.nextRef, nsStream)
	}
	return nil
}

func (db *DB) partitionStart(t time.Time) time.Time {
	return t.UTC().Truncate(db.opts.PartitionDuration)
}

// nextSeq returns a batch sequence number: unique, increasing, and close to
// the arrival time in unix nanoseconds, so frames sort by arrival.
func (db *DB) nextSeq() uint64 {
	now := uint64(db.opts.Now().UnixNano())
	for {
		last := db.lastSeq.Load()
		next := max(now, last+1)
		if db.lastSeq.CompareAndSwap(last, next) {
			return next
		}
	}
}

// acquireHead returns the partition to write now, read-locked; the caller
// must RUnlock it. It rolls over to a new partition when the head's time is up.
func (db *DB) acquireHead() (*partition, error) {
	now := db.opts.Now()
	for {
		db.mu.RLock()
		if db.closed {
			db.mu.RUnlock()
			return nil, ErrClosed
		}
		h := db.head
		db.mu.RUnlock()
		// A writer whose clock reading is older than the head (the head moved
		// on while it waited) writes to the head: partitions never go back.
		if h == nil || !now.Before(h.end) {
			if err := db.rollover(now); err != nil {
				return nil, err
			}
			continue
		}
		if h.awaitingSpace.Load() {
			if err := db.reopenWaiting(); err != nil {
				return nil, err
			}
		}
		h.mu.RLock()
		if h.db == nil || h.readOnly {
			// Sealed or dropped between the two locks: look again.
			h.mu.RUnlock()
			continue
		}
		return h, nil
	}
}

// reopenWaiting opens the partitions a full disk left read-only or closed
// (awaitingSpace) as they should be, trying at most once a second; while
// one still waits it returns ErrDiskFull (wrapped), naming it.
func (db *DB) reopenWaiting() error {
	waiting := db.waitingPartitions()
	if len(waiting) == 0 {
		return nil
	}
	now := db.opts.Now().UnixNano()
	last := db.lastReopen.Load()
	if now-last >= int64(diskCheckEvery) && db.lastReopen.CompareAndSwap(last, now) {
		db.mu.RLock()
		head := db.head
		db.mu.RUnlock()
		for _, p := range waiting {
			if err := p.reopen(db.opts, p == head, db.partitionOpened); err != nil {
				db.log.Debug("partition still waits for disk space", zap.String("partition", p.name), zap.Error(err))
				continue
			}
			db.log.Info("partition opened again now that the disk has room", zap.String("partition", p.name), zap.Bool("writable", p == head))
		}
		if waiting = db.waitingPartitions(); len(waiting) == 0 {
			return nil
		}
	}
	names := make([]string, len(waiting))
	for i, p := range waiting {
		names[i] = p.name
	}
	return fmt.Errorf("%w: the disk has no room to open partition %s as it should be (writes wait for it)", ErrDiskFull, strings.Join(names, ", "))
}

// waitingPartitions are the partitions waiting for disk space to open as
// they should be.
func (db *DB) waitingPartitions() []*partition {
	db.mu.RLock()
	defer db.mu.RUnlock()
	var out []*partition
	for _, p := range db.parts {
		if p.awaitingSpace.Load() {
			out = append(out, p)
		}
	}
	return out
}

// rollover makes a new partition for now the head, if now is past the
// head's start, and seals the previous head.
func (db *DB) rollover(now time.Time) error { return db.rolloverAt(db.partitionStart(now)) }

// rolloverAt makes a new head partition starting at start, if that is past
// the head's start, and seals the previous head. A start between two
// boundaries (a head cut by the disk budget) ends at the next boundary.
func (db *DB) rolloverAt(start time.Time) error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return ErrClosed
	}
	if db.head != nil && !start.After(db.head.start) {
		db.mu.Unlock()
		return nil
	}
	dir := filepath.Join(db.root, partitionName(start))
	_, statErr := os.Stat(dir)
	p, err := openPartition(db.root, start, db.opts, false)
	if err != nil {
		if errors.Is(statErr, fs.ErrNotExist) {
			// A partition that could not be made leaves nothing behind.
			_ = os.RemoveAll(dir)
		}
		db.mu.Unlock()
		return err
	}
	db.parts = append(db.parts, p)
	old := db.head
	db.head = p
	db.mu.Unlock()
	db.log.Info("new partition", zap.String("partition", p.name))
	if old != nil {
		if err := old.seal(db.opts); err != nil {
			db.log.Error("seal partition", zap.String("partition", old.name), zap.Error(err))
		}
	}
	return nil
}

// snapshot returns the partitions, newest first.
func (db *DB) snapshot() ([]*partition, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.closed {
		return nil, ErrClosed
	}
	out := slices.Clone(db.parts)
	slices.Reverse(out)
	return out, nil
}

// Close stops the retention loop and closes every partition. Safe to call
// more than once.
func (db *DB) Close() error {
	// The metrics and log heads write their open chunks and blocks first,
	// while partitions are still writable.
	metricsErr := errors.Join(db.closeMetrics(), db.closeLogs())
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	db.mu.Unlock()
	if db.opts.DiskGroup != nil {
		db.opts.DiskGroup.remove(db)
	}
	close(db.stop)
	db.wg.Wait()
	err := errors.Join(metricsErr, db.closePartitions())
	db.disk.close()
	db.codec.close()
	db.log.Info("store closed")
	return err
}

func (db *DB) closePartitions() error {
	var errs []error
	for _, p := range db.parts {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}
