package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, " 10 ": 10 * time.Second, "-4": 0, "soon": 0, "99999": 5 * time.Minute,
		"Sun, 29 Nov 2026 07:00:07 GMT": 7 * time.Second, "Sun, 29 Nov 2026 06:00:00 GMT": 0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", v, got, want)
		}
	}
}

// TestShipperHonoursRetryAfterAndKeepsOrder: a server that answers 503 with
// Retry-After, then 429, then accepts; then refuses one request as
// malformed. Every record arrives once, in order; the refused one is
// counted as dropped, not retried.
func TestShipperHonoursRetryAfterAndKeepsOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var times []time.Time
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		times = append(times, time.Now())
		if r.Header.Get("Content-Encoding") != "zstd" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad headers", http.StatusUnsupportedMediaType)
			return
		}
		switch calls {
		case 1:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		case 2:
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		zr, _ := zstd.NewReader(r.Body)
		body, _ := io.ReadAll(zr)
		if string(body) == "malformed" {
			http.Error(w, "cannot decode", http.StatusBadRequest)
			return
		}
		got = append(got, r.URL.Path+":"+string(body))
	}))
	defer srv.Close()
	m := NewMetrics(nil)
	b, err := OpenBuffer(t.TempDir(), 1<<20, m)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	enc, _ := zstd.NewWriter(nil)
	for _, r := range []struct {
		s    Signal
		body string
	}{{SignalLogs, "a"}, {SignalTraces, "b"}, {SignalLogs, "malformed"}, {SignalMetrics, "c"}} {
		if err := b.Append(Record{Signal: r.s, Items: 2, Body: enc.EncodeAll([]byte(r.body), nil)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &shipper{buf: b, server: srv.URL, client: srv.Client(), log: zap.NewNop(), m: m, minBackoff: 10 * time.Millisecond, maxBackoff: 50 * time.Millisecond}
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	want := []string{"/v1/logs:a", "/v1/traces:b", "/v1/metrics:c"}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("server got %q, want %q", got, want)
	}
	if d := times[1].Sub(times[0]); d < 900*time.Millisecond {
		t.Fatalf("retried %s after a 503 with Retry-After: 1", d)
	}
	if v := testutil.ToFloat64(m.itemsDropped.WithLabelValues("logs", "rejected")); v != 2 {
		t.Fatalf("rejected items counted %v, want 2", v)
	}
	if v := testutil.ToFloat64(m.itemsShipped.WithLabelValues("logs")); v != 2 {
		t.Fatalf("shipped logs %v, want 2", v)
	}
}
