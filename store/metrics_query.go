package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
)

// Querier returns a querier over the samples in [mint, maxt] (ms). It
// implements storage.Queryable.
func (db *DB) Querier(mint, maxt int64) (storage.Querier, error) {
	if r := db.remoteMetrics(); r != nil {
		return r.Queryable.Querier(mint, maxt)
	}
	if db.metrics == nil {
		return nil, ErrClosed
	}
	return &querier{db: db, mint: mint, maxt: maxt}, nil
}

type querier struct {
	db         *DB
	mint, maxt int64
}

// found is one series with the chunks that overlap the query.
type found struct {
	lset   labels.Labels
	chunks []chunkenc.Chunk
}

// collect gathers every series matching ms with its chunks in [mint, maxt],
// from the partitions whose sample times overlap and from the head, in
// label order. Series with the same labels (new refs after a restart,
// several partitions) are merged.
func (q *querier) collect(ctx context.Context, ms []*labels.Matcher) ([]found, error) {
	limit := q.db.opts.Limits.MaxSeriesPerQuery
	tooMany := func() error {
		return fmt.Errorf("%w: the query selects more than %d series (limits.max_series_per_query); narrow its selectors", ErrLimit, limit)
	}
	// The head is read before the partitions: a chunk written from the
	// head to a partition meanwhile is then in what was copied from the
	// head or in what the partition holds (or both: equal samples are
	// merged), never in neither.
	head := q.db.metrics.selectSeries(ms)
	if limit > 0 && len(head) > limit {
		return nil, tooMany()
	}
	headChunks := make([][]chunkenc.Chunk, len(head))
	for i, s := range head {
		headChunks[i] = s.headChunks(q.mint, q.maxt, nil)
	}
	parts, err := q.partitions()
	if err != nil {
		return nil, err
	}
	// Each partition's selection and the head's series in label order,
	// merged: series with equal labels (several partitions, new refs
	// after a restart) become one, their chunks in the order of the
	// partitions, then the head's.
	type source struct {
		n      int
		lset   func(k int) labels.Labels
		chunks func(k int) []chunkenc.Chunk
		pos    int
	}
	srcs := make([]source, 0, len(parts)+1)
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sel, perSeries, err := q.collectPartition(p, ms)
		if err != nil {
			return nil, err
		}
		order := sel.labelOrder()
		srcs = append(srcs, source{
			n:      len(order),
			lset:   func(k int) labels.Labels { return sel.series[order[k]].lset },
			chunks: func(k int) []chunkenc.Chunk { return perSeries[order[k]] },
		})
	}
	order := make([]int, len(head))
	for i := range order {
		order[i] = i
	}
	q.db.metrics.sortByLabelsWith(head, order)
	srcs = append(srcs, source{
		n:      len(head),
		lset:   func(k int) labels.Labels { return head[k].lset },
		chunks: func(k int) []chunkenc.Chunk { return headChunks[order[k]] },
	})
	most := 0 // series in all sources: as many as the merge can give
	for _, s := range srcs {
		most += s.n
	}
	out := make([]found, 0, most)
	for {
		best := -1
		for i := range srcs {
			if s := &srcs[i]; s.pos < s.n && (best < 0 || labels.Compare(s.lset(s.pos), srcs[best].lset(srcs[best].pos)) < 0) {
				best = i
			}
		}
		if best < 0 {
			return out, nil
		}
		if limit > 0 && len(out) >= limit {
			return nil, tooMany()
		}
		f := found{lset: srcs[best].lset(srcs[best].pos)}
		for i := range srcs {
			for s := &srcs[i]; s.pos < s.n && labels.Equal(s.lset(s.pos), f.lset); s.pos++ {
				if f.chunks == nil {
					f.chunks = slices.Clip(s.chunks(s.pos)) // this query's own
				} else {
					f.chunks = append(f.chunks, s.chunks(s.pos)...)
				}
			}
		}
		out = append(out, f)
	}
}

