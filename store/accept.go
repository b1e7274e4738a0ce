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

// TimeWindow is the range of times (unix ns) the store keeps a sample or a
// line in, read off the clock once per request: not older than
// RejectOlderThan (the retention by default), not before the unix epoch,
// not more than MaxFutureSkew ahead of the server's clock.
type TimeWindow struct {
	lo, hi int64
	now    time.Time
}

// TimeWindow returns the window for a request arriving now.
func (db *DB) TimeWindow() TimeWindow {
	now := db.opts.Now()
	age := db.opts.RejectOlderThan
	if age == 0 {
		age = db.opts.Retention
	}
	w := TimeWindow{lo: 1, hi: now.Add(MaxFutureSkew).UnixNano(), now: now}
	if age > 0 {
		w.lo = now.Add(-age).UnixNano()
	}
	return w
}

// Check refuses a time outside the window. The error wraps ErrInvalid and
// Prometheus' ErrTooOldSample or ErrOutOfBounds, and names the time and
// the bound.
func (w TimeWindow) Check(t int64) error {
	switch {
	case t > w.hi:
		return fmt.Errorf("%w: %w: %s is more than %s ahead of the server's clock",
			ErrInvalid, storage.ErrOutOfBounds, formatNanos(t), MaxFutureSkew)
	case t < w.lo:
		bound := "the unix epoch"
		if w.lo > 1 {
			bound = fmt.Sprintf("%s (now − %s, --reject-older-than)", formatNanos(w.lo), w.now.Sub(time.Unix(0, w.lo)).Round(time.Second))
		}
		return fmt.Errorf("%w: %w: %s is older than %s",
			ErrInvalid, storage.ErrTooOldSample, formatNanos(t), bound)
	}
	return nil
}

func formatNanos(t int64) string { return time.Unix(0, t).UTC().Format(time.RFC3339Nano) }

// CheckMillis is Check for a sample time in unix milliseconds.
func (w TimeWindow) CheckMillis(t int64) error {
	const maxMillis, minMillis int64 = math.MaxInt64 / 1_000_000, math.MinInt64 / 1_000_000
	return w.Check(min(max(t, minMillis), maxMillis) * 1e6)
}
