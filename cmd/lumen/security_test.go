package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/common/config"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/lumenobs/lumen/internal/auth"
	"github.com/lumenobs/lumen/internal/telemetry"
	"github.com/lumenobs/lumen/internal/tlsconf"
	"github.com/lumenobs/lumen/internal/tlsconf/tlstest"
	"github.com/lumenobs/lumen/query"
	"github.com/lumenobs/lumen/store"
)

// Secrets of the test auth file: one token per scope, and a basic-auth
// user with the write scope.
const (
	readSecret  = "reader-secret-0123456789"
	writeSecret = "writer-secret-0123456789"
	adminSecret = "admin-secret-0123456789"
	pushUser    = "promtail"
	pushPass    = "promtail-password"
)

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// writeAuthFile writes the test auth file (and extra lines) into dir.
func writeAuthFile(t *testing.T, dir, extra string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(pushPass), bcrypt.MinCost)
	require.NoError(t, err)
	body := fmt.Sprintf(`tokens:
  - {name: grafana, sha256: %q, scopes: [read]}
  - {name: agent, sha256: %q, scopes: [write]}
  - {name: ops, sha256: %q, scopes: [admin]}
%sbasic_auth:
  - {username: %s, bcrypt: %q, scopes: [write]}
`, sha(readSecret), sha(writeSecret), sha(adminSecret), extra, pushUser, hash)
	path := filepath.Join(dir, "auth.yml")
	require.NoError(t, os.WriteFile(path+".tmp", []byte(body), 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
	return path
}

func bearer(secret string) string { return "Bearer " + secret }

// do sends method to url with an Authorization header (none when empty)
// and returns the status, body and response headers.
func do(t *testing.T, c *http.Client, method, url, authz string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(""))
	require.NoError(t, err)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// routeRequest is a request that the route pattern matches: its
// wildcards filled in.
func routeRequest(t *testing.T, pattern string) (method, path string) {
	t.Helper()
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = http.MethodGet, pattern
	}
	var b strings.Builder
	for rest := path; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		j := strings.IndexByte(rest, '}')
		b.WriteString("0123456789abcdef0123456789abcdef")
		rest = rest[j+1:]
	}
	return method, b.String()
}

// tokenFor is a credential that holds scope, and one that does not.
func tokenFor(s auth.Scope) (right, wrong string) {
	switch s {
	case auth.Read:
		return bearer(readSecret), bearer(writeSecret)
	case auth.Write:
		return bearer(writeSecret), bearer(readSecret)
	}
	return bearer(adminSecret), bearer(readSecret)
}

// TestEveryRouteNeedsItsScope walks every route the HTTP port registers
// (the same newMux the server runs, pprof on): each is refused without
// credentials (401 with a challenge), refused with a credential of
// another scope (403), and served with the right one; public routes are
// served to anyone. A route registered around the route table is
// refused.
func TestEveryRouteNeedsItsScope(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.Pprof = true
	cfg.HTTP.MetricsAuth = true
	cfg.AuthFile = writeAuthFile(t, dir, "")
	s := startServer(t, cfg)

	db, err := store.Open(store.DefaultOptions(filepath.Join(dir, "routes")))
	require.NoError(t, err)
	defer db.Close()
	var ready atomic.Bool
	reg := prometheus.NewRegistry()
	x := muxExtras{engine: query.NewPromEngine(cfg.PromQL, nil, reg), reloadRules: func() error { return nil }}
	routes, err := newMux(cfg, db, reg, reg, zap.NewNop(), telemetry.NewIngest(nil), &ready, x)
	require.NoError(t, err)
	require.Greater(t, len(routes.scopes), 30)
	seen := map[auth.Scope]int{}
	for pattern, scope := range routes.scopes {
		seen[scope]++
		method, path := routeRequest(t, pattern)
		req := httptest.NewRequest(method, path+"?seconds=1", nil)
		_, matched := routes.mux.Handler(req)
		require.Equal(t, pattern, matched, "the request made for %q reaches another route", pattern)
		url := s.api(path + "?seconds=1")
		if scope == auth.Public {
			code, body, _ := do(t, nil, method, url, "")
			require.NotContains(t, []int{401, 403}, code, "%s: %s", pattern, body)
			continue
		}
		code, body, h := do(t, nil, method, url, "")
		require.Equal(t, http.StatusUnauthorized, code, "%s without credentials: %s", pattern, body)
		require.Contains(t, h.Values("WWW-Authenticate"), `Bearer realm="lumen"`, pattern)
		right, wrong := tokenFor(scope)
		code, body, _ = do(t, nil, method, url, wrong)
		require.Equal(t, http.StatusForbidden, code, "%s with a token of another scope: %s", pattern, body)
		require.Contains(t, body, "scope", pattern)
		code, body, _ = do(t, nil, method, url, right)
		require.NotContains(t, []int{401, 403, 429}, code, "%s with the %s scope: %s", pattern, scope, body)
	}
	require.Positive(t, seen[auth.Read])
	require.Equal(t, 2, seen[auth.Write], "remote write and Loki push")
	checkRouteList(t, routes)
	require.Positive(t, seen[auth.Admin])
	require.Positive(t, seen[auth.Public])

	// Around the table: fails closed.
	a, err := auth.New(cfg.AuthFile, zap.NewNop(), nil)
	require.NoError(t, err)
	routes.mux.HandleFunc("GET /sneaky", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "secret") })
	srv := httptest.NewServer(routes.handlerWith(a, func(w http.ResponseWriter, r *http.Request, _ auth.Scope, _ auth.Principal, _ bool) {
		routes.mux.ServeHTTP(w, r)
	}))
	defer srv.Close()
	code, body, _ := do(t, nil, http.MethodGet, srv.URL+"/sneaky", bearer(adminSecret))
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "has no scope")
}

