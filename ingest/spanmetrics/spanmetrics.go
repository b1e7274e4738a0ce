// Package spanmetrics derives, from the spans Lumen stores, RED metrics
// per service and operation and a service graph, with no configuration:
// what Tempo's metrics-generator and the Collector's spanmetrics and
// servicegraph connectors compute, kept in memory and written every
// interval as ordinary Prometheus series through the store's appender,
// with exemplars that carry the trace and span ids.
//
//	traces_spanmetrics_calls_total{service, span_name, span_kind, status_code}
//	traces_spanmetrics_duration_seconds_{bucket,sum,count}{service, span_name, span_kind, status_code[, le]}
//	traces_service_graph_request_total{client, server, connection_type}
//	traces_service_graph_request_failed_total{client, server, connection_type}
//	traces_service_graph_request_server_seconds_{bucket,sum,count}{client, server, connection_type[, le]}
//	traces_service_graph_request_client_seconds_{bucket,sum,count}{client, server, connection_type[, le]}
//
// Written by hand: the Collector's connectors live in collector-contrib,
// which does not resolve with the collector version Lumen embeds
// (docs/decisions.md), and they emit OTLP metrics, not appender calls.
package spanmetrics

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/store"
)

// Config tunes the generator.
type Config struct {
	// Enabled turns span metrics and the service graph on.
	Enabled bool `yaml:"enabled"`
	// Interval is how often the metrics are written.
	Interval time.Duration `yaml:"interval"`
	// EdgeWait is how long a span waits for its parent or child from
	// another service before it is forgotten.
	EdgeWait time.Duration `yaml:"edge_wait"`
	// MaxPending bounds the spans kept waiting for a partner.
	MaxPending int `yaml:"max_pending"`
	// MaxSeries bounds the RED keys (service, span name, kind, status) and
	// the graph edges kept, each; a key is 19 series (a counter and a
	// histogram). Past it, spans of new keys are counted in one overflow
	// key labelled otel_metric_overflow="true" — the Collector's
	// aggregation_cardinality_limit — and in
	// lumen_spanmetrics_overflow_spans_total.
	MaxSeries int `yaml:"max_series"`
	// StaleAfter is how long a key that takes no span is kept: then it is
	// no longer written and leaves memory (Tempo's metrics-generator
	// stale_duration).
	StaleAfter time.Duration `yaml:"stale_after"`
}

// DefaultConfig: on, written every 15 s.
func DefaultConfig() Config {
	return Config{Enabled: true, Interval: 15 * time.Second, EdgeWait: 10 * time.Second, MaxPending: 100_000, MaxSeries: 20_000, StaleAfter: 15 * time.Minute}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Enabled && (c.Interval <= 0 || c.EdgeWait <= 0 || c.MaxPending < 1 || c.MaxSeries < 1 || c.StaleAfter <= 0) {
		return fmt.Errorf("span_metrics: interval %s, edge_wait %s, max_pending %d, max_series %d and stale_after %s must be positive", c.Interval, c.EdgeWait, c.MaxPending, c.MaxSeries, c.StaleAfter)
	}
	return nil
}

// Buckets are the duration histogram's upper bounds, in seconds (Tempo's
// metrics-generator defaults).
var Buckets = []float64{0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384}

// Span is what the generator needs of a span, taken before the store
// takes the request.
type Span struct {
	TraceID  [16]byte
	SpanID   [8]byte
	ParentID [8]byte
	Service  string
	Name     string
	Kind     ptrace.SpanKind
	Error    bool
	Start    uint64
	End      uint64
}

func (s Span) seconds() float64 {
	if s.End <= s.Start {
		return 0
	}
	return float64(s.End-s.Start) / 1e9
}

// Extract lists the spans of td.
func Extract(td ptrace.Traces) []Span {
	out := make([]Span, 0, td.SpanCount())
	for _, rs := range td.ResourceSpans().All() {
		svc := ""
		if v, ok := rs.Resource().Attributes().Get("service.name"); ok {
			svc = v.AsString()
		}
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				out = append(out, Span{TraceID: sp.TraceID(), SpanID: sp.SpanID(), ParentID: sp.ParentSpanID(), Service: svc, Name: sp.Name(),
					Kind: sp.Kind(), Error: sp.Status().Code() == ptrace.StatusCodeError, Start: uint64(sp.StartTimestamp()), End: uint64(sp.EndTimestamp())})
			}
		}
	}
	return out
}