// selectLimited is Select with a limit: the matching label sets first,
// sorted, then chunks read only until limit of them have samples in the
// range — a selection that matches thousands of series but wants a few
// reads the chunks of a few.
func (q *querier) selectLimited(ctx context.Context, ms []*labels.Matcher, limit int) ([]storage.Series, error) {
	type source struct {
		part   int // index in parts, or -1 for the head
		ref    uint64
		chunks []chunkenc.Chunk // the head's
	}
	type cand struct {
		lset labels.Labels
		from []source
	}
	byKey := map[string]*cand{}
	var key []byte
	add := func(lset labels.Labels, src source) {
		key = lset.Bytes(key[:0])
		c := byKey[string(key)]
		if c == nil {
			c = &cand{lset: lset}
			byKey[string(key)] = c
		}
		c.from = append(c.from, src)
	}
	// The head first, its chunks copied, as in collect (a chunk
	// written from the head to a partition meanwhile is in one or both).
	// Only the first head series in label order can be among the first
	// limit: past limit of them with chunks in the range, the rest are not
	// copied (a service's selection can match thousands).
	head := q.db.metrics.selectSeries(ms)
	if len(head) > limit {
		slices.SortFunc(head, func(a, b *memSeries) int { return labels.Compare(a.lset, b.lset) })
	}
	headChunks := make([][]chunkenc.Chunk, len(head))
	withChunks := 0
	for i, s := range head {
		if withChunks == limit {
			head, headChunks = head[:i], headChunks[:i]
			break
		}
		headChunks[i] = s.headChunks(q.mint, q.maxt, nil)
		if len(headChunks[i]) > 0 {
			withChunks++
		}
	}
	parts, err := q.partitions()
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := p.selectSeries(ms, func(s refLabels) { add(s.lset, source{part: i, ref: s.ref}) })
		if err != nil {
			return nil, err
		}
	}
	for i, s := range head {
		add(s.lset, source{part: -1, chunks: headChunks[i]})
	}
	cands := make([]*cand, 0, len(byKey))
	for _, c := range byKey {
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b *cand) int { return labels.Compare(a.lset, b.lset) })
	// One read transaction and one chunk reader per partition, held while
	// the candidates are read in order.
	var out []storage.Series
	err = withViews(parts, func(txns []*badger.Txn) error {
		readers := make([]*chunkReader, len(txns))
		for i, txn := range txns {
			readers[i] = newChunkReader(parts[i], txn)
			defer readers[i].close()
		}
		for _, c := range cands {
			if len(out) == limit {
				break
			}
			var chunks []chunkenc.Chunk
			for _, src := range c.from {
				if src.part < 0 {
					chunks = append(chunks, src.chunks...)
					continue
				}
				cs, err := q.chunks(readers[src.part], src.ref)
				if err != nil {
					return err
				}
				chunks = append(chunks, cs...)
			}
			if len(chunks) > 0 {
				out = append(out, &chunkSeries{lset: c.lset, chunks: chunks, mint: q.mint, maxt: q.maxt})
			}
		}
		return nil
	})
	return out, err
}

// withViews runs fn inside a read transaction of each partition.
func withViews(parts []*partition, fn func([]*badger.Txn) error) error {
	txns := make([]*badger.Txn, len(parts))
	var open func(i int) error
	open = func(i int) error {
		if i == len(parts) {
			return fn(txns)
		}
		return parts[i].view(func(txn *badger.Txn) error {
			txns[i] = txn
			return open(i + 1)
		})
	}
	return open(0)
}

// partitions are those whose sample times overlap [mint, maxt].
func (q *querier) partitions() ([]*partition, error) {
	all, err := q.db.snapshot()
	if err != nil {
		return nil, err
	}
	lo, hi := msToNanos(q.mint), msToNanos(q.maxt)
	var parts []*partition
	for _, p := range all {
		if pmin, pmax := p.bounds(); pmin != 0 && pmax >= lo && pmin <= hi {
			parts = append(parts, p)
		}
	}
	return parts, nil
}

