package store

import (
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
)

// epochCache keeps values by key for one epoch of the data they were read
// from: an entry is used only at the epoch it was made at, and the cache
// starts over at a new epoch or past its bound (held counts what each value
// holds; a value over a quarter of the bound is not kept).
type epochCache[V any] struct {
	mu    sync.Mutex
	epoch uint64
	m     map[string]V
	held  int
	max   int
}

func (c *epochCache[V]) get(key string, epoch uint64) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		var zero V
		return zero, false
	}
	v, ok := c.m[key]
	return v, ok
}

// put keeps v, made at epoch and holding n items; v is not changed after.
func (c *epochCache[V]) put(key string, epoch uint64, v V, n int) {
	if n > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || c.epoch != epoch || c.held+n > c.max {
		c.m, c.epoch, c.held = map[string]V{}, epoch, 0
	}
	if _, ok := c.m[key]; !ok {
		c.m[key] = v
		c.held += n
	}
}

// postingsCache keeps a partition's postings by label value (the refs of
// one name=value, sorted) and its selections (the series that match a set
// of matchers, with their labels), so that a selection asked again — a
// dashboard's refresh, the correlated answer of one trace after another —
// does not iterate the same posting keys in Badger each time. Postings are
// only ever added to a partition (series and streams are never removed
// from one; a partition is dropped whole), so what is kept is valid until
// the partition's next write that adds postings.
//
// state says which: its high bits count the writes with postings begun
// and ended, its low bits how many are under way. A write bumps it before
// its first key can be committed and again once all are (writing), so
// each entry is kept under the state it was read at, read while no write
// was under way and stored only if none began meanwhile: it holds exactly
// what the partition held at that state, which a read that began at the
// same state also sees (perhaps with more, committed since). A read that
// begins while a write is under way neither uses the cache nor fills it.
type postingsCache struct {
	state    atomic.Uint64
	refs     epochCache[[]uint64]   // by posting value prefix
	selected epochCache[*selection] // by selectionKey
}

// writesUnderWay masks the count of writes under way in a postings cache's
// state; a write begun adds writeBegun, one ended writeEnded.
const (
	writesUnderWay = 1<<16 - 1
	writeBegun     = 1<<16 + 1
	writeEnded     = 1<<16 - 1
)

// selection is the series of a partition that a set of matchers selects,
// in ref order, and their order by labels, made when first asked for.
type selection struct {
	series   []refLabels
	once     sync.Once
	byLabels []int32
}

// labelOrder returns the indexes of the series in label order (series with
// equal labels, under several refs, in ref order).
func (s *selection) labelOrder() []int32 {
	s.once.Do(func() {
		s.byLabels = make([]int32, len(s.series))
		for i := range s.byLabels {
			s.byLabels[i] = int32(i)
		}
		slices.SortStableFunc(s.byLabels, func(a, b int32) int { return labels.Compare(s.series[a].lset, s.series[b].lset) })
	})
	return s.byLabels
}

// refLabels is a partition's series: its ref there and its labels.
type refLabels struct {
	ref  uint64
	lset labels.Labels
}

// maxCachedPostingRefs bounds the refs a partition's postings cache holds
// (8 bytes each; a selection's series count one each, their labels being
// those of the partition's series cache), half for postings and half for
// selections.
const maxCachedPostingRefs = 1 << 20

// postingsView is a read's use of a partition's postings cache: state is
// the cache's state loaded before the read's transaction began, and the
// only one the read gets entries of or stores entries under (none while a
// write is under way). A nil cache reads every posting from Badger.
type postingsView struct {
	c     *postingsCache
	state uint64
}

// view returns the cache's view for a read about to begin.
func (c *postingsCache) view() postingsView { return postingsView{c: c, state: c.state.Load()} }

// writing marks a write that adds postings to the partition as begun,
// before any of its keys can be committed, and returns what marks it
// ended, to call once every key is committed (or the write failed).
func (c *postingsCache) writing() (ended func()) {
	c.state.Add(writeBegun)
	return func() { c.state.Add(writeEnded) }
}

// usable reports whether the view may get and put entries.
func (v postingsView) usable() bool { return v.c != nil && v.state&writesUnderWay == 0 }

func (v postingsView) get(key []byte) ([]uint64, bool) {
	if !v.usable() {
		return nil, false
	}
	return v.c.refs.get(string(key), v.state)
}

func (v postingsView) put(key []byte, refs []uint64) {
	if v.usable() && v.state == v.c.state.Load() { // else a write began since the read did
		v.c.refs.put(string(key), v.state, refs, len(refs))
	}
}

func (v postingsView) getSelection(key string) (*selection, bool) {
	if !v.usable() {
		return nil, false
	}
	return v.c.selected.get(key, v.state)
}

func (v postingsView) putSelection(key string, sel *selection) {
	if v.usable() && v.state == v.c.state.Load() {
		v.c.selected.put(key, v.state, sel, len(sel.series))
	}
}

// maxCachedSelected bounds the series pointers the head keeps for
// selections (8 bytes each; see metricsHead.selected).
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
