package store

import (
	"cmp"
	"encoding/json"
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
	log   *zap.Logger

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

	// awaitingSpace is set on a partition that a full disk left read-only
	// when it should be writable (the head), or not open at all (db nil):
	// writes are refused (ErrDiskFull) and reopen it, at most once a
	// second, until there is room (DB.reopenWaiting).
	awaitingSpace atomic.Bool

	// series caches the labels of the partition's metric series by ref:
	// they never change once written, and queries that select many series
	// by a posting would otherwise read each from Badger.
	series     sync.Map // uint64 -> labels.Labels
	seriesSize atomic.Int64

	// postings caches the partition's postings by label value.
	postings postingsCache
	// outOfOrder is set once the partition holds an out-of-order chunk
	// (found at open, or set before a write that adds one commits):
	// reads of a partition without any skip looking for them per series.
	outOfOrder atomic.Bool
}

// maxCachedSeries bounds a partition's series label cache.
const maxCachedSeries = 500_000

func partitionName(start time.Time) string { return start.UTC().Format(partitionNameLayout) }

func parsePartitionName(name string) (time.Time, bool) {
	t, err := time.Parse(partitionNameLayout, name)
	return t, err == nil
}

// valueLogFileBytes is the size of a partition's value-log files. Badger
// maps twice that, and Lumen's build of its file layer reserves what is
// mapped before writing into it (third_party/ristretto): 64 MiB of disk held
// ahead by the value log, released when the file is finished.
const valueLogFileBytes = 32 << 20

// filesAhead is the disk the head partition may take at once for new
// files: the next value-log file and the next memtable's log, each
// reserved whole when it is made. The free-space floor keeps this much
// room besides.
func filesAhead(o Options) int64 { return 2*valueLogFileBytes + 2*o.MemTableBytes }

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
		// Table blocks of 16 KiB instead of Badger's 4: keys of one kind
		// sit side by side (a series' chunks, postings, a trace index), so
		// zstd finds four times the context, and a table's index names a
		// quarter of the blocks. On 30M samples of 100k series 7.8 -> 6.7
		// MB, on 2M spans 109 -> 104 MB, PromQL and trace reads unchanged
		// (BENCHMARKS.md). Tables written with 4 KiB blocks read as before.
		WithBlockSize(16 << 10).
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
		WithValueLogFileSize(valueLogFileBytes).
		WithMetricsEnabled(false).
		WithReadOnly(readOnly)
	return bo
}

// openPartition opens (creating when writable) the partition starting at start.
func openPartition(root string, start time.Time, o Options, readOnly bool) (*partition, error) {
	p := newPartition(root, start, o)
	if err := p.openDB(o, readOnly); err != nil {
		return nil, err
	}
	if err := p.load(o); err != nil {
		_ = p.db.Close()
		return nil, err
	}
	return p, nil
}

// newPartition is the partition starting at start, not opened.
func newPartition(root string, start time.Time, o Options) *partition {
	p := &partition{
		name:  partitionName(start),
		start: start,
		end:   start.UTC().Truncate(o.PartitionDuration).Add(o.PartitionDuration),
		log:   o.Logger,
	}
	p.postings.refs.max, p.postings.selected.max = maxCachedPostingRefs/2, maxCachedPostingRefs/2
	p.dir = filepath.Join(root, p.name)
	return p
}

// load reads the metadata and the time bounds of the opened partition,
// writing the metadata of a new writable one.
func (p *partition) load(o Options) error {
	meta, err := loadMeta(p.db)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		p.meta = partMeta{FormatVersion: formatVersion, Start: p.start.UTC(), Duration: o.PartitionDuration.String()}
		if !p.readOnly {
			if err := p.saveMeta(); err != nil {
				return err
			}
		}
	case err != nil:
		return fmt.Errorf("partition %s: %w", p.name, err)
	case meta.FormatVersion != formatVersion:
		return fmt.Errorf("partition %s: format version %d, this build reads %d", p.name, meta.FormatVersion, formatVersion)
	default:
		p.meta = meta
	}
	return p.loadBounds()
}

func (p *partition) loadBounds() error {
	return p.db.View(func(txn *badger.Txn) error {
		ooo := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsChunkOOO}, PrefetchValues: false})
		ooo.Rewind()
		if ooo.Valid() {
			p.outOfOrder.Store(true)
		}
		ooo.Close()
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

// openDB opens the partition's Badger directory. A sealed partition that
// a crash left with write-ahead memtables is first opened writable once, so
// that Badger flushes them (it cannot open them read-only); without room on
// the disk for that it is not opened: ErrDiskFull (wrapped). A writable
// open is not tried without room for the files it reserves either: Badger
// reserves them at once, and an open that fails leaves some of its
// goroutines and caches behind.
func (p *partition) openDB(o Options, readOnly bool) error {
	if readOnly && hasUnflushedMemtables(p.dir) {
		if !roomToFlush(p.dir, o) {
			return fmt.Errorf("%w: partition %s has memtable logs a crash left, which only a writable open takes, and the disk has no room for that", ErrDiskFull, p.name)
		}
		db, err := openBadger(p.dir, o, false)
		if err != nil {
			if isDiskFull(err) {
				return fmt.Errorf("%w: recover partition %s: %v", ErrDiskFull, p.name, err) //nolint:errorlint // Badger errors stay inside the store
			}
			return fmt.Errorf("recover partition %s: %w", p.name, err)
		}
		if err := db.Close(); err != nil {
			return fmt.Errorf("recover partition %s: close: %w", p.name, err)
		}
	}
	if readOnly {
		p.releaseDiscard() // sealed by a build before this one, or a crash before it was released
	}
	if !readOnly && !roomForWritable(p.dir, o) {
		return fmt.Errorf("%w: open partition %s: no room on the disk for the %s of files a writable partition reserves", ErrDiskFull, p.name, formatBytes(filesAhead(o)))
	}
	db, err := openBadger(p.dir, o, readOnly)
	if err != nil {
		if isDiskFull(err) {
			return fmt.Errorf("%w: open partition %s: %v", ErrDiskFull, p.name, err) //nolint:errorlint // Badger errors stay inside the store
		}
		return fmt.Errorf("open partition %s: %w", p.name, err)
	}
	p.db, p.readOnly = db, readOnly
	return nil
}

