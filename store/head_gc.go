package store

import (
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"go.uber.org/zap"
)

// Head truncation, as Prometheus' head garbage collection: a series or
// stream that holds nothing unwritten and has taken nothing for
// HeadIdleTimeout leaves the head, its postings and the next WAL
// generation. It runs at each checkpoint, with commits stopped, so no
// request is between finding a series and writing to it — and a series
// just found or made counts as used (lastAppend), so one a request holds
// is never removed under it. If it comes back it gets a new ref; queries
// merge series by their labels.

// removeIdle removes the idle series; h.state.mu is held exclusively.
func (h *metricsHead) removeIdle() {
	since := h.db.idleSince()
	h.mu.Lock()
	defer h.mu.Unlock()
	gone := map[*memSeries]bool{}
	for ref, s := range h.byRef {
		if s.lastAppend.Load() >= since || !s.empty() {
			continue
		}
		gone[s] = true
		s.gone = true
		delete(h.byRef, ref)
		unbucket(h.byHash, s.lset.Hash(), s)
		name := s.lset.Get(labels.MetricName)
		if h.perMetric[name]--; h.perMetric[name] <= 0 {
			delete(h.perMetric, name)
		}
	}
	if len(gone) == 0 {
		return
	}
	h.unindex(gone)
	isGone := func(s *memSeries) bool { return s.gone }
	h.ordered = slices.DeleteFunc(h.ordered, isGone) // ranks keep their order
	h.unordered = slices.DeleteFunc(h.unordered, isGone)
	h.removed.Add(uint64(len(gone)))
	h.log.Info("idle series left the head", zap.Int("series", len(gone)), zap.Int("left", len(h.byRef)))
}

// empty reports whether the series holds nothing that is not in a
// partition (no open chunk, no held chunk, nothing cut but unwritten, no
// out-of-order samples).
func (s *memSeries) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return (s.open.chunk == nil || s.open.chunk.NumSamples() == 0) && s.held.n == 0 && len(s.pending) == 0 && len(s.ooo) == 0
}

// unindex drops the gone series from the postings, each list filtered
// once; h.mu is held.
func (h *metricsHead) unindex(gone map[*memSeries]bool) {
	h.epoch++
	touched := map[string]map[string]bool{}
	for s := range gone {
		s.lset.Range(func(l labels.Label) {
			if touched[l.Name] == nil {
				touched[l.Name] = map[string]bool{}
			}
			touched[l.Name][l.Value] = true
		})
	}
	for name, vals := range touched {
		for v := range vals {
			rest := slices.DeleteFunc(h.postings[name][v], func(s *memSeries) bool { return gone[s] })
			if len(rest) == 0 {
				delete(h.postings[name], v)
				if l := h.values[name]; l != nil {
					l.stale++
				}
				continue
			}
			h.postings[name][v] = slices.Clip(rest)
		}
		if len(h.postings[name]) == 0 {
			delete(h.postings, name)
			if l := h.values[name]; l != nil {
				for _, mv := range l.matched {
					h.matchedSize -= len(mv.values)
				}
				delete(h.values, name)
			}
		}
	}
}

// unbucket removes x from the hash bucket of a head's byHash map.
func unbucket[T comparable](byHash map[uint64][]T, hash uint64, x T) {
	if rest := slices.DeleteFunc(byHash[hash], func(y T) bool { return y == x }); len(rest) > 0 {
		byHash[hash] = rest
	} else {
		delete(byHash, hash)
	}
}

// removeIdle removes the idle streams; h.state.mu is held exclusively.
func (h *logHead) removeIdle() {
	since := h.db.idleSince()
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for ref, s := range h.byRef {
		s.mu.Lock()
		empty := len(s.entries) == 0 && len(s.pending) == 0
		s.mu.Unlock()
		if s.lastWrite.Load() >= since || !empty {
			continue
		}
		delete(h.byRef, ref)
		unbucket(h.byHash, s.lset.Hash(), s)
		n++
	}
	if n > 0 {
		h.removed.Add(uint64(n))
		h.log.Info("idle streams left the head", zap.Int("streams", n), zap.Int("left", len(h.byRef)))
	}
}