func matchesAll(lset labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(lset.Get(m.Name)) {
			return false
		}
	}
	return true
}

// selectSeries calls fn with each of p's series that ms select, in ref
// order.
func (p *partition) selectSeries(ms []*labels.Matcher, fn func(refLabels)) error {
	sel, err := p.selection(ms)
	if err != nil {
		return err
	}
	for _, s := range sel.series {
		fn(s)
	}
	return nil
}

// selection returns p's series that ms select, from the partition's cache
// of selections or from its postings. It is shared: not to be changed.
func (p *partition) selection(ms []*labels.Matcher) (*selection, error) {
	key := selectionKey(ms)
	pv := p.postings.view()
	if got, ok := pv.getSelection(key); ok {
		return got, nil
	}
	var out []refLabels
	err := p.view(func(txn *badger.Txn) error {
		refs, err := candidateRefs(txn, pv, ms)
		if err != nil {
			return err
		}
		var sb labels.ScratchBuilder
		for _, ref := range refs {
			lset, err := p.seriesLabels(txn, ref, &sb)
			if err != nil {
				return err
			}
			if matchesAll(lset, ms) {
				out = append(out, refLabels{ref: ref, lset: lset})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sel := &selection{series: out}
	pv.putSelection(key, sel)
	return sel, nil
}

// collectPartition returns p's series that ms select and, for each, its
// chunks that overlap the querier's range.
func (q *querier) collectPartition(p *partition, ms []*labels.Matcher) (*selection, [][]chunkenc.Chunk, error) {
	sel, err := p.selection(ms)
	if err != nil {
		return nil, nil, err
	}
	series := sel.series
	// Read newest ref first: the chunk reader walks its reverse iterator
	// from one series to the next instead of seeking for each (see
	// chunkReader.position).
	perSeries := make([][]chunkenc.Chunk, len(series))
	err = p.view(func(txn *badger.Txn) error {
		cr := newChunkReader(p, txn)
		defer cr.close()
		for i := len(series) - 1; i >= 0; i-- {
			chunks, err := q.chunks(cr, series[i].ref)
			if err != nil {
				return err
			}
			perSeries[i] = chunks
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return sel, perSeries, nil
}

// chunkReader holds one iterator of each chunk kind for a partition's read,
// so that selecting many series does not open two iterators per series
// (opening one costs an iterator per table).
type chunkReader struct {
	txn      *badger.Txn
	inOrder  *badger.Iterator // reverse: newest chunk first
	outOrder *badger.Iterator // nil when the partition has no out-of-order chunk
	// noOutOfOrder: the partition held no out-of-order chunk when the
	// read began (see partition.outOfOrder).
	noOutOfOrder bool
	target       []byte
	prefix       []byte // a series' chunk key prefix
	read         bool   // the in-order iterator has been positioned
	last         uint64 // the ref it was last positioned for
	walks, seeks int    // how it reached each series (tests)
	// What the read returns is carved from blocks rather than allocated
	// chunk by chunk: chunks' bytes (Badger's are valid only inside its
	// callback), decimal chunks, and each series' list of chunks. The
	// blocks live as long as the query holds a chunk of theirs.
	bytes    []byte
	decimals []decimalChunk
	lists    []chunkenc.Chunk
}

// Largest block sizes of a chunk reader's allocations: its first blocks
// are small and each next one twice the last, so that a read of a few
// series (a correlated answer's) allocates little and one of 100k few
// blocks.
const (
	chunkBytesBlock = 64 << 10
	decimalsBlock   = 256
	listsBlock      = 1024
)

// nextBlock is the size of the block after one of size last, at most most.
func nextBlock(last, most int) int { return min(max(2*last, most/64), most) }

// copyBytes returns a copy of b from the reader's byte blocks.
func (cr *chunkReader) copyBytes(b []byte) []byte {
	if cap(cr.bytes)-len(cr.bytes) < len(b) {
		cr.bytes = make([]byte, 0, max(nextBlock(cap(cr.bytes), chunkBytesBlock), len(b)))
	}
	n := len(cr.bytes)
	cr.bytes = append(cr.bytes, b...)
	return cr.bytes[n:len(cr.bytes):len(cr.bytes)]
}

// decimal returns a place for c in the reader's blocks.
func (cr *chunkReader) decimal(c decimalChunk) *decimalChunk {
	if len(cr.decimals) == cap(cr.decimals) {
		cr.decimals = make([]decimalChunk, 0, nextBlock(cap(cr.decimals), decimalsBlock))
	}
	cr.decimals = append(cr.decimals, c)
	return &cr.decimals[len(cr.decimals)-1]
}

// newChunkReader is a chunk reader of p inside txn.
func newChunkReader(p *partition, txn *badger.Txn) *chunkReader {
	return &chunkReader{txn: txn, noOutOfOrder: !p.outOfOrder.Load()}
}

func (cr *chunkReader) close() {
	if cr.inOrder != nil {
		cr.inOrder.Close()
	}
	if cr.outOrder != nil {
		cr.outOrder.Close()
	}
}

// maxWalk is how many keys the reverse iterator steps over to reach the
// next series before it seeks instead: a step is one comparison in each
// table's block, a seek a binary search in each table.
const maxWalk = 32

// position puts the in-order (reverse) iterator at the newest chunk of ref
// that starts at or before maxt: the largest key not above that target.
// After a read of a larger ref, the iterator stands at the largest key not
// above a key that is above the target (where that read sought or stopped),
// so it is already there or steps down to it — series asked largest ref
// first, as collectPartition does, cost one step per chunk key of a dense
// selection rather than one seek per series. Otherwise, or when the target
// is more than maxWalk keys away, it seeks.
func (cr *chunkReader) position(ref uint64, maxt int64) {
	cr.target = appendChunkKey(cr.target[:0], ref, maxt)
	it := cr.inOrder
	if cr.read && ref < cr.last {
		cr.last = ref
		for range maxWalk {
			if !it.Valid() || bytes.Compare(it.Item().Key(), cr.target) <= 0 {
				cr.walks++
				return
			}
			it.Next()
		}
	}
	cr.read, cr.last = true, ref
	cr.seeks++
	it.Seek(cr.target)
}

// chunks returns the series' chunks, in-order and out-of-order, that overlap
// [mint, maxt]. In-order chunks of a series follow one another in time, so
// they are read newest first from maxt back to the first that ends before
// mint; out-of-order chunks may overlap anything and are all looked at.
func (q *querier) chunks(cr *chunkReader, ref uint64) ([]chunkenc.Chunk, error) {
	if cr.inOrder == nil {
		cr.inOrder = cr.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsChunk}, Reverse: true})
		if !cr.noOutOfOrder {
			cr.outOrder = cr.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsChunkOOO}})
		}
	}
	cr.prefix = appendChunkKey(cr.prefix[:0], ref, 0)[:9]
	prefix := cr.prefix
	// The series' chunks are appended to the reader's list block and
	// returned as a slice of it that an append cannot write past.
	if cap(cr.lists)-len(cr.lists) < 8 {
		cr.lists = make([]chunkenc.Chunk, 0, max(nextBlock(cap(cr.lists), listsBlock), 16))
	}
	start := len(cr.lists)
	it := cr.inOrder
	for cr.position(ref, q.maxt); it.ValidForPrefix(prefix); it.Next() {
		c, end, err := q.chunkAt(cr, it.Item())
		if err != nil {
			return nil, err
		}
		if end < q.mint {
			break
		}
		if c != nil {
			cr.lists = append(cr.lists, c)
		}
	}
	slices.Reverse(cr.lists[start:])
	if cr.outOrder != nil {
		prefix[0] = nsChunkOOO
		it = cr.outOrder
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			c, _, err := q.chunkAt(cr, it.Item())
			if err != nil {
				return nil, err
			}
			if c != nil {
				cr.lists = append(cr.lists, c)
			}
		}
	}
	if len(cr.lists) == start {
		return nil, nil
	}
	return cr.lists[start:len(cr.lists):len(cr.lists)], nil
}

