package otlp_test

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/lumenobs/lumen/ingest/otlp"
	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/internal/telemetry"
	"github.com/lumenobs/lumen/store"
)

func freeAddr(t *testing.T) string { return loopback.FreeAddr(t) }

// gatedStore is the real store behind a gate: writes wait until it opens, so
// a test can hold requests in flight.
type gatedStore struct {
	*store.DB
	gate    chan struct{}
	entered chan struct{}
}

func (g *gatedStore) WriteTraces(ctx context.Context, td ptrace.Traces) error {
	g.entered <- struct{}{}
	<-g.gate
	return g.DB.WriteTraces(ctx, td)
}

func (g *gatedStore) WriteTraceRequest(ctx context.Context, req *store.TraceRequest) error {
	g.entered <- struct{}{}
	<-g.gate
	return g.DB.WriteTraceRequest(ctx, req)
}

func (g *gatedStore) WriteLogs(ctx context.Context, ld plog.Logs) error {
	<-g.gate
	return g.DB.WriteLogs(ctx, ld)
}

func startReceiver(t *testing.T, cfg otlp.Config, w otlp.Writer) *telemetry.Ingest {
	t.Helper()
	m := telemetry.NewIngest(prometheus.NewRegistry())
	r, err := otlp.New(cfg, w, nil, m, "test")
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, r.Shutdown(context.Background())) })
	return m
}

func protoBody(t *testing.T, td ptrace.Traces) []byte {
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return b
}

func postTraces(t *testing.T, addr string, body []byte) *http.Response {
	resp, err := http.Post("http://"+addr+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

func TestOverloadIsRefusedWithRetryHints(t *testing.T) {
	db, err := store.Open(store.DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	gs := &gatedStore{DB: db, gate: make(chan struct{}), entered: make(chan struct{}, 8)}
	cfg := otlp.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = freeAddr(t), freeAddr(t)
	cfg.MaxInFlightItems = 10
	cfg.QueueWait = 50 * time.Millisecond
	m := startReceiver(t, cfg, gs)

	g := otlptest.New(1)
	held := g.Traces(5, 2) // 10 spans: all the room there is
	heldIDs := otlptest.TraceIDs(held)
	var wg sync.WaitGroup
	wg.Go(func() {
		resp := postTraces(t, cfg.HTTPAddr, protoBody(t, held))
		require.Equal(t, http.StatusOK, resp.StatusCode)
	})
	<-gs.entered // the first request holds the room and waits on the store

	refused := g.Traces(1, 1)
	resp := postTraces(t, cfg.HTTPAddr, protoBody(t, refused))
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))

	conn, err := grpc.NewClient(cfg.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(g.Traces(1, 1)))
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), "%v", err)
	require.Contains(t, st.Message(), "overloaded")
	var hint *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			hint = ri
		}
	}
	require.NotNil(t, hint, "RESOURCE_EXHAUSTED carries RetryInfo")
	require.Equal(t, time.Second, hint.GetRetryDelay().AsDuration())
	require.InDelta(t, 2, testutil.ToFloat64(m.Rejected.WithLabelValues("traces", "overload")), 0)

	// Room again: the held request completes, and a retry goes through.
	close(gs.gate)
	wg.Wait()
	resp = postTraces(t, cfg.HTTPAddr, protoBody(t, refused))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, id := range append(heldIDs, otlptest.TraceIDs(refused)...) {
		_, err := db.Trace(context.Background(), model.TraceID(id))
		require.NoError(t, err)
	}
}

func TestStoreFailureIsRetryable(t *testing.T) {
	db, err := store.Open(store.DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	cfg := otlp.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = freeAddr(t), freeAddr(t)
	m := startReceiver(t, cfg, db)
	require.NoError(t, db.Close())

	resp := postTraces(t, cfg.HTTPAddr, protoBody(t, otlptest.New(2).Traces(1, 3)))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.InDelta(t, 3, testutil.ToFloat64(m.Rejected.WithLabelValues("traces", "unavailable")), 0)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*otlp.Config)
		want   string
	}{
		{"no listener", func(c *otlp.Config) { c.GRPCAddr, c.HTTPAddr = "", "" }, "both"},
		{"tiny requests", func(c *otlp.Config) { c.MaxRequestBytes = 10 }, "below 1 KiB"},
		{"no room", func(c *otlp.Config) { c.MaxInFlightItems = 0 }, "not positive"},
		{"negative wait", func(c *otlp.Config) { c.QueueWait = -time.Second }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := otlp.DefaultConfig()
			tc.mutate(&c)
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
	require.NoError(t, otlp.DefaultConfig().Validate())
}
