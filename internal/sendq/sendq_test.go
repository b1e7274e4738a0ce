package sendq

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// backend is an HTTP server on loopback that answers with status until
// told otherwise, and keeps the bodies it took.
type backend struct {
	srv    *httptest.Server
	status atomic.Int32
	calls  atomic.Int64
	mu     sync.Mutex
	bodies []string
}

func newBackend(t *testing.T, status int) *backend {
	b := &backend{}
	b.status.Store(int32(status))
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		code := int(b.status.Load())
		if code == http.StatusOK {
			b.mu.Lock()
			b.bodies = append(b.bodies, string(body))
			b.mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := slices.Clone(b.bodies)
	slices.Sort(out)
	return out
}

// post sends a body to url: 4xx is permanent, anything else not 2xx is
// retried.
func post(url string) Send {
	return func(ctx context.Context, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return Permanent(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests:
			return Permanent(fmt.Errorf("HTTP %d", resp.StatusCode))
		}
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
}

func testConfig(dir string) Config {
	return Config{Dir: dir, MaxBytes: 1 << 20, Senders: 2, Timeout: 5 * time.Second, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond}
}

func open(t *testing.T, cfg Config, send Send, reg prometheus.Registerer) *Queue {
	mp, err := MeterProvider(reg)
	require.NoError(t, err)
	q, err := Open(context.Background(), "test", Metrics, cfg, send, zap.NewNop(), mp)
	require.NoError(t, err)
	return q
}

// TestQueuedWhileDownSentAfterRestart: requests offered while the backend
// answers 503 are retried, stay queued across a stop and are all sent,
// byte for byte, once it answers — by the next process's queue.
func TestQueuedWhileDownSentAfterRestart(t *testing.T) {
	dir := t.TempDir()
	be := newBackend(t, http.StatusServiceUnavailable)
	core, logs := observer.New(zapcore.InfoLevel)
	mp, err := MeterProvider(prometheus.NewRegistry())
	require.NoError(t, err)
	q, err := Open(context.Background(), "test", Metrics, testConfig(dir), post(be.srv.URL), zap.New(core), mp)
	require.NoError(t, err)
	var want []string
	for i := range 20 {
		body := fmt.Sprintf("request %02d %s", i, strings.Repeat("x", i*100))
		want = append(want, body)
		require.NoError(t, q.Offer(context.Background(), []byte(body), i+1))
	}
	require.Eventually(t, func() bool { return be.calls.Load() >= 20 }, 10*time.Second, 10*time.Millisecond, "retried while down")
	require.NoError(t, q.Close(context.Background()))
	require.Empty(t, be.got())
	require.Zero(t, logs.FilterMessageSnippet("Dropping data").Len(), "nothing is dropped at shutdown: %v", logs.All())
	require.NotZero(t, logs.FilterMessageSnippet("stays queued for the next start").Len())

	be.status.Store(http.StatusOK)
	reg := prometheus.NewRegistry()
	q = open(t, testConfig(dir), post(be.srv.URL), reg)
	defer func() { require.NoError(t, q.Close(context.Background())) }()
	require.Eventually(t, func() bool { return len(be.got()) == 20 }, 10*time.Second, 10*time.Millisecond)
	slices.Sort(want)
	require.Equal(t, want, be.got())
	require.Eventually(t, func() bool {
		return gauge(t, reg, "otelcol_exporter_queue_size") == 0
	}, 5*time.Second, 10*time.Millisecond, "the queue is empty once sent")
}

// TestRefusedForGoodIsDropped: a request the backend refuses with a 4xx is
// not retried; the next is sent.
func TestRefusedForGoodIsDropped(t *testing.T) {
	be := newBackend(t, http.StatusBadRequest)
	reg := prometheus.NewRegistry()
	q := open(t, testConfig(t.TempDir()), post(be.srv.URL), reg)
	defer func() { require.NoError(t, q.Close(context.Background())) }()
	require.NoError(t, q.Offer(context.Background(), []byte("bad"), 1))
	require.Eventually(t, func() bool { return be.calls.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // several retry intervals
	require.EqualValues(t, 1, be.calls.Load(), "a 4xx is not retried")
	be.status.Store(http.StatusOK)
	require.NoError(t, q.Offer(context.Background(), []byte("good"), 1000)) // more items than bytes
	require.Eventually(t, func() bool { return len(be.got()) == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"good"}, be.got())
	require.Equal(t, 1000.0, counter(t, reg, "otelcol_exporter_sent_metric_points_total"))
	require.Equal(t, 1.0, counter(t, reg, "otelcol_exporter_send_failed_metric_points_total"))
}

// TestFull: past MaxBytes queued, Offer says ErrFull; once sent there is
// room again.
func TestFull(t *testing.T) {
	be := newBackend(t, http.StatusServiceUnavailable)
	cfg := testConfig(t.TempDir())
	cfg.MaxBytes = 10_000
	q := open(t, cfg, post(be.srv.URL), prometheus.NewRegistry())
	defer func() { require.NoError(t, q.Close(context.Background())) }()
	body := bytes.Repeat([]byte("y"), 1000)
	var err error
	for range 30 {
		if err = q.Offer(context.Background(), body, 1); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, ErrFull)
	be.status.Store(http.StatusOK)
	require.Eventually(t, func() bool { return q.Offer(context.Background(), body, 1) == nil }, 10*time.Second, 20*time.Millisecond)
}

// TestKill9: requests acknowledged by Offer in a process killed with
// SIGKILL while the backend was down are sent by the next one.
func TestKill9(t *testing.T) {
	if os.Getenv("SENDQ_CHILD_DIR") != "" {
		child()
		return
	}
	dir := t.TempDir()
	down := newBackend(t, http.StatusServiceUnavailable)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), "SENDQ_CHILD_DIR="+dir, "SENDQ_CHILD_URL="+down.srv.URL)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	// The child prints each request once Offer returned; it is killed
	// while offering more.
	var acked int
	require.Eventually(t, func() bool {
		acked = strings.Count(out.String(), "acked ")
		return acked >= 50
	}, 30*time.Second, time.Millisecond, "child: %s", &out)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	acked = strings.Count(out.String(), "acked ")

	up := newBackend(t, http.StatusOK)
	q := open(t, testConfig(dir), post(up.srv.URL), prometheus.NewRegistry())
	defer func() { require.NoError(t, q.Close(context.Background())) }()
	// Every acknowledged request, each at least once: one being sent when
	// the child was killed comes again (the queue delivers at least
	// once), so the count of bodies alone does not say all came.
	missing := func() []int {
		got := map[string]bool{}
		for _, b := range up.got() {
			got[b] = true
		}
		var out []int
		for i := range acked {
			if !got["request "+strconv.Itoa(i)] {
				out = append(out, i)
			}
		}
		return out
	}
	assert.Eventually(t, func() bool { return len(missing()) == 0 }, 20*time.Second, 10*time.Millisecond)
	require.Empty(t, missing(), "acknowledged before the kill, never delivered")
}

// syncBuffer is the child's output, written by exec's goroutine while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func child() {
	cfg := testConfig(os.Getenv("SENDQ_CHILD_DIR"))
	mp, err := MeterProvider(prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	q, err := Open(context.Background(), "test", Metrics, cfg, post(os.Getenv("SENDQ_CHILD_URL")), zap.NewNop(), mp)
	if err != nil {
		panic(err)
	}
	for i := range 100_000 {
		if err := q.Offer(context.Background(), []byte("request "+strconv.Itoa(i)), 1); err != nil {
			panic(err)
		}
		fmt.Printf("acked %d\n", i)
	}
	select {}
}

// gauge and counter are the value of reg's one series named name.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	return value(t, reg, name).GetGauge().GetValue()
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	return value(t, reg, name).GetCounter().GetValue()
}

func value(t *testing.T, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1, name)
			return mf.GetMetric()[0]
		}
	}
	require.Fail(t, "no metric "+name)
	return nil
}

// FuzzUnmarshal: a queued request read back from disk, whatever its bytes,
// is decoded or refused, never a panic; what encoding writes reads back.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x01, 'x'})
	f.Add([]byte{0xe8, 0x07, 'g', 'o', 'o', 'd'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, r, err := encoding{}.Unmarshal(b)
		if err != nil {
			return
		}
		again, err := encoding{}.Marshal(context.Background(), r)
		require.NoError(t, err)
		_, r2, err := encoding{}.Unmarshal(again)
		require.NoError(t, err)
		require.Equal(t, r, r2)
	})
}
