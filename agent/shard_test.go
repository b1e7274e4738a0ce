package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/zap"
)

// replica is an OTLP/HTTP endpoint on one loopback address that records
// the spans it takes (trace id → span names) and answers 503 while down.
type replica struct {
	addr string
	mu   sync.Mutex
	down bool
	bad  bool // refuses every request with a 400
	got  map[pcommon.TraceID][]string
	logs int
}

// newReplicas starts one replica on 127.0.0.1 and one on ::1, on the same
// port: the two addresses a headless Service's name would resolve to.
func newReplicas(t *testing.T) (port string, rs map[string]*replica) {
	rs = map[string]*replica{}
	for _, host := range []string{"127.0.0.1", "::1"} {
		var ln net.Listener
		var err error
		if port == "" {
			ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
			require.NoError(t, err)
			_, port, _ = net.SplitHostPort(ln.Addr().String())
		} else {
			ln, err = net.Listen("tcp", net.JoinHostPort(host, port))
			require.NoError(t, err)
		}
		r := &replica{addr: host, got: map[pcommon.TraceID][]string{}}
		srv := &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		rs[host] = r
	}
	return port, rs
}

func (r *replica) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.down:
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	case r.bad:
		http.Error(w, "cannot decode", http.StatusBadRequest)
		return
	}
	zr, _ := zstd.NewReader(req.Body)
	defer zr.Close()
	body, _ := io.ReadAll(zr)
	if req.URL.Path != "/v1/traces" {
		r.logs++
		return
	}
	er := ptraceotlp.NewExportRequest()
	if err := er.UnmarshalProto(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, rs := range er.Traces().ResourceSpans().All() {
		svc, _ := rs.Resource().Attributes().Get("service.name")
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				r.got[sp.TraceID()] = append(r.got[sp.TraceID()], svc.Str()+"/"+sp.Name())
			}
		}
	}
}

func (r *replica) set(down, bad bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down, r.bad = down, bad
}

func (r *replica) traces() map[pcommon.TraceID][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[pcommon.TraceID][]string{}
	for id, names := range r.got {
		out[id] = slices.Sorted(slices.Values(names))
	}
	return out
}

// tracesRecord is a record of n traces, each a client span of web and a
// server span of api under two resources, its ids from first on.
func tracesRecord(t *testing.T, first, n int) Record {
	td := ptrace.NewTraces()
	for _, svc := range []string{"web", "api"} {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", svc)
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("shop")
		for i := first; i < first+n; i++ {
			sp := ss.Spans().AppendEmpty()
			var id pcommon.TraceID
			copy(id[:], fmt.Sprintf("trace-%010d", i))
			sp.SetTraceID(id)
			sp.SetSpanID(pcommon.SpanID{byte(i), 1})
			sp.SetName(svc + " call " + strconv.Itoa(i))
		}
	}
	body, err := encodeTraces(td)
	require.NoError(t, err)
	return Record{Signal: SignalTraces, Items: td.SpanCount(), Body: body}
}

