package store

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
)

// postingsCache keeps a partition's postings by label value (the refs of
// one name=value, sorted), so that a selection asked again — a dashboard's
// refresh, the correlated answer of one trace after another — does not
// iterate the same posting keys in Badger each time. Postings are only ever
// added to a partition (series and streams are never removed from one; a
// partition is dropped whole), so an entry is valid until the partition's
// next write that adds postings: every such write bumps gen once committed,
// and an entry read from a snapshot older than gen is read again.
type postingsCache struct {
	gen  atomic.Uint64
	mu   sync.Mutex
	m    map[string]cachedPostings
	refs int // refs held, bounded by maxCachedPostingRefs
	// selected keeps whole selections (the series that match a set of
	// matchers, with their labels), by selectionKey, on the same terms.
	selected map[string]cachedSelection
}

type cachedSelection struct {
	gen    uint64
	series []refLabels // shared: never changed
}

// refLabels is a partition's series: its ref there and its labels.
type refLabels struct {
	ref  uint64
	lset labels.Labels
}

type cachedPostings struct {
	gen  uint64
	refs []uint64 // shared: never changed
}

// maxCachedPostingRefs bounds the refs a partition's postings cache holds
// (8 bytes each; a selection's series count one each, their labels being
// those of the partition's series cache): past it, the cache starts over.
const maxCachedPostingRefs = 1 << 20

// postingsView is a read's use of a partition's postings cache: gen is
// the cache's generation loaded before the read's transaction began, so
// that what the read stores is never newer than the generation it is
// stored under. A nil cache reads every posting from Badger.
type postingsView struct {
	c   *postingsCache
	gen uint64
}

// view returns the cache's view for a read about to begin.
func (c *postingsCache) view() postingsView { return postingsView{c: c, gen: c.gen.Load()} }

// written marks postings added to the partition (after they are
// committed).
func (c *postingsCache) written() { c.gen.Add(1) }

func (v postingsView) get(key []byte) ([]uint64, bool) {
	if v.c == nil {
		return nil, false
	}
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	e, ok := v.c.m[string(key)]
	if !ok || e.gen != v.c.gen.Load() {
		return nil, false
	}
	return e.refs, true
}

func (v postingsView) getSelection(key string) ([]refLabels, bool) {
	if v.c == nil {
		return nil, false
	}
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	e, ok := v.c.selected[key]
	if !ok || e.gen != v.c.gen.Load() {
		return nil, false
	}
	return e.series, true
}

func (v postingsView) putSelection(key string, series []refLabels) {
	if v.c == nil || len(series) > maxCachedPostingRefs/4 {
		return
	}
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	if v.gen != v.c.gen.Load() {
		return
	}
	if v.c.selected == nil || v.c.refs+len(series) > maxCachedPostingRefs {
		v.c.m, v.c.selected, v.c.refs = map[string]cachedPostings{}, map[string]cachedSelection{}, 0
	}
	if old, ok := v.c.selected[key]; ok {
		v.c.refs -= len(old.series)
	}
	v.c.selected[key] = cachedSelection{gen: v.gen, series: series}
	v.c.refs += len(series)
}

func (v postingsView) put(key []byte, refs []uint64) {
	if v.c == nil || len(refs) > maxCachedPostingRefs/4 {
		return
	}
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	if v.gen != v.c.gen.Load() {
		return // postings were added since the read began
	}
	if v.c.m == nil || v.c.refs+len(refs) > maxCachedPostingRefs {
		v.c.m, v.c.selected, v.c.refs = map[string]cachedPostings{}, map[string]cachedSelection{}, 0
	}
	if old, ok := v.c.m[string(key)]; ok {
		v.c.refs -= len(old.refs)
	}
	v.c.m[string(key)] = cachedPostings{gen: v.gen, refs: refs}
	v.c.refs += len(refs)
}

// selectionCache keeps the head's series selections by their matchers,
// valid for one epoch of the head's postings (see metricsHead.epoch).
type selectionCache struct {
	mu     sync.Mutex
	epoch  uint64
	m      map[string][]*memSeries
	series int // held, bounded by maxCachedSelected
}

// maxCachedSelected bounds the series pointers the head keeps for
// selections (8 bytes each): past it, the cache starts over.
const maxCachedSelected = 1 << 20

// selectionKey is the matchers' identity: each one's type, name and value.
func selectionKey(ms []*labels.Matcher) string {
	var b []byte
	for _, m := range ms {
		b = append(b, byte(m.Type))
		b = binary.AppendUvarint(b, uint64(len(m.Name)))
		b = append(b, m.Name...)
		b = binary.AppendUvarint(b, uint64(len(m.Value)))
		b = append(b, m.Value...)
	}
	return string(b)
}

func (c *selectionCache) get(key string, epoch uint64) ([]*memSeries, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return nil, false
	}
	got, ok := c.m[key]
	return got, ok
}

// put keeps a selection made at epoch; the slice is not changed after.
func (c *selectionCache) put(key string, epoch uint64, series []*memSeries) {
	if len(series) > maxCachedSelected/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || c.epoch != epoch || c.series+len(series) > maxCachedSelected {
		c.m, c.epoch, c.series = map[string][]*memSeries{}, epoch, 0
	}
	if _, ok := c.m[key]; !ok {
		c.m[key] = series
		c.series += len(series)
	}
}
