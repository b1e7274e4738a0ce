package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/lumenobs/lumen/internal/loopback"
)

// testRelay is a relay on loopback, over a buffer of its own: requests of
// at most 1 MiB, 4 MiB in flight, a pod may hold 1 MiB of them and 2 MiB
// of the 8 MiB buffer.
type testRelay struct {
	cfg  Config
	buf  *Buffer
	m    *Metrics
	dir  string
	http string // OTLP/HTTP base URL
}

func startRelay(t *testing.T) *testRelay {
	t.Helper()
	r := &testRelay{dir: t.TempDir(), m: NewMetrics(nil)}
	r.cfg = Config{NodeName: "node-a", OTLPGRPCAddr: loopback.FreeAddr(t), OTLPHTTPAddr: loopback.FreeAddr(t), BufferMaxBytes: 8 << 20,
		Relay: RelayConfig{MaxRequestBytes: 1 << 20, MaxInFlightBytes: 4 << 20, PodShare: 0.25}}
	r.http = "http://" + r.cfg.OTLPHTTPAddr
	var err error
	r.buf, err = OpenBuffer(r.dir, r.cfg.BufferMaxBytes, r.m)
	require.NoError(t, err)
	recv, err := newRelay(r.cfg, nil, nil, r.buf, zap.NewNop(), r.m)
	require.NoError(t, err)
	require.NoError(t, recv.Start(context.Background()))
	t.Cleanup(func() {
		require.NoError(t, recv.Shutdown(context.Background()))
		require.NoError(t, r.buf.Close())
	})
	return r
}

func (r *testRelay) refused(reason string) float64 {
	return testutil.ToFloat64(r.m.relayRefused.WithLabelValues(reason))
}

// pod is a client on the node: its connections come from ip (127.0.0.x;
// Linux routes all of 127/8 to the loopback).
type pod struct {
	ip   string
	http *http.Client
	grpc *grpc.ClientConn
}

func newPod(t *testing.T, r *testRelay, ip string) *pod {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	p := &pod{ip: ip, http: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}}
	var err error
	p.grpc, err = grpc.NewClient(r.cfg.OTLPGRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
	require.NoError(t, err)
	t.Cleanup(func() { p.grpc.Close() })
	return p
}

// post sends an OTLP/HTTP request; gzip compresses it (so that its size
// is known only as it is read).
func (p *pod) post(t *testing.T, r *testRelay, path string, body []byte, gz bool) *http.Response {
	t.Helper()
	var rd io.Reader = bytes.NewReader(body)
	if gz {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write(body)
		require.NoError(t, w.Close())
		rd = &b
	}
	req, err := http.NewRequest(http.MethodPost, r.http+path, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := p.http.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// exportGRPC sends traces over OTLP/gRPC.
func (p *pod) exportGRPC(body []byte) error {
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := ptraceotlp.NewGRPCClient(p.grpc).Export(ctx, req)
	return err
}

// hold opens a request from the pod that declares a body of n bytes and
// sends none of it, so that it holds n bytes in flight until the test
// ends; it returns when the relay counts them.
func (p *pod) hold(t *testing.T, r *testRelay, n int) {
	t.Helper()
	before := testutil.ToFloat64(r.m.relayInFlight)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(p.ip)}}
	conn, err := d.Dial("tcp", r.cfg.OTLPHTTPAddr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = fmt.Fprintf(conn, "POST /v1/traces HTTP/1.1\r\nHost: agent\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", n)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return testutil.ToFloat64(r.m.relayInFlight) == before+float64(n) }, 5*time.Second, time.Millisecond)
}

// traces is an OTLP traces request of about n bytes that does not
// compress.
func traces(n int) []byte {
	td := ptrace.NewTraces()
	sp := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetName("GET /")
	raw := make([]byte, n*3/4)
	for i := range raw {
		raw[i] = byte(rand.Uint32())
	}
	sp.Attributes().PutStr("payload", base64.StdEncoding.EncodeToString(raw))
	b, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	return b
}

// zeros is an OTLP logs request of about n bytes that compresses to
// almost nothing.
func zeros(n int) []byte {
	ld := plog.NewLogs()
	ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr(string(make([]byte, n)))
	b, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	return b
}

