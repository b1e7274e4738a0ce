// Package admit bounds what an HTTP ingest path takes on at once — the
// requests it writes, the bytes it holds — and how long a client may take
// to send a body: past a bound a request waits a little, then is told to
// come back later (429 with Retry-After) instead of queueing without
// limit.
package admit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/semaphore"
)

// Gate admits up to n requests at once.
type Gate struct {
	slots chan struct{}
	wait  time.Duration
	what  string
}

// New returns a gate for n requests at once; a request beyond them waits
// up to wait. what names the requests in the 429 message.
func New(n int, wait time.Duration, what string) *Gate {
	return &Gate{slots: make(chan struct{}, n), wait: wait, what: what}
}

// Enter admits r or answers it: it returns false after writing 429 (or
// when the client went away), true with a slot the caller must Leave.
func (g *Gate) Enter(w http.ResponseWriter, r *http.Request) bool {
	select {
	case g.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return true
	case <-t.C:
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("lumen is overloaded: %d %s are being written; retry later", cap(g.slots), g.what), http.StatusTooManyRequests)
		return false
	case <-r.Context().Done():
		return false
	}
}

// Leave frees the slot of an admitted request.
func (g *Gate) Leave() { <-g.slots }

// Bytes bounds the request bytes held in memory at once (bodies being
// read, and what they decode to): past the bound a request waits a
// little, then is told to come back later (429 with Retry-After). A slow
// client holds only what it declared it would send, and only until the
// read deadline.
type Bytes struct {
	sem  *semaphore.Weighted
	max  int64
	wait time.Duration
	what string
}

// NewBytes returns a bound of max bytes; a request waits up to wait for
// room. what names the requests in the 429 message.
func NewBytes(max int64, wait time.Duration, what string) *Bytes {
	return &Bytes{sem: semaphore.NewWeighted(max), max: max, wait: wait, what: what}
}

// Acquire reserves n bytes (at most the bound) or answers the request: it
// returns false after writing 429 (or when the client went away). The
// caller releases what it reserved with Release.
func (b *Bytes) Acquire(w http.ResponseWriter, r *http.Request, n int64) bool {
	n = min(max(n, 1), b.max)
	if b.sem.TryAcquire(n) {
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), b.wait)
	defer cancel()
	if err := b.sem.Acquire(ctx, n); err != nil {
		if r.Context().Err() == nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, fmt.Sprintf("lumen is overloaded: %s of %s are in memory; retry later", fmtMiB(b.max), b.what), http.StatusTooManyRequests)
		}
		return false
	}
	return true
}

// Release frees n bytes reserved by Acquire.
func (b *Bytes) Release(n int64) { b.sem.Release(min(max(n, 1), b.max)) }

func fmtMiB(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// ErrReadTimeout is returned by ReadBody when the client did not send the
// body within the deadline.
var ErrReadTimeout = errors.New("request body not received in time")

// ReadBody reads r's body, at most limit+1 bytes (the caller tells "over
// the limit" by the length), within timeout: a client that dribbles its
// body is cut off with ErrReadTimeout (answered 408) instead of holding
// memory and a slot.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, error) {
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(timeout)) == nil
	body, err := readAll(io.LimitReader(r.Body, limit+1), r.ContentLength, limit)
	if err != nil {
		// The connection cannot be reused: the rest of the body is not
		// read (the deadline stays, so the server does not wait for it).
		w.Header().Set("Connection", "close")
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w: read for %s", ErrReadTimeout, timeout)
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if deadline {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return body, nil
}

// readAll reads rd to its end into a buffer sized from the request's
// Content-Length when it gives one within the limit (one byte more, to see
// the end without growing), instead of growing from 512 bytes by doubling:
// a remote-write body then costs its size once, not about twice in garbage.
// The declared size is reserved by Acquire before the read (within the
// in-flight bound), so a client that declares more than it sends holds no
// more memory than it was admitted for.
func readAll(rd io.Reader, declared, limit int64) ([]byte, error) {
	size := int64(512)
	if declared >= 0 && declared <= limit {
		size = declared + 1
	}
	b := make([]byte, 0, size)
	for {
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				return b, nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// Declared is the size a request says its body has: its Content-Length, or
// limit when it does not say (chunked) or says more.
func Declared(r *http.Request, limit int64) int64 {
	if r.ContentLength < 0 || r.ContentLength > limit {
		return limit
	}
	return r.ContentLength
}
