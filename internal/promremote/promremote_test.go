package promremote

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/internal/promtest"
)

func testConfig(url string) Config {
	return Config{URL: url, Timeout: 5 * time.Second, MaxConcurrent: 4, MaxResponseBytes: 1 << 20}
}

// write remote-writes series of float samples into the Prometheus at addr.
func write(t *testing.T, addr string, ts []prompb.TimeSeries) {
	t.Helper()
	b, err := proto.Marshal(&prompb.WriteRequest{Timeseries: ts})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
	require.NoError(t, err)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "%s", body)
}

// TestSelectFromRealPrometheus: a selection is a real Prometheus' raw
// samples in the window (both ends in), series in label order, at most
// the limit; label names and values are its own.
func TestSelectFromRealPrometheus(t *testing.T) {
	addr := loopback.FreeAddr(t)
	promtest.StartPrometheus(t, addr, true)
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Minute).UnixMilli()
	var ts []prompb.TimeSeries
	for _, svc := range []string{"cart", "api", "web"} {
		s := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "calls_total"}, {Name: "service", Value: svc}}}
		for i := range 20 {
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: t0 + int64(i)*15_000, Value: float64(i) + 0.5})
		}
		ts = append(ts, s)
	}
	write(t, addr, ts)

	b, err := New(testConfig("http://" + addr))
	require.NoError(t, err)
	q, err := b.Querier(t0+15_000, t0+5*15_000)
	require.NoError(t, err)
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "calls_total"))
	var got []string
	for set.Next() {
		s := set.At()
		it := s.Iterator(nil)
		var vals []float64
		var times []int64
		for it.Next() == chunkenc.ValFloat {
			t, v := it.At()
			times, vals = append(times, t), append(vals, v)
		}
		require.Equal(t, []int64{t0 + 15_000, t0 + 30_000, t0 + 45_000, t0 + 60_000, t0 + 75_000}, times, "both ends of the window")
		require.Equal(t, []float64{1.5, 2.5, 3.5, 4.5, 5.5}, vals)
		got = append(got, s.Labels().Get("service"))
	}
	require.NoError(t, set.Err())
	require.Equal(t, []string{"api", "cart", "web"}, got, "in label order")

	set = q.Select(context.Background(), true, &storage.SelectHints{Start: t0, End: t0 + 5*15_000, Limit: 2},
		labels.MustNewMatcher(labels.MatchRegexp, "service", "web|cart"))
	got = nil
	for set.Next() {
		got = append(got, set.At().Labels().Get("service"))
	}
	require.Equal(t, []string{"cart", "web"}, got)

	vals, _, err := q.LabelValues(context.Background(), "service", nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "calls_total"))
	require.NoError(t, err)
	require.Equal(t, []string{"api", "cart", "web"}, vals)
	names, _, err := q.LabelNames(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "service"}, names)
}

// TestProxyAnswersAsTheBackend: the proxied Prometheus API answers what the
// backend answers, byte for byte; Lumen's own credentials are not passed
// on; a path outside the API prefix is not asked.
func TestProxyAnswersAsTheBackend(t *testing.T) {
	addr := loopback.FreeAddr(t)
	promtest.StartPrometheus(t, addr, true)
	now := time.Now().UnixMilli()
	write(t, addr, []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "lumen"}},
		Samples: []prompb.Sample{{Timestamp: now - 1000, Value: 1}}}})
	b, err := New(testConfig("http://" + addr))
	require.NoError(t, err)
	srv := httptest.NewServer(b.Proxy("/api/v1"))
	defer srv.Close()
	for _, path := range []string{"/api/v1/query?query=up&time=" + ts(now), "/api/v1/labels", "/api/v1/label/job/values", "/api/v1/series?match[]=up",
		"/api/v1/query_range?query=sum(up)&start=" + ts(now-60_000) + "&end=" + ts(now) + "&step=15", "/api/v1/query?query=sum(&time=" + ts(now), "/api/v1/metadata"} {
		direct := get(t, "http://"+addr+path, "")
		via := get(t, srv.URL+path, "Bearer lumen-token")
		require.Equal(t, direct, via, path)
	}
}

func ts(ms int64) string {
	return strings.TrimSuffix(strings.TrimSuffix(time.UnixMilli(ms).UTC().Format(time.RFC3339Nano), "Z"), ".") + "Z"
}

func get(t *testing.T, url, auth string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.Status + " " + string(body)
}

// TestBudget: a backend down is 503 naming it, one too slow 504, an answer
// past the cap 502; reads past MaxConcurrent wait within their timeout;
// the configured headers are sent and Lumen's credentials are not.
func TestBudget(t *testing.T) {
	down := "http://" + loopback.FreeAddr(t)
	b, err := New(testConfig(down))
	require.NoError(t, err)
	srv := httptest.NewServer(b.Proxy("/api/v1"))
	defer srv.Close()
	got := get(t, srv.URL+"/api/v1/query?query=up", "")
	require.True(t, strings.HasPrefix(got, "503 "), got)
	require.Contains(t, got, `"errorType":"unavailable"`)
	require.Contains(t, got, "metrics backend "+down)

	release := make(chan struct{})
	var seen atomic.Pointer[http.Header]
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		seen.Store(&h)
		if r.URL.Query().Get("query") == "big" {
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]},"padding":"` + strings.Repeat("x", 2000) + `"}`))
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
	}))
	defer slow.Close()
	defer close(release)
	cfg := testConfig(slow.URL)
	cfg.Timeout, cfg.MaxResponseBytes, cfg.Headers = 200*time.Millisecond, 1000, map[string]string{"X-Scope-OrgID": "team-a"}
	b, err = New(cfg)
	require.NoError(t, err)
	proxy := httptest.NewServer(b.Proxy("/api/v1"))
	defer proxy.Close()
	req, err := http.NewRequest(http.MethodGet, proxy.URL+"/api/v1/query?query=wait", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer lumen-token")
	req.Header.Set("X-Scope-OrgID", "team-b") // a client's own choice of tenant
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	got = resp.Status + " " + string(body)
	require.True(t, strings.HasPrefix(got, "504 "), got)
	require.Contains(t, got, `"errorType":"timeout"`)
	require.Equal(t, []string{"team-a"}, seen.Load().Values("X-Scope-OrgID"), "the configured tenant, not the client's")
	require.Empty(t, seen.Load().Get("Authorization"), "Lumen's credentials stay in Lumen")
	got = get(t, proxy.URL+"/api/v1/query?query=big", "")
	require.True(t, strings.HasPrefix(got, "502 "), got)
	require.Contains(t, got, "max response bytes")

	// One read at most: a second waits for the first, within its timeout.
	cfg.MaxConcurrent, cfg.Timeout = 1, time.Second
	b, err = New(cfg)
	require.NoError(t, err)
	q, err := b.Querier(0, 1000)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, _, err := q.LabelNames(context.Background(), nil)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, _, err = q.LabelValues(ctx, "job", nil)
	require.ErrorContains(t, err, "waiting for one of its 1 reads at once")
	require.ErrorContains(t, <-done, "metrics backend "+slow.URL)
}