// FromRequest lists the spans of a trace request read in place.
func FromRequest(req *store.TraceRequest) []Span {
	out := make([]Span, 0, req.SpanCount())
	req.EachSpan(func(s *store.RequestSpan) {
		out = append(out, Span{TraceID: s.TraceID, SpanID: s.SpanID, ParentID: s.ParentID, Service: s.Service, Name: s.Name,
			Kind: ptrace.SpanKind(s.Kind), Error: s.Error, Start: s.Start, End: s.End})
	})
	return out
}

// histogram is a classic histogram with its newest exemplar per bucket.
type histogram struct {
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	// exemplars is the newest span per bucket since the last write, kept
	// by value (ids and times only) so that no request is kept alive.
	exemplars []exemplarSpan
}

type exemplarSpan struct {
	trace      [16]byte
	span       [8]byte
	start, end uint64
	set        bool
}

func exemplarOf(s *Span) exemplarSpan {
	return exemplarSpan{trace: s.TraceID, span: s.SpanID, start: s.Start, end: s.End, set: true}
}

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, len(Buckets)+1), exemplars: make([]exemplarSpan, len(Buckets)+1)}
}

func (h *histogram) observe(v float64, e exemplarSpan) {
	i, _ := slices.BinarySearch(Buckets, v)
	h.counts[i]++
	h.sum += v
	h.exemplars[i] = e
}

type redKey struct {
	service, name string
	kind          ptrace.SpanKind
	err           bool
	overflow      bool // the key of every span past MaxSeries
}

type red struct {
	calls    uint64
	duration *histogram
	last     exemplarSpan
	updated  time.Time
	// written is set once a flush that wrote the key's series committed;
	// until then they are written after a zero (see writer.zero).
	written bool
}

type edgeKey struct {
	client, server, conn string
	overflow             bool
}

type edge struct {
	requests, failed uint64
	server, client   *histogram
	last             exemplarSpan
	updated          time.Time
	written          bool // as red.written
}

type pendKey struct {
	trace [16]byte
	span  [8]byte
}

// spanSide is what an edge needs of a span that waits for its partner,
// kept by value so waiting costs no allocation.
type spanSide struct {
	service string
	kind    ptrace.SpanKind
	err     bool
	dur     float64
	trace   [16]byte
	span    [8]byte
	end     uint64
}

func sideOf(s *Span) spanSide {
	return spanSide{service: s.Service, kind: s.Kind, err: s.Error, dur: s.seconds(), trace: s.TraceID, span: s.SpanID, end: s.End}
}

// generation holds spans waiting for a partner; two of them rotate every
// EdgeWait, so a span waits between one and two EdgeWaits and expiry
// costs nothing per span.
type generation struct {
	recent  map[pendKey]spanSide   // spans, for children that come later
	waiting map[pendKey][]spanSide // children whose parent has not come, by parent id
}

func newGeneration() generation {
	return generation{recent: map[pendKey]spanSide{}, waiting: map[pendKey][]spanSide{}}
}

// Generator keeps span metrics and the service graph.
type Generator struct {
	cfg Config
	app storage.Appendable
	log *zap.Logger
	now func() time.Time

	mu       sync.Mutex
	red      map[redKey]*red
	edges    map[edgeKey]*edge
	cur, old generation
	rotated  time.Time
	dropped  uint64 // spans left out of the service graph at MaxPending
	overflow uint64 // spans counted in an overflow key
	expired  uint64 // keys removed as stale
	// zeroFrom is the earliest time (ms) a new series' zero may take: the
	// last flush (which did not write the series), or, before the first,
	// when the generator was first used (after anything a previous run
	// wrote). 0 until then.
	zeroFrom int64
}

// Stats is what the generator holds and what it left out.
type Stats struct {
	Keys, Edges int
	// Overflow counts spans (and edges) counted in the overflow key
	// because MaxSeries was reached; Dropped, spans the service graph
	// could not wait for (MaxPending); Expired, keys removed as stale.
	Overflow, Dropped, Expired uint64
}

