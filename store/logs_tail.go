package store

import (
	"errors"
	"slices"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
)

// ErrTailBehind ends a tail whose reader did not keep up: its buffer was
// full, so lines would have been lost. The reader should say so and
// start again.
var ErrTailBehind = errors.New("tail fell behind: lines came faster than they were read")

// LogTail delivers the lines of matching streams as they are written, in
// the order each request was written. Lines go to C; when C is closed, Err
// says why.
type LogTail struct {
	C        <-chan LogStream
	c        chan LogStream
	matchers []*labels.Matcher
	hub      *tailHub
	err      error
}

// Err returns why C was closed: nil after Close, ErrTailBehind, or
// ErrClosed when the store closed.
func (t *LogTail) Err() error {
	t.hub.mu.Lock()
	defer t.hub.mu.Unlock()
	return t.err
}

// Close stops the tail.
func (t *LogTail) Close() { t.hub.remove(t, nil) }

type tailHub struct {
	mu   sync.Mutex
	subs map[*LogTail]struct{}
}

func (h *tailHub) init() { h.subs = map[*LogTail]struct{}{} }

// TailLogs starts delivering the lines of streams that match ms, written
// from now on. buffer is how many requests' worth of lines may wait.
func (db *DB) TailLogs(ms []*labels.Matcher, buffer int) *LogTail {
	c := make(chan LogStream, max(buffer, 1))
	t := &LogTail{C: c, c: c, matchers: ms, hub: &db.logs.tail}
	db.logs.tail.mu.Lock()
	db.logs.tail.subs[t] = struct{}{}
	db.logs.tail.mu.Unlock()
	return t
}

func (h *tailHub) remove(t *LogTail, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[t]; !ok {
		return
	}
	delete(h.subs, t)
	t.err = err
	close(t.c)
}

// publish hands a request's lines of one stream to every matching tail,
// without ever blocking the writer: a tail whose buffer is full is ended
// with ErrTailBehind.
func (h *tailHub) publish(lset labels.Labels, es []LogEntry) {
	h.mu.Lock()
	if len(h.subs) == 0 {
		h.mu.Unlock()
		return
	}
	var behind []*LogTail
	for t := range h.subs {
		if !matchesAll(lset, t.matchers) {
			continue
		}
		select {
		case t.c <- LogStream{Labels: lset, Entries: slices.Clone(es)}:
		default:
			behind = append(behind, t)
		}
	}
	h.mu.Unlock()
	for _, t := range behind {
		h.remove(t, ErrTailBehind)
	}
}

func (h *tailHub) closeAll() {
	h.mu.Lock()
	all := make([]*LogTail, 0, len(h.subs))
	for t := range h.subs {
		all = append(all, t)
	}
	h.mu.Unlock()
	for _, t := range all {
		h.remove(t, ErrClosed)
	}
}
