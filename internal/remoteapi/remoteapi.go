// Package remoteapi reads from a remote backend's HTTP API within a budget
// (docs/scale-out.md): every read has a timeout, a slot among a limited
// number of reads at once and a cap on the answer's bytes, and its errors
// name the backend. It is shared by the metrics backend (a Prometheus API)
// and the logs backend (Loki's API).
package remoteapi

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

	config_util "github.com/prometheus/common/config"
)

// Config is one backend and the budget of each read.
type Config struct {
	// Name says what the backend is in errors ("metrics backend").
	Name string
	// URL is the base of the backend's API.
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

// Client reads from one backend within its budget.
type Client struct {
	cfg  Config
	base *url.URL
	// rt sends within the budget.
	rt  http.RoundTripper
	sem chan struct{}
}

// New returns the client of cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(cfg.URL, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%s URL %q: want http(s)://host[/path]", cfg.Name, cfg.URL)
	}
	if cfg.Timeout <= 0 || cfg.MaxConcurrent <= 0 || cfg.MaxResponseBytes <= 0 {
		return nil, fmt.Errorf("%s %s: timeout, max concurrent and max response bytes must be positive", cfg.Name, cfg.URL)
	}
	rt, err := config_util.NewRoundTripperFromConfig(cfg.HTTP, "lumen")
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", cfg.Name, cfg.URL, err)
	}
	c := &Client{cfg: cfg, base: u, sem: make(chan struct{}, cfg.MaxConcurrent)}
	c.rt = &budgeted{c: c, next: rt}
	return c, nil
}

// Base is the backend's base URL.
func (c *Client) Base() *url.URL { return c.base }

// URL is the backend's base URL as configured, for messages.
func (c *Client) URL() string { return c.cfg.URL }

// Name is what the backend is ("metrics backend").
func (c *Client) Name() string { return c.cfg.Name }

// RoundTripper sends within the budget.
func (c *Client) RoundTripper() http.RoundTripper { return c.rt }

// ErrTooLarge is a read whose answer passes MaxResponseBytes.
var ErrTooLarge = errors.New("answer larger than the backend's max response bytes")

// budgeted sends a read within the backend's budget: a slot among
// MaxConcurrent, the timeout, the configured headers and the size cap.
type budgeted struct {
	c    *Client
	next http.RoundTripper
}

func (t *budgeted) RoundTrip(req *http.Request) (*http.Response, error) {
	cfg := t.c.cfg
	ctx, cancel := context.WithTimeout(req.Context(), cfg.Timeout)
	select {
	case t.c.sem <- struct{}{}:
	case <-ctx.Done():
		cancel()
		return nil, fmt.Errorf("waiting for one of its %d reads at once: %w", cfg.MaxConcurrent, ctx.Err())
	}
	release := func() { <-t.c.sem; cancel() }
	req = req.Clone(ctx)
	for k, v := range cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		release()
		return nil, err
	}
	if resp.ContentLength > cfg.MaxResponseBytes {
		_ = resp.Body.Close()
		release()
		return nil, fmt.Errorf("%w (%d bytes, at most %d)", ErrTooLarge, resp.ContentLength, cfg.MaxResponseBytes)
	}
	resp.Body = &capped{r: resp.Body, left: cfg.MaxResponseBytes, release: release, max: cfg.MaxResponseBytes}
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

// Get reads path (under the base URL) with query q: the answer's status
// and body. A status that is not 2xx is an *HTTPError.
func (c *Client) Get(ctx context.Context, path string, q url.Values, header http.Header) ([]byte, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.cfg.Name, c.cfg.URL, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.cfg.Name, c.cfg.URL, err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.cfg.Name, c.cfg.URL, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &HTTPError{Backend: c.cfg.Name + " " + c.cfg.URL, Status: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	return body, nil
}

// HTTPError is a backend's answer that is not a success.
type HTTPError struct {
	Backend string
	Status  int
	Body    string
}

func (e *HTTPError) Error() string {
	b := e.Body
	if len(b) > 512 {
		b = b[:512] + "…"
	}
	return fmt.Sprintf("%s: %d %s: %s", e.Backend, e.Status, http.StatusText(e.Status), b)
}

// forwarded are the request headers the proxy passes on.
var forwarded = []string{"Accept", "Accept-Encoding", "Content-Type", "Content-Length", "User-Agent"}

// Fail writes the error a proxy answers when the backend could not be
// read: its status (503, 504 on the timeout, 502 past the cap), its kind
// (unavailable, timeout, execution) and the message, which names the
// backend.
type Fail func(w http.ResponseWriter, code int, kind, msg string)

// Proxy passes requests on to the backend: path maps the request's path
// to the backend's (under its base URL). Only what describes a request
// goes on (Accept, Content-Type, …): Lumen's own credentials and a
// client's tenant header (X-Scope-OrgID) stay here — the backend's are the
// configured ones. The answer is read whole within the cap before it is
// passed on, so that one past the cap is an error, not a cut body.
func (c *Client) Proxy(path func(string) string, fail Fail) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite:   c.rewrite(path, forwarded),
		Transport: c.rt,
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
		ErrorHandler: c.errorHandler(fail),
	}
}

func (c *Client) rewrite(path func(string) string, pass []string) func(*httputil.ProxyRequest) {
	return func(r *httputil.ProxyRequest) {
		r.Out.URL.Scheme, r.Out.URL.Host = c.base.Scheme, c.base.Host
		r.Out.URL.Path = c.base.Path + path(r.In.URL.Path)
		r.Out.URL.RawPath = ""
		r.Out.Host = c.base.Host
		h := http.Header{}
		for _, k := range pass {
			if v := r.In.Header.Values(k); len(v) > 0 {
				h[k] = v
			}
		}
		r.Out.Header = h
	}
}

func (c *Client) errorHandler(fail Fail) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, _ *http.Request, err error) {
		code, kind := http.StatusServiceUnavailable, "unavailable"
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			code, kind = http.StatusGatewayTimeout, "timeout"
		case errors.Is(err, ErrTooLarge):
			code, kind = http.StatusBadGateway, "execution"
		}
		fail(w, code, kind, c.cfg.Name+" "+c.cfg.URL+": "+err.Error())
	}
}
