package store

import (
	"slices"
	"time"

	"go.uber.org/zap"
)

// every runs f every interval until the store closes; Close waits for it.
func (db *DB) every(interval time.Duration, f func()) {
	db.wg.Add(1)
	go func() {
		defer db.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-db.stop:
				return
			case <-t.C:
				f()
			}
		}
	}()
}

// EnforceRetention drops the partitions that are past the retention period,
// then the oldest ones while the store is over its disk budget. The partition
// being written is never dropped. It runs on a timer; tests call it directly.
// It returns the names of the partitions it dropped.
func (db *DB) EnforceRetention() []string {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	now := db.opts.Now()
	var victims []*partition
	keep := db.parts[:0:0]
	for _, p := range db.parts {
		if p != db.head && db.opts.Retention > 0 && !p.end.After(now.Add(-db.opts.Retention)) {
			victims = append(victims, p)
			continue
		}
		keep = append(keep, p)
	}
	if db.opts.MaxDiskBytes > 0 {
		sizes := make([]int64, len(keep))
		var total int64
		for i, p := range keep {
			sizes[i] = p.diskBytes()
			total += sizes[i]
		}
		for total > db.opts.MaxDiskBytes && len(keep) > 0 && keep[0] != db.head {
			db.log.Warn("disk budget exceeded: dropping oldest partition",
				zap.String("partition", keep[0].name), zap.Int64("disk_bytes", total), zap.Int64("max_disk_bytes", db.opts.MaxDiskBytes))
			total -= sizes[0]
			victims = append(victims, keep[0])
			keep, sizes = keep[1:], sizes[1:]
		}
	}
	db.parts = slices.Clone(keep)
	db.mu.Unlock()

	var dropped []string
	for _, p := range victims {
		if err := p.drop(); err != nil {
			db.log.Error("drop partition", zap.String("partition", p.name), zap.Error(err))
			continue
		}
		db.log.Info("partition dropped", zap.String("partition", p.name))
		dropped = append(dropped, p.name)
	}
	return dropped
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
