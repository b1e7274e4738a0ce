package store

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Values of Options.LogCompression.
const (
	LogCompressionFast   = "fast"
	LogCompressionBetter = "better"
)

// Options configures a DB. Start from DefaultOptions.
type Options struct {
	// Dir is the data directory; partitions live under Dir/partitions.
	Dir string
	// RemoteMetrics, when set, keeps metrics in a remote backend instead
	// of the store's partitions.
	RemoteMetrics *RemoteMetrics
	// RemoteLogs, when set, keeps log lines in a remote backend instead of
	// the store's partitions (docs/scale-out.md).
	RemoteLogs *RemoteLogs
	// RemoteTraces, when set, keeps spans in a remote backend instead of
	// the store's partitions (docs/scale-out.md).
	RemoteTraces *RemoteTraces
	// ExcludeDir is a directory under Dir that holds other stores (the
	// other tenants'): not counted in this store's disk bytes.
	ExcludeDir string
	// DiskGroup, when set, shares MaxDiskBytes with the group's other
	// stores: their sum is bound, the oldest partition among them goes
	// first.
	DiskGroup *DiskGroup
	// PartitionDuration is the arrival-time span of one partition. Retention
	// drops whole partitions, so this is also the granularity of retention.
	PartitionDuration time.Duration
	// Retention is how long data is kept, by arrival time. 0 keeps everything.
	Retention time.Duration
	// MaxDiskBytes bounds the bytes the store keeps on disk, everything under
	// Dir (partitions and WALs): past it, the oldest partitions are dropped,
	// and when only the one being written is left and it is what takes the
	// space, it is cut (a new one starts) and dropped. 0 means no bound.
	MaxDiskBytes int64
	// MinFreeDiskBytes is the free-space floor: while the data dir's file
	// system has less free, every write is refused with ErrDiskFull (ingest
	// answers 507); queries, retention and the budget go on, and writes
	// resume by themselves when space returns. 0 means the default, 1 GiB or
	// 5 % of the file system when that is smaller; negative means none.
	MinFreeDiskBytes int64
	// DiskReserveBytes is the size of the disk reserve, a file in the data
	// dir whose space is released when the disk is full and the store must
	// make a file (a value-log file, a memtable's log), and made again once
	// there is room: writes are refused meanwhile. 0 means the default,
	// what a writable partition reserves at once and 16 MiB; negative
	// means none. There is none without a floor.
	DiskReserveBytes int64

	// spareRoom is the room the disk reserve holds, which a writable
	// partition's open may take (set by Open).
	spareRoom func() int64
	// RetentionInterval is how often retention and the disk budget are
	// enforced; the budget is also enforced as soon as 1 % of it (at least
	// 4 MiB, at most 256 MiB) has been written since it last was.
	RetentionInterval time.Duration
	// FrameItems is how many spans or log records go into one compressed frame.
	// Larger frames compress better; smaller ones make trace reads cheaper.
	FrameItems int
	// SyncWrites makes every write durable (fsync) before it returns. Writes
	// that arrive together share one fsync.
	SyncWrites bool
	// MemTableBytes is the size of one Badger memtable of the partition being
	// written. Sealed partitions are opened read-only and hold none.
	MemTableBytes int64
	// IndexCacheBytes bounds the memory Badger keeps for table indexes and
	// bloom filters in the partition being written; sealed partitions get a
	// quarter of it.
	IndexCacheBytes int64
	// BlockCacheBytes is Badger's cache of decompressed table blocks in the
	// partition being written; sealed partitions get a quarter of it.
	BlockCacheBytes int64
	// MetricsCheckpointInterval is how often the metrics head writes its open
	// chunks and starts a new WAL generation, which bounds the WAL on disk.
	MetricsCheckpointInterval time.Duration
	// RejectOlderThan refuses samples and log lines older than this (they
	// would only widen a partition's time bounds, and retention would drop
	// them): 0 means the retention, negative means only times before the
	// unix epoch are refused.
	RejectOlderThan time.Duration
	// MetricsOutOfOrderWindow is how much older than a series' newest
	// sample a sample may be and still be accepted; older ones are refused
	// as too old. 0 refuses every out-of-order sample.
	MetricsOutOfOrderWindow time.Duration
	// LogBlockBytes is how many bytes of log lines a stream gathers in the
	// head before they are compressed into one block.
	LogBlockBytes int
	// LogCompression is how log blocks are compressed: LogCompressionFast
	// (zstd's fastest level, the default) or LogCompressionBetter (its
	// better-compression level: about 8 % smaller blocks for about three
	// times the compression CPU, a third more CPU per line in all).
	LogCompression string
	// LogCheckpointInterval is how often every stream's open block is
	// written and the log WAL starts a new generation.
	LogCheckpointInterval time.Duration
	// LogHeadBytes bounds the streams' open lines in memory: past it, the
	// largest streams are cut into blocks until half of it is left.
	LogHeadBytes int64
	// LogWALBytes starts a log checkpoint early once the WAL generation
	// holds this many bytes, which bounds the log WAL on disk.
	LogWALBytes int64
	// Limits bound what the heads take in (labels, active series and
	// streams); see Limits.
	Limits Limits
	// HeadIdleTimeout is how long a series or stream stays in the head
	// with nothing written to it; then a checkpoint removes it (and the
	// next WAL generation no longer names it), so memory follows the active
	// series, not every series ever seen.
	HeadIdleTimeout time.Duration
	// SearchAttributes are the span and resource attributes indexed for
	// trace search (service.name and span names always are).
	SearchAttributes []string
	// Logger receives the store's logs; nil logs nothing.
	Logger *zap.Logger
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time

	// statfs reports the data dir's file system space; nil means the
	// system's. Tests set it.
	statfs func(dir string) (fsSpace, error)
}

