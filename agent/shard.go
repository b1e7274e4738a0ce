package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/zap"
)

// endpoints are the server replicas a sharding shipper sends to: the
// addresses the server URL's host name resolves to (a headless Service's
// pods), looked up again every interval, as the Collector's
// load-balancing exporter's DNS resolver does. A lookup that fails or
// finds nothing keeps the replicas last found.
type endpoints struct {
	scheme, host, port string
	interval           time.Duration
	lookup             func(ctx context.Context, host string) ([]string, error)
	base               *http.Transport
	timeout            time.Duration
	log                *zap.Logger
	m                  *Metrics

	mu      sync.Mutex
	list    []endpoint // sorted by base URL
	at      time.Time  // of the last lookup
	clients map[string]*http.Client
	next    int // round robin for logs and metrics
}

// endpoint is one replica: its base URL and the client that reaches it
// (over TLS, checked against the server URL's host name, not the address).
type endpoint struct {
	url    string
	hash   uint64 // of url
	client *http.Client
}

func newEndpoint(url string, c *http.Client) endpoint {
	return endpoint{url: url, hash: xxhash.Sum64String(url), client: c}
}

func newEndpoints(server string, interval, timeout time.Duration, base *http.Transport, lookup func(context.Context, string) ([]string, error), log *zap.Logger, m *Metrics) (*endpoints, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", server, err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	return &endpoints{scheme: u.Scheme, host: u.Hostname(), port: port, interval: interval, lookup: lookup, base: base,
		timeout: timeout, log: log, m: m, clients: map[string]*http.Client{}}, nil
}

// current is the replicas to send to, looked up again when the last lookup
// is older than the interval.
func (e *endpoints) current(ctx context.Context) ([]endpoint, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if time.Since(e.at) < e.interval && len(e.list) > 0 {
		return e.list, nil
	}
	e.at = time.Now()
	lctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	addrs, err := e.lookup(lctx, e.host)
	if err == nil && len(addrs) == 0 {
		err = fmt.Errorf("no address")
	}
	if err != nil {
		if len(e.list) > 0 {
			e.log.Warn("look up the server's replicas; keeping the last found", zap.String("host", e.host), zap.Int("replicas", len(e.list)), zap.Error(err))
			return e.list, nil
		}
		return nil, fmt.Errorf("look up the server's replicas at %s: %w", e.host, err)
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	list := make([]endpoint, len(addrs))
	for i, a := range addrs {
		base := e.scheme + "://" + net.JoinHostPort(a, e.port)
		c := e.clients[base]
		if c == nil {
			tr := e.base.Clone()
			if tr.TLSClientConfig != nil && tr.TLSClientConfig.ServerName == "" {
				tr.TLSClientConfig.ServerName = e.host
			}
			c = &http.Client{Timeout: e.timeout, Transport: tr}
			e.clients[base] = c
		}
		list[i] = newEndpoint(base, c)
	}
	if !slices.EqualFunc(list, e.list, func(a, b endpoint) bool { return a.url == b.url }) {
		e.log.Info("server replicas", zap.String("host", e.host), zap.Strings("addresses", addrs))
	}
	e.list = list
	e.m.shipEndpoints.Set(float64(len(list)))
	return list, nil
}

// any is one replica, the next in turn: logs and metrics need no
// particular one, and a replica that fails is passed over on the retry.
func (e *endpoints) any(ctx context.Context) (endpoint, error) {
	list, err := e.current(ctx)
	if err != nil {
		return endpoint{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.next++
	return list[e.next%len(list)], nil
}

// owner is the replica a trace id belongs to: rendezvous hashing (the
// replica whose hash with the id is highest), so that a replica joining or
// leaving moves only the traces it takes or held. The hash of a replica
// and an id is the id's hash mixed with the replica's (splitmix64's
// finalizer), each computed once.
func owner(list []endpoint, id pcommon.TraceID) int {
	idh := xxhash.Sum64(id[:])
	best, bestH := 0, uint64(0)
	for i, ep := range list {
		if v := mix64(ep.hash ^ idh); i == 0 || v > bestH {
			best, bestH = i, v
		}
	}
	return best
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// splitByOwner splits td among list by the owner of each span's trace id:
// the spans of one trace always go to one replica (its service graph
// needs both ends of a call), each part keeping its spans' resource and
// scope.
func splitByOwner(td ptrace.Traces, list []endpoint) map[int]ptrace.Traces {
	parts := map[int]ptrace.Traces{}
	for _, rs := range td.ResourceSpans().All() {
		// The part's copy of this resource and scope, made when the part
		// takes its first span of them.
		type dest struct {
			rs ptrace.ResourceSpans
			ss ptrace.ScopeSpans
		}
		for _, ss := range rs.ScopeSpans().All() {
			dests := map[int]*dest{}
			for _, sp := range ss.Spans().All() {
				o := owner(list, sp.TraceID())
				d := dests[o]
				if d == nil {
					p, ok := parts[o]
					if !ok {
						p = ptrace.NewTraces()
						parts[o] = p
					}
					d = &dest{}
					d.rs = resourceIn(p, rs)
					d.ss = d.rs.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(d.ss.Scope())
					d.ss.SetSchemaUrl(ss.SchemaUrl())
					dests[o] = d
				}
				sp.CopyTo(d.ss.Spans().AppendEmpty())
			}
		}
	}
	return parts
}

// resourceIn is p's copy of rs's resource: the last one, if p's last
// resource is it, else a new one.
func resourceIn(p ptrace.Traces, rs ptrace.ResourceSpans) ptrace.ResourceSpans {
	if n := p.ResourceSpans().Len(); n > 0 {
		last := p.ResourceSpans().At(n - 1)
		if last.SchemaUrl() == rs.SchemaUrl() && last.Resource().Attributes().Equal(rs.Resource().Attributes()) {
			return last
		}
	}
	out := p.ResourceSpans().AppendEmpty()
	rs.Resource().CopyTo(out.Resource())
	out.SetSchemaUrl(rs.SchemaUrl())
	return out
}

var (
	// Made when an agent first shards, not in every agent.
	shardDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20))
		return d
	})
	shardEncoders = sync.Pool{New: func() any {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(relayZstdWindow))
		return e
	}}
)

