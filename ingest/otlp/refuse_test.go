package otlp_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/lumenobs/lumen/ingest/otlp"
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
