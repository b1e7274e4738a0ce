package otlp_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lumenobs/lumen/ingest/otlp"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/store"
)

// pathStore counts which way trace requests reach the store.
type pathStore struct {
	*store.DB
	mu           sync.Mutex
	bytes, pdata int
}

func (p *pathStore) WriteTraces(ctx context.Context, td ptrace.Traces) error {
	p.mu.Lock()
	p.pdata++
	p.mu.Unlock()
	return p.DB.WriteTraces(ctx, td)
}

func (p *pathStore) WriteTraceRequest(ctx context.Context, req *store.TraceRequest) error {
	p.mu.Lock()
	p.bytes++
	p.mu.Unlock()
	return p.DB.WriteTraceRequest(ctx, req)
}

func (p *pathStore) counts() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes, p.pdata
}

// TestTraceRequestsArriveAsBytes: trace requests in protobuf, over gRPC
// and HTTP, compressed or not, reach the store as their bytes; JSON is
// decoded by the Collector's receiver; all of them are stored. A refused
// one is answered as the Collector's receiver answers: InvalidArgument,
// or 400 with a google.rpc.Status in protobuf.
func TestTraceRequestsArriveAsBytes(t *testing.T) {
	db, err := store.Open(store.DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	ps := &pathStore{DB: db}
	cfg := otlp.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = freeAddr(t), freeAddr(t)
	startReceiver(t, cfg, ps)
	g := otlptest.New(5)
	var sent []ptrace.Traces

	td := g.Traces(3, 2)
	sent = append(sent, td)
	require.Equal(t, http.StatusOK, postTraces(t, cfg.HTTPAddr, protoBody(t, td)).StatusCode)

	td = g.Traces(3, 2)
	sent = append(sent, td)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write(protoBody(t, td))
	require.NoError(t, w.Close())
	req, err := http.NewRequest(http.MethodPost, "http://"+cfg.HTTPAddr+"/v1/traces", &gz)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	conn, err := grpc.NewClient(cfg.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	for _, opts := range [][]grpc.CallOption{nil, {grpc.UseCompressor("gzip")}} {
		td = g.Traces(3, 2)
		sent = append(sent, td)
		_, err = client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td), opts...)
		require.NoError(t, err)
	}
	b, p := ps.counts()
	require.Equal(t, 4, b, "protobuf requests as bytes")
	require.Equal(t, 0, p)

	td = g.Traces(3, 2)
	sent = append(sent, td)
	js, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	resp, err = http.Post("http://"+cfg.HTTPAddr+"/v1/traces", "application/json", bytes.NewReader(js))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, p = ps.counts()
	require.Equal(t, 4, b)
	require.Equal(t, 1, p, "JSON through pdata")

	for _, td := range sent {
		for _, id := range otlptest.TraceIDs(td) {
			got, err := db.Trace(context.Background(), model.TraceID(id))
			require.NoError(t, err)
			require.Equal(t, 2, got.Spans.SpanCount())
		}
	}

	zero := g.Traces(1, 1)
	zero.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).SetTraceID([16]byte{})
	resp, err = http.Post("http://"+cfg.HTTPAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader(protoBody(t, zero)))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "application/x-protobuf", resp.Header.Get("Content-Type"))
	var st spb.Status
	require.NoError(t, proto.Unmarshal(body, &st))
	require.Equal(t, int32(codes.InvalidArgument), st.Code)
	require.Contains(t, st.Message, "all-zero trace_id")

	_, err = client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(zero))
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "all-zero trace_id")

	resp, err = http.Post("http://"+cfg.HTTPAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader([]byte{0x0a, 0x05, 0x01}))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}