func decodeTraces(body []byte) (ptrace.Traces, error) {
	raw, err := shardDecoder().DecodeAll(body, nil)
	if err != nil {
		return ptrace.Traces{}, fmt.Errorf("decompress: %w", err)
	}
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(raw); err != nil {
		return ptrace.Traces{}, fmt.Errorf("decode: %w", err)
	}
	return req.Traces(), nil
}

func encodeTraces(td ptrace.Traces) ([]byte, error) {
	raw, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return nil, err
	}
	enc := shardEncoders.Get().(*zstd.Encoder)
	defer shardEncoders.Put(enc)
	return enc.EncodeAll(raw, nil), nil
}

// shipSharded sends one record to the replicas until each part is taken
// (or refused for good): a traces record split by trace id, each part to
// its trace's replica; a record of logs or metrics whole, to one replica.
// It returns false when ctx ended first.
func (s *shipper) shipSharded(ctx context.Context, rec Record) bool {
	var pending []ptrace.Traces // of a traces record: the spans not yet taken
	split := false
	if rec.Signal == SignalTraces {
		td, err := decodeTraces(rec.Body)
		if err != nil {
			// A body that cannot be decoded is sent whole to a replica,
			// which answers for it (a 400, dropped and counted).
			s.log.Warn("a traces record cannot be split by trace id; sending it whole", zap.Error(err))
		} else {
			pending, split = []ptrace.Traces{td}, true
		}
	}
	var out partsOutcome
	bo := backoff{min: s.minBackoff, max: s.maxBackoff}
	for {
		if bo.attempts > 0 {
			s.m.retries.Inc()
		}
		var (
			wait time.Duration
			err  error
		)
		if split {
			pending, wait, err = s.sendParts(ctx, rec, pending, &out)
		} else {
			var ep endpoint
			if ep, err = s.shards.any(ctx); err == nil {
				var permanent bool
				wait, permanent, err = s.post(ctx, ep.client, ep.url, rec.Signal, rec.Body)
				if permanent {
					s.shipped(rec, fmt.Errorf("%s: %w", ep.url, err))
					return true
				}
			}
		}
		if err == nil {
			if split {
				s.shippedParts(rec, out)
			} else {
				s.shipped(rec, nil)
			}
			return true
		}
		s.health.failed(time.Now(), err)
		if bw := bo.next(); wait == 0 {
			wait = bw
		}
		if bo.attempts == 1 || bo.attempts%10 == 0 {
			s.log.Warn("ship to the server's replicas failed; retrying", zap.Stringer("signal", rec.Signal), zap.Duration("in", wait), zap.Int("attempt", bo.attempts), zap.Error(err))
		}
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// partsOutcome is what became of a traces record's spans sent in parts:
// those the replicas took, and those they refused for good (and why).
type partsOutcome struct {
	taken, refused int
	why            error
}

// shippedParts counts a traces record sent in parts and moves the buffer
// past it.
func (s *shipper) shippedParts(rec Record, out partsOutcome) {
	s.health.ok()
	if out.refused > 0 {
		s.log.Error("a replica refused spans; dropping them", zap.Int("spans", out.refused), zap.Error(out.why))
		s.m.dropped(rec.Signal, "rejected", out.refused)
	}
	s.m.itemsShipped.WithLabelValues(rec.Signal.String()).Add(float64(out.taken))
	if err := s.buf.Ack(rec); err != nil {
		s.log.Error("save the buffer's cursor", zap.Error(err))
	}
}

// sendParts sends the pending spans, split among the replicas found now
// (at once, a request per replica), adds what was taken or refused to out,
// and returns what is still pending (the parts a replica did not take:
// split again on the next attempt, among the replicas then), the longest
// Retry-After, and the first failure (nil: nothing is pending).
func (s *shipper) sendParts(ctx context.Context, rec Record, pending []ptrace.Traces, out *partsOutcome) ([]ptrace.Traces, time.Duration, error) {
	list, err := s.shards.current(ctx)
	if err != nil {
		return pending, 0, err
	}
	byOwner := map[int][]ptrace.Traces{}
	for _, td := range pending {
		for o, p := range splitByOwner(td, list) {
			byOwner[o] = append(byOwner[o], p)
		}
	}
	type result struct {
		td          ptrace.Traces
		wait        time.Duration
		err         error
		refused     bool
		sent, began bool
	}
	results := make([]result, len(list))
	var wg sync.WaitGroup
	for o, parts := range byOwner {
		wg.Go(func() {
			td := parts[0]
			for _, p := range parts[1:] {
				p.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
			}
			r := result{td: td, began: true}
			body, err := encodeTraces(td)
			if err != nil {
				r.refused, r.err = true, fmt.Errorf("encode spans for %s: %w", list[o].url, err)
			} else {
				var permanent bool
				r.wait, permanent, err = s.post(ctx, list[o].client, list[o].url, rec.Signal, body)
				switch {
				case err == nil:
					r.sent = true
				case permanent:
					r.refused, r.err = true, fmt.Errorf("%s: %w", list[o].url, err)
				default:
					r.err = fmt.Errorf("%s: %w", list[o].url, err)
				}
			}
			results[o] = r
		})
	}
	wg.Wait()
	var (
		left  []ptrace.Traces
		wait  time.Duration
		first error
	)
	for _, r := range results {
		switch {
		case !r.began:
		case r.sent:
			out.taken += r.td.SpanCount()
		case r.refused:
			out.refused += r.td.SpanCount()
			out.why = errors.Join(out.why, r.err)
		default:
			left = append(left, r.td)
			wait = max(wait, r.wait)
			if first == nil {
				first = r.err
			}
		}
	}
	return left, wait, first
}
