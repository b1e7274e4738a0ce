// Package lokipush writes log lines to Loki (or anything that takes Loki
// push: Loki's distributors, Grafana Cloud Logs) through a durable queue:
// a write becomes Loki push requests (snappy-compressed protobuf) that are
// on disk when Write returns and are sent until Loki takes them. A line's
// trace and span ids go as structured metadata (trace_id, span_id), which
// is how a trace's lines are found in Loki (`| trace_id="…"`).
package lokipush

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/httpsend"
	"github.com/lumenobs/lumen/internal/sendq"
	"github.com/lumenobs/lumen/store"
)

// NewSend is the queue's send function to Loki's push endpoint cfg.URL
// (e.g. http://loki:3100/loki/api/v1/push), snappy protobuf: a 5xx, a 429
// or a network error is retried (after the Retry-After Loki gives, if
// any); any other refusal drops the request, which Loki will never take.
func NewSend(cfg httpsend.Config) (sendq.Send, error) {
	cfg.What, cfg.ContentType, cfg.Retryable = "loki push", "application/x-protobuf", httpsend.LokiRetryable
	return httpsend.New(cfg)
}

// Writer turns log streams into Loki push requests on a queue.
type Writer struct {
	q *sendq.Queue
	// maxBytes cuts a write into requests of about so many bytes before
	// compression (Loki refuses a push past its tenant's burst size).
	maxBytes int
}

// New returns a writer to q whose requests hold about maxBytes each.
func New(q *sendq.Queue, maxBytes int) *Writer { return &Writer{q: q, maxBytes: maxBytes} }

// ErrRequestTooLarge is a line that alone is past the request size.
var ErrRequestTooLarge = fmt.Errorf("%w: line larger than the logs backend's request size (max_request_bytes)", fault.ErrTooLarge)

// Write queues streams' lines; they are on disk when it returns. A full
// queue is fault.ErrOverloaded (429 / RESOURCE_EXHAUSTED): the lines of
// requests queued before it stay queued, and Loki keeps one of the same
// line sent again at the same time in the same stream.
func (w *Writer) Write(ctx context.Context, streams []store.LogStream) error {
	reqs, err := Requests(streams, w.maxBytes)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		body, err := r.req.Marshal()
		if err != nil {
			return fmt.Errorf("encode loki push: %w", err)
		}
		if err := w.q.Offer(ctx, snappy.Encode(nil, body), r.lines); err != nil {
			if errors.Is(err, sendq.ErrFull) {
				return fmt.Errorf("%w: logs backend queue: %w", fault.ErrOverloaded, err)
			}
			return fmt.Errorf("logs backend queue: %w", err)
		}
	}
	return nil
}

// Request is one push request and how many lines it holds.
type Request struct {
	req   push.PushRequest
	lines int
}

// Push is the request.
func (r Request) Push() *push.PushRequest { return &r.req }

// Requests cuts streams into push requests of about maxBytes each (a
// stream may be split across requests; a line is never split).
func Requests(streams []store.LogStream, maxBytes int) ([]Request, error) {
	var (
		out  []Request
		cur  Request
		size int
	)
	flush := func() {
		if cur.lines > 0 {
			out = append(out, cur)
		}
		cur, size = Request{}, 0
	}
	for _, st := range streams {
		if len(st.Entries) == 0 {
			continue
		}
		lset := st.Labels.String()
		var ps *push.Stream
		for i := range st.Entries {
			e := Entry(&st.Entries[i])
			n := len(e.Line) + 16
			for _, l := range e.StructuredMetadata {
				n += len(l.Name) + len(l.Value) + 4
			}
			if n+len(lset) > maxBytes {
				return nil, fmt.Errorf("%w: %d bytes in stream %s, at most %d", ErrRequestTooLarge, n, lset, maxBytes)
			}
			if ps == nil || size+n > maxBytes {
				if size+n+len(lset) > maxBytes {
					flush()
				}
				cur.req.Streams = append(cur.req.Streams, push.Stream{Labels: lset})
				ps = &cur.req.Streams[len(cur.req.Streams)-1]
				size += len(lset)
			}
			ps.Entries = append(ps.Entries, e)
			cur.lines++
			size += n
		}
	}
	flush()
	return out, nil
}

// Entry is the push entry of e: its structured metadata with trace_id and
// span_id added from the ids Lumen found, when the metadata does not
// carry them already.
func Entry(e *store.LogEntry) push.Entry {
	md := make(push.LabelsAdapter, 0, e.Metadata.Len()+2)
	hasTrace, hasSpan := false, false
	e.Metadata.Range(func(l labels.Label) {
		md = append(md, push.LabelAdapter{Name: l.Name, Value: l.Value})
		hasTrace = hasTrace || l.Name == "trace_id"
		hasSpan = hasSpan || l.Name == "span_id"
	})
	if !hasTrace && !e.TraceID.IsEmpty() {
		md = append(md, push.LabelAdapter{Name: "trace_id", Value: e.TraceID.String()})
	}
	if !hasSpan && !e.SpanID.IsEmpty() {
		md = append(md, push.LabelAdapter{Name: "span_id", Value: e.SpanID.String()})
	}
	if len(md) == 0 {
		md = nil
	}
	return push.Entry{Timestamp: time.Unix(0, e.T).UTC(), Line: e.Line, StructuredMetadata: md}
}