func retryDelay(t *testing.T, err error) time.Duration {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// TestRelayRefusesRequestsTooLarge: a request over max_request_bytes —
// declared, or found so as its compressed body is read, or over gRPC — is
// refused as the client's to fix (400; RESOURCE_EXHAUSTED without a retry
// hint), and counted.
func TestRelayRefusesRequestsTooLarge(t *testing.T) {
	r := startRelay(t)
	a := newPod(t, r, "127.0.0.2")
	require.Equal(t, http.StatusBadRequest, a.post(t, r, "/v1/traces", traces(1<<20+1000), false).StatusCode)
	require.Equal(t, http.StatusBadRequest, a.post(t, r, "/v1/logs", zeros(2<<20), true).StatusCode)
	err := a.exportGRPC(traces(1<<20 + 1000))
	require.Equal(t, codes.ResourceExhausted, status.Code(err), err)
	require.Zero(t, retryDelay(t, err), "no retry hint: sending it again cannot work")
	require.Eventually(t, func() bool { return r.refused(refusedTooLarge) == 3 }, 5*time.Second, time.Millisecond)

	require.Equal(t, http.StatusOK, a.post(t, r, "/v1/traces", traces(900<<10), false).StatusCode)
	require.NoError(t, a.exportGRPC(traces(900<<10)))
	require.Zero(t, testutil.ToFloat64(r.m.relayInFlight), "every request gave back what it held")
}

// TestRelayBoundsBytesInFlight: a pod that holds its share of the bytes in
// flight is refused (429 with Retry-After; RESOURCE_EXHAUSTED with a retry
// hint) while another pod is served; past the node's bound every pod is
// refused.
func TestRelayBoundsBytesInFlight(t *testing.T) {
	r := startRelay(t)
	a, b := newPod(t, r, "127.0.0.2"), newPod(t, r, "127.0.0.3")
	a.hold(t, r, 900<<10) // of its 1 MiB

	resp := a.post(t, r, "/v1/traces", traces(200<<10), false)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Equal(t, http.StatusTooManyRequests, a.post(t, r, "/v1/traces", traces(200<<10), true).StatusCode, "compressed")
	err := a.exportGRPC(traces(10 << 10)) // a gRPC request holds 1 MiB until it is decoded
	require.Equal(t, codes.ResourceExhausted, status.Code(err), err)
	require.Equal(t, time.Second, retryDelay(t, err))
	require.Equal(t, 3.0, r.refused(refusedPodInFlight))

	require.Equal(t, http.StatusOK, b.post(t, r, "/v1/traces", traces(200<<10), false).StatusCode, "another pod is served")
	require.NoError(t, b.exportGRPC(traces(200<<10)))

	// Three more pods hold 2.7 MiB: with a's 0.9, past the node's 4 MiB
	// for b's next request.
	for _, ip := range []string{"127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		newPod(t, r, ip).hold(t, r, 900<<10)
	}
	require.Equal(t, http.StatusTooManyRequests, b.post(t, r, "/v1/traces", traces(600<<10), false).StatusCode)
	require.Equal(t, 1.0, r.refused(refusedInFlight))
	require.Equal(t, http.StatusOK, b.post(t, r, "/v1/traces", traces(100<<10), false).StatusCode, "what fits is served")
}

// TestRelayBoundsEachPodsShareOfTheBuffer: a pod whose records not yet
// shipped fill its share of the buffer is refused (429, Retry-After 5)
// while another pod's are buffered; once shipped, it is served again.
func TestRelayBoundsEachPodsShareOfTheBuffer(t *testing.T) {
	r := startRelay(t)
	a, b := newPod(t, r, "127.0.0.2"), newPod(t, r, "127.0.0.3")
	accepted := 0
	for ; accepted < 20; accepted++ {
		resp := a.post(t, r, "/v1/traces", traces(300<<10), false)
		if resp.StatusCode == http.StatusTooManyRequests {
			require.Equal(t, "5", resp.Header.Get("Retry-After"))
			break
		}
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.InDelta(t, 2<<20/(300<<10), accepted, 1, "a pod holds about a quarter of the 8 MiB buffer")
	require.Equal(t, 1.0, r.refused(refusedPodBuffer))
	err := a.exportGRPC(traces(300 << 10))
	require.Equal(t, codes.ResourceExhausted, status.Code(err), err)
	require.Equal(t, 5*time.Second, retryDelay(t, err))
	for range 3 {
		require.Equal(t, http.StatusOK, b.post(t, r, "/v1/traces", traces(300<<10), false).StatusCode, "another pod is served")
	}

	srv := newFakeServer(t)
	runShipper(t, r.buf, r.m, srv.URL)
	require.Eventually(t, func() bool { return len(srv.received()) == accepted+3 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, http.StatusOK, a.post(t, r, "/v1/traces", traces(300<<10), false).StatusCode, "served again once shipped")
}