// openBadger opens a Badger directory. A writable open that fails removes
// the memtable logs it made: Badger makes a new, empty one before it opens
// the value log, which a full disk can refuse, and a read-only open refuses
// a directory with a memtable log that needs truncating.
func openBadger(dir string, o Options, readOnly bool) (*badger.DB, error) {
	before, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	db, err := badger.Open(badgerOptions(dir, o, readOnly))
	if err != nil && !readOnly {
		after, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
		for _, f := range after {
			if !slices.Contains(before, f) {
				_ = os.Remove(f)
			}
		}
	}
	return db, err
}

// roomForWritable says whether the disk has room for what opening a
// partition in dir writable reserves at once: a value-log file and a
// memtable's log (filesAhead), and a little for Badger's own files.
func roomForWritable(dir string, o Options) bool { return roomFor(dir, o, 4<<20) }

// roomToFlush says whether the disk has room for a partition in dir to be
// opened writable and flush its memtables: their size, and the files a
// writable partition reserves.
func roomToFlush(dir string, o Options) bool {
	var mems int64
	paths, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	for _, m := range paths {
		if fi, err := os.Stat(m); err == nil {
			mems += fi.Size()
		}
	}
	return roomFor(dir, o, mems)
}

// roomFor says whether the file system of dir (or of its nearest existing
// parent: a partition not made yet) has room, the disk reserve counted,
// for the files a writable partition reserves and extra bytes; true when
// that cannot be told (the open finds out).
func roomFor(dir string, o Options, extra int64) bool {
	for ; dir != "" && dir != "."; dir = filepath.Dir(dir) {
		sp, err := statfs(dir)
		if err == nil {
			if o.spareRoom != nil {
				sp.free += o.spareRoom()
			}
			return sp.free >= filesAhead(o)+extra
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return true
		}
		if parent := filepath.Dir(dir); parent == dir {
			break
		}
	}
	return true
}

// reopen opens a partition that a full disk left read-only or closed
// (awaitingSpace) as it should be: writable (the head) or read-only (the
// others). A head that cannot be writable yet is read-only when it can be,
// so that queries see it. opened runs when a partition that was closed
// opens, before anything writes to it. ErrDiskFull (wrapped) while there
// is still no room.
func (p *partition) reopen(o Options, writable bool, opened func(*partition) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.awaitingSpace.Load() {
		return nil
	}
	loaded := p.db != nil
	if loaded {
		if !writable {
			p.awaitingSpace.Store(false) // open read-only already: as it should be
			return nil
		}
		if err := p.db.Close(); err != nil {
			p.db = nil
			return fmt.Errorf("reopen partition %s: close: %w", p.name, err)
		}
		p.db = nil
	}
	err := p.openDB(o, !writable)
	if err != nil && writable {
		if roErr := p.openDB(o, true); roErr != nil && loaded {
			// It was open: it stays out of queries only now.
			return errors.Join(err, roErr)
		}
	}
	if p.db != nil && !loaded {
		if lerr := errors.Join(p.load(o), opened(p)); lerr != nil {
			_ = p.db.Close()
			p.db = nil
			return errors.Join(err, lerr)
		}
	}
	if err != nil {
		return err
	}
	p.awaitingSpace.Store(false)
	return nil
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
	p.releaseDiscard()
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
	if !p.readOnly {
		p.releaseDiscard()
	}
	return nil
}

// releaseDiscard gives back the disk of the unused part of the partition's
// DISCARD file once no writable Badger maps it (discard.go): a megabyte a
// partition, a page or two of it used.
func (p *partition) releaseDiscard() {
	if err := releaseDiscard(p.dir); err != nil && p.log != nil {
		p.log.Warn("give back the unused disk of a partition's DISCARD file", zap.String("partition", p.name), zap.Error(err))
	}
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

// diskBytes is the space the partition's data takes on disk: its files,
// but for those a writable partition is still writing (reservedBytes).
// Both are read under the partition's lock, so that a seal (which
// finishes those files) cannot fall between them.
func (p *partition) diskBytes() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return dirDiskBytes(p.dir) - p.reservedLocked()
}

// reservedBytes is the space of the files a writable partition is still
// writing — its memtables' logs and its newest value-log file — which are
// reserved whole when made (valueLogFileBytes), so that their size on disk
// says nothing of what they hold. The disk budget counts them once they
// are finished; the free-space floor counts them from the start.
func (p *partition) reservedBytes() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.reservedLocked()
}

// reservedLocked is reservedBytes, with p.mu held.
func (p *partition) reservedLocked() int64 {
	if p.db == nil || p.readOnly {
		return 0
	}
	var total int64
	files, _ := filepath.Glob(filepath.Join(p.dir, "*.mem"))
	if vlogs, _ := filepath.Glob(filepath.Join(p.dir, "*.vlog")); len(vlogs) > 0 {
		// Numbered names, zero-padded to six digits: the newest is last.
		slices.SortFunc(vlogs, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b)) })
		files = append(files, vlogs[len(vlogs)-1])
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += allocatedBytes(fi)
		}
	}
	return total
}

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
