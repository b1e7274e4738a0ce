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
	"sync"
	"time"

	"go.uber.org/zap"
)

// shipper sends the buffer's records to the server's OTLP/HTTP endpoint in
// order, one at a time: the next is sent only when the server has
// acknowledged the one before, so a restart resumes exactly where shipping
// stopped. 429 and 503 are retried after the server's Retry-After; other
// failures after an exponential backoff with jitter; a record the server
// refuses as malformed (another 4xx but 401 and 403, which are about the
// agent's credentials and retried) is dropped, counted and logged, since
// sending it again cannot succeed. It never gives up: a record it cannot
// read is skipped (counted), and a buffer that cannot be read is tried
// again after a backoff, for as long as the agent runs. health tells
// /-/ready how it goes.
type shipper struct {
	buf                    *Buffer
	server                 string // base URL, e.g. http://lumen:4318
	client                 *http.Client
	log                    *zap.Logger
	m                      *Metrics
	minBackoff, maxBackoff time.Duration
	health                 shipHealth
	token                  *tokenFile // nil: no Authorization header
	tenant                 string     // X-Scope-OrgID when set
	// shards, when not nil, are the server's replicas: spans go to their
	// trace's replica (ship.shard_by_trace_id).
	shards *endpoints
}

func (s *shipper) run(ctx context.Context) {
	s.health.setRunning(true)
	defer s.health.setRunning(false)
	bo := backoff{min: s.minBackoff, max: s.maxBackoff}
	for {
		rec, err := s.buf.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return
			}
			if !s.readFailed(ctx, err, &bo) {
				return
			}
			continue
		}
		bo.reset()
		if !s.ship(ctx, rec) {
			return
		}
	}
}

// readFailed handles a failed read of the buffer: a record that cannot be
// read was skipped (it is logged, and shipping goes on); another failure
// is logged, counted and tried again after a backoff. It returns false
// when ctx ended.
func (s *shipper) readFailed(ctx context.Context, err error, bo *backoff) bool {
	if errors.Is(err, ErrCorrupt) {
		s.log.Error("skipped an unreadable record in the buffer", zap.Error(err))
		return true
	}
	s.m.readErrors.Inc()
	s.health.failed(time.Now(), err)
	wait := bo.next()
	if bo.attempts == 1 || bo.attempts%10 == 0 {
		s.log.Error("read the buffer; retrying", zap.Duration("in", wait), zap.Int("attempt", bo.attempts), zap.Error(err))
	}
	return sleep(ctx, wait)
}

