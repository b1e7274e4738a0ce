package otlp_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/lumenobs/lumen/ingest/otlp"
	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/store"
)

func gauge(points ...time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "clock")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("temperature")
	g := m.SetEmptyGauge()
	for i, t := range points {
		p := g.DataPoints().AppendEmpty()
		p.SetTimestamp(pcommon.NewTimestampFromTime(t))
		p.SetDoubleValue(float64(i))
		p.Attributes().PutInt("i", int64(i))
	}
	return md
}

func post(t *testing.T, url string, body []byte) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Post(url, "application/x-protobuf", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

// A data point a client must fix — an hour ahead of the clock, or older
// than the retention — is answered 400 (not retried), and the request's
// good points are stored; before, the whole request was rolled back and
// answered 503, which exporters retry forever.
func TestBadDataPointsAreNotRetryable(t *testing.T) {
	o := store.DefaultOptions(t.TempDir())
	db, err := store.Open(o)
	require.NoError(t, err)
	defer db.Close()
	cfg := otlp.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = "", freeAddr(t)
	startReceiver(t, cfg, db)
	now := time.Now()
	for _, tc := range []struct {
		name string
		at   time.Time
		want string
	}{
		{"an hour ahead", now.Add(time.Hour), "ahead of the server's clock"},
		{"older than the retention", now.Add(-30 * 24 * time.Hour), "is older than"},
		{"1970", time.Unix(3, 0), "is older than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(gauge(now, tc.at))
			require.NoError(t, err)
			code, body, h := post(t, "http://"+cfg.HTTPAddr+"/v1/metrics", b)
			require.Equal(t, http.StatusBadRequest, code, body)
			require.Contains(t, body, tc.want)
			require.Contains(t, body, "1 of 2 data points refused, the rest stored")
			require.Empty(t, h.Get("Retry-After"))
		})
	}
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "clock")
	for _, at := range []time.Time{now, time.Unix(0, 5)} {
		lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(at))
		lr.Body().SetStr("tick")
	}
	b, err := (&plog.ProtoMarshaler{}).MarshalLogs(logs)
	require.NoError(t, err)
	code, body, _ := post(t, "http://"+cfg.HTTPAddr+"/v1/logs", b)
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "1 lines refused, the others stored")
	require.Contains(t, body, "1970-01-01T00:00:00.000000005Z is older than")
}

// Below the free-space floor OTLP writes are refused as retryable
// (RESOURCE_EXHAUSTED, over HTTP 429 with Retry-After) with a message
// naming the floor.
func TestDiskFullIsRetryable(t *testing.T) {
	o := store.DefaultOptions(t.TempDir())
	o.MinFreeDiskBytes = 1 << 62 // more than any disk has
	db, err := store.Open(o)
	require.NoError(t, err)
	defer db.Close()
	cfg := otlp.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = "", freeAddr(t)
	startReceiver(t, cfg, db)
	b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(gauge(time.Now()))
	require.NoError(t, err)
	code, body, h := post(t, "http://"+cfg.HTTPAddr+"/v1/metrics", b)
	require.Equal(t, http.StatusTooManyRequests, code, body)
	require.Contains(t, body, "below the floor of")
	require.Equal(t, "10", h.Get("Retry-After"))
}

// Requests are admitted before they are decoded: past the bytes (HTTP) or
// requests (gRPC) in flight, a client is told to retry without its body
// being read into memory or decoded; once the held requests end, room is
// given back (over gRPC, when the stream ends).
func TestAdmissionBeforeDecoding(t *testing.T) {
	db, err := store.Open(store.DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	gs := &gatedStore{DB: db, gate: make(chan struct{}), entered: make(chan struct{}, 8)}
	cfg := otlp.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = freeAddr(t), freeAddr(t)
	cfg.MaxRequestBytes, cfg.MaxInFlightBytes, cfg.MaxInFlightRequests = 64<<10, 64<<10, 1
	cfg.QueueWait = 50 * time.Millisecond
	startReceiver(t, cfg, gs)

	g := otlptest.New(3)
	var wg sync.WaitGroup
	wg.Go(func() {
		resp := postTraces(t, cfg.HTTPAddr, protoBody(t, g.Traces(40, 2))) // most of the 64 KiB
		require.Equal(t, http.StatusOK, resp.StatusCode)
	})
	<-gs.entered
	resp := postTraces(t, cfg.HTTPAddr, protoBody(t, g.Traces(30, 2)))
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))

	conn, err := grpc.NewClient(cfg.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	wg.Go(func() {
		_, err := client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(g.Traces(1, 1)))
		require.NoError(t, err)
	})
	<-gs.entered
	_, err = client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(g.Traces(1, 1)))
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), "%v", err)
	require.Contains(t, st.Message(), "1 OTLP requests are in flight")
	require.NotEmpty(t, st.Details(), "with RetryInfo")

	close(gs.gate)
	wg.Wait()
	for range 3 { // the slot comes back when the stream ends, every time
		require.Eventually(t, func() bool {
			_, err = client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(g.Traces(1, 1)))
			return err == nil
		}, 2*time.Second, 10*time.Millisecond, "%v", err)
	}
	resp = postTraces(t, cfg.HTTPAddr, protoBody(t, g.Traces(30, 2)))
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