// Stats reports the generator's counts.
func (g *Generator) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Stats{Keys: len(g.red), Edges: len(g.edges), Overflow: g.overflow, Dropped: g.dropped, Expired: g.expired}
}

// New returns a generator writing to app.
func New(cfg Config, app storage.Appendable, log *zap.Logger) *Generator {
	if log == nil {
		log = zap.NewNop()
	}
	return &Generator{cfg: cfg, app: app, log: log.Named("spanmetrics"), now: time.Now,
		red: map[redKey]*red{}, edges: map[edgeKey]*edge{}, cur: newGeneration(), old: newGeneration()}
}

// Observe counts stored spans.
func (g *Generator) Observe(spans []Span) {
	if len(spans) == 0 {
		return
	}
	parents := parentsWithin(spans)
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.used(now)
	for i := range spans {
		s := &spans[i]
		k := redKey{service: s.Service, name: s.Name, kind: s.Kind, err: s.Error}
		r := g.red[k]
		if r == nil && len(g.red) >= g.cfg.MaxSeries {
			g.overflow++
			k = redKey{overflow: true}
			r = g.red[k]
		}
		if r == nil {
			r = &red{duration: newHistogram()}
			g.red[k] = r
		}
		r.updated = now
		r.calls++
		e := exemplarOf(s)
		r.duration.observe(s.seconds(), e)
		r.last = e
		var parent *Span
		if p := parents[i]; p >= 0 {
			parent = &spans[p]
		}
		g.link(s, parent, now)
	}
}

// parentsWithin gives each span the index of its parent among spans, or -1
// when its parent is not among them. A request's spans are paired among
// themselves first (outside the generator's lock, in a map of the request's
// size): only the others look for a partner in the generations, which are
// large and bounded by MaxPending.
func parentsWithin(spans []Span) []int32 {
	byID := make(map[pendKey]int32, len(spans))
	for i := range spans {
		byID[pendKey{spans[i].TraceID, spans[i].SpanID}] = int32(i)
	}
	out := make([]int32, len(spans))
	for i := range spans {
		out[i] = -1
		if s := &spans[i]; s.ParentID != [8]byte{} {
			if p, ok := byID[pendKey{s.TraceID, s.ParentID}]; ok && int(p) != i {
				out[i] = p
			}
		}
	}
	return out
}

func (g *Generator) pendingCount() int {
	return len(g.cur.recent) + len(g.cur.waiting) + len(g.old.recent) + len(g.old.waiting)
}

// link pairs a span with its parent or its waiting children when they are
// in different services: client/server and producer/consumer pairs, and
// any other parent/child that crosses services. parent is the span's parent
// when it came in the same request, nil when it is to be looked for.
func (g *Generator) link(s, parent *Span, now time.Time) {
	if now.Sub(g.rotated) > g.cfg.EdgeWait {
		g.old, g.cur, g.rotated = g.cur, newGeneration(), now
	}
	side := sideOf(s)
	self := pendKey{s.TraceID, s.SpanID}
	full := g.pendingCount() >= g.cfg.MaxPending
	if parent != nil {
		g.edge(sideOf(parent), side)
	} else if s.ParentID != [8]byte{} {
		pk := pendKey{s.TraceID, s.ParentID}
		if p, ok := g.cur.recent[pk]; ok {
			g.edge(p, side)
		} else if p, ok := g.old.recent[pk]; ok {
			g.edge(p, side)
		} else if !full {
			g.cur.waiting[pk] = append(g.cur.waiting[pk], side)
		} else {
			g.dropped++
		}
	}
	for _, gen := range []*generation{&g.cur, &g.old} {
		if cs, ok := gen.waiting[self]; ok {
			for _, c := range cs {
				g.edge(side, c)
			}
			delete(gen.waiting, self)
		}
	}
	if !full {
		g.cur.recent[self] = side
	} else {
		g.dropped++
	}
}