// chunkAt decodes the chunk of item when it overlaps [mint, maxt] (nil
// otherwise) and returns its last time.
func (q *querier) chunkAt(cr *chunkReader, item *badger.Item) (chunkenc.Chunk, int64, error) {
	_, cmint, err := parseChunkKey(item.Key())
	if err != nil {
		return nil, 0, err
	}
	if cmint > q.maxt {
		return nil, cmint, nil
	}
	var c chunkenc.Chunk
	var end int64
	err = item.Value(func(val []byte) error {
		if len(val) < 2 {
			return fmt.Errorf("%w: chunk of %d bytes", ErrCorrupt, len(val))
		}
		span, w := binary.Uvarint(val[1:])
		if w <= 0 {
			return fmt.Errorf("%w: chunk time span", ErrCorrupt)
		}
		end = cmint + int64(span)
		if end < q.mint {
			return nil
		}
		data := cr.copyBytes(val[1+w:]) // val is only valid inside Value
		var err error
		if enc := chunkenc.Encoding(val[0]); enc == encDecimal {
			var l decimalLayout
			if l, err = parseDecimalChunk(data); err == nil {
				c = cr.decimal(decimalChunk{data: data, n: l.n, mint: cmint, maxt: end, bounded: true})
			}
		} else if c, err = chunkenc.FromData(enc, data); err == nil {
			c = &boundedChunk{Chunk: c, mint: cmint, maxt: end}
		}
		if err != nil {
			return fmt.Errorf("%w: chunk: %w", ErrCorrupt, err)
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("%w: read chunk: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
	}
	return c, end, err
}

// candidateRefs returns the refs of series that may match ms, from the
// postings of the matchers that do not match the empty value (those cannot
// select series that lack the label). With no such matcher, every series.
func candidateRefs(txn *badger.Txn, pv postingsView, ms []*labels.Matcher) ([]uint64, error) {
	return seriesIndex.candidateRefs(txn, pv, ms)
}

// candidateRefs is candidateRefs over the index ix.
// narrowEnough is how few candidates make it cheaper to check a matcher on
// each candidate's labels (as every caller does afterwards) than to scan the
// postings of every value of its label.
const narrowEnough = 1024

func (ix labelIndex) candidateRefs(txn *badger.Txn, pv postingsView, ms []*labels.Matcher) ([]uint64, error) {
	var result []uint64
	first := true
	// Equality and set matchers (a|b|c) first: they read only their values'
	// postings; the others scan every value of their label, which is not
	// worth it once the candidates are few.
	ordered := slices.Clone(ms)
	cheap := func(m *labels.Matcher) bool { return m.Type == labels.MatchEqual || len(m.SetMatches()) > 0 }
	slices.SortStableFunc(ordered, func(a, b *labels.Matcher) int {
		switch ca, cb := cheap(a), cheap(b); {
		case ca && !cb:
			return -1
		case cb && !ca:
			return 1
		}
		return 0
	})
	for _, m := range ordered {
		if m.Matches("") {
			continue
		}
		if !first && !cheap(m) && len(result) <= narrowEnough {
			continue
		}
		set, err := ix.postingsFor(txn, pv, m)
		if err != nil {
			return nil, err
		}
		if first {
			result, first = set, false
			continue
		}
		result = intersect(result, set)
		if len(result) == 0 {
			return nil, nil
		}
	}
	if first {
		return ix.allRefs(txn)
	}
	return result, nil
}

func (ix labelIndex) postingsFor(txn *badger.Txn, pv postingsView, m *labels.Matcher) ([]uint64, error) {
	// Equality, or a regexp of alternatives (a|b|c): each value's
	// postings, from the partition's cache or through one iterator
	// (making one costs an iterator per table).
	var values []string
	switch {
	case m.Type == labels.MatchEqual:
		values = []string{m.Value}
	case m.Type == labels.MatchRegexp:
		values = m.SetMatches()
	}
	if len(values) > 0 {
		prefix := ix.postingPrefix(m.Name)
		if len(values) == 1 {
			prefix = ix.postingValuePrefix(m.Name, values[0])
		}
		var it *badger.Iterator
		defer func() {
			if it != nil {
				it.Close()
			}
		}()
		perValue := make([][]uint64, 0, len(values))
		for _, v := range values {
			key := ix.postingValuePrefix(m.Name, v)
			refs, ok := pv.get(key)
			if !ok {
				if it == nil {
					it = txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
				}
				var err error
				if refs, err = valueRefs(it, key, nil); err != nil {
					return nil, err
				}
				pv.put(key, refs)
			}
			perValue = append(perValue, refs)
		}
		if len(perValue) == 1 {
			return perValue[0], nil // in key order: sorted, each once
		}
		var refs []uint64
		for _, r := range perValue {
			refs = append(refs, r...)
		}
		slices.Sort(refs)
		return slices.Compact(refs), nil
	}
	// Any other matcher: every value of the label, matched.
	namePrefixLen := len(ix.postingPrefix(m.Name))
	var refs []uint64
	it := txn.NewIterator(badger.IteratorOptions{Prefix: ix.postingPrefix(m.Name), PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		value, ref, err := parsePostingKey(it.Item().Key(), namePrefixLen)
		if err != nil {
			return nil, err
		}
		if m.Matches(value) {
			refs = append(refs, ref)
		}
	}
	slices.Sort(refs)
	return slices.Compact(refs), nil
}

// valueRefs appends the refs of the posting keys under prefix, one
// value's: the prefix is the value, the ref is all that is left of a key.
func valueRefs(it *badger.Iterator, prefix []byte, refs []uint64) ([]uint64, error) {
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		k := it.Item().Key()
		if len(k) != len(prefix)+8 {
			return nil, fmt.Errorf("%w: posting key of %d bytes", ErrCorrupt, len(k))
		}
		refs = append(refs, binary.BigEndian.Uint64(k[len(prefix):]))
	}
	return refs, nil
}

func (ix labelIndex) allRefs(txn *badger.Txn) ([]uint64, error) {
	var refs []uint64
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{ix.sets}, PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != 9 {
			return nil, fmt.Errorf("%w: label set key of %d bytes", ErrCorrupt, len(k))
		}
		refs = append(refs, binary.BigEndian.Uint64(k[1:]))
	}
	return refs, nil
}

func intersect(a, b []uint64) []uint64 {
	out := a[:0:0]
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}

// Select returns the matching series with their samples in the querier's
// range (or the hints' narrower one).
func (q *querier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if hints != nil {
		q = &querier{db: q.db, mint: max(q.mint, hints.Start), maxt: min(q.maxt, hints.End)}
	}
	if hints != nil && hints.Limit > 0 {
		set, err := q.selectLimited(ctx, ms, hints.Limit)
		if err != nil {
			return storage.ErrSeriesSet(err)
		}
		return &seriesSet{series: set, i: -1}
	}
	// In label order whether or not sortSeries asks: PromQL results (ties
	// of topk and limitk, float sums, errors naming series) should be
	// those of Prometheus' TSDB reading the same series sorted.
	fs, err := q.collect(ctx, ms)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	set := make([]storage.Series, 0, len(fs))
	series := make([]chunkSeries, len(fs))
	for i, f := range fs {
		if len(f.chunks) == 0 {
			continue
		}
		series[i] = chunkSeries{lset: f.lset, chunks: f.chunks, mint: q.mint, maxt: q.maxt}
		set = append(set, &series[i])
	}
	return &seriesSet{series: set, i: -1}
}

// LabelValues returns the values of name among matching series with samples
// in the range, sorted.
func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	fs, err := q.collect(ctx, ms)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]struct{}{}
	for _, f := range fs {
		if v := f.lset.Get(name); v != "" && len(f.chunks) > 0 {
			seen[v] = struct{}{}
		}
	}
	return sortedLimited(seen, hints), nil, nil
}

