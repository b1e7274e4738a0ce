package store

import (
	"context"
	"slices"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/model"
)

// RemoteLogs keeps a store's log lines in a remote backend instead of its
// own partitions (docs/scale-out.md): writes go to Write (which makes them
// durable before it returns), a trace's lines are read with TraceLogs.
type RemoteLogs struct {
	// Write queues the streams' lines for the backend.
	Write func(ctx context.Context, streams []LogStream) error
	// TraceLogs reads the newest limit lines carrying id in [start, end)
	// (unix ns); services are the trace's services (none when it has no
	// spans); cut says whether lines were left out.
	TraceLogs func(ctx context.Context, id model.TraceID, services []string, start, end int64, limit int) (streams []LogStream, cut bool, err error)
	// Margin widens the trace's time range by so much on each side when
	// its lines are looked for; a trace without spans is looked for over
	// Lookback before now.
	Margin, Lookback time.Duration
}

// remoteTraceLogs reads trace id's lines from the remote backend, in the
// window of its spans.
func (db *DB) remoteTraceLogs(ctx context.Context, r *RemoteLogs, id model.TraceID, spans ptrace.Traces) ([]LogStream, bool, error) {
	var (
		lo, hi   int64
		services []string
	)
	for _, rs := range spans.ResourceSpans().All() {
		if v, ok := rs.Resource().Attributes().Get("service.name"); ok && !slices.Contains(services, v.AsString()) {
			services = append(services, v.AsString())
		}
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				if s := int64(sp.StartTimestamp()); s > 0 && (lo == 0 || s < lo) {
					lo = s
				}
				hi = max(hi, int64(sp.EndTimestamp()), int64(sp.StartTimestamp()))
			}
		}
	}
	if lo == 0 {
		hi = db.opts.Now().UnixNano()
		lo = hi - r.Lookback.Nanoseconds()
	} else {
		lo, hi = lo-r.Margin.Nanoseconds(), hi+r.Margin.Nanoseconds()
	}
	slices.Sort(services)
	return r.TraceLogs(ctx, id, services, lo, hi+1, db.opts.Limits.MaxTraceLogLines)
}
