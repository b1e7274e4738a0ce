package store

import (
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/internal/limits"
)

// Limits bound what the heads take in and what one query may gather:
// internal/limits, the one place every limit is defined; the heads enforce
// the ingest ones as they hold the counts.
type Limits = limits.Limits

// DefaultLimits returns the limits `lumen serve` runs with.
func DefaultLimits() Limits { return limits.Default() }

func truncLabels(lset labels.Labels) string { return limits.TruncLabels(lset) }

// ValidateStream checks a log stream's labels as Loki does (not empty,
// valid names, no duplicates) and against the label limits.
func (db *DB) ValidateStream(lset labels.Labels) error {
	if err := ValidateStreamLabels(lset); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return db.opts.Limits.CheckLabels("stream", lset, db.opts.Limits.MaxLabelNamesPerStream)
}

// HeadStats counts what the heads hold.
type HeadStats struct {
	Series, Streams               int    // in the heads now
	SeriesRemoved, StreamsRemoved uint64 // idle ones removed since start
}

// HeadStats reports what the heads hold.
func (db *DB) HeadStats() HeadStats {
	var st HeadStats
	db.metrics.mu.RLock()
	st.Series = len(db.metrics.byRef)
	db.metrics.mu.RUnlock()
	db.logs.mu.RLock()
	st.Streams = len(db.logs.byRef)
	db.logs.mu.RUnlock()
	st.SeriesRemoved = db.metrics.removed.Load()
	st.StreamsRemoved = db.logs.removed.Load()
	return st
}

// idleSince is the wall-clock time (unix ns) before which a series or
// stream that took nothing is removed from the head.
func (db *DB) idleSince() int64 {
	return db.opts.Now().Add(-db.opts.HeadIdleTimeout).UnixNano()
}

// DefaultHeadIdleTimeout is how long a series or stream stays in the head
// with nothing written to it (Loki's chunk_idle_period is 30 minutes;
// Prometheus keeps a series up to its head's 2–3 hours).
const DefaultHeadIdleTimeout = time.Hour