// edge records a call from parent's service to child's.
func (g *Generator) edge(parent, child spanSide) {
	if parent.service == child.service {
		return
	}
	conn := ""
	switch {
	case parent.kind == ptrace.SpanKindProducer && child.kind == ptrace.SpanKindConsumer:
		conn = "messaging_system"
	case parent.kind == ptrace.SpanKindClient && child.kind == ptrace.SpanKindServer:
		conn = ""
	default:
		conn = "virtual_node"
	}
	k := edgeKey{client: parent.service, server: child.service, conn: conn}
	e := g.edges[k]
	if e == nil && len(g.edges) >= g.cfg.MaxSeries {
		g.overflow++
		k = edgeKey{overflow: true}
		e = g.edges[k]
	}
	if e == nil {
		e = &edge{server: newHistogram(), client: newHistogram()}
		g.edges[k] = e
	}
	e.updated = g.now()
	e.requests++
	// A client span is the call itself, so its error fails the call; a
	// parent of another kind may fail for reasons of its own.
	if child.err || (conn != "virtual_node" && parent.err) {
		e.failed++
	}
	ex := exemplarSpan{trace: child.trace, span: child.span, start: child.end - uint64(child.dur*1e9), end: child.end, set: true}
	e.server.observe(child.dur, ex)
	e.client.observe(parent.dur, ex)
	e.last = ex
}

// Run writes the metrics every interval until ctx ends, then once more.
func (g *Generator) Run(ctx context.Context) {
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := g.Flush(context.Background()); err != nil {
				g.log.Warn("span metrics not written", zap.Error(err))
			}
			return
		case <-t.C:
			if err := g.Flush(ctx); err != nil {
				g.log.Warn("span metrics not written", zap.Error(err))
			}
		}
	}
}

var kindNames = map[ptrace.SpanKind]string{
	ptrace.SpanKindUnspecified: "SPAN_KIND_UNSPECIFIED", ptrace.SpanKindInternal: "SPAN_KIND_INTERNAL", ptrace.SpanKindServer: "SPAN_KIND_SERVER",
	ptrace.SpanKindClient: "SPAN_KIND_CLIENT", ptrace.SpanKindProducer: "SPAN_KIND_PRODUCER", ptrace.SpanKindConsumer: "SPAN_KIND_CONSUMER",
}

// used notes the generator's first use; g.mu is held.
func (g *Generator) used(now time.Time) {
	if g.zeroFrom == 0 {
		g.zeroFrom = now.UnixMilli()
	}
}

// Flush writes every series' current value, with exemplars, at now. A
// series written for the first time — a new key, one back after it went
// stale, the overflow key — is written after a 0 one interval earlier (or
// at the last flush, if that is later), as Tempo's metrics-generator does,
// so that rate() and increase() count its first value whole rather than
// take it as where counting began.
func (g *Generator) Flush(ctx context.Context) error {
	now := g.now()
	ts := now.UnixMilli()
	g.mu.Lock()
	g.used(now)
	if now.Sub(g.rotated) > g.cfg.EdgeWait {
		g.old, g.cur, g.rotated = g.cur, newGeneration(), now
	}
	g.expire(now)
	app := g.app.Appender(ctx)
	w := writer{app: app, ts: ts, zeroTs: max(ts-g.cfg.Interval.Milliseconds(), g.zeroFrom)}
	g.zeroFrom = ts
	var fresh []*bool
	for k, r := range g.red {
		w.fresh = !r.written
		if w.fresh {
			fresh = append(fresh, &r.written)
		}
		status := "STATUS_CODE_UNSET"
		if k.err {
			status = "STATUS_CODE_ERROR"
		}
		base := []string{"service", k.service, "span_name", k.name, "span_kind", kindNames[k.kind], "status_code", status}
		if k.overflow {
			base = overflowLabels
		}
		w.counter("traces_spanmetrics_calls_total", base, float64(r.calls), r.last)
		w.histogram("traces_spanmetrics_duration_seconds", base, r.duration)
		r.last = exemplarSpan{}
	}
	for k, e := range g.edges {
		w.fresh = !e.written
		if w.fresh {
			fresh = append(fresh, &e.written)
		}
		base := []string{"client", k.client, "server", k.server, "connection_type", k.conn}
		if k.overflow {
			base = overflowLabels
		}
		w.counter("traces_service_graph_request_total", base, float64(e.requests), e.last)
		w.counter("traces_service_graph_request_failed_total", base, float64(e.failed), exemplarSpan{})
		w.histogram("traces_service_graph_request_server_seconds", base, e.server)
		w.histogram("traces_service_graph_request_client_seconds", base, e.client)
		e.last = exemplarSpan{}
	}
	g.mu.Unlock()
	if w.err != nil {
		_ = app.Rollback()
		return w.err
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("write span metrics: %w", err)
	}
	g.mu.Lock()
	for _, f := range fresh {
		*f = true
	}
	g.mu.Unlock()
	return nil
}

