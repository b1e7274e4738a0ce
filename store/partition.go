package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"
)

// formatVersion is written into every partition's metadata. A reader refuses
// partitions whose version it does not know; see FORMAT.md.
const formatVersion = 1

const partitionNameLayout = "20060102T150405Z"

// partMeta is the metadata record of a partition (key 0x00 'm').
type partMeta struct {
	FormatVersion int       `json:"format_version"`
	Start         time.Time `json:"start"`
	Duration      string    `json:"duration"`
}

// partition is one arrival-time slice of the store: its own Badger directory.
// mu guards db: readers and writers hold it shared; seal and drop hold it
// exclusively, so a partition is never closed under a running operation.
type partition struct {
	name  string
	dir   string
	start time.Time
	end   time.Time

	mu       sync.RWMutex
	db       *badger.DB // nil once dropped
	readOnly bool

	meta partMeta

	// boundsMu guards minNanos and maxNanos: the event times (span start and
	// end, log timestamps) stored in the partition, rounded out to the minute;
	// 0 while it holds nothing.
	boundsMu           sync.Mutex
	minNanos, maxNanos uint64
	// boundsUnsure is set when a write whose batch carried a bounds record
	// failed: the bounds in memory may be wider than those on disk, so the
	// next write records them whole.
	boundsUnsure atomic.Bool

	// series caches the labels of the partition's metric series by ref:
	// they never change once written, and queries that select many series
	// by a posting would otherwise read each from Badger.
	series     sync.Map // uint64 -> labels.Labels
	seriesSize atomic.Int64
}

// maxCachedSeries bounds a partition's series label cache.
const maxCachedSeries = 500_000

func partitionName(start time.Time) string { return start.UTC().Format(partitionNameLayout) }

func parsePartitionName(name string) (time.Time, bool) {
	t, err := time.Parse(partitionNameLayout, name)
	return t, err == nil
}

func badgerOptions(dir string, o Options, readOnly bool) badger.Options {
	indexCache, blockCache := o.IndexCacheBytes, o.BlockCacheBytes
	if readOnly {
		// Sealed partitions are read only by queries: smaller caches keep
		// the memory of a week of partitions bounded.
		indexCache, blockCache = indexCache/4, blockCache/4
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{o.Logger.Named("badger").Sugar()}).
		WithSyncWrites(o.SyncWrites).
		WithDetectConflicts(false).
		// Table blocks hold only index keys: zstd at its fastest level
		// shrinks them by about 40 %. Frames are compressed already and
		// live in the value log, which Badger does not compress.
		WithCompression(options.ZSTD).
		WithZSTDCompressionLevel(1).
		WithBlockCacheSize(max(blockCache, 1<<20)).
		WithIndexCacheSize(indexCache).
		WithMemTableSize(o.MemTableBytes).
		WithNumMemtables(2).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(12).
		WithNumCompactors(2).
		// Frames go to the value log, which is append-only; the LSM tree holds
		// only keys and value pointers, so compaction stays cheap.
		WithValueThreshold(128).
		WithValueLogFileSize(128 << 20).
		WithMetricsEnabled(false).
		WithReadOnly(readOnly)
	return bo
}

// openPartition opens (creating when writable) the partition starting at start.
func openPartition(root string, start time.Time, o Options, readOnly bool) (*partition, error) {
	p := &partition{
		name:  partitionName(start),
		start: start,
		end:   start.UTC().Truncate(o.PartitionDuration).Add(o.PartitionDuration),
	}
	p.dir = filepath.Join(root, p.name)
	if readOnly && hasUnflushedMemtables(p.dir) {
		// A crash left write-ahead memtables behind: let Badger replay and
		// flush them once, writable, before the partition is sealed.
		db, err := badger.Open(badgerOptions(p.dir, o, false))
		if err != nil {
			return nil, fmt.Errorf("recover partition %s: %w", p.name, err)
		}
		if err := db.Close(); err != nil {
			return nil, fmt.Errorf("recover partition %s: close: %w", p.name, err)
		}
	}
	db, err := badger.Open(badgerOptions(p.dir, o, readOnly))
	if err != nil {
		return nil, fmt.Errorf("open partition %s: %w", p.name, err)
	}
	p.db, p.readOnly = db, readOnly
	meta, err := loadMeta(db)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		p.meta = partMeta{FormatVersion: formatVersion, Start: start.UTC(), Duration: o.PartitionDuration.String()}
		if !readOnly {
			if err := p.saveMeta(); err != nil {
				_ = db.Close()
				return nil, err
			}
		}
	case err != nil:
		_ = db.Close()
		return nil, fmt.Errorf("partition %s: %w", p.name, err)
	case meta.FormatVersion != formatVersion:
		_ = db.Close()
		return nil, fmt.Errorf("partition %s: format version %d, this build reads %d", p.name, meta.FormatVersion, formatVersion)
	default:
		p.meta = meta
	}
	if err := p.loadBounds(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return p, nil
}

