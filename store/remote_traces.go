package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	// Find reads the spans of the newest traces that have a span meeting
	// q, at most q.Limit traces, in one answer (nil: searches are not
	// made).
	Find func(ctx context.Context, q RemoteFind) (ptrace.Traces, error)
	// Services and Operations list the backend's services and a service's
	// span names: the search catalog over a remote backend (nil: none).
	Services   func(ctx context.Context) ([]string, error)
	Operations func(ctx context.Context, service string) ([]string, error)
}

// maxCatalogServices bounds the services whose span names are asked of a
// remote backend for a catalog of every span name.
const maxCatalogServices = 200

// remoteCatalog is SearchCatalog over a remote backend: what its API
// lists — services, and each service's span names. Attributes are listed
// by no API Lumen reads: none (their values are looked for in searches).
func remoteCatalog(ctx context.Context, r *RemoteTraces, kind byte, a string) ([]Term, error) {
	if r.Services == nil || r.Operations == nil {
		return nil, ErrRemoteTraces
	}
	switch kind {
	case TermService:
		svcs, err := r.Services(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]Term, 0, len(svcs))
		for _, s := range svcs {
			out = append(out, Term{Kind: TermService, A: s})
		}
		return sortTerms(out), nil
	case TermName:
		svcs := []string{a}
		if a == "" {
			var err error
			if svcs, err = r.Services(ctx); err != nil {
				return nil, err
			}
			svcs = svcs[:min(len(svcs), maxCatalogServices)]
		}
		var out []Term
		for _, s := range svcs {
			ops, err := r.Operations(ctx, s)
			if err != nil {
				return nil, err
			}
			for _, op := range ops {
				out = append(out, Term{Kind: TermName, A: s, B: op})
			}
		}
		return sortTerms(out), nil
	}
	return []Term{}, nil
}

func sortTerms(ts []Term) []Term {
	slices.SortFunc(ts, func(x, y Term) int { return cmp.Or(strings.Compare(x.A, y.A), strings.Compare(x.B, y.B)) })
	return slices.CompactFunc(ts, func(x, y Term) bool { return x == y })
}

// RemoteFind is a search the remote backend makes: traces with a span of
// Service (and Operation, and every one of Attributes) that starts in
// [Start, End] (unix ns).
type RemoteFind struct {
	Service, Operation string
	Attributes         map[string]string
	Start, End         uint64
	Limit              int
}

// ErrRemoteTraces is a search of a store whose spans are kept in a remote
// backend: its own API answers searches.
var ErrRemoteTraces = fmt.Errorf("%w: spans are kept in the remote traces backend, whose own API answers searches", fault.ErrNotImplemented)

// remoteSearch answers a search from the remote backend: the candidates
// it finds for the search's service, span name and attributes (Lumen's
// index terms), each checked against the search's conditions on its
// spans and summarized as a local search does, newest first. A search
// without a service is not made (the backend's finds need one).
func remoteSearch(ctx context.Context, r *RemoteTraces, q TraceSearch) (SearchResult, error) {
	if r.Find == nil {
		return SearchResult{}, ErrRemoteTraces
	}
	f := RemoteFind{Start: q.Start, End: q.End, Limit: q.Limit}
	for _, t := range append([]Term{q.Drive}, q.Also...) {
		switch t.Kind {
		case TermService:
			f.Service = t.A
		case TermName, TermRoot:
			f.Service, f.Operation = t.A, t.B
		case TermSpanAttr, TermResAttr:
			if f.Attributes == nil {
				f.Attributes = map[string]string{}
			}
			f.Attributes[t.A] = t.B
		}
	}
	if f.Service == "" {
		return SearchResult{}, fmt.Errorf("%w: a search of spans kept in the remote traces backend needs a service (resource.service.name or service=)", fault.ErrInvalid)
	}
	if q.Match != nil && q.MaxInspect > 0 {
		// Candidates are checked here: ask for more than the limit, as a
		// local search inspects more than it answers.
		f.Limit = min(q.Limit*5, q.MaxInspect)
	}
	td, err := r.Find(ctx, f)
	if err != nil {
		return SearchResult{}, err
	}
	var res SearchResult
	for id, spans := range splitTraces(td) {
		res.Inspected++
		if s, ok := summarize(id, spans, q.Match, q.MaxMatched); ok {
			res.Traces = append(res.Traces, s)
		}
	}
	slices.SortFunc(res.Traces, func(a, b TraceSummary) int {
		if c := cmp.Compare(b.Start, a.Start); c != 0 {
			return c
		}
		return bytes.Compare(a.TraceID[:], b.TraceID[:])
	})
	if len(res.Traces) > q.Limit {
		res.Traces = res.Traces[:q.Limit]
	}
	return res, nil
}

// splitTraces groups td's spans by trace, each with its resource and
// scope.
func splitTraces(td ptrace.Traces) map[model.TraceID]ptrace.Traces {
	out := map[model.TraceID]ptrace.Traces{}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				id := model.TraceID(sp.TraceID())
				t, ok := out[id]
				if !ok {
					t = ptrace.NewTraces()
					out[id] = t
				}
				drs := t.ResourceSpans().AppendEmpty()
				rs.Resource().CopyTo(drs.Resource())
				drs.SetSchemaUrl(rs.SchemaUrl())
				dss := drs.ScopeSpans().AppendEmpty()
				ss.Scope().CopyTo(dss.Scope())
				dss.SetSchemaUrl(ss.SchemaUrl())
				sp.CopyTo(dss.Spans().AppendEmpty())
			}
		}
	}
	return out
}

// remoteTraceSpans reads a trace's spans from the remote backend: none
// found is an empty answer, not an error.
func remoteTraceSpans(ctx context.Context, r *RemoteTraces, id model.TraceID) (ptrace.Traces, error) {
	td, err := r.Trace(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return ptrace.NewTraces(), nil
	}
	return td, err
}
