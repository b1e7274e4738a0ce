// Package limits is where Lumen's limits are defined: Limits, what the
// store takes in (label shape, active series and streams, series per
// metric) and what one query may gather (series per query, trace bytes and
// log lines), checked once in the store for every ingest path and query
// API; and Limiter, the work a server takes on at once. A Limiter runs up
// to n requests, lets up to q more wait for a slot, and turns the rest away
// at once, so that load past capacity costs the client an error (503 with
// Retry-After) instead of costing the server memory. The per-API settings
// (concurrency, query length, step, limit=) are each API's config,
// validated there; docs/limits.md lists them all.
package limits

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrBusy marks a request turned away: the limiter's queue was full, or
// its context ran out while it waited for a slot.
var ErrBusy = errors.New("too many requests at once")

// Limiter admits up to a fixed number of requests at once and queues a
// fixed number more. A nil Limiter admits everything.
type Limiter struct {
	what  string
	run   chan struct{}
	queue chan struct{}
}

// New returns a limiter that runs up to running requests at once and lets
// up to queued more wait. what names the requests in errors ("PromQL
// queries"). running must be positive; queued may be 0 (no waiting).
func New(what string, running, queued int) *Limiter {
	return &Limiter{what: what, run: make(chan struct{}, max(running, 1)), queue: make(chan struct{}, max(queued, 0))}
}

// Acquire admits a request, at once while fewer than the limiter's running
// bound are admitted; otherwise it waits in the queue for a slot, if the
// queue has room, until ctx is done. The error wraps ErrBusy when the
// queue is full or ctx's deadline passed while waiting, and is ctx's error
// when ctx was canceled. On success, release must be called once the
// request is done.
func (l *Limiter) Acquire(ctx context.Context) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	select {
	case l.run <- struct{}{}:
		return l.slot(), nil
	default:
	}
	select {
	case l.queue <- struct{}{}:
	default:
		return nil, fmt.Errorf("%w: %d %s are running and %d waiting; retry later", ErrBusy, cap(l.run), l.what, cap(l.queue))
	}
	defer func() { <-l.queue }()
	select {
	case l.run <- struct{}{}:
		return l.slot(), nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: no slot for %s freed in time (%d running); retry later", ErrBusy, l.what, cap(l.run))
		}
		return nil, ctx.Err()
	}
}

// slot returns the release of one admitted request; calling it more than
// once frees the slot once.
func (l *Limiter) slot() func() {
	var once sync.Once
	return func() { once.Do(func() { <-l.run }) }
}

// Running reports the requests admitted now.
func (l *Limiter) Running() int {
	if l == nil {
		return 0
	}
	return len(l.run)
}
