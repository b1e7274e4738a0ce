package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// shipper sends the buffer's records to the server's OTLP/HTTP endpoint in
// order, one at a time: the next is sent only when the server has
// acknowledged the one before, so a restart resumes exactly where shipping
// stopped. 429 and 503 are retried after the server's Retry-After; other
// failures after an exponential backoff with jitter; a record the server
// refuses as malformed (another 4xx) is dropped, counted and logged, since
// sending it again cannot succeed.
type shipper struct {
	buf                    *Buffer
	server                 string // base URL, e.g. http://lumen:4318
	client                 *http.Client
	log                    *zap.Logger
	m                      *Metrics
	minBackoff, maxBackoff time.Duration
}

func (s *shipper) run(ctx context.Context) {
	for {
		rec, err := s.buf.Next(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, ErrClosed) {
				s.log.Error("read the buffer", zap.Error(err))
			}
			return
		}
		backoff := s.minBackoff
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				s.m.retries.Inc()
			}
			wait, permanent, err := s.send(ctx, rec)
			if err == nil || permanent {
				if err != nil {
					s.log.Error("the server refused a request; dropping it", zap.Stringer("signal", rec.Signal), zap.Int("items", rec.Items), zap.Error(err))
					s.m.dropped(rec.Signal, "rejected", rec.Items)
				} else {
					s.m.itemsShipped.WithLabelValues(rec.Signal.String()).Add(float64(rec.Items))
				}
				if err := s.buf.Ack(rec); err != nil {
					s.log.Error("save the buffer's cursor", zap.Error(err))
				}
				break
			}
			if wait == 0 {
				wait = backoff/2 + rand.N(backoff/2+1)
				backoff = min(2*backoff, s.maxBackoff)
			}
			if attempt == 0 || attempt%10 == 0 {
				s.log.Warn("ship to the server failed; retrying", zap.Stringer("signal", rec.Signal), zap.Duration("in", wait), zap.Int("attempt", attempt+1), zap.Error(err))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

var paths = map[Signal]string{SignalLogs: "/v1/logs", SignalTraces: "/v1/traces", SignalMetrics: "/v1/metrics"}

// send posts one record. It returns the server's Retry-After (0 when it
// gave none), whether a failure is permanent, and the failure.
func (s *shipper) send(ctx context.Context, rec Record) (time.Duration, bool, error) {
	path, ok := paths[rec.Signal]
	if !ok {
		return 0, true, fmt.Errorf("record of unknown signal %d", rec.Signal)
	}
	// A request under way is finished when the agent stops (bounded by the
	// client's timeout): cut off, the server may have stored it and a
	// restarted agent would send it twice.
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, s.server+path, bytes.NewReader(rec.Body))
	if err != nil {
		return 0, true, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "zstd")
	resp, err := s.client.Do(req)
	if err != nil {
		s.m.requests.WithLabelValues(rec.Signal.String(), "error").Inc()
		return 0, false, fmt.Errorf("post %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	s.m.requests.WithLabelValues(rec.Signal.String(), strconv.Itoa(resp.StatusCode)).Inc()
	switch {
	case resp.StatusCode/100 == 2:
		return 0, false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable ||
		resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout:
		return retryAfter(resp.Header.Get("Retry-After"), time.Now()), false, fmt.Errorf("post %s: %s", path, resp.Status)
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout:
		return 0, true, fmt.Errorf("post %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	default:
		return 0, false, fmt.Errorf("post %s: %s", path, resp.Status)
	}
}

// retryAfter reads Retry-After: seconds or an HTTP date; 0 when absent or
// unreadable. It is capped at five minutes.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), 5*time.Minute)
}