// routesDoc lists every route of the HTTP port with its scope; the test
// fails when it and the code differ (LUMEN_UPDATE_ROUTES=1 rewrites it).
const routesDoc = "../../docs/routes.md"

func checkRouteList(t *testing.T, routes *routeTable) {
	t.Helper()
	patterns := make([]string, 0, len(routes.scopes))
	for p := range routes.scopes {
		patterns = append(patterns, p)
	}
	slices.SortFunc(patterns, func(a, b string) int {
		_, pa, _ := strings.Cut(a, " ")
		_, pb, _ := strings.Cut(b, " ")
		return cmp.Or(cmp.Compare(pa, pb), cmp.Compare(a, b))
	})
	var b strings.Builder
	b.WriteString("# Routes of the HTTP port and the scope each needs\n\n" +
		"Generated from the server's route table by `TestEveryRouteNeedsItsScope` (cmd/lumen/security_test.go),\n" +
		"which also checks that each is refused without credentials (401), refused with a credential of\n" +
		"another scope (403) and served with its own; `LUMEN_UPDATE_ROUTES=1 go test -run\n" +
		"TestEveryRouteNeedsItsScope ./cmd/lumen/` rewrites this file. `public` needs no credential.\n" +
		"`/debug/pprof` routes exist with `--pprof`.\n" +
		"OTLP (gRPC :4317, HTTP :4318 `/v1/traces`, `/v1/logs`, `/v1/metrics`) needs `write`.\n" +
		"With a remote metrics backend (docs/scale-out.md), `GET` and `POST` of `/api/v1/` `query`, `query_range`,\n" +
		"`series`, `labels`, `label/{name}/values`, `query_exemplars`, `format_query`, `parse_query` (and `GET`\n" +
		"`metadata`) are the backend's answers, and need `read`; with a remote logs backend, the Loki read routes\n" +
		"above (and the tail) are Loki's answers, with a remote traces backend the `/jaeger/api/` routes are\n" +
		"Jaeger's (`api: jaeger`) or Tempo's routes (`/api/traces/…`, `/api/v2/traces/…`, `/api/search`,\n" +
		"the tag routes, `/api/echo`, `/api/status/buildinfo`) are Tempo's (`api: tempo`): the same routes,\n" +
		"the same scope.\n\n" +
		"| route | scope |\n|---|---|\n")
	for _, p := range patterns {
		scope := string(routes.scopes[p])
		if p == "GET /metrics" { // walked with http.metrics_auth on
			scope = "public (read with `http.metrics_auth`)"
		}
		fmt.Fprintf(&b, "| `%s` | %s |\n", p, scope)
	}
	if os.Getenv("LUMEN_UPDATE_ROUTES") != "" {
		require.NoError(t, os.WriteFile(routesDoc, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(routesDoc)
	require.NoError(t, err)
	require.Equal(t, string(want), b.String(), "docs/routes.md is not the route table: LUMEN_UPDATE_ROUTES=1 go test -run TestEveryRouteNeedsItsScope ./cmd/lumen/")
	t.Logf("routes and scopes:\n%s", b.String())
}

// TestAuthOnTheHTTPPort: bearer tokens and basic auth (a bcrypt user, or
// a token as the password), the answers' challenges, failed attempts
// limited per address (429 with Retry-After, tokens still let in), the
// file reloaded on change and on SIGHUP with a bad file leaving the old
// one in place, and the failures counted in /metrics.
func TestAuthOnTheHTTPPort(t *testing.T) {
	defer func(d time.Duration) { authReloadInterval = d }(authReloadInterval)
	authReloadInterval = time.Hour // only SIGHUP reloads, until the change test below
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.AuthFile = writeAuthFile(t, dir, "")
	s := startServer(t, cfg)
	q := s.api("/api/v1/query?query=vector(1)")

	code, body, h := do(t, nil, http.MethodGet, q, "")
	require.Equal(t, 401, code, body)
	require.ElementsMatch(t, []string{`Bearer realm="lumen"`, `Basic realm="lumen", charset="UTF-8"`}, h.Values("WWW-Authenticate"))
	_, _, h = do(t, nil, http.MethodGet, q, "", "X-Requested-With", "lumen-ui")
	require.Equal(t, []string{`Bearer realm="lumen"`}, h.Values("WWW-Authenticate"), "no Basic challenge to the UI's calls")
	code, body, _ = do(t, nil, http.MethodGet, q, bearer(readSecret))
	require.Equal(t, 200, code, body)
	require.Contains(t, body, `"status":"success"`)

	// Malformed and oversized credentials: a clear 4xx each.
	for authz, want := range map[string]int{"Bearer": 401, "Basic %%%": 401, "Token abc": 401, "Bearer " + strings.Repeat("x", 2<<20): 431} {
		code, body, _ := do(t, nil, http.MethodGet, q, authz)
		require.Equal(t, want, code, "%.40q: %s", authz, body)
	}

	// Basic auth: the user's password, or a token as the password.
	req, _ := http.NewRequest(http.MethodPost, s.api("/loki/api/v1/push"), strings.NewReader(`{"streams":[{"stream":{"app":"a"},"values":[["1700000000000000000","hello"]]}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(pushUser, pushPass)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	req, _ = http.NewRequest(http.MethodGet, q, nil)
	req.SetBasicAuth("grafana", readSecret)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	req.SetBasicAuth(pushUser, "wrong")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode)

	// Guessing: past the budget the address waits, but a valid token
	// still gets in and a basic-auth user checked before does too.
	var limited http.Header
	for i := 0; i < auth.FailureBurst+2; i++ {
		code, _, h := do(t, nil, http.MethodGet, q, bearer(fmt.Sprintf("guess-%d", i)))
		if code == http.StatusTooManyRequests {
			limited = h
			break
		}
		require.Equal(t, 401, code)
	}
	require.NotNil(t, limited, "guesses were never limited")
	require.NotEmpty(t, limited.Get("Retry-After"))
	code, _, _ = do(t, nil, http.MethodGet, q, bearer(readSecret))
	require.Equal(t, 200, code, "a valid token while the address is limited")
	req.SetBasicAuth(pushUser, pushPass)
	req, _ = http.NewRequest(http.MethodPost, s.api("/loki/api/v1/push"), strings.NewReader(`{"streams":[]}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(pushUser, pushPass)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "a user already checked, while the address is limited")
	code, _, _ = do(t, nil, http.MethodGet, q, bearer("another-guess"))
	require.Equal(t, http.StatusTooManyRequests, code)

	// Reload on SIGHUP: a new token works; a broken file keeps the last.
	const newSecret = "new-reader-secret-0123456789"
	writeAuthFile(t, dir, fmt.Sprintf("  - {name: new, sha256: %q, scopes: [read]}\n", sha(newSecret)))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		code, _, _ := do(t, nil, http.MethodGet, q, bearer(newSecret))
		return code == 200
	}, 5*time.Second, 50*time.Millisecond, "SIGHUP did not reload the auth file")
	require.NoError(t, os.WriteFile(cfg.AuthFile, []byte("tokens: [{name: x, sha256: nothex, scopes: [read]}]\n"), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		_, body, _ := do(t, nil, http.MethodGet, s.api("/metrics"), bearer(readSecret))
		return strings.Contains(body, "lumen_auth_config_last_reload_successful 0")
	}, 5*time.Second, 50*time.Millisecond)
	code, _, _ = do(t, nil, http.MethodGet, q, bearer(newSecret))
	require.Equal(t, 200, code, "a broken auth file replaced the working one")

	code, metrics, _ := do(t, nil, http.MethodGet, s.api("/metrics"), "")
	require.Equal(t, 200, code, "/metrics is open unless http.metrics_auth")
	for _, want := range []string{`lumen_auth_failures_total{reason="limited"}`, `lumen_auth_failures_total{reason="invalid"}`, `lumen_auth_failures_total{reason="missing"}`} {
		require.Contains(t, metrics, want)
		require.NotContains(t, metrics, want+" 0\n", "%s not counted", want)
	}
}

// TestAuthFileReloadsWhenItChanges: no signal needed.
func TestAuthFileReloadsWhenItChanges(t *testing.T) {
	defer func(d time.Duration) { authReloadInterval = d }(authReloadInterval)
	authReloadInterval = 100 * time.Millisecond
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.AuthFile = writeAuthFile(t, dir, "")
	s := startServer(t, cfg)
	q := s.api("/api/v1/query?query=vector(1)")
	code, _, _ := do(t, nil, http.MethodGet, q, bearer(readSecret))
	require.Equal(t, 200, code)
	// The grafana token is removed.
	require.NoError(t, os.WriteFile(cfg.AuthFile, []byte(fmt.Sprintf("tokens:\n  - {name: ops, sha256: %q, scopes: [admin, read]}\n", sha(adminSecret))), 0o600))
	require.Eventually(t, func() bool {
		code, _, _ := do(t, nil, http.MethodGet, q, bearer(readSecret))
		return code == 401
	}, 5*time.Second, 50*time.Millisecond)
	code, _, _ = do(t, nil, http.MethodGet, q, bearer(adminSecret))
	require.Equal(t, 200, code)
}

// TestOTLPNeedsTheWriteScope: both transports, through the OTel SDK's
// exporters: no token UNAUTHENTICATED / 401 with a challenge, a read
// token PERMISSION_DENIED / 403, the write token stores the spans.
func TestOTLPNeedsTheWriteScope(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.AuthFile = writeAuthFile(t, dir, "")
	s := startServer(t, cfg)
	ctx := context.Background()
	export := func(exp sdktrace.SpanExporter, name string) error {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		_, span := tp.Tracer("t").Start(ctx, name)
		span.End()
		err := exp.ExportSpans(ctx, rec.Ended()) // the exporter's own answer
		_ = exp.Shutdown(ctx)
		return err
	}
	for _, tc := range []struct {
		authz string
		code  codes.Code
		http  int
	}{{"", codes.Unauthenticated, 401}, {bearer(readSecret), codes.PermissionDenied, 403}, {bearer(writeSecret), codes.OK, 200}} {
		headers := map[string]string{}
		if tc.authz != "" {
			headers["authorization"] = tc.authz
		}
		g, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.cfg.OTLP.GRPCAddr), otlptracegrpc.WithInsecure(),
			otlptracegrpc.WithHeaders(headers), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
		require.NoError(t, err)
		err = export(g, "grpc-"+tc.code.String())
		require.Equal(t, tc.code, status.Code(unwrapStatus(err)), "gRPC %q: %v", tc.authz, err)

		code, body, h := do(t, nil, http.MethodPost, "http://"+s.cfg.OTLP.HTTPAddr+"/v1/traces", tc.authz, "Content-Type", "application/x-protobuf")
		if tc.http == 200 {
			require.Equal(t, 200, code, body)
		} else {
			require.Equal(t, tc.http, code, body)
			require.Contains(t, h.Get("WWW-Authenticate"), "Bearer")
		}
		hx, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.cfg.OTLP.HTTPAddr), otlptracehttp.WithInsecure(),
			otlptracehttp.WithHeaders(headers), otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
		require.NoError(t, err)
		err = export(hx, "http-"+tc.code.String())
		if tc.http == 200 {
			require.NoError(t, err)
		} else {
			require.ErrorContains(t, err, fmt.Sprint(tc.http))
		}
	}
	// What the write token sent is stored, and readable with the read one.
	require.Eventually(t, func() bool {
		code, body, _ := do(t, nil, http.MethodGet, s.api("/api/search?tags=name%3Dgrpc-OK"), bearer(readSecret))
		return code == 200 && strings.Contains(body, "traceID")
	}, 5*time.Second, 50*time.Millisecond)
}

