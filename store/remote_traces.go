package store

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/model"
)

// RemoteTraces keeps a store's spans in a remote backend instead of its
// own partitions (docs/scale-out.md): a write's OTLP request goes to Write
// as it came (durable before it returns), a trace's spans are read with
// Trace. Searches are the backend's own API's (the store has no index of
// remote spans).
type RemoteTraces struct {
	// Write queues an OTLP ExportTraceServiceRequest of spans spans.
	Write func(ctx context.Context, body []byte, spans int) error
	// Trace reads the trace's spans; none is ErrNotFound.
	Trace func(ctx context.Context, id model.TraceID) (ptrace.Traces, error)
}

// ErrRemoteTraces is a search of a store whose spans are kept in a remote
// backend: its own API answers searches.
var ErrRemoteTraces = fmt.Errorf("%w: spans are kept in the remote traces backend, whose own API answers searches", fault.ErrNotImplemented)

// remoteTraceSpans reads a trace's spans from the remote backend: none
// found is an empty answer, not an error.
func remoteTraceSpans(ctx context.Context, r *RemoteTraces, id model.TraceID) (ptrace.Traces, error) {
	td, err := r.Trace(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return ptrace.NewTraces(), nil
	}
	return td, err
}