// LabelNames returns the label names of matching series with samples in the
// range, sorted.
func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	fs, err := q.collect(ctx, ms)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]struct{}{}
	for _, f := range fs {
		if len(f.chunks) > 0 {
			f.lset.Range(func(l labels.Label) { seen[l.Name] = struct{}{} })
		}
	}
	return sortedLimited(seen, hints), nil, nil
}

func sortedLimited(seen map[string]struct{}, hints *storage.LabelHints) []string {
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.SortFunc(out, strings.Compare)
	if hints != nil && hints.Limit > 0 && len(out) > hints.Limit {
		out = out[:hints.Limit]
	}
	return out
}

func (q *querier) Close() error { return nil }

type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// chunkSeries iterates a series' chunks as one sorted sequence of samples;
// overlapping chunks (a WAL replayed after its chunks were written) are
// merged, equal timestamps once.
type chunkSeries struct {
	lset       labels.Labels
	chunks     []chunkenc.Chunk
	mint, maxt int64
}

func (s *chunkSeries) Labels() labels.Labels { return s.lset }

func (s *chunkSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if len(s.chunks) == 1 {
		// One chunk: its own iterator, reused when it is one already.
		return s.chunks[0].Iterator(it)
	}
	if seq, ok := newSeqIterator(it, s.chunks); ok {
		return seq
	}
	its := make([]chunkenc.Iterator, len(s.chunks))
	for i, c := range s.chunks {
		its[i] = c.Iterator(nil)
	}
	return storage.ChainSampleIteratorFromIterators(it, its)
}