// unwrapStatus finds a gRPC status inside an exporter's wrapped error.
func unwrapStatus(err error) error {
	for e := err; e != nil; {
		if _, ok := status.FromError(e); ok {
			return e
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return err
}

// TestTLSOnEveryListener: one certificate for the HTTP port and both OTLP
// transports, client certificates required (mTLS) and a token besides
// (the OTel SDK's exporters with TLS and the bearer header), TLS 1.2 at
// least, and a renewed certificate served without a restart.
func TestTLSOnEveryListener(t *testing.T) {
	ca := tlstest.NewCA(t, "lumen-test")
	certFile, keyFile := ca.Issue(t, "lumen-1")
	clientCert, clientKey := ca.Issue(t, "client")
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.TLS = tlsconf.Server{CertFile: certFile, KeyFile: keyFile, ClientCAFile: ca.File, ReloadInterval: 200 * time.Millisecond}
	cfg.AuthFile = writeAuthFile(t, dir, "")
	startServer(t, cfg)
	ctx := context.Background()
	writeToken := map[string]string{"authorization": bearer(writeSecret)}

	client := func(c *tls.Config) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c, DisableKeepAlives: true}}
	}
	mtls := ca.ClientConfig(t, clientCert, clientKey)
	code, body, _ := do(t, client(mtls), http.MethodGet, "https://"+cfg.HTTPAddr+"/api/v1/query?query=vector(1)", bearer(readSecret))
	require.Equal(t, 200, code, body)
	code, body, _ = do(t, client(mtls), http.MethodGet, "https://"+cfg.HTTPAddr+"/api/v1/query?query=vector(1)", "")
	require.Equal(t, 401, code, "a client certificate is not a token: %s", body)
	// No client certificate, an old TLS version, plain HTTP: refused.
	_, err := client(ca.ClientConfig(t, "", "")).Get("https://" + cfg.HTTPAddr + "/-/ready")
	require.Error(t, err)
	old := mtls.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	_, err = client(old).Get("https://" + cfg.HTTPAddr + "/-/ready")
	require.ErrorContains(t, err, "protocol version")
	code, _, _ = do(t, nil, http.MethodGet, "http://"+cfg.HTTPAddr+"/-/ready", "")
	require.Equal(t, http.StatusBadRequest, code, "plain HTTP to the TLS port")

	// OTLP over TLS, both transports, with the client certificate and the
	// bearer token, as the OTel SDK's exporters send them.
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, span := tp.Tracer("t").Start(ctx, "over-tls")
	span.End()
	for _, headers := range []map[string]string{nil, writeToken} {
		g, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.OTLP.GRPCAddr), otlptracegrpc.WithTLSCredentials(credentials.NewTLS(mtls)),
			otlptracegrpc.WithHeaders(headers), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
		require.NoError(t, err)
		h, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(cfg.OTLP.HTTPAddr), otlptracehttp.WithTLSClientConfig(mtls),
			otlptracehttp.WithHeaders(headers), otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
		require.NoError(t, err)
		gErr, hErr := g.ExportSpans(ctx, rec.Ended()), h.ExportSpans(ctx, rec.Ended())
		if headers == nil {
			require.Equal(t, codes.Unauthenticated, status.Code(unwrapStatus(gErr)), "gRPC over TLS without a token: %v", gErr)
			require.ErrorContains(t, hErr, "401")
		} else {
			require.NoError(t, gErr)
			require.NoError(t, hErr)
		}
		require.NoError(t, g.Shutdown(ctx))
		require.NoError(t, h.Shutdown(ctx))
	}
	require.Eventually(t, func() bool {
		code, body, _ := do(t, client(mtls), http.MethodGet, "https://"+cfg.HTTPAddr+"/api/search?tags=name%3Dover-tls", bearer(readSecret))
		return code == 200 && strings.Contains(body, "traceID")
	}, 5*time.Second, 50*time.Millisecond, "the span sent with the token over TLS is stored")
	// Without a client certificate, both refuse.
	g, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.OTLP.GRPCAddr), otlptracegrpc.WithTLSCredentials(credentials.NewTLS(ca.ClientConfig(t, "", ""))),
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}), otlptracegrpc.WithTimeout(3*time.Second))
	require.NoError(t, err)
	require.Error(t, g.ExportSpans(ctx, rec.Ended()))
	_ = g.Shutdown(ctx)
	h, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(cfg.OTLP.HTTPAddr), otlptracehttp.WithTLSClientConfig(ca.ClientConfig(t, "", "")),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}), otlptracehttp.WithTimeout(3*time.Second))
	require.NoError(t, err)
	require.Error(t, h.ExportSpans(ctx, rec.Ended()))
	_ = h.Shutdown(ctx)

	// A renewed certificate is served on every listener, no restart.
	served := func(addr string) string {
		conn, err := tls.Dial("tcp", addr, mtls)
		if err != nil {
			return err.Error()
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	for _, addr := range []string{cfg.HTTPAddr, cfg.OTLP.GRPCAddr, cfg.OTLP.HTTPAddr} {
		require.Equal(t, "lumen-1", served(addr))
	}
	renewed, renewedKey := ca.Issue(t, "lumen-2")
	require.NoError(t, os.Rename(renewedKey, keyFile))
	require.NoError(t, os.Rename(renewed, certFile))
	for _, addr := range []string{cfg.HTTPAddr, cfg.OTLP.GRPCAddr, cfg.OTLP.HTTPAddr} {
		require.Eventually(t, func() bool { return served(addr) == "lumen-2" }, 5*time.Second, 50*time.Millisecond, addr)
	}
}

// TestTLSAndAuthConfig: what cannot work is refused at start with the
// setting named.
func TestTLSAndAuthConfig(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "cfg")
	cert, key := ca.Issue(t, "lumen")
	env := func(string) string { return "" }
	for args, want := range map[string]string{
		"--tls-cert-file=" + cert: "tls: cert_file and key_file go together",
		"--tls-cert-file=" + cert + " --tls-key-file=" + filepath.Join(dir, "none"): "tls: tls: failed to load TLS config",
		"--tls-client-ca-file=" + ca.File:                                           "client_ca_file needs cert_file and key_file",
		"--auth-file=" + filepath.Join(dir, "none.yml"):                             "auth file",
	} {
		_, err := loadConfig(append(strings.Fields(args), "--data-dir="+dir), env, "serve")
		require.ErrorContains(t, err, want, args)
	}
	cfg, err := loadConfig([]string{"--tls-cert-file=" + cert, "--tls-key-file=" + key, "--data-dir=" + dir}, env, "serve")
	require.NoError(t, err)
	cfg = cfg.withListeners()
	require.True(t, cfg.HTTP.TLS.Enabled() && cfg.OTLP.GRPCTLS.Enabled() && cfg.OTLP.HTTPTLS.Enabled())

	bad := map[string]string{
		"tokens: [{name: a, sha256: abc, scopes: [read]}]":                                                                    "sha256 must be 64 hex digits",
		"tokens: [{name: a, sha256: " + sha("x") + ", scopes: [root]}]":                                                       `unknown scope "root"`,
		"tokens: [{name: a, sha256: " + sha("x") + "}]":                                                                       "no scopes",
		"tokens: [{name: a, sha256: " + sha("x") + ", scopes: [read], tenant: team-a}]":                                       "tenant",
		"basic_auth: [{username: u, bcrypt: plain, scopes: [read]}]":                                                          "not a bcrypt hash",
		"tokens: [{name: a, sha256: " + sha("x") + ", scopes: [read], extra: 1}]":                                             "field extra not found",
		"tokens: [{name: a, sha256: " + sha("x") + ", scopes: [read]}, {name: b, sha256: " + sha("x") + ", scopes: [write]}]": "the same secret",
	}
	for body, want := range bad {
		path := filepath.Join(dir, "auth.yml")
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		_, err := loadConfig([]string{"--auth-file=" + path, "--data-dir=" + dir}, env, "serve")
		require.ErrorContains(t, err, want, body)
	}
}

