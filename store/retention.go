package store

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"
)

// every runs f every interval, and whenever kick (which may be nil)
// receives, until the store closes; Close waits for it.
func (db *DB) every(interval time.Duration, kick <-chan struct{}, f func()) {
	db.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-db.stop:
				return
			case <-t.C:
			case <-kick:
			}
			f()
		}
	})
}

// EnforceRetention drops the partitions that are past the retention period,
// then the oldest ones while everything under the data dir (partitions and
// WALs) is over the disk budget. When only the partition being written is
// left and the store is still over, that partition is cut — a new one
// starts now — and dropped. It runs on a timer and when enough was
// written; tests call it directly. It returns the names of the partitions
// it dropped.
func (db *DB) EnforceRetention() []string {
	victims := db.retentionVictims()
	// owners are the stores whose partitions go: a disk group's budget
	// may take another tenant's.
	owners := []*DB{db}
	switch {
	case db.opts.DiskGroup != nil && db.opts.MaxDiskBytes > 0:
		ps, of := db.opts.DiskGroup.victims()
		victims, owners = append(victims, ps...), append(owners, of...)
	case db.opts.MaxDiskBytes > 0:
		victims = append(victims, db.budgetVictims()...)
	}
	var dropped []string
	for _, p := range victims {
		if err := p.drop(); err != nil {
			db.log.Error("drop partition", zap.String("partition", p.name), zap.Error(err))
			continue
		}
		db.log.Info("partition dropped", zap.String("partition", p.name))
		dropped = append(dropped, p.name)
	}
	if len(victims) > 0 {
		for _, o := range owners { // twice is harmless: a count that moves
			o.pastDropped()
		}
	}
	return dropped
}

// retentionVictims takes the partitions past the retention period out of
// the store's list.
func (db *DB) retentionVictims() []*partition {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed || db.opts.Retention <= 0 {
		return nil
	}
	horizon := db.opts.Now().Add(-db.opts.Retention)
	var victims []*partition
	keep := db.parts[:0:0]
	for _, p := range db.parts {
		if p != db.head && !p.end.After(horizon) {
			victims = append(victims, p)
			continue
		}
		keep = append(keep, p)
	}
	db.parts = keep
	return victims
}

// budgetVictims takes the oldest partitions out of the store's list while
// the data dir is over the budget, cutting the head when it is the last
// one. Partitions already on their way out are out of the list, and of
// the count.
func (db *DB) budgetVictims() []*partition {
	total := db.budgetBytes()
	var victims []*partition
	for total > db.opts.MaxDiskBytes {
		oldest := db.budgetStep(total)
		if oldest == nil {
			break
		}
		total -= oldest.diskBytes()
		victims = append(victims, oldest)
	}
	return victims
}

// budgetStep takes the store's oldest partition out of its list for a
// disk budget over which the bytes counted are total, cutting the head
// first when it is the last partition; nil when nothing can go now.
func (db *DB) budgetStep(total int64) *partition {
	for {
		db.mu.Lock()
		if db.closed || len(db.parts) == 0 {
			db.mu.Unlock()
			return nil
		}
		oldest := db.parts[0]
		if oldest == db.head {
			db.mu.Unlock()
			// Cut the head so it can go when the data it holds is what
			// takes the space; when the WALs do, checkpoints move their
			// contents into the head partition, compressed, and delete
			// them.
			if oldest.diskBytes()*2 < total {
				db.checkpointSoon()
				return nil
			}
			if !db.cutHead() {
				return nil
			}
			continue
		}
		db.parts = slices.Clone(db.parts[1:])
		db.mu.Unlock()
		db.log.Warn("disk budget exceeded: dropping the oldest partition",
			zap.String("partition", oldest.name), zap.Int64("disk_bytes", total), zap.Int64("max_disk_bytes", db.opts.MaxDiskBytes))
		return oldest
	}
}

// oldestStart is when the store's oldest partition starts; false when it
// has none.
func (db *DB) oldestStart() (time.Time, bool) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.closed || len(db.parts) == 0 {
		return time.Time{}, false
	}
	return db.parts[0].start, true
}

