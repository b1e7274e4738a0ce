// Package httpsend sends a durable queue's requests (internal/sendq) to a
// backend with an HTTP POST each: Loki push, OTLP/HTTP. The backend's
// status decides: 2xx taken; a status the protocol calls retryable, or a
// network error, retried after the Retry-After the backend gives; any
// other refusal final (the request is dropped and counted).
package httpsend

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	config_util "github.com/prometheus/common/config"

	"github.com/lumenobs/lumen/internal/sendq"
)

// Config is where and how requests are sent.
type Config struct {
	// What names the backend in errors ("loki push", "OTLP").
	What string
	// URL is the endpoint; ContentType the requests' type.
	URL         string
	ContentType string
	// HTTP is the client's auth and TLS, as Prometheus' configuration
	// takes them; Headers are sent with every request.
	HTTP    config_util.HTTPClientConfig
	Headers map[string]string
	// Timeout bounds one request.
	Timeout time.Duration
	// Retryable says whether a refusal with this status is retried.
	Retryable func(status int) bool
}

// OTLPRetryable is the OTLP/HTTP specification's list: 429, 502, 503, 504.
func OTLPRetryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// LokiRetryable is what Loki's clients retry: 429 and every 5xx.
func LokiRetryable(status int) bool {
	return status == http.StatusTooManyRequests || status/100 == 5
}

// New is the queue's send function for cfg.
func New(cfg Config) (sendq.Send, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%s URL %q: want http(s)://host/path", cfg.What, cfg.URL)
	}
	rt, err := config_util.NewRoundTripperFromConfig(cfg.HTTP, "lumen")
	if err != nil {
		return nil, fmt.Errorf("%s to %s: %w", cfg.What, cfg.URL, err)
	}
	client := &http.Client{Transport: rt, Timeout: cfg.Timeout}
	return func(ctx context.Context, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			return sendq.Permanent(fmt.Errorf("%s to %s: %w", cfg.What, cfg.URL, err))
		}
		req.Header.Set("Content-Type", cfg.ContentType)
		req.Header.Set("User-Agent", "lumen")
		for k, v := range cfg.Headers {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%s to %s: %w", cfg.What, cfg.URL, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		_ = resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return nil
		}
		err = fmt.Errorf("%s to %s: %s: %s", cfg.What, cfg.URL, resp.Status, strings.TrimSpace(string(msg)))
		if !cfg.Retryable(resp.StatusCode) {
			return sendq.Permanent(err)
		}
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
			return sendq.RetryAfter(err, time.Duration(s)*time.Second)
		}
		return err
	}, nil
}