// startSecureServer starts a server in dir that asks every client for a
// certificate of its CA (mTLS) and for a token of the test auth file, and
// issues one client certificate, for client.
func startSecureServer(t *testing.T, dir, client string) (cfg Config, ca *tlstest.CA, clientCert, clientKey string) {
	t.Helper()
	ca = tlstest.NewCA(t, "lumen-"+client)
	serverCert, serverKey := ca.Issue(t, "lumen")
	clientCert, clientKey = ca.Issue(t, client)
	cfg = testConfig(t, filepath.Join(dir, "data"))
	cfg.TLS = tlsconf.Server{CertFile: serverCert, KeyFile: serverKey, ClientCAFile: ca.File}
	cfg.AuthFile = writeAuthFile(t, dir, "")
	startServer(t, cfg)
	return cfg, ca, clientCert, clientKey
}

// TestAgentOverTLSWithTokens: the agent ships to a server that asks for
// TLS with client certificates and a token; with a token of the wrong
// scope it keeps the data and says why it is not ready, and ships it once
// the token file holds the right one. Its relay speaks TLS and asks pods
// for a token of its own, and its HTTP port speaks TLS.
func TestAgentOverTLSWithTokens(t *testing.T) {
	dir := t.TempDir()
	scfg, ca, agentCert, agentKey := startSecureServer(t, dir, "agent")

	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(readSecret+"\n"), 0o600)) // the wrong scope
	const podSecret = "pod-secret-0123456789"
	relayAuth := filepath.Join(dir, "relay-auth.yml")
	require.NoError(t, os.WriteFile(relayAuth, []byte(fmt.Sprintf("tokens: [{name: pods, sha256: %q, scopes: [write]}]\n", sha(podSecret))), 0o600))
	cfg := agentConfig(t, t.TempDir(), scfg.OTLP.HTTPAddr)
	cfg.Server = "https://" + scfg.OTLP.HTTPAddr
	cfg.ServerTLS = tlsconf.Client{CAFile: ca.File, CertFile: agentCert, KeyFile: agentKey}
	cfg.TokenFile = tokenFile
	cfg.TLS = tlsconf.Server{CertFile: agentCert, KeyFile: agentKey}
	cfg.Relay.AuthFile = relayAuth
	cfg.Logs.Glob = ""
	cfg.NodeMetrics.Interval = 0
	cfg.Ship.UnreadyAfter = 200 * time.Millisecond
	startAgent(t, cfg)

	httpsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(t, agentCert, agentKey)}}
	ctx := context.Background()
	send := func(authz string) (string, error) {
		headers := map[string]string{}
		if authz != "" {
			headers["authorization"] = authz
		}
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.OTLPGRPCAddr), otlptracegrpc.WithTLSCredentials(credentials.NewTLS(ca.ClientConfig(t, "", ""))),
			otlptracegrpc.WithHeaders(headers), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
		require.NoError(t, err)
		defer exp.Shutdown(ctx)
		rec := tracetest.NewSpanRecorder()
		_, span := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("pod").Start(ctx, "through-the-relay")
		span.End()
		return span.SpanContext().TraceID().String(), exp.ExportSpans(ctx, rec.Ended())
	}
	_, err := send("")
	require.Equal(t, codes.Unauthenticated, status.Code(unwrapStatus(err)), "the relay without a pod token: %v", err)
	id, err := send(bearer(podSecret))
	require.NoError(t, err)

	// The read token is refused by the server: kept, and /-/ready says why.
	require.Eventually(t, func() bool {
		code, body, _ := do(t, httpsClient, http.MethodGet, "https://"+cfg.HTTPAddr+"/-/ready", "")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "403")
	}, 10*time.Second, 50*time.Millisecond)
	code, _, _ := do(t, httpsClient, http.MethodGet, "https://"+scfg.HTTPAddr+"/api/v1/traces/"+id, bearer(readSecret))
	require.Equal(t, http.StatusNotFound, code)

	require.NoError(t, os.WriteFile(tokenFile, []byte(writeSecret+"\n"), 0o600))
	require.Eventually(t, func() bool {
		code, _, _ := do(t, httpsClient, http.MethodGet, "https://"+scfg.HTTPAddr+"/api/v1/traces/"+id, bearer(readSecret))
		return code == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "the span kept while the token was wrong was not shipped")
	require.Eventually(t, func() bool {
		code, _, _ := do(t, httpsClient, http.MethodGet, "https://"+cfg.HTTPAddr+"/-/ready", "")
		return code == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond)
}

// TestRealPrometheusWithTLSAndToken: a real Prometheus remote-writes to
// Lumen over mTLS with a token from a credentials file (its
// `authorization` and `tls_config`), and what it sent is queried back
// with the read token; without the token, its sends are refused (401)
// and it says so.
func TestRealPrometheusWithTLSAndToken(t *testing.T) {
	prom := lookTool(t, "prometheus", "apt-get install prometheus")
	dir := t.TempDir()
	cfg, ca, clientCert, clientKey := startSecureServer(t, dir, "prometheus")
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(writeSecret), 0o600))

	run := func(name, authorization string) (logs func() string) {
		promAddr := freeAddr(t)
		pdir := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(pdir, 0o755))
		conf := fmt.Sprintf(`global: {scrape_interval: 1s, external_labels: {sender: %q}}
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: [%q]}]
remote_write:
  - url: https://%s/api/v1/write
%s    tls_config: {ca_file: %q, cert_file: %q, key_file: %q}
    queue_config: {batch_send_deadline: 200ms, max_shards: 1, min_backoff: 100ms, max_backoff: 200ms}
`, name, promAddr, cfg.HTTPAddr, authorization, ca.File, clientCert, clientKey)
		require.NoError(t, os.WriteFile(filepath.Join(pdir, "prometheus.yml"), []byte(conf), 0o600))
		ctx, cancel := context.WithCancel(context.Background())
		var out strings.Builder
		cmd := exec.CommandContext(ctx, prom, "--config.file="+filepath.Join(pdir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(pdir, "tsdb"), "--web.listen-address="+promAddr, "--log.level=warn")
		var mu sync.Mutex
		cmd.Stderr = writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(b) })
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { cancel(); _ = cmd.Wait() })
		return func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(t, clientCert, clientKey)}}
	count := func(sender string) string {
		_, body, _ := do(t, client, http.MethodGet, "https://"+cfg.HTTPAddr+"/api/v1/query?query="+
			url.QueryEscape(fmt.Sprintf(`count(up{sender=%q})`, sender)), bearer(readSecret))
		return body
	}
	run("with-token", fmt.Sprintf("    authorization: {credentials_file: %q}\n", tokenFile))
	refusedLogs := run("without-token", "")
	require.Eventually(t, func() bool { return strings.Contains(count("with-token"), `"1"]`) }, 60*time.Second, 250*time.Millisecond,
		"Prometheus' samples did not reach Lumen over TLS with its token")
	// The one without a token is refused, counted, and has stored nothing.
	require.Eventually(t, func() bool {
		_, metrics, _ := do(t, client, http.MethodGet, "https://"+cfg.HTTPAddr+"/metrics", "")
		return strings.Contains(metrics, `lumen_auth_failures_total{reason="missing"}`) &&
			!strings.Contains(metrics, `lumen_auth_failures_total{reason="missing"} 0`+"\n")
	}, 30*time.Second, 250*time.Millisecond)
	require.NotContains(t, count("without-token"), `"1"]`)
	require.Eventually(t, func() bool { return strings.Contains(refusedLogs(), "401") }, 30*time.Second, 250*time.Millisecond,
		"Prometheus without a token does not report the 401")

	// Prometheus' API tools with an HTTP config file (promtool's
	// --http.config.file): the read token and the TLS settings.
	httpConfig := filepath.Join(dir, "http.yml")
	require.NoError(t, os.WriteFile(httpConfig, []byte(fmt.Sprintf("authorization: {credentials: %q}\ntls_config: {ca_file: %q, cert_file: %q, key_file: %q}\n",
		readSecret, ca.File, clientCert, clientKey)), 0o600))
	checkHTTPConfigFile(t, httpConfig, "https://"+cfg.HTTPAddr, `count(up{sender="with-token"})`)
}