// TestShipperShardsSpansByTraceID: with ship.shard_by_trace_id, the spans
// of a trace, whatever record and resource they come in, reach one replica
// — the one its id picks among the addresses the server's name resolves
// to — and both replicas take some; a replica down holds back only its
// own part (the other's is delivered at once), and when it leaves the
// name's addresses its part goes to the replica left; logs go to either;
// a part a replica refuses for good is dropped and counted, the rest
// delivered.
func TestShipperShardsSpansByTraceID(t *testing.T) {
	port, rs := newReplicas(t)
	var lookMu sync.Mutex
	addrs := []string{"::1", "127.0.0.1"}
	lookup := func(context.Context, string) ([]string, error) {
		lookMu.Lock()
		defer lookMu.Unlock()
		return slices.Clone(addrs), nil
	}
	m := NewMetrics(nil)
	b, err := OpenBuffer(t.TempDir(), 64<<20, m)
	require.NoError(t, err)
	defer b.Close()
	server := "http://lumen-replicas.test:" + port
	tr := http.DefaultTransport.(*http.Transport).Clone()
	shards, err := newEndpoints(server, 50*time.Millisecond, 5*time.Second, tr, lookup, zap.NewNop(), m)
	require.NoError(t, err)
	s := &shipper{buf: b, server: server, log: zap.NewNop(), m: m, minBackoff: 10 * time.Millisecond, maxBackoff: 50 * time.Millisecond, shards: shards}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// 200 traces in 4 records; the ::1 replica is down meanwhile.
	rs["::1"].set(true, false)
	for i := range 4 {
		require.NoError(t, b.Append(tracesRecord(t, i*50, 50)))
	}
	appendBodies(t, b, "a log record")
	list, err := shards.current(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	ownerOf := func(i int) string {
		var id pcommon.TraceID
		copy(id[:], fmt.Sprintf("trace-%010d", i))
		if list[owner(list, id)].url == "http://127.0.0.1:"+port {
			return "127.0.0.1"
		}
		return "::1"
	}
	wantV4 := 0
	for i := range 200 {
		if ownerOf(i) == "127.0.0.1" {
			wantV4++
		}
	}
	require.Greater(t, wantV4, 50, "both replicas own traces")
	require.Less(t, wantV4, 150, "both replicas own traces")
	// The first record's part for 127.0.0.1 is delivered although ::1 is
	// down; the record stays until ::1 takes its part.
	require.Eventually(t, func() bool {
		n := 0
		for i := range 50 {
			if ownerOf(i) == "127.0.0.1" {
				n++
			}
		}
		return len(rs["127.0.0.1"].traces()) == n
	}, 10*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	require.Empty(t, rs["::1"].traces())
	rs["::1"].set(false, false)
	require.Eventually(t, func() bool {
		rs["127.0.0.1"].mu.Lock()
		defer rs["127.0.0.1"].mu.Unlock()
		rs["::1"].mu.Lock()
		defer rs["::1"].mu.Unlock()
		return len(rs["127.0.0.1"].got)+len(rs["::1"].got) == 200 && rs["127.0.0.1"].logs+rs["::1"].logs == 1
	}, 10*time.Second, 10*time.Millisecond)
	for host, r := range rs {
		for id, names := range r.traces() {
			i, err := strconv.Atoi(string(id[6:]))
			require.NoError(t, err)
			require.Equal(t, ownerOf(i), host, "trace %d", i)
			require.Equal(t, []string{"api/api call " + strconv.Itoa(i), "web/web call " + strconv.Itoa(i)}, names, "each span once, both ends together")
		}
	}
	require.Equal(t, 400.0, testutil.ToFloat64(m.itemsShipped.WithLabelValues("traces")))
	require.Equal(t, 2.0, testutil.ToFloat64(m.shipEndpoints))

	// ::1 down again, then gone from the name's addresses: its part of the
	// next record goes to 127.0.0.1.
	rs["::1"].set(true, false)
	require.NoError(t, b.Append(tracesRecord(t, 1000, 50)))
	time.Sleep(200 * time.Millisecond)
	lookMu.Lock()
	addrs = []string{"127.0.0.1"}
	lookMu.Unlock()
	require.Eventually(t, func() bool {
		n := 0
		for id := range rs["127.0.0.1"].traces() {
			if i, _ := strconv.Atoi(string(id[6:])); i >= 1000 {
				n++
			}
		}
		return n == 50
	}, 10*time.Second, 10*time.Millisecond, "every trace of the record on the replica left")
	require.Equal(t, 1.0, testutil.ToFloat64(m.shipEndpoints))

	// Both back; ::1 refuses its part for good: dropped and counted, the
	// other part delivered, shipping goes on.
	lookMu.Lock()
	addrs = []string{"127.0.0.1", "::1"}
	lookMu.Unlock()
	rs["::1"].set(false, true)
	time.Sleep(100 * time.Millisecond)
	before := testutil.ToFloat64(m.itemsShipped.WithLabelValues("traces"))
	require.NoError(t, b.Append(tracesRecord(t, 2000, 50)))
	var dropped, shipped float64
	require.Eventually(t, func() bool {
		dropped = testutil.ToFloat64(m.itemsDropped.WithLabelValues("traces", "rejected"))
		shipped = testutil.ToFloat64(m.itemsShipped.WithLabelValues("traces")) - before
		return dropped+shipped == 100
	}, 10*time.Second, 10*time.Millisecond)
	require.Positive(t, dropped)
	require.Positive(t, shipped)
	appendBodies(t, b, "another log record")
	require.Eventually(t, func() bool {
		rs["127.0.0.1"].mu.Lock()
		defer rs["127.0.0.1"].mu.Unlock()
		rs["::1"].mu.Lock()
		defer rs["::1"].mu.Unlock()
		return float64(rs["127.0.0.1"].logs+rs["::1"].logs)+testutil.ToFloat64(m.itemsDropped.WithLabelValues("logs", "rejected")) == 2
	}, 10*time.Second, 10*time.Millisecond, "shipping goes on")
}

// FuzzSplitTracesRecord: a traces record's body, whatever it holds, is
// either refused by decodeTraces or split among replicas with every span
// in exactly one part, each trace in one part.
func FuzzSplitTracesRecord(f *testing.F) {
	list := []endpoint{newEndpoint("http://127.0.0.1:4318", nil), newEndpoint("http://[::1]:4318", nil)}
	f.Fuzz(func(t *testing.T, body []byte) {
		td, err := decodeTraces(body)
		if err != nil {
			return
		}
		parts := splitByOwner(td, list)
		n := 0
		where := map[pcommon.TraceID]int{}
		for o, p := range parts {
			n += p.SpanCount()
			for _, rs := range p.ResourceSpans().All() {
				for _, ss := range rs.ScopeSpans().All() {
					for _, sp := range ss.Spans().All() {
						if w, ok := where[sp.TraceID()]; ok && w != o {
							t.Fatalf("trace %s in two parts", sp.TraceID())
						}
						where[sp.TraceID()] = o
					}
				}
			}
			if _, err := encodeTraces(p); err != nil {
				t.Fatal(err)
			}
		}
		if n != td.SpanCount() {
			t.Fatalf("%d spans in the parts, %d in the record", n, td.SpanCount())
		}
	})
}

// BenchmarkShardTracesRecord: what sharding adds to shipping a traces
// record: decompress, decode, split among three replicas by trace id,
// encode and compress each part (a record of 100 traces of 10 spans, as
// the relay buffers a pod's request). Reported per span.
func BenchmarkShardTracesRecord(b *testing.B) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "checkout")
	rs.Resource().Attributes().PutStr("k8s.pod.name", "checkout-7d9f-x2")
	rs.Resource().Attributes().PutStr("k8s.namespace.name", "shop")
	rs.Resource().Attributes().PutStr("k8s.node.name", "node-a")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("shop")
	for i := range 1000 {
		sp := ss.Spans().AppendEmpty()
		var id pcommon.TraceID
		copy(id[:], fmt.Sprintf("trace-%010d", i/10))
		sp.SetTraceID(id)
		sp.SetSpanID(pcommon.SpanID{byte(i), byte(i >> 8), 1})
		sp.SetName("GET /api/items/{id}")
		sp.SetStartTimestamp(pcommon.Timestamp(1e18 + i*1000))
		sp.SetEndTimestamp(pcommon.Timestamp(1e18 + i*1000 + 5e6))
		sp.Attributes().PutStr("http.request.method", "GET")
		sp.Attributes().PutInt("http.response.status_code", 200)
		sp.Attributes().PutStr("url.path", "/api/items/"+strconv.Itoa(i))
	}
	body, err := encodeTraces(td)
	require.NoError(b, err)
	list := []endpoint{newEndpoint("http://10.0.0.1:4318", nil), newEndpoint("http://10.0.0.2:4318", nil), newEndpoint("http://10.0.0.3:4318", nil)}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		got, err := decodeTraces(body)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range splitByOwner(got, list) {
			if _, err := encodeTraces(p); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/span")
}