// ship sends one record until the server takes it (or refuses it for
// good). It returns false when ctx ended first.
func (s *shipper) ship(ctx context.Context, rec Record) bool {
	if s.shards != nil {
		return s.shipSharded(ctx, rec)
	}
	bo := backoff{min: s.minBackoff, max: s.maxBackoff}
	for {
		if bo.attempts > 0 {
			s.m.retries.Inc()
		}
		wait, permanent, err := s.send(ctx, rec)
		if err == nil || permanent {
			s.shipped(rec, err)
			return true
		}
		s.health.failed(time.Now(), err)
		if bw := bo.next(); wait == 0 {
			wait = bw
		}
		if bo.attempts == 1 || bo.attempts%10 == 0 {
			s.log.Warn("ship to the server failed; retrying", zap.Stringer("signal", rec.Signal), zap.Duration("in", wait), zap.Int("attempt", bo.attempts), zap.Error(err))
		}
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// shipped counts a record the server answered for (refused, when err is
// not nil) and moves the buffer past it.
func (s *shipper) shipped(rec Record, err error) {
	s.health.ok()
	if err != nil {
		s.log.Error("the server refused a request; dropping it", zap.Stringer("signal", rec.Signal), zap.Int("items", rec.Items), zap.Error(err))
		s.m.dropped(rec.Signal, "rejected", rec.Items)
	} else {
		s.m.itemsShipped.WithLabelValues(rec.Signal.String()).Add(float64(rec.Items))
	}
	if err := s.buf.Ack(rec); err != nil {
		s.log.Error("save the buffer's cursor", zap.Error(err))
	}
}

// sleep waits for d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff is exponential with jitter: each wait is between half and all
// of a step that doubles from min up to max.
type backoff struct {
	min, max time.Duration
	step     time.Duration
	attempts int
}

func (b *backoff) next() time.Duration {
	if b.step == 0 {
		b.step = b.min
	}
	d := b.step/2 + rand.N(b.step/2+1)
	b.step = min(2*b.step, b.max)
	b.attempts++
	return d
}

func (b *backoff) reset() { *b = backoff{min: b.min, max: b.max} }

// shipHealth is how shipping goes, for /-/ready: whether the shipper runs,
// and since when it has failed to ship (zero while it ships or has
// nothing to ship).
type shipHealth struct {
	mu           sync.Mutex
	running      bool
	failingSince time.Time
	lastErr      error
}

func (h *shipHealth) setRunning(running bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running = running
}

func (h *shipHealth) failed(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failingSince.IsZero() {
		h.failingSince = now
	}
	h.lastErr = err
}

func (h *shipHealth) ok() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failingSince, h.lastErr = time.Time{}, nil
}

// check returns why the agent is not ready: the shipper is not running,
// or it has failed to ship for longer than after.
func (h *shipHealth) check(now time.Time, after time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case !h.running:
		return errors.New("the shipper is not running")
	case !h.failingSince.IsZero() && now.Sub(h.failingSince) > after:
		return fmt.Errorf("nothing shipped to the server for %s: %w", now.Sub(h.failingSince).Round(time.Second), h.lastErr)
	}
	return nil
}

var paths = map[Signal]string{SignalLogs: "/v1/logs", SignalTraces: "/v1/traces", SignalMetrics: "/v1/metrics"}

// send posts one record to the server. It returns the server's
// Retry-After (0 when it gave none), whether a failure is permanent, and
// the failure.
func (s *shipper) send(ctx context.Context, rec Record) (time.Duration, bool, error) {
	return s.post(ctx, s.client, s.server, rec.Signal, rec.Body)
}

// post posts one compressed OTLP request of signal sig to base (the
// server, or one of its replicas) with client.
func (s *shipper) post(ctx context.Context, client *http.Client, base string, sig Signal, body []byte) (time.Duration, bool, error) {
	path, ok := paths[sig]
	if !ok {
		return 0, true, fmt.Errorf("record of unknown signal %d", sig)
	}
	// A request under way is finished when the agent stops (bounded by the
	// client's timeout): cut off, the server may have stored it and a
	// restarted agent would send it twice.
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, true, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "zstd")
	if s.tenant != "" {
		req.Header.Set("X-Scope-OrgID", s.tenant)
	}
	if s.token != nil {
		tok, err := s.token.get()
		if err != nil {
			return 0, false, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		s.m.requests.WithLabelValues(sig.String(), "error").Inc()
		return 0, false, fmt.Errorf("post %s: %w", path, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	s.m.requests.WithLabelValues(sig.String(), strconv.Itoa(resp.StatusCode)).Inc()
	switch {
	case resp.StatusCode/100 == 2:
		return 0, false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable ||
		resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout:
		return retryAfter(resp.Header.Get("Retry-After"), time.Now()), false, fmt.Errorf("post %s: %s", path, resp.Status)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		// The agent's credentials, not the record: kept and sent again
		// (a rotated token, a fixed auth file), the agent unready meanwhile.
		if s.token != nil {
			s.token.reread()
		}
		return 0, false, fmt.Errorf("post %s: %s: %s (check token_file and the server's auth file)", path, resp.Status, strings.TrimSpace(string(answer)))
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout:
		return 0, true, fmt.Errorf("post %s: %s: %s", path, resp.Status, strings.TrimSpace(string(answer)))
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