// overflowLabels name the overflow key's series, as the Collector's
// aggregation_cardinality_limit names its (otel.metric.overflow, in
// Prometheus' characters).
var overflowLabels = []string{"otel_metric_overflow", "true"}

// expire removes the keys and edges that took nothing for StaleAfter; g.mu
// is held. Their series are no longer written, so they go stale in PromQL
// five minutes later, as a target's series do when it goes away.
func (g *Generator) expire(now time.Time) {
	horizon := now.Add(-g.cfg.StaleAfter)
	for k, r := range g.red {
		if r.updated.Before(horizon) {
			delete(g.red, k)
			g.expired++
		}
	}
	for k, e := range g.edges {
		if e.updated.Before(horizon) {
			delete(g.edges, k)
			g.expired++
		}
	}
}

// writer appends series, keeping the first error.
type writer struct {
	app storage.Appender
	ts  int64
	// fresh is set while the series written are written for the first
	// time: each comes after a 0 at zeroTs.
	fresh  bool
	zeroTs int64
	err    error
}

func (w *writer) add(name string, base []string, extra []string, v float64, ex exemplarSpan) {
	if w.err != nil {
		return
	}
	b := labels.NewScratchBuilder(len(base)/2 + 2)
	b.Add("__name__", name)
	for i := 0; i+1 < len(base); i += 2 {
		if base[i+1] != "" { // an empty label is no label
			b.Add(base[i], base[i+1])
		}
	}
	for i := 0; i+1 < len(extra); i += 2 {
		b.Add(extra[i], extra[i+1])
	}
	b.Sort()
	ls := b.Labels()
	w.zero(ls)
	ref, err := w.app.Append(0, ls, w.ts, v)
	if err != nil {
		if !errors.Is(err, storage.ErrOutOfOrderSample) && !errors.Is(err, storage.ErrDuplicateSampleForTimestamp) {
			w.err = fmt.Errorf("append %s: %w", ls, err)
		}
		return
	}
	if ex.set {
		e := exemplar.Exemplar{
			Labels: labels.FromStrings("trace_id", hex.EncodeToString(ex.trace[:]), "span_id", hex.EncodeToString(ex.span[:])),
			Value:  float64(ex.end-min(ex.end, ex.start)) / 1e9, Ts: int64(ex.end / 1e6), HasTs: true,
		}
		if _, err := w.app.AppendExemplar(ref, ls, e); err != nil && !errors.Is(err, storage.ErrOutOfOrderExemplar) && !errors.Is(err, storage.ErrDuplicateExemplar) {
			w.err = fmt.Errorf("append exemplar of %s: %w", ls, err)
		}
	}
}

// zero writes a 0 at zeroTs before the first sample of a series, when
// fresh. zeroTs is after every sample the series has (the last flush did
// not write it; before the first flush, nothing of this run did), so the
// store takes it in order. It is best effort: one refused (out of order,
// a duplicate, too old) or failing is left out, and the sample is written
// (or fails) as it would have without it.
func (w *writer) zero(ls labels.Labels) {
	if !w.fresh || w.err != nil || w.zeroTs >= w.ts {
		return
	}
	_, _ = w.app.Append(0, ls, w.zeroTs, 0)
}

func (w *writer) counter(name string, base []string, v float64, ex exemplarSpan) {
	w.add(name, base, nil, v, ex)
}

func (w *writer) histogram(name string, base []string, h *histogram) {
	var cum uint64
	for i, c := range h.counts {
		cum += c
		le := "+Inf"
		if i < len(Buckets) {
			le = strconv.FormatFloat(Buckets[i], 'f', -1, 64)
		}
		w.add(name+"_bucket", base, []string{"le", le}, float64(cum), h.exemplars[i])
		h.exemplars[i] = exemplarSpan{}
	}
	w.add(name+"_sum", base, nil, h.sum, exemplarSpan{})
	w.add(name+"_count", base, nil, float64(cum), exemplarSpan{})
}
