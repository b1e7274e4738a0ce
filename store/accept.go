package store

import (
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/storage"
)

// MaxFutureSkew is how far ahead of the server's clock a sample or a log
// line may be: further is a client with a broken clock, refused so that it
// cannot block its series (every later sample would be out of order) or
// widen a partition's time bounds. Prometheus' TSDB and Loki refuse them
// too.
const MaxFutureSkew = 10 * time.Minute

// oldestAccepted is the earliest time (unix ns) a sample or line may have:
// RejectOlderThan before now (the retention when 0); math.MinInt64 when
// nothing is too old.
func (db *DB) oldestAccepted(now time.Time) int64 {
	age := db.opts.RejectOlderThan
	if age == 0 {
		age = db.opts.Retention
	}
	if age <= 0 {
		return 1 // not before the unix epoch
	}
	return now.Add(-age).UnixNano()
}

// CheckTime refuses a sample's or a line's time (unix ns) that the store
// does not keep: older than RejectOlderThan (the retention by default),
// before the unix epoch, or more than MaxFutureSkew ahead of the server's
// clock. The error wraps ErrInvalid and Prometheus' ErrTooOldSample or
// ErrOutOfBounds, and names the time and the bound.
func (db *DB) CheckTime(t int64) error {
	now := db.opts.Now()
	switch {
	case t > now.Add(MaxFutureSkew).UnixNano():
		return fmt.Errorf("%w: %w: %s is more than %s ahead of the server's clock",
			ErrInvalid, storage.ErrOutOfBounds, formatNanos(t), MaxFutureSkew)
	case t < db.oldestAccepted(now):
		bound := "the unix epoch"
		if lo := db.oldestAccepted(now); lo > 1 {
			bound = fmt.Sprintf("%s (now − %s, --reject-older-than)", formatNanos(lo), now.Sub(time.Unix(0, lo)).Round(time.Second))
		}
		return fmt.Errorf("%w: %w: %s is older than %s",
			ErrInvalid, storage.ErrTooOldSample, formatNanos(t), bound)
	}
	return nil
}

func formatNanos(t int64) string { return time.Unix(0, t).UTC().Format(time.RFC3339Nano) }

// checkMillis is CheckTime for a sample time in unix milliseconds.
func (db *DB) checkMillis(t int64) error {
	const maxMillis, minMillis int64 = math.MaxInt64 / 1_000_000, math.MinInt64 / 1_000_000
	return db.CheckTime(min(max(t, minMillis), maxMillis) * 1e6)
}