// budgetBytes is what the disk budget counts: everything under the data
// dir — the partitions in the store's list, each but for the files it is
// still writing (partition.diskBytes), and the WALs — but the disk
// reserve. Partitions on their way out are not counted.
func (db *DB) budgetBytes() int64 {
	var total int64
	_ = filepath.WalkDir(db.opts.Dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return nil //nolint:nilerr // a file removed while walking is simply not counted
		case d.IsDir() && (path == db.root || db.opts.ExcludeDir != "" && path == filepath.Join(db.opts.Dir, db.opts.ExcludeDir)):
			return filepath.SkipDir
		case d.IsDir() || path == filepath.Join(db.opts.Dir, reserveFileName):
			return nil
		}
		if info, err := d.Info(); err == nil {
			total += allocatedBytes(info)
		}
		return nil
	})
	db.mu.RLock()
	parts := slices.Clone(db.parts)
	db.mu.RUnlock()
	for _, p := range parts {
		total += p.diskBytes()
	}
	return total
}

// checkpointSoon starts a checkpoint of both heads in the background,
// unless one is running.
func (db *DB) checkpointSoon() {
	if db.logs == nil || db.metrics == nil {
		return
	}
	if db.logs.checkpointing.CompareAndSwap(false, true) {
		db.wg.Go(func() {
			defer db.logs.checkpointing.Store(false)
			if err := db.checkpointLogs(); err != nil && !errors.Is(err, ErrClosed) {
				db.log.Warn("log checkpoint for the disk budget", zap.Error(err))
			}
		})
	}
	if db.metrics.checkpointing.CompareAndSwap(false, true) {
		db.wg.Go(func() {
			defer db.metrics.checkpointing.Store(false)
			if err := db.checkpointMetrics(false); err != nil && !errors.Is(err, ErrClosed) {
				db.log.Warn("metrics checkpoint for the disk budget", zap.Error(err))
			}
		})
	}
}

// cutHead starts a new head partition now, so that the old one can be
// dropped; false when the head started this very second (nothing to cut).
func (db *DB) cutHead() bool {
	now := db.opts.Now().UTC().Truncate(time.Second)
	db.mu.RLock()
	h := db.head
	db.mu.RUnlock()
	if h == nil || !now.After(h.start) {
		return false
	}
	db.log.Warn("disk budget exceeded by the partition being written: starting a new one", zap.String("partition", h.name))
	if err := db.rolloverAt(now); err != nil {
		db.log.Error("cut the head partition", zap.Error(err))
		return false
	}
	return true
}

// PartitionStats describes one partition.
type PartitionStats struct {
	Name      string
	Start     time.Time
	End       time.Time
	Writable  bool
	DiskBytes int64
	// MinTime and MaxTime bound the event times stored, rounded out to the
	// minute (zero when empty).
	MinTime time.Time
	MaxTime time.Time
}

// Stats describes the store.
type Stats struct {
	Partitions []PartitionStats // oldest first
	DiskBytes  int64
}

// Stats reports the partitions and the disk space they use.
func (db *DB) Stats() (Stats, error) {
	parts, err := db.snapshot()
	if err != nil {
		return Stats{}, err
	}
	slices.Reverse(parts)
	var s Stats
	for _, p := range parts {
		lo, hi := p.bounds()
		p.mu.RLock()
		writable := p.db != nil && !p.readOnly
		p.mu.RUnlock()
		ps := PartitionStats{Name: p.name, Start: p.start, End: p.end, Writable: writable, DiskBytes: p.diskBytes()}
		if lo != 0 {
			ps.MinTime = time.Unix(0, int64(lo)).UTC()
		}
		if hi != 0 {
			ps.MaxTime = time.Unix(0, int64(hi)).UTC()
		}
		s.Partitions = append(s.Partitions, ps)
		s.DiskBytes += ps.DiskBytes
	}
	return s, nil
}