// ChunkQuerier returns a querier that answers in chunks (remote read). It
// implements storage.ChunkQueryable.
func (db *DB) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	q, err := db.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	if db.remoteMetrics() != nil {
		return remoteChunkQuerier{q}, nil
	}
	return chunkQuerier{q: q.(*querier)}, nil
}

type chunkQuerier struct{ q *querier }

func (c chunkQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	return storage.NewSeriesSetToChunkSet(c.q.Select(ctx, sortSeries, hints, ms...))
}

func (c chunkQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return c.q.LabelValues(ctx, name, hints, ms...)
}

func (c chunkQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return c.q.LabelNames(ctx, hints, ms...)
}

func (c chunkQuerier) Close() error { return nil }

// seriesLabels returns a series' labels, from the partition's cache or
// from Badger.
func (p *partition) seriesLabels(txn *badger.Txn, ref uint64, sb *labels.ScratchBuilder) (labels.Labels, error) {
	if v, ok := p.series.Load(ref); ok {
		return v.(labels.Labels), nil
	}
	lset, err := seriesIndex.labelsOf(txn, ref, sb)
	if err != nil {
		return labels.EmptyLabels(), err
	}
	if p.seriesSize.Load() < maxCachedSeries {
		if _, loaded := p.series.LoadOrStore(ref, lset); !loaded {
			p.seriesSize.Add(1)
		}
	}
	return lset, nil
}

// ConcurrentSeries reports that the series a querier selects may be
// iterated by several goroutines at once and after the querier is closed:
// they are chunks copied out of the head or read from a partition, never
// changed. The parts of a split range query share them
// (internal/promsplit).
func (db *DB) ConcurrentSeries() bool { return true }
