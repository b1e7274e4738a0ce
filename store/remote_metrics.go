package store

import (
	"context"
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
)

// RemoteMetrics keeps a store's metrics in a remote backend instead of
// its own partitions (docs/scale-out.md): appends go to Appendable (which
// makes them durable before Commit returns), reads to Queryable and
// Exemplars, metadata to both.
type RemoteMetrics struct {
	Appendable interface {
		storage.Appendable
		storage.AppendableV2
	}
	Queryable storage.Queryable
	Exemplars storage.ExemplarQueryable
	// Metadata reads the backend's metadata of metric (all when empty),
	// at most limit names (0: no limit).
	Metadata func(ctx context.Context, metric string, limit int) (map[string][]metadata.Metadata, error)
}

// remoteMetrics is the store's remote backend of metrics, or nil.
func (db *DB) remoteMetrics() *RemoteMetrics { return db.opts.RemoteMetrics }

// setMetadata sends metadata by metric name to the remote backend: a
// commit of metadata alone.
func (r *RemoteMetrics) setMetadata(byName map[string]metadata.Metadata) error {
	app := r.Appendable.Appender(context.Background())
	for name, m := range byName {
		if _, err := app.UpdateMetadata(0, labels.FromStrings(labels.MetricName, name), m); err != nil {
			_ = app.Rollback()
			return fmt.Errorf("metadata of %s: %w", name, err)
		}
	}
	return app.Commit()
}

// remoteChunkQuerier answers remote read over the remote backend's
// selections, encoded as chunks.
type remoteChunkQuerier struct{ storage.Querier }

func (q remoteChunkQuerier) Select(ctx context.Context, sort bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	return storage.NewSeriesSetToChunkSet(q.Querier.Select(ctx, sort, hints, ms...))
}
