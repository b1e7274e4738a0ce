package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// TestBrowserGuard: on the real server, a query or push that a browser
// sends from another site is refused (403) before anything runs or is
// stored, whatever its content type; the UI's own requests, clients that
// are not browsers, and listed origins go through; with allowed_hosts
// set, another Host is refused.
func TestBrowserGuard(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.HTTP.TrustedOrigins = []string{"https://grafana.example"}
	s := startServer(t, cfg)
	query := url.Values{"query": {"vector(1)"}}.Encode()
	send := func(path, contentType, body string, header ...string) (int, string) {
		return post(t, s.api(path), contentType, []byte(body), header...)
	}
	form := "application/x-www-form-urlencoded"

	code, body := send("/api/v1/query", form, query, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "cross-origin POST refused")
	code, body = send("/api/v1/query", form, query, "Origin", "https://evil.example") // an older browser: Origin only
	require.Equal(t, http.StatusForbidden, code, body)
	code, body = send("/loki/api/v1/push", "application/json", `{"streams":[{"stream":{"app":"x"},"values":[["1","x"]]}]}`,
		"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	require.Equal(t, http.StatusForbidden, code, body)

	for _, header := range [][]string{
		nil, // Prometheus, Grafana's server, curl: no browser headers
		{"Sec-Fetch-Site", "same-origin", "Origin", "http://" + cfg.HTTPAddr}, // the UI
		{"Sec-Fetch-Site", "cross-site", "Origin", "https://grafana.example"}, // listed
	} {
		code, body = send("/api/v1/query", form, query, header...)
		require.Equal(t, http.StatusOK, code, "%v: %s", header, body)
		require.True(t, strings.Contains(body, `"status":"success"`), body)
	}
	// Reads are not state-changing: a cross-site GET is answered, and the
	// browser shows it to the page only when CORS allows: for the listed
	// origins. (A nil CORS setting used to fail every Prometheus API
	// request that carried an Origin header.)
	for origin, allowed := range map[string]string{"https://grafana.example": "https://grafana.example", "https://evil.example": ""} {
		req, err := http.NewRequest(http.MethodGet, s.api("/api/v1/query?"+query), nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, allowed, resp.Header.Get("Access-Control-Allow-Origin"), origin)
	}
	// The live tail's websocket takes only its own origin and the trusted ones.
	tail := "ws://" + cfg.HTTPAddr + "/loki/api/v1/tail?" + url.Values{"query": {`{app="x"}`}}.Encode()
	_, resp, err := websocket.DefaultDialer.Dial(tail, http.Header{"Origin": {"https://evil.example"}})
	require.Error(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	for _, origin := range []string{"http://" + cfg.HTTPAddr, "https://grafana.example"} { // its own, a trusted one
		conn, _, err := websocket.DefaultDialer.Dial(tail, http.Header{"Origin": {origin}})
		require.NoError(t, err, origin)
		_ = conn.Close()
	}
}

// TestAllowedHosts: with http.allowed_hosts set, a request for another
// Host name (a page that rebound its DNS name to Lumen's address) is
// refused; the listed names are answered.
func TestAllowedHosts(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.HTTP.AllowedHosts = []string{"127.0.0.1", "lumen.internal"}
	s := startServer(t, cfg)
	for host, want := range map[string]int{"": http.StatusOK, "lumen.internal": http.StatusOK, "LUMEN.internal:4320": http.StatusOK, "attacker.example": http.StatusForbidden} {
		req, err := http.NewRequest(http.MethodGet, s.api("/-/healthy"), nil)
		require.NoError(t, err)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, host)
	}
}

// A trusted origin that is not an origin is a configuration error.
func TestTrustedOriginsValidated(t *testing.T) {
	cfg := DefaultHTTPConfig()
	cfg.TrustedOrigins = []string{"grafana.example/path"}
	require.ErrorContains(t, cfg.Validate(), "http.trusted_origins")
}

func TestExposedAddrs(t *testing.T) {
	require.Equal(t, []string{":4320", "0.0.0.0:4317", "[::]:4318", "10.0.0.5:4320", "lumen.internal:4320"},
		exposedAddrs(":4320", "0.0.0.0:4317", "[::]:4318", "10.0.0.5:4320", "lumen.internal:4320",
			"127.0.0.1:4320", "[::1]:4317", "localhost:4318", "127.0.0.2:1", ""))
}
