package agent

import (
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
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

// fakeServer is an OTLP/HTTP endpoint that records the bodies it takes
// and answers 503 while down.
type fakeServer struct {
	*httptest.Server
	mu   sync.Mutex
	down bool
	got  []string
}

func newFakeServer(t *testing.T) *fakeServer {
	s := &fakeServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		zr, _ := zstd.NewReader(r.Body)
		defer zr.Close()
		body, _ := io.ReadAll(zr)
		s.got = append(s.got, string(body))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *fakeServer) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *fakeServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// appendBodies buffers one record per body.
func appendBodies(t *testing.T, b *Buffer, bodies ...string) {
	t.Helper()
	enc, _ := zstd.NewWriter(nil)
	for _, body := range bodies {
		require.NoError(t, b.Append(Record{Signal: SignalLogs, Items: 1, Body: enc.EncodeAll([]byte(body), nil)}))
	}
}

// runShipper runs a shipper with short backoffs until the test ends.
func runShipper(t *testing.T, b *Buffer, m *Metrics, url string) *shipper {
	s := &shipper{buf: b, server: url, client: http.DefaultClient, log: zap.NewNop(), m: m, minBackoff: 10 * time.Millisecond, maxBackoff: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		require.Error(t, s.health.check(time.Now(), time.Hour), "a stopped shipper is not ready")
	})
	require.Eventually(t, func() bool { return s.health.check(time.Now(), time.Hour) == nil }, 5*time.Second, time.Millisecond)
	return s
}

// TestShipperSkipsUnreadableRecords: a record with a bad checksum in the
// middle of the buffer is skipped and counted; the shipper goes on with
// the records after it.
func TestShipperSkipsUnreadableRecords(t *testing.T) {
	srv := newFakeServer(t)
	dir := t.TempDir()
	m := NewMetrics(nil)
	b, err := OpenBuffer(dir, 1<<20, m)
	require.NoError(t, err)
	defer b.Close()
	appendBodies(t, b, "a", "b", "c", "d")
	seg, err := os.ReadFile(filepath.Join(dir, "00000000000000000001.seg"))
	require.NoError(t, err)
	second := int64(frameHeader) + int64(binary.LittleEndian.Uint32(seg[:4]))
	overwrite(t, filepath.Join(dir, "00000000000000000001.seg"), second+frameHeader+3, []byte{0xee})

	s := runShipper(t, b, m, srv.URL)
	require.Eventually(t, func() bool { return len(srv.received()) == 3 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"a", "c", "d"}, srv.received())
	require.Equal(t, 1.0, testutil.ToFloat64(m.corruptRecords))
	require.NoError(t, s.health.check(time.Now(), 0), "skipping a record is not a failure to ship")

	appendBodies(t, b, "e") // still shipping
	require.Eventually(t, func() bool { return len(srv.received()) == 4 }, 5*time.Second, 10*time.Millisecond)
}

// TestShipperNeverGivesUpAndReadyTellsIt: while the server refuses, or
// the buffer cannot be read (an I/O error: the segment is a symlink loop),
// the shipper retries after a backoff, for ever; /-/ready says 503 with
// the reason once that lasted past unready_after, and 200 again once it
// ships.
func TestShipperNeverGivesUpAndReadyTellsIt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, srv *fakeServer, seg string) (heal func())
		why     string
	}{
		{"server unavailable", func(_ *testing.T, srv *fakeServer, _ string) func() {
			srv.setDown(true)
			return func() { srv.setDown(false) }
		}, "503 Service Unavailable"},
		{"buffer unreadable", func(t *testing.T, _ *fakeServer, seg string) func() {
			require.NoError(t, os.Rename(seg, seg+".away"))
			require.NoError(t, os.Symlink(filepath.Base(seg), seg))
			// Healed in one rename over the symlink: removing the link
			// first would leave a moment with no segment at all, which
			// the buffer rightly takes for a segment deleted under it
			// and skips.
			return func() { require.NoError(t, os.Rename(seg+".away", seg)) }
		}, "too many levels of symbolic links"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t)
			dir := t.TempDir()
			m := NewMetrics(nil)
			b, err := OpenBuffer(dir, 1<<20, m)
			require.NoError(t, err)
			defer b.Close()
			heal := tc.breakIt(t, srv, filepath.Join(dir, "00000000000000000001.seg"))
			appendBodies(t, b, "a", "b")
			s := runShipper(t, b, m, srv.URL)
			ready := readiness(closed(), &s.health, 200*time.Millisecond)

			time.Sleep(400 * time.Millisecond)
			code, body := get(ready)
			require.Equal(t, http.StatusServiceUnavailable, code)
			require.Contains(t, body, "nothing shipped to the server for")
			require.Contains(t, body, tc.why)
			require.Empty(t, srv.received())

			heal()
			require.Eventually(t, func() bool { return len(srv.received()) == 2 }, 5*time.Second, 10*time.Millisecond)
			code, body = get(ready)
			require.Equal(t, http.StatusOK, code, body)
			retried := testutil.ToFloat64(m.retries) + testutil.ToFloat64(m.readErrors)
			require.Greater(t, retried, 3.0, "it kept trying")
		})
	}
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// get calls a handler's GET and returns its status and body.
func get(h http.HandlerFunc) (int, string) {
	w := httptest.NewRecorder()
	h(w, httptest.NewRequest(http.MethodGet, "/-/ready", nil))
	return w.Code, w.Body.String()
}