// DefaultOptions returns the options `lumen serve` runs with for a data dir.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:               dir,
		PartitionDuration: 24 * time.Hour,
		Retention:         7 * 24 * time.Hour,
		RetentionInterval: time.Minute,
		FrameItems:        256,
		SyncWrites:        true,
		MemTableBytes:     8 << 20,
		IndexCacheBytes:   16 << 20,
		BlockCacheBytes:   8 << 20,

		MetricsCheckpointInterval: 15 * time.Minute,
		MetricsOutOfOrderWindow:   10 * time.Minute,

		LogBlockBytes:         1 << 20,
		LogCompression:        LogCompressionFast,
		LogHeadBytes:          64 << 20,
		LogCheckpointInterval: 15 * time.Minute,
		LogWALBytes:           256 << 20,

		Limits:          DefaultLimits(),
		HeadIdleTimeout: DefaultHeadIdleTimeout,

		SearchAttributes: DefaultSearchAttributes,
	}
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	switch {
	case o.Dir == "":
		return errors.New("store: data dir is empty")
	case o.PartitionDuration < time.Minute:
		return fmt.Errorf("store: partition duration %s is shorter than a minute", o.PartitionDuration)
	case o.Retention < 0:
		return fmt.Errorf("store: retention %s is negative", o.Retention)
	case o.Retention > 0 && o.Retention < o.PartitionDuration:
		return fmt.Errorf("store: retention %s is shorter than one partition (%s)", o.Retention, o.PartitionDuration)
	case o.MaxDiskBytes < 0:
		return fmt.Errorf("store: max disk bytes %d is negative", o.MaxDiskBytes)
	case o.RetentionInterval <= 0:
		return fmt.Errorf("store: retention interval %s is not positive", o.RetentionInterval)
	case o.FrameItems < 1 || o.FrameItems > 1<<16:
		return fmt.Errorf("store: frame items %d is outside 1..65536", o.FrameItems)
	case o.MemTableBytes < 1<<20:
		return fmt.Errorf("store: memtable size %d is below 1 MiB", o.MemTableBytes)
	case o.IndexCacheBytes < 0:
		return fmt.Errorf("store: index cache size %d is negative", o.IndexCacheBytes)
	case o.MetricsOutOfOrderWindow < 0:
		return fmt.Errorf("store: out-of-order window %s is negative", o.MetricsOutOfOrderWindow)
	case o.MetricsCheckpointInterval <= 0:
		return fmt.Errorf("store: metrics checkpoint interval %s is not positive", o.MetricsCheckpointInterval)
	case o.LogBlockBytes < 1<<10 || o.LogBlockBytes > 64<<20:
		return fmt.Errorf("store: log block size %d is outside 1 KiB..64 MiB", o.LogBlockBytes)
	case o.LogCompression != LogCompressionFast && o.LogCompression != LogCompressionBetter:
		return fmt.Errorf("store: log compression %q: %s or %s", o.LogCompression, LogCompressionFast, LogCompressionBetter)
	case o.LogCheckpointInterval <= 0:
		return fmt.Errorf("store: log checkpoint interval %s is not positive", o.LogCheckpointInterval)
	case o.LogHeadBytes < int64(o.LogBlockBytes):
		return fmt.Errorf("store: log head size %d is below one block (%d)", o.LogHeadBytes, o.LogBlockBytes)
	case o.LogWALBytes < 1<<20:
		return fmt.Errorf("store: log WAL size %d is below 1 MiB", o.LogWALBytes)
	case o.BlockCacheBytes < 0:
		return fmt.Errorf("store: block cache size %d is negative", o.BlockCacheBytes)
	case o.HeadIdleTimeout <= 0:
		return fmt.Errorf("store: head idle timeout %s is not positive", o.HeadIdleTimeout)
	}
	return o.Limits.Validate()
}