// promtoolPeer is a promtool new enough for --http.config.file (Debian's
// 2.42 is not): `make promtool-peer` builds Prometheus v0.315.0's.
func promtoolPeer() string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "lumen-peers", "promtool-v0.315.0")
}

// checkHTTPConfigFile queries server as promtool does with
// --http.config.file: the same loader and API client in this process,
// and the real promtool when it has been built.
func checkHTTPConfigFile(t *testing.T, httpConfig, server, expr string) {
	t.Helper()
	hc, _, err := promconfig.LoadHTTPConfigFile(httpConfig)
	require.NoError(t, err)
	rt, err := promconfig.NewRoundTripperFromConfig(*hc, "promtool")
	require.NoError(t, err)
	api, err := promapi.NewClient(promapi.Config{Address: server, RoundTripper: rt})
	require.NoError(t, err)
	val, _, err := promv1.NewAPI(api).Query(context.Background(), expr, time.Now())
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(val.String(), "{} => 1 @"), "%s", val)
	if _, err := os.Stat(promtoolPeer()); err != nil {
		t.Logf("promtool with --http.config.file not built (make promtool-peer): checked with its client code only")
		return
	}
	out, err := exec.Command(promtoolPeer(), "query", "instant", "--http.config.file="+httpConfig, server, expr).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.True(t, strings.HasPrefix(string(out), "{} => 1 @"), "promtool: %s", out)
	out, err = exec.Command(promtoolPeer(), "query", "instant", server, expr).CombinedOutput()
	require.Error(t, err, "promtool without the HTTP config file: %s", out)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestAgentReadsLogsAsNonRootWithOneCapability: the image's agent binary
