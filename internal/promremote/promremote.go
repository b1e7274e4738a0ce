// Package promremote reads metrics from a remote backend's Prometheus HTTP
// API (Mimir, Thanos Query, Cortex, VictoriaMetrics, Prometheus): a proxy
// for Lumen's own Prometheus API routes, and a storage.Queryable whose
// selections are asked of the backend as range-vector queries (raw
// samples), for the answers Lumen composes itself (the correlated trace
// answer's metrics). Every read has a budget: a timeout, a limit on reads
// at once and a cap on the answer's bytes; errors name the backend.
package promremote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	config_util "github.com/prometheus/common/config"
)

// Config is the backend and the budget of each read.
type Config struct {
	// URL is the base of the backend's Prometheus API: /api/v1/query is
	// URL + "/api/v1/query" (e.g. http://mimir:8080/prometheus).
	URL string
	// HTTP is the client's auth and TLS, as Prometheus' configuration
	// takes them; Headers are sent with every read (e.g. X-Scope-OrgID).
	HTTP    config_util.HTTPClientConfig
	Headers map[string]string
	// Timeout bounds one read; MaxConcurrent reads run at once (more wait,
	// within their timeout); MaxResponseBytes caps an answer's bytes.
	Timeout          time.Duration
	MaxConcurrent    int
	MaxResponseBytes int64
}

// Backend is one remote Prometheus API.
type Backend struct {
	cfg  Config
	base *url.URL
	rt   http.RoundTripper
	sem  chan struct{}
	api  v1.API
}

// New returns the backend of cfg.
func New(cfg Config) (*Backend, error) {
	u, err := url.Parse(strings.TrimSuffix(cfg.URL, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("metrics backend URL %q: want http(s)://host[/path]", cfg.URL)
	}
	if cfg.Timeout <= 0 || cfg.MaxConcurrent <= 0 || cfg.MaxResponseBytes <= 0 {
		return nil, fmt.Errorf("metrics backend %s: timeout, max concurrent and max response bytes must be positive", cfg.URL)
	}
	rt, err := config_util.NewRoundTripperFromConfig(cfg.HTTP, "lumen")
	if err != nil {
		return nil, fmt.Errorf("metrics backend %s: %w", cfg.URL, err)
	}
	b := &Backend{cfg: cfg, base: u, sem: make(chan struct{}, cfg.MaxConcurrent)}
	b.rt = &budgeted{b: b, next: rt}
	c, err := api.NewClient(api.Config{Address: u.String(), RoundTripper: b.rt})
	if err != nil {
		return nil, fmt.Errorf("metrics backend %s: %w", cfg.URL, err)
	}
	b.api = v1.NewAPI(c)
	return b, nil
}

// ErrTooLarge is a read whose answer passes MaxResponseBytes.
var ErrTooLarge = errors.New("answer larger than the metrics backend's max response bytes")

// budgeted sends a read within the backend's budget: a slot among
// MaxConcurrent, the timeout, the configured headers and the size cap.
type budgeted struct {
	b    *Backend
	next http.RoundTripper
}

func (t *budgeted) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.b.cfg.Timeout)
	select {
	case t.b.sem <- struct{}{}:
	case <-ctx.Done():
		cancel()
		return nil, fmt.Errorf("waiting for one of its %d reads at once: %w", t.b.cfg.MaxConcurrent, ctx.Err())
	}
	release := func() { <-t.b.sem; cancel() }
	req = req.Clone(ctx)
	for k, v := range t.b.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		release()
		return nil, err
	}
	if resp.ContentLength > t.b.cfg.MaxResponseBytes {
		_ = resp.Body.Close()
		release()
		return nil, fmt.Errorf("%w (%d bytes, at most %d)", ErrTooLarge, resp.ContentLength, t.b.cfg.MaxResponseBytes)
	}
	resp.Body = &capped{r: resp.Body, left: t.b.cfg.MaxResponseBytes, release: release, max: t.b.cfg.MaxResponseBytes}
	return resp, nil
}

// capped fails a body past its cap, and frees the read's slot when closed.
type capped struct {
	r       io.ReadCloser
	left    int64
	release func()
	done    bool
	max     int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("%w (at most %d)", ErrTooLarge, c.max)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left <= 0 && err == nil {
		// One more byte would be past the cap: see whether there is one.
		var one [1]byte
		if m, _ := c.r.Read(one[:]); m > 0 {
			return n, fmt.Errorf("%w (at most %d)", ErrTooLarge, c.max)
		}
		c.left = 1 // at the end: the next read says io.EOF
	}
	return n, err
}

func (c *capped) Close() error {
	err := c.r.Close()
	if !c.done {
		c.done = true
		c.release()
	}
	return err
}

// forwarded are the request headers the proxy passes on.
var forwarded = []string{"Accept", "Accept-Encoding", "Content-Type", "Content-Length", "User-Agent"}

// Proxy serves Lumen's Prometheus read routes (prefix, e.g. /api/v1, is
// stripped and the rest asked of the backend's API) within the budget. A
// backend that cannot be reached, or answers too much, is a Prometheus API
// error naming it: 503 unavailable, 504 on the timeout, 502 past the cap.
func (b *Backend) Proxy(prefix string) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = b.base.Scheme, b.base.Host
			r.Out.URL.Path = b.base.Path + "/api/v1" + strings.TrimPrefix(r.In.URL.Path, prefix)
			r.Out.URL.RawPath = ""
			r.Out.Host = b.base.Host
			// Only what describes the request goes on: Lumen's own
			// credentials and a client's tenant header (X-Scope-OrgID)
			// stay here — the backend's are the configured ones.
			h := http.Header{}
			for _, k := range forwarded {
				if v := r.In.Header.Values(k); len(v) > 0 {
					h[k] = v
				}
			}
			r.Out.Header = h
		},
		Transport: b.rt,
		// The answer is read whole (within the cap) before it is passed
		// on, so that one past the cap is an error, not a cut body.
		ModifyResponse: func(resp *http.Response) error {
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
			resp.Header.Del("Transfer-Encoding")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code, typ := http.StatusServiceUnavailable, "unavailable"
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				code, typ = http.StatusGatewayTimeout, "timeout"
			case errors.Is(err, ErrTooLarge):
				code, typ = http.StatusBadGateway, "execution"
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, `{"status":"error","errorType":%q,"error":%q}`, typ, "metrics backend "+b.cfg.URL+": "+err.Error())
		},
	}
}
