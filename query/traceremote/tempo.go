package traceremote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"golang.org/x/sync/errgroup"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/remoteapi"
	"github.com/lumenobs/lumen/store"
)

// tempoFetches is how many of a search's traces are read from Tempo at
// once (each also takes one of the budget's concurrent reads).
const tempoFetches = 4

var protoTraces ptrace.ProtoUnmarshaler

// tempoTrace reads trace id from Tempo's /api/traces/{id} as protobuf
// (tempopb.Trace: its resource spans are field 1, as OTLP's TracesData's).
func (b *Backend) tempoTrace(ctx context.Context, id model.TraceID) (ptrace.Traces, error) {
	body, err := b.getTrace(ctx, id, "/api/traces/", "application/protobuf")
	if err != nil {
		return ptrace.Traces{}, err
	}
	return decodeTempoTrace(body, b.cfg.URL, id)
}

// decodeTempoTrace reads Tempo's protobuf trace; one without spans is not
// found.
func decodeTempoTrace(body []byte, url string, id model.TraceID) (ptrace.Traces, error) {
	td, err := protoTraces.UnmarshalTraces(body)
	if err != nil {
		return ptrace.Traces{}, fmt.Errorf("%w: traces backend %s: trace %s: %w", fault.ErrUnavailable, url, id, err)
	}
	if td.SpanCount() == 0 {
		return ptrace.Traces{}, fmt.Errorf("trace %s in the traces backend: %w", id, fault.ErrNotFound)
	}
	return td, nil
}

// tempoFind runs q as a TraceQL search (/api/search) and reads each trace
// it finds by id.
func (b *Backend) tempoFind(ctx context.Context, q store.RemoteFind) (ptrace.Traces, error) {
	v := url.Values{"q": {traceQL(q)}, "limit": {strconv.Itoa(max(q.Limit, 1))}}
	if q.End > 0 {
		// Tempo's window is in whole seconds: the one that holds both ends.
		v.Set("start", strconv.FormatUint(q.Start/1e9, 10))
		v.Set("end", strconv.FormatUint((q.End+1e9-1)/1e9, 10))
	}
	body, err := b.c.Get(ctx, "/api/search", v, http.Header{"Accept": {"application/json"}})
	if err != nil {
		var he *remoteapi.HTTPError
		if errors.As(err, &he) && he.Status/100 == 4 && he.Status != http.StatusTooManyRequests {
			return ptrace.Traces{}, fmt.Errorf("%w: %w", fault.ErrInvalid, err)
		}
		return ptrace.Traces{}, fmt.Errorf("%w: %w", fault.ErrUnavailable, err)
	}
	ids, err := decodeTempoSearch(body, b.cfg.URL)
	if err != nil {
		return ptrace.Traces{}, err
	}
	found := make([]ptrace.Traces, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(tempoFetches)
	for i, id := range ids {
		g.Go(func() error {
			td, err := b.tempoTrace(gctx, id)
			if errors.Is(err, fault.ErrNotFound) {
				return nil // found by the search, gone since (retention)
			}
			found[i] = td
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return ptrace.Traces{}, err
	}
	out := ptrace.NewTraces()
	for _, td := range found {
		if td != (ptrace.Traces{}) {
			td.ResourceSpans().MoveAndAppendTo(out.ResourceSpans())
		}
	}
	return out, nil
}

// decodeTempoSearch reads the trace ids of Tempo's search answer
// ({"traces": [{"traceID": hex…}…]}). Tempo writes an id without its
// leading zeros.
func decodeTempoSearch(body []byte, url string) ([]model.TraceID, error) {
	var a struct {
		Traces *[]struct {
			TraceID string `json:"traceID"`
		} `json:"traces"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.Traces == nil {
		return nil, fmt.Errorf("%w: traces backend %s: search: answer without traces: %.200s", fault.ErrUnavailable, url, body)
	}
	ids := make([]model.TraceID, 0, len(*a.Traces))
	for _, t := range *a.Traces {
		h := t.TraceID
		if len(h) < 32 {
			h = strings.Repeat("0", 32-len(h)) + h
		}
		id, err := model.ParseTraceID(h)
		if err != nil {
			return nil, fmt.Errorf("%w: traces backend %s: search: trace id %q: %w", fault.ErrUnavailable, url, t.TraceID, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// plainAttribute is an attribute name TraceQL takes unquoted after a dot.
var plainAttribute = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// traceQL is the spanset filter of q: its service, span name and
// attributes (span or resource), every value a quoted string.
func traceQL(q store.RemoteFind) string {
	var conds []string
	if q.Service != "" {
		conds = append(conds, "resource.service.name = "+strconv.Quote(q.Service))
	}
	if q.Operation != "" {
		conds = append(conds, "name = "+strconv.Quote(q.Operation))
	}
	keys := make([]string, 0, len(q.Attributes))
	for k := range q.Attributes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := "." + k
		if !plainAttribute.MatchString(k) {
			name = "." + strconv.Quote(k)
		}
		conds = append(conds, name+" = "+strconv.Quote(q.Attributes[k]))
	}
	if len(conds) == 0 {
		return "{ }"
	}
	return "{ " + strings.Join(conds, " && ") + " }"
}

// tempoTagValues lists the values of a scoped tag in the spans q selects
// (every span when empty), over the last catalogLookback.
func (b *Backend) tempoTagValues(ctx context.Context, tag, q string) ([]string, error) {
	now := time.Now()
	v := url.Values{"start": {strconv.FormatInt(now.Add(-catalogLookback).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix()+1, 10)}}
	if q != "" {
		v.Set("q", q)
	}
	body, err := b.c.Get(ctx, "/api/v2/search/tag/"+url.PathEscape(tag)+"/values", v, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", fault.ErrUnavailable, err)
	}
	return decodeTempoTagValues(body, b.cfg.URL, tag)
}

// decodeTempoTagValues reads {"tagValues": [{"type": …, "value": …}…]},
// sorted.
func decodeTempoTagValues(body []byte, url, tag string) ([]string, error) {
	var a struct {
		TagValues []struct {
			Value string `json:"value"`
		} `json:"tagValues"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("%w: traces backend %s: values of %s: %w: %.200s", fault.ErrUnavailable, url, tag, err, body)
	}
	out := make([]string, 0, len(a.TagValues))
	for _, tv := range a.TagValues {
		out = append(out, tv.Value)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
