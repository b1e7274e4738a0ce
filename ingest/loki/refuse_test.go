package loki_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/ingest/loki"
	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/store"
)

func pushJSON(at ...time.Time) string {
	var vals []string
	for i, t := range at {
		vals = append(vals, fmt.Sprintf(`["%d","line %d"]`, t.UnixNano(), i))
	}
	return `{"streams":[{"stream":{"app":"x"},"values":[` + strings.Join(vals, ",") + `]}]}`
}

func postPush(t *testing.T, url, body string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

func serveStore(t *testing.T, o store.Options, cfg loki.Config) string {
	t.Helper()
	db, err := store.Open(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	h, err := loki.New(cfg, db, nil, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// A full disk is 507 with Retry-After and the floor named; lines older
// than the retention (or from 1970) are refused with a 400 naming their
// time, the others stored, as Loki's reject_old_samples does.
func TestPushRefusals(t *testing.T) {
	o := store.DefaultOptions(t.TempDir())
	o.MinFreeDiskBytes = 1 << 62
	url := serveStore(t, o, loki.DefaultConfig())
	code, body, h := postPush(t, url, pushJSON(time.Now()))
	require.Equal(t, http.StatusInsufficientStorage, code, body)
	require.Contains(t, body, "below the floor of")
	require.Equal(t, "10", h.Get("Retry-After"))

	url = serveStore(t, store.DefaultOptions(t.TempDir()), loki.DefaultConfig())
	code, body, _ = postPush(t, url, pushJSON(time.Now(), time.Unix(0, 7), time.Now().Add(-8*24*time.Hour)))
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "2 of 3 lines refused")
	require.Contains(t, body, "1970-01-01T00:00:00.000000007Z is older than")
}

// Clients that send headers and then never send their body hold no write
// slot and are cut off after the body timeout with 408; normal pushes go
// on meanwhile.
func TestSlowPushersDoNotBlockPushes(t *testing.T) {
	cfg := loki.DefaultConfig()
	cfg.MaxInFlight = 2
	cfg.BodyTimeout = 500 * time.Millisecond
	url := serveStore(t, store.DefaultOptions(t.TempDir()), cfg)
	addr := strings.TrimPrefix(url, "http://")
	wait := loopback.SlowClients(addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{", 16, 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	for range 5 {
		code, body, _ := postPush(t, url, pushJSON(time.Now()))
		require.Equal(t, http.StatusNoContent, code, body)
	}
	require.Less(t, time.Since(start), 400*time.Millisecond, "normal pushes do not wait for the slow ones")
	for _, l := range wait() {
		require.Equal(t, "HTTP/1.1 408 Request Timeout", l)
	}
}