// carries CAP_DAC_READ_SEARCH as a file capability (deploy/Dockerfile),
// and the DaemonSet runs it as an unprivileged user with that one
// capability in its bounding set, its state directory prepared by
// `--prepare-state` as root. Here the same: a copy of this binary with
// the file capability, run by setpriv as nobody with a bounding set of
// that capability alone, reads a root-owned 0640 log file in a 0750
// directory (which nobody cannot read without it) and ships its line.
func TestAgentReadsLogsAsNonRootWithOneCapability(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: file capabilities and setpriv")
	}
	setcap := "/usr/sbin/setcap" // not on every PATH
	if _, err := os.Stat(setcap); err != nil {
		setcap = lookTool(t, "setcap", "apt-get install libcap2-bin")
	}
	setpriv := lookTool(t, "setpriv", "apt-get install util-linux")
	const nobody = "65534"
	s := startServer(t, testConfig(t, t.TempDir()))

	// A directory nobody can enter, for the binary; the logs root-only.
	dir, err := os.MkdirTemp("", "lumen-nonroot-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	self, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	bin := filepath.Join(dir, "lumen-agent")
	require.NoError(t, os.WriteFile(bin, self, 0o755))
	out, err := exec.Command(setcap, "cap_dac_read_search=+ep", bin).CombinedOutput()
	require.NoError(t, err, "%s", out)

	root := filepath.Join(dir, "node")
	logFile := podLog(t, root, "shop", "web-abc", "u1", "app")
	appendFile(t, logFile, cri("stdout", "F", "L1 read with one capability"))
	require.NoError(t, filepath.WalkDir(filepath.Join(root, "pods"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o750)
		}
		return os.Chmod(p, 0o640)
	}))
	asNobody := func(caps string, args ...string) *exec.Cmd {
		return exec.Command(setpriv, append([]string{"--reuid=" + nobody, "--regid=" + nobody, "--clear-groups",
			"--inh-caps=-all", "--bounding-set=" + caps}, args...)...)
	}
	out, err = asNobody("-all", "cat", logFile).CombinedOutput()
	require.Error(t, err, "nobody reads the log without the capability: the test proves nothing (%s)", out)

	cfg := agentConfig(t, root, s.cfg.OTLP.HTTPAddr)
	cfg.StateDir = filepath.Join(dir, "state")
	args := strings.Fields(agentArgs(cfg))
	prep := exec.Command(bin, "-test.run=^$")
	prep.Env = append(os.Environ(), childEnv+"="+strings.Join(append(args, "--prepare-state="+nobody+":"+nobody), " "))
	out, err = prep.CombinedOutput()
	require.NoError(t, err, "%s", out)
	info, err := os.Stat(cfg.StateDir)
	require.NoError(t, err)
	require.EqualValues(t, 65534, info.Sys().(*syscall.Stat_t).Uid, "the state directory is nobody's")

	agentCmd := asNobody("-all,+dac_read_search", bin, "-test.run=^$")
	agentCmd.Env = append(os.Environ(), childEnv+"="+strings.Join(args, " "))
	agentCmd.Stderr = os.Stderr
	require.NoError(t, agentCmd.Start())
	t.Cleanup(func() { _ = agentCmd.Process.Kill(); _ = agentCmd.Wait() })
	waitAll(t, s.cfg.HTTPAddr, "shop", 1, 1, true)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", agentCmd.Process.Pid))
	require.NoError(t, err)
	require.Contains(t, string(status), "Uid:\t65534\t65534\t65534\t65534", "the agent runs as nobody")
	require.Regexp(t, `CapBnd:\s+0000000000000004\n`, string(status), "CAP_DAC_READ_SEARCH alone in the bounding set")
}