func (p *partition) loadBounds() error {
	return p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: boundsPrefix, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				lo, hi, err := parseBounds(v)
				if err != nil {
					return err
				}
				p.widen(lo, hi)
				return nil
			})
			if err != nil {
				return fmt.Errorf("partition %s: %w", p.name, err)
			}
		}
		return nil
	})
}

func hasUnflushedMemtables(dir string) bool {
	matches, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	return len(matches) > 0
}

func loadMeta(db *badger.DB) (partMeta, error) {
	var m partMeta
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &m) })
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return m, fmt.Errorf("%w: metadata: %w", ErrCorrupt, err)
	}
	return m, err
}

func (p *partition) saveMeta() error {
	b, err := json.Marshal(p.meta)
	if err != nil {
		return fmt.Errorf("encode partition metadata: %w", err)
	}
	if err := p.db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey, b) }); err != nil {
		return fmt.Errorf("write partition %s metadata: %w", p.name, err)
	}
	return nil
}

const boundsRounding = uint64(time.Minute)

// widen extends the partition's event-time bounds to cover [lo, hi] (unix
// ns), rounded out to the minute. It returns the bounds record to write with
// the batch when they changed (or a failed write may have left them
// unrecorded), or nil.
func (p *partition) widen(lo, hi uint64) []byte {
	p.boundsMu.Lock()
	defer p.boundsMu.Unlock()
	changed := p.boundsUnsure.Swap(false)
	if lo != 0 || hi != 0 {
		lo = lo / boundsRounding * boundsRounding
		hi = (hi/boundsRounding + 1) * boundsRounding
		if p.minNanos == 0 || lo < p.minNanos {
			p.minNanos, changed = lo, true
		}
		if hi > p.maxNanos {
			p.maxNanos, changed = hi, true
		}
	}
	if !changed || p.minNanos == 0 {
		return nil
	}
	return encodeBounds(p.minNanos, p.maxNanos)
}

func (p *partition) bounds() (lo, hi uint64) {
	p.boundsMu.Lock()
	defer p.boundsMu.Unlock()
	return p.minNanos, p.maxNanos
}

// view runs f in a read transaction of the partition, unless it was dropped.
func (p *partition) view(f func(*badger.Txn) error) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.db == nil {
		return nil
	}
	if err := p.db.View(f); err != nil {
		return fmt.Errorf("partition %s: %w", p.name, err)
	}
	return nil
}

// seal closes the writable partition and reopens it read-only, which flushes
// its memtables and frees their memory.
func (p *partition) seal(o Options) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.db == nil || p.readOnly {
		return nil
	}
	if err := p.db.Close(); err != nil {
		p.db = nil
		return fmt.Errorf("seal partition %s: close: %w", p.name, err)
	}
	db, err := badger.Open(badgerOptions(p.dir, o, true))
	if err != nil {
		p.db = nil
		return fmt.Errorf("seal partition %s: reopen: %w", p.name, err)
	}
	p.db, p.readOnly = db, true
	return nil
}

// close closes the partition's Badger DB, leaving its files.
func (p *partition) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.db == nil {
		return nil
	}
	err := p.db.Close()
	p.db = nil
	if err != nil {
		return fmt.Errorf("close partition %s: %w", p.name, err)
	}
	return nil
}

// drop closes the partition and deletes its files.
func (p *partition) drop() error {
	if err := p.close(); err != nil {
		return err
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("remove partition %s: %w", p.name, err)
	}
	return nil
}

// diskBytes is the space the partition's files take on disk.
func (p *partition) diskBytes() int64 { return dirDiskBytes(p.dir) }

func dirDiskBytes(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil //nolint:nilerr // a file removed while walking is simply not counted
		}
		if info, err := d.Info(); err == nil {
			total += allocatedBytes(info)
		}
		return nil
	})
	return total
}

// badgerLogger sends Badger's logs to zap. Badger is chatty at info level, so
// its info lines are logged at debug.
type badgerLogger struct{ s *zap.SugaredLogger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.s.Errorf(strings.TrimSpace(f), a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.s.Warnf(strings.TrimSpace(f), a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.s.Debugf(strings.TrimSpace(f), a...) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.s.Debugf(strings.TrimSpace(f), a...) }
