package store

import (
	"sync/atomic"
	"time"
)

// metricsPast counts the changes to a store's metric data at times older
// than a moving horizon (now minus a fixed age): samples written at such
// times, partitions dropped. An answer computed from data before the
// horizon stays exact while the count is the same — what a query results
// cache keeps (internal/promcache).
type metricsPast struct {
	horizon atomic.Int64  // ms; 0 until watched: nothing is counted
	gen     atomic.Uint64 // the changes counted
}

// MetricsPast returns the generation of the metric data older than
// horizon, and the time (ms since the epoch) before which it holds now: any
// later change to data before its own moment's horizon, a sample written or
// a partition dropped, moves the generation. The first call sets the
// horizon for the store's life (later calls' horizon is ignored); before
// it nothing is counted, so a caller asks once before it keeps anything.
func (db *DB) MetricsPast(horizon time.Duration) (gen uint64, before int64) {
	db.past.horizon.CompareAndSwap(0, max(horizon.Milliseconds(), 1))
	return db.past.gen.Load(), db.opts.Now().UnixMilli() - db.past.horizon.Load()
}

// pastWritten counts a commit whose oldest sample is at minT (ms) if that is
// before the horizon. Called once the samples are visible to queries: a
// query that read the generation before it counted keeps its answer under
// the old generation, one that read it after saw the samples.
func (db *DB) pastWritten(minT int64) {
	if h := db.past.horizon.Load(); h > 0 && minT < db.opts.Now().UnixMilli()-h {
		db.past.gen.Add(1)
	}
}

// pastDropped counts data taken out of the store (partitions dropped), once
// it is gone.
func (db *DB) pastDropped() { db.past.gen.Add(1) }
