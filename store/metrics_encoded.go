package store

import (
	"bytes"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// AppendLabelKey appends one label to key, a label set in the form
// labels.Labels.Bytes gives it (each name and value preceded by its
// length), so that a receiver can find a series the head holds from the
// label pairs of a request without building its labels. Labels must be
// added in their sorted order for the key to match a series.
func AppendLabelKey(key, name, value []byte) []byte {
	key = appendLabelSize(key, len(name))
	key = append(key, name...)
	key = appendLabelSize(key, len(value))
	return append(key, value...)
}

// appendLabelSize is the length prefix of labels.Labels' encoding: one
// byte below 255, else 255 and three bytes little-endian.
func appendLabelSize(b []byte, n int) []byte {
	if n < 255 {
		return append(b, byte(n))
	}
	return append(b, 255, byte(n), byte(n>>8), byte(n>>16))
}

// AppendEncoded adds a float sample, as Append does, to the series the head
// holds whose labels are key (built with AppendLabelKey). found is false,
// and nothing is appended, when the head holds no such series (a new
// series, one idle long enough to leave the head, labels not in sorted
// order) or holds one whose labels fail remote write's checks of a series
// (no metric name, an empty name, a name or value not in UTF-8: it may
// have come another way): the caller then builds the labels, checks them
// and calls Append. So a key found needs no check of its labels: they are
// those of a series that passed them.
func (a *appender) AppendEncoded(key []byte, t int64, v float64) (found bool, err error) {
	h := a.db.metrics
	hash := xxhash.Sum64(key)
	h.mu.RLock()
	var s *memSeries
	for _, c := range h.byHash[hash] {
		a.cmp = c.lset.Bytes(a.cmp)
		if bytes.Equal(a.cmp, key) {
			s = c
			break
		}
	}
	h.mu.RUnlock()
	if s == nil || !s.plain {
		return false, nil
	}
	if err := a.window.CheckMillis(t); err != nil {
		return true, fmt.Errorf("sample of %s: %w", s.lset, err)
	}
	s.lastAppend.Store(a.window.now.UnixNano())
	_, err = a.appendTo(s, point{t: t, v: v})
	return true, err
}
