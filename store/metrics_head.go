package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"go.uber.org/zap"
)

// chunkSamples is how many samples a head chunk takes before it is cut and
// written to the day partition. A checkpoint does not cut a float chunk that
// took samples since the one before: it carries it into the new WAL
// generation (checkpointFirst), so that a chunk holds 120 samples at any
// scrape interval rather than a checkpoint interval's worth.
const chunkSamples = 120

// metricsHead holds every series' open chunk in memory; the WAL makes it
// durable; full chunks go to the day partition.
type metricsHead struct {
	db  *DB
	log *zap.Logger

	mu     sync.RWMutex
	byHash map[uint64][]*memSeries
	byRef  map[uint64]*memSeries

	// postings: label name -> value -> the head's series with it, for
	// queries that select few of many series (h.mu guards it).
	postings map[string]map[string][]*memSeries
	// values keeps each label name's values sorted, and the values regexp
	// selectors matched (see valueList). Values are added under h.mu held
	// exclusively; readers merge them in under valuesMu.
	values   map[string]*valueList
	valuesMu sync.Mutex
	// matchedSize counts the values kept for matchers (valuesMu).
	matchedSize int
	// ordered holds the head's series in label order, as ranked (each
	// series' rank is its index), and unordered those made since
	// (appended under h.mu held exclusively; merged in under valuesMu):
	// queries sort the series they select by rank instead of comparing
	// labels, which took a tenth of a query over 100k series.
	ordered, unordered []*memSeries
	// perMetric counts the head's series by metric name, for
	// MaxSeriesPerMetric (h.mu guards it).
	perMetric map[string]int
	// removed counts idle series removed from the head.
	removed atomic.Uint64
	// epoch changes whenever a series enters or leaves the postings (under
	// h.mu held exclusively); selected keeps selections made at an epoch.
	epoch    uint64
	selected epochCache[[]*memSeries]

	nextRef atomic.Uint64
	wal     *walLog // appended under state.mu shared, rotated under it exclusive
	// checkpointMu makes checkpoints (the timer's, the disk budget's) and
	// the close run one at a time: a checkpoint whose write failed puts its
	// generations back (walLog.keep), which must not follow a later
	// checkpoint's deletion of the generation after them.
	checkpointMu sync.Mutex
	// checkpointing is set while a checkpoint started by the disk budget
	// runs, so that one runs at a time.
	checkpointing atomic.Bool
	// unwritten counts the samples committed since the last checkpoint cut
	// the head (and those it carried), for the disk floor's reserve.
	unwritten atomic.Int64
	// carried counts the samples of the chunks the checkpoint being made
	// carried into its new generation (state.mu held exclusively).
	carried int64
	// heldBytes counts the bytes of the series' held chunks, within
	// maxHeldBytes.
	heldBytes atomic.Int64

	// storedOnce sets stored when this head makes its first appender: the
	// time (unix ms) no sample stored before is newer than (see
	// unknownSince).
	storedOnce sync.Once
	stored     int64

	state headState
}

type memSeries struct {
	ref  uint64
	lset labels.Labels
	// defined is set once the WAL generation being written defines the
	// series.
	defined defined
	// lastAppend is when (wall clock, unix ns) a sample was last appended
	// to the series, or it was made: a series idle past HeadIdleTimeout
	// with nothing unwritten leaves the head.
	lastAppend atomic.Int64

	mu   sync.Mutex
	open chunkBuilder
	// pending holds chunks cut but not yet written to a partition: queries
	// read them from here until they are.
	pending []*cutChunk
	// held is the finished float samples kept as one small decimal chunk
	// until it is worth a key of its own (see metrics_held.go): older than
	// the open chunk's, newer than pending's in-order ones.
	held heldChunk
	// ooo holds out-of-order samples (older than last, within the
	// window), sorted by time, until they make a chunk of their own.
	ooo []point
	// last is the newest sample accepted; last.t is noTime when none.
	last point
	// fresh is set when the open chunk takes a sample, and cleared by each
	// checkpoint; carry is set by a checkpoint that carried the open chunk
	// into the new WAL generation, so that its cut leaves the chunk open.
	fresh, carry bool
	// partition names the partition holding this series' labels and
	// postings, so they are written once per partition.
	partition string
	// gone is set when the series leaves the head (h.mu held
	// exclusively); rank is its place in the head's label order
	// (h.valuesMu).
	gone bool
	rank uint32
	// plain is set when the labels pass remote write's checks of a series
	// (a metric name, no empty name, names and values in UTF-8), so that
	// AppendEncoded needs not check them again.
	plain bool
}

func newMemSeries(ref uint64, lset labels.Labels) *memSeries {
	return &memSeries{ref: ref, lset: lset, last: point{t: noTime}, plain: plainLabels(lset)}
}

// plainLabels reports whether lset has a metric name, no empty name, and
// names and values in UTF-8.
func plainLabels(lset labels.Labels) bool {
	plain := lset.Get(labels.MetricName) != ""
	lset.Range(func(l labels.Label) {
		plain = plain && l.Name != "" && utf8.ValidString(l.Name) && utf8.ValidString(l.Value)
	})
	return plain
}

func (h *metricsHead) get(lset labels.Labels, hash uint64) *memSeries {
	for _, s := range h.byHash[hash] {
		if labels.Equal(s.lset, lset) {
			return s
		}
	}
	return nil
}

// getOrCreate returns the series for lset, creating it with a new ref
// within the limits: its labels' shape, the active series and the series
// per metric name. now (unix ns, the request's) marks it used.
func (h *metricsHead) getOrCreate(lset labels.Labels, now int64) (*memSeries, error) {
	hash := lset.Hash()
	h.mu.RLock()
	s := h.get(lset, hash)
	if s != nil {
		// Marked used before h.mu is let go: removeIdle, which holds it
		// exclusively, then finds the series used and keeps it. Marked
		// after, a series idle past the timeout could leave the head
		// between the two, and this request write to it unnamed by the
		// WAL generation that follows.
		s.lastAppend.Store(now)
	}
	h.mu.RUnlock()
	if s != nil {
		return s, nil
	}
	lim := h.db.opts.Limits
	if err := lim.CheckLabels("series", lset, lim.MaxLabelNamesPerSeries); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.get(lset, hash); s != nil {
		s.lastAppend.Store(now)
		return s, nil
	}
	name := lset.Get(labels.MetricName)
	switch {
	case lim.MaxActiveSeries > 0 && len(h.byRef) >= lim.MaxActiveSeries:
		return nil, fmt.Errorf("%w: the head holds %d series, the limit (max_active_series): new series %s refused", ErrLimit, len(h.byRef), truncLabels(lset))
	case lim.MaxSeriesPerMetric > 0 && h.perMetric[name] >= lim.MaxSeriesPerMetric:
		return nil, fmt.Errorf("%w: metric %q has %d series in the head, the limit (max_series_per_metric): new series %s refused", ErrLimit, name, h.perMetric[name], truncLabels(lset))
	}
	s = h.add(h.nextRef.Add(1), lset, hash)
	s.lastAppend.Store(now)
	return s, nil
}

// add puts a new series in the head's maps and postings; h.mu is held.
func (h *metricsHead) add(ref uint64, lset labels.Labels, hash uint64) *memSeries {
	s := newMemSeries(ref, lset)
	h.byHash[hash] = append(h.byHash[hash], s)
	h.byRef[s.ref] = s
	h.index(s)
	if h.perMetric == nil {
		h.perMetric = map[string]int{}
	}
	h.perMetric[lset.Get(labels.MetricName)]++
	h.unordered = append(h.unordered, s)
	return s
}

// sortByLabels sorts ss (series of the head) in label order: by their
// ranks, merging the series made since the last ranking in first.
func (h *metricsHead) sortByLabels(ss []*memSeries) { h.sortByLabelsWith(ss, nil) }

// sortByLabelsWith is sortByLabels, moving with[i] along with ss[i] (with
// is nil or as long as ss).
func (h *metricsHead) sortByLabelsWith(ss []*memSeries, with []int) {
	if len(ss) < 2 {
		return
	}
	h.mu.RLock()
	h.valuesMu.Lock()
	if len(h.unordered) > 0 {
		fresh := slices.Clone(h.unordered)
		slices.SortFunc(fresh, func(a, b *memSeries) int { return labels.Compare(a.lset, b.lset) })
		merged := make([]*memSeries, 0, len(h.ordered)+len(fresh))
		i, j := 0, 0
		for i < len(h.ordered) || j < len(fresh) {
			var s *memSeries
			if j == len(fresh) || (i < len(h.ordered) && labels.Compare(h.ordered[i].lset, fresh[j].lset) <= 0) {
				s, i = h.ordered[i], i+1
			} else {
				s, j = fresh[j], j+1
			}
			if !s.gone {
				s.rank = uint32(len(merged))
				merged = append(merged, s)
			}
		}
		h.ordered, h.unordered = merged, nil
	}
	// A series that left the head since it was selected keeps the rank
	// it had: the ranks of those still in the head may have been given
	// again since, so the gone ones are ordered by their labels and
	// merged in.
	type ranked struct {
		rank uint32
		s    *memSeries
		with int
	}
	rs := make([]ranked, 0, len(ss))
	var gone []ranked
	for i, s := range ss {
		r := ranked{rank: s.rank, s: s}
		if with != nil {
			r.with = with[i]
		}
		if s.gone {
			gone = append(gone, r)
		} else {
			rs = append(rs, r)
		}
	}
	h.valuesMu.Unlock()
	h.mu.RUnlock()
	slices.SortFunc(rs, func(a, b ranked) int { return cmp.Compare(a.rank, b.rank) })
	if len(gone) > 0 {
		slices.SortFunc(gone, func(a, b ranked) int { return labels.Compare(a.s.lset, b.s.lset) })
		in := rs
		rs = make([]ranked, 0, len(ss))
		for len(in) > 0 || len(gone) > 0 {
			if len(gone) == 0 || (len(in) > 0 && labels.Compare(in[0].s.lset, gone[0].s.lset) <= 0) {
				rs, in = append(rs, in[0]), in[1:]
			} else {
				rs, gone = append(rs, gone[0]), gone[1:]
			}
		}
	}
	for i, r := range rs {
		ss[i] = r.s
		if with != nil {
			with[i] = r.with
		}
	}
}

// add appends a sample to the series' open chunk, cutting chunks as they
// fill. It returns the cut chunks and whether the sample was taken (one not
// newer than the newest is kept only within the out-of-order window).
func (s *memSeries) add(p point, oooWindow int64, held *atomic.Int64) (cut []*cutChunk, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.t <= s.last.t {
		return s.addOutOfOrderLocked(p, oooWindow)
	}
	if finished := s.open.add(p); len(finished) > 0 {
		cut = s.finishLocked(finished, held)
	}
	s.last = p
	s.fresh = true
	return cut, true
}

// addOutOfOrderLocked keeps a sample older than the newest if it is within
// the window and not already in the head; a full buffer becomes chunks.
func (s *memSeries) addOutOfOrderLocked(p point, window int64) ([]*cutChunk, bool) {
	if window <= 0 || p.t < s.last.t-window || p.t == s.last.t {
		return nil, false
	}
	i, found := slices.BinarySearchFunc(s.ooo, p.t, func(x point, t int64) int { return cmpInt64(x.t, t) })
	if found || s.open.has(p.t) || s.held.has(p.t) {
		return nil, false
	}
	s.ooo = slices.Insert(s.ooo, i, p)
	if len(s.ooo) >= chunkSamples {
		return s.cutOOOLocked(), true
	}
	return nil, true
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cutOOOLocked turns the out-of-order buffer into chunks, pending until
// written.
func (s *memSeries) cutOOOLocked() []*cutChunk {
	var cut []*cutChunk
	for _, c := range buildChunks(s.ooo) {
		cut = append(cut, s.pendLocked(c, true))
	}
	s.ooo = nil
	return cut
}

// pendLocked keeps a finished chunk in pending until it is written.
func (s *memSeries) pendLocked(c *builtChunk, ooo bool) *cutChunk {
	cc := &cutChunk{s: s, builtChunk: *c, ooo: ooo}
	s.pending = append(s.pending, cc)
	return cc
}

type cutChunk struct {
	s *memSeries
	builtChunk
	ooo bool // a chunk of out-of-order samples: key namespace 0x25
	// failed is set (under s.mu) when writing the chunk failed: it stays
	// pending, readable, and the next checkpoint writes it again.
	failed bool
}

// cutLocked closes the open chunk and returns it after the held chunk, each
// in pending until written.
func (s *memSeries) cutLocked(held *atomic.Int64) []*cutChunk {
	var cut []*cutChunk
	if c := s.open.finish(); c != nil {
		cut = s.finishLocked([]*builtChunk{c}, held)
	}
	return append(cut, s.releaseHeldLocked(held)...)
}

// written drops c from pending: it is in a partition now.
func (s *memSeries) written(c *cutChunk) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.Index(s.pending, c); i >= 0 {
		s.pending = slices.Delete(s.pending, i, i+1)
	}
}

// failedLocked returns the pending chunks whose write failed, to be
// written again.
func (s *memSeries) failedLocked() []*cutChunk {
	var out []*cutChunk
	for _, c := range s.pending {
		if c.failed {
			c.failed = false
			out = append(out, c)
		}
	}
	return out
}

// headChunks returns copies of the chunks only the head holds (pending and
// open) that overlap [mint, maxt].
func (s *memSeries) headChunks(mint, maxt int64, out []chunkenc.Chunk) []chunkenc.Chunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.pending {
		out = appendChunk(out, c.enc, c.data, c.mint, c.maxt, mint, maxt)
	}
	if c := &s.held; c.n > 0 {
		out = appendChunk(out, c.enc, c.data, c.mint, c.maxt, mint, maxt)
	}
	if b := &s.open; b.chunk != nil && b.chunk.NumSamples() > 0 {
		out = appendChunk(out, b.chunk.Encoding(), b.chunk.Bytes(), b.mint, b.maxt, mint, maxt)
	}
	if len(s.ooo) > 0 && s.ooo[len(s.ooo)-1].t >= mint && s.ooo[0].t <= maxt {
		for _, c := range buildChunks(s.ooo) {
			out = appendChunk(out, c.enc, c.data, c.mint, c.maxt, mint, maxt)
		}
	}
	return out
}

// appendChunk appends a copy of a head chunk spanning [cmint, cmaxt] when
// it overlaps [mint, maxt].
func appendChunk(out []chunkenc.Chunk, enc chunkenc.Encoding, data []byte, cmint, cmaxt, mint, maxt int64) []chunkenc.Chunk {
	if cmaxt < mint || cmint > maxt {
		return out
	}
	if enc == encDecimal {
		if l, err := parseDecimalChunk(data); err == nil {
			out = append(out, &decimalChunk{data: slices.Clone(data), n: l.n, mint: cmint, maxt: cmaxt, bounded: true})
		}
		return out
	}
	if c, err := chunkenc.FromData(enc, slices.Clone(data)); err == nil {
		out = append(out, &boundedChunk{Chunk: c, mint: cmint, maxt: cmaxt})
	}
	return out
}

// writeChunks writes cut chunks, with the labels and postings of series the
// partition does not hold yet, to the head partition.
func (db *DB) writeChunks(chunks []*cutChunk) error { return db.writePartition(chunks, nil, nil) }

// writePartition writes cut chunks and exemplars, with the labels and
// postings of series the partition does not hold yet, to the head partition
// in one batch.
func (db *DB) writePartition(chunks []*cutChunk, exemplars []pendingExemplar, meta []pendingMetadata) error {
	if len(chunks) == 0 && len(exemplars) == 0 && len(meta) == 0 {
		return nil
	}
	var fresh []*memSeries
	name, err := db.writeHead(func(p *partition, set func(k, v []byte)) {
		seen := map[*memSeries]bool{}
		// ensureSeries writes the series' labels and postings unless the
		// partition has them.
		ensureSeries := func(s *memSeries) {
			if seen[s] {
				return
			}
			seen[s] = true
			s.mu.Lock()
			known := s.partition == p.name
			s.mu.Unlock()
			if known {
				return
			}
			set(seriesKey(s.ref), encodeLabels(nil, s.lset))
			s.lset.Range(func(l labels.Label) { set(postingKey(l.Name, l.Value, s.ref), nil) })
			fresh = append(fresh, s)
		}
		var lo, hi int64 = math.MaxInt64, math.MinInt64
		var sc decimalScratch
		for _, pm := range meta {
			set(metadataKV(pm))
		}
		for _, pe := range exemplars {
			ensureSeries(pe.s)
			for _, kv := range exemplarKeys(pe.s.ref, pe.e) {
				set(kv[0], kv[1])
			}
			lo, hi = min(lo, pe.e.Ts), max(hi, pe.e.Ts)
		}
		for _, c := range chunks {
			ensureSeries(c.s)
			enc, data := sc.compactChunk(c.builtChunk)
			val := make([]byte, 0, 1+10+len(data))
			val = append(val, byte(enc))
			val = binary.AppendUvarint(val, uint64(c.maxt-c.mint))
			val = append(val, data...)
			key := chunkKey(c.s.ref, c.mint)
			if c.ooo {
				key[0] = nsChunkOOO
			}
			set(key, val)
			lo, hi = min(lo, c.mint), max(hi, c.maxt)
		}
		if bounds := p.widen(msToNanos(lo), msToNanos(hi)); bounds != nil {
			set(boundsKey(db.nextSeq()), bounds)
		}
	})
	if err != nil {
		for _, c := range chunks {
			c.s.mu.Lock()
			c.failed = true
			c.s.mu.Unlock()
		}
		return err
	}
	for _, c := range chunks {
		c.s.written(c)
	}
	db.metadata.written(meta, name)
	for _, s := range fresh {
		s.mu.Lock()
		s.partition = name
		s.mu.Unlock()
	}
	return nil
}

func msToNanos(ms int64) uint64 {
	if ms <= 0 {
		return 1
	}
	return uint64(ms) * 1e6
}

// Appender returns an appender for one request: samples are checked as they
// are added and written, durably, on Commit. It implements storage.Appendable.
func (db *DB) Appender(ctx context.Context) storage.Appender {
	if r := db.remoteMetrics(); r != nil {
		return r.Appendable.Appender(ctx)
	}
	w := db.TimeWindow()
	if h := db.metrics; h != nil {
		h.storedOnce.Do(func() { h.stored = db.storedUntil(w.now) })
	}
	return &appender{db: db, ctx: ctx, window: w}
}

// storedUntil is the time (unix ms) no sample the store held before this
// head's first appender is newer than: that appender's time now (a
// previous run stopped before it), or the newest event time the
// partitions hold if sooner (0 for a store that holds nothing).
func (db *DB) storedUntil(now time.Time) int64 {
	parts, err := db.snapshot()
	if err != nil {
		return now.UnixMilli()
	}
	var hi uint64
	for _, p := range parts {
		_, phi := p.bounds()
		hi = max(hi, phi)
	}
	return min(now.UnixMilli(), int64(hi/1e6))
}

type appender struct {
	db        *DB
	ctx       context.Context
	series    []*memSeries // parallel to samples
	samples   []walSample
	exemplars []pendingExemplar
	meta      []pendingMetadata
	pending   map[uint64]int64 // newest time per series in this request
	window    TimeWindow       // the times the request may have, read once
	cmp       []byte           // AppendEncoded's scratch
	bufs      *appendBufs      // where pending, series and samples came from
}

// appendBufs are an appender's per-request buffers (its pending, series and
// samples), taken at its first sample and given back at its commit or
// rollback for the next request: at hundreds of requests of thousands of
// samples a second, allocating them anew was most of what ingest
// allocated.
type appendBufs struct {
	pending map[uint64]int64
	series  []*memSeries
	samples []walSample
}

// maxPooledSamples bounds the buffers kept for reuse: a map keeps the room
// its largest use needed.
const maxPooledSamples = 1 << 16

// walRecordPool holds buffers for the commits' WAL records, which are
// compressed into a frame before append returns.
var walRecordPool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledRecord = 8 << 20

var appendBufPool = sync.Pool{New: func() any { return &appendBufs{pending: map[uint64]int64{}} }}

// take gives the appender its buffers.
func (a *appender) take() {
	if a.bufs == nil {
		a.bufs = appendBufPool.Get().(*appendBufs)
		a.pending, a.series, a.samples = a.bufs.pending, a.bufs.series[:0], a.bufs.samples[:0]
	}
}

// giveBack returns the buffers for reuse and empties the appender.
func (a *appender) giveBack() {
	b := a.bufs
	a.bufs = nil
	if b != nil && len(a.samples) <= maxPooledSamples {
		clear(a.pending)
		clear(a.series)
		clear(a.samples)
		b.series, b.samples = a.series[:0], a.samples[:0]
		appendBufPool.Put(b)
	}
	a.pending, a.series, a.samples, a.exemplars, a.meta = nil, nil, nil, nil, nil
}

type pendingExemplar struct {
	s *memSeries
	e exemplar.Exemplar
}

// Append adds a float sample. A sample older than the series' newest is
// refused with storage.ErrOutOfOrderSample unless it is within the
// out-of-order window (older: storage.ErrTooOldSample); one at the same time
// with the same value is ignored, with another value refused with
// storage.ErrDuplicateSampleForTimestamp.
func (a *appender) Append(_ storage.SeriesRef, lset labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	return a.appendPoint(lset, point{t: t, v: v})
}

// AppendHistogram adds a native histogram sample, integer (h) or float (fh),
// with the same rules as Append. An invalid histogram is refused with an
// error that wraps both ErrInvalid and Prometheus' histogram.Error.
func (a *appender) AppendHistogram(_ storage.SeriesRef, lset labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	p, err := histogramPoint(lset, t, h, fh)
	if err != nil {
		return 0, err
	}
	return a.appendPoint(lset, p)
}

// histogramPoint is the point of a native histogram sample, integer (h) or
// float (fh), once validated.
func histogramPoint(lset labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (point, error) {
	var err error
	switch {
	case h != nil:
		err = h.Validate()
		fh = nil
	case fh != nil:
		err = fh.Validate()
	default:
		return point{}, fmt.Errorf("%w: histogram sample of %s without a histogram", ErrInvalid, lset)
	}
	if err != nil {
		return point{}, fmt.Errorf("%w: native histogram of %s at %s: %w", ErrInvalid, lset, time.UnixMilli(t).UTC().Format(time.RFC3339Nano), err)
	}
	return point{t: t, h: h, fh: fh}, nil
}

func checkLabelSet(lset labels.Labels) error {
	if lset.IsEmpty() {
		return fmt.Errorf("%w: empty label set", ErrInvalid)
	}
	if name, dup := lset.HasDuplicateLabelNames(); dup {
		return fmt.Errorf("%w: label %q appears twice in %s", ErrInvalid, name, lset)
	}
	return nil
}

func (a *appender) appendPoint(lset labels.Labels, p point) (storage.SeriesRef, error) {
	if err := checkLabelSet(lset); err != nil {
		return 0, err
	}
	t := p.t
	if err := a.window.CheckMillis(t); err != nil {
		return 0, fmt.Errorf("sample of %s: %w", lset, err)
	}
	s, err := a.db.metrics.getOrCreate(lset, a.window.now.UnixNano())
	if err != nil {
		return 0, err
	}
	return a.appendTo(s, p)
}

// appendTo adds p, within the request's time window, to s: the checks of
// order and duplicates Append describes.
func (a *appender) appendTo(s *memSeries, p point) (storage.SeriesRef, error) {
	a.take()
	t := p.t
	last, ok := a.pending[s.ref]
	if !ok {
		s.mu.Lock()
		newest := s.last
		s.mu.Unlock()
		last = newest.t
		if t == last {
			if p.same(newest) {
				return storage.SeriesRef(s.ref), nil
			}
			return 0, storage.ErrDuplicateSampleForTimestamp
		}
	}
	if t < last || (ok && t == last) {
		window := a.db.opts.MetricsOutOfOrderWindow.Milliseconds()
		switch {
		case window <= 0 || (ok && t == last):
			return 0, storage.ErrOutOfOrderSample
		case t < last-window:
			return 0, fmt.Errorf("%w: %s is older than the series' newest sample by more than the out-of-order window (%s)",
				storage.ErrTooOldSample, time.UnixMilli(t).UTC().Format(time.RFC3339Nano), a.db.opts.MetricsOutOfOrderWindow)
		}
	} else {
		a.pending[s.ref] = t
	}
	a.series = append(a.series, s)
	a.samples = append(a.samples, walSample{ref: s.ref, point: p})
	return storage.SeriesRef(s.ref), nil
}

// Commit writes the request's samples to the WAL (fsynced), with the
// definition of every series they refer to that the WAL generation does not
// define yet, then to the head.
func (a *appender) Commit() error {
	if len(a.samples) == 0 && len(a.exemplars) == 0 && len(a.meta) == 0 {
		return nil
	}
	if err := a.db.admitWrite(); err != nil {
		return err
	}
	h := a.db.metrics
	h.state.mu.RLock()
	defer h.state.mu.RUnlock()
	if h.state.closed {
		return ErrClosed
	}
	if len(a.samples) > 0 {
		var defs []walSeries
		var fresh []*memSeries
		for _, s := range a.series {
			if !s.defined.ok.Load() && !slices.Contains(fresh, s) {
				fresh = append(fresh, s)
				defs = append(defs, walSeries{ref: s.ref, lset: s.lset})
			}
		}
		rec := walRecordPool.Get().(*[]byte)
		*rec = appendWALRecord((*rec)[:0], defs, a.samples)
		_, err := h.wal.append(*rec)
		if cap(*rec) <= maxPooledRecord {
			walRecordPool.Put(rec)
		}
		if err != nil {
			return err
		}
		for _, s := range fresh {
			s.defined.ok.Store(true)
		}
	}
	h.unwritten.Add(int64(len(a.samples)))
	var cut []*cutChunk
	window := a.db.opts.MetricsOutOfOrderWindow.Milliseconds()
	minT := int64(math.MaxInt64)
	for i, s := range a.series {
		c, _ := s.add(a.samples[i].point, window, &h.heldBytes)
		cut = append(cut, c...)
		minT = min(minT, a.samples[i].point.t)
	}
	if len(a.samples) > 0 {
		a.db.pastWritten(minT)
	}
	exemplars, meta := a.exemplars, a.meta
	a.giveBack()
	return a.db.writePartition(cut, exemplars, meta)
}

// Rollback drops the request's samples. Series it created stay in the head,
// empty and undefined in the WAL until a record refers to them.
func (a *appender) Rollback() error {
	a.giveBack()
	return nil
}

func (a *appender) SetOptions(*storage.AppendOptions) {}

// AppendExemplar keeps an exemplar of a series; it is written with the
// request's commit, indexed by the trace id in its labels.
func (a *appender) AppendExemplar(_ storage.SeriesRef, lset labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	if lset.IsEmpty() {
		return 0, fmt.Errorf("%w: exemplar of an empty label set", ErrInvalid)
	}
	s, err := a.db.metrics.getOrCreate(lset, a.window.now.UnixNano())
	if err != nil {
		return 0, err
	}
	a.exemplars = append(a.exemplars, pendingExemplar{s: s, e: e})
	return storage.SeriesRef(s.ref), nil
}

// AppendHistogramSTZeroSample adds, before a native histogram sample at t
// of a series that starts at st, an empty histogram at st with h's (or
// fh's) schema, zero threshold and custom buckets, marked as a counter
// reset, on appendSTZero's conditions.
func (a *appender) AppendHistogramSTZeroSample(_ storage.SeriesRef, lset labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	if h == nil && fh == nil {
		return 0, fmt.Errorf("%w: histogram start time of %s without a histogram", ErrInvalid, lset)
	}
	if h != nil {
		fh = nil
	}
	return a.appendSTZero(lset, t, zeroAt(st, point{h: h, fh: fh}))
}

// UpdateMetadata records the metadata of the series' metric name; it is
// written with the request's commit if it changed.
func (a *appender) UpdateMetadata(ref storage.SeriesRef, lset labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	a.addMetadata(lset.Get(labels.MetricName), m)
	return ref, nil
}

func (a *appender) addMetadata(name string, m metadata.Metadata) {
	if name != "" && m != (metadata.Metadata{}) && a.db.metadata.changed(name, m, a.db.headName()) {
		a.meta = append(a.meta, pendingMetadata{name, m})
	}
}

// AppendSTZeroSample adds, before a sample at t of a series that starts at
// st, a 0 at st, on appendSTZero's conditions.
func (a *appender) AppendSTZeroSample(_ storage.SeriesRef, lset labels.Labels, t, st int64) (storage.SeriesRef, error) {
	return a.appendSTZero(lset, t, point{t: st})
}

// appendSTZero adds z, the zero a cumulative series (a counter, a
// histogram) had at its start time z.t, before its sample at t: Prometheus'
// created-timestamp zero ingestion, so that rate() and increase() count
// the series' first sample whole instead of taking it as where counting
// began. It is written only where it cannot stand over or among samples
// the series already has, so never out of order: z.t must be before t,
// within the request's time window, and after the series' newest sample.
// Of a series the head holds no sample of (new to it, or back after a
// restart or after leaving the head idle), stored samples may be newer than
// z.t without the head knowing, so z.t must also be no earlier than
// unknownSince. Otherwise it is refused, as Prometheus' head refuses one,
// with ErrSTNewerThanSample, ErrOutOfBounds (wrapped) or ErrOutOfOrderST;
// the sample itself is not.
func (a *appender) appendSTZero(lset labels.Labels, t int64, z point) (storage.SeriesRef, error) {
	st := z.t
	if st >= t {
		return 0, storage.ErrSTNewerThanSample
	}
	if err := checkLabelSet(lset); err != nil {
		return 0, err
	}
	if err := a.window.CheckMillis(st); err != nil {
		return 0, fmt.Errorf("start time of %s: %w", lset, err)
	}
	h := a.db.metrics
	s, err := h.getOrCreate(lset, a.window.now.UnixNano())
	if err != nil {
		return 0, err
	}
	ref := storage.SeriesRef(s.ref)
	s.mu.Lock()
	last := s.last.t
	s.mu.Unlock()
	if last == noTime {
		if since := h.unknownSince(a.window.now); st < since {
			return ref, fmt.Errorf("%w: start time %s of %s, a series the head holds no sample of, is before %s, before which it may have stored samples",
				storage.ErrOutOfBounds, time.UnixMilli(st).UTC().Format(time.RFC3339Nano), lset, time.UnixMilli(since).UTC().Format(time.RFC3339Nano))
		}
	}
	a.take()
	if pending, ok := a.pending[s.ref]; ok {
		last = max(last, pending)
	}
	if st <= last {
		return ref, storage.ErrOutOfOrderST
	}
	a.pending[s.ref] = st
	a.series = append(a.series, s)
	a.samples = append(a.samples, walSample{ref: s.ref, point: z})
	return ref, nil
}

// zeroAt is the zero, at st, of a series whose sample is p: a float 0, or
// an empty histogram with p's schema, zero threshold and custom buckets
// (so that no new chunk is needed for p), marked as a counter reset, as
// Prometheus' head writes it.
func zeroAt(st int64, p point) point {
	switch {
	case p.h != nil:
		return point{t: st, h: &histogram.Histogram{CounterResetHint: histogram.CounterReset,
			Schema: p.h.Schema, ZeroThreshold: p.h.ZeroThreshold, CustomValues: p.h.CustomValues}}
	case p.fh != nil:
		return point{t: st, fh: &histogram.FloatHistogram{CounterResetHint: histogram.CounterReset,
			Schema: p.fh.Schema, ZeroThreshold: p.fh.ZeroThreshold, CustomValues: p.fh.CustomValues}}
	}
	return point{t: st}
}

// unknownSince is the earliest time (unix ms) from which the store cannot
// hold samples of a series the head holds none of: when this head made its
// first appender, or what the store held then if older (storedUntil; a
// previous run's samples), or HeadIdleTimeout − MaxFutureSkew before now
// (a series leaves the head only after that long idle, and its samples
// were at most MaxFutureSkew ahead of the clock), whichever is later. It
// is read through an appender, after storedOnce.
func (h *metricsHead) unknownSince(now time.Time) int64 {
	return max(h.stored, now.Add(MaxFutureSkew-h.db.opts.HeadIdleTimeout).UnixMilli())
}

// AppenderV2 returns the same per-request appender in Prometheus' AppenderV2
// form, which the OTLP translator writes to. It implements
// storage.AppendableV2.
func (db *DB) AppenderV2(ctx context.Context) storage.AppenderV2 {
	if r := db.remoteMetrics(); r != nil {
		return r.Appendable.AppenderV2(ctx)
	}
	return appenderV2{db.Appender(ctx).(*appender)}
}

type appenderV2 struct{ a *appender }

// Append adds a float or native histogram sample and its exemplars.
// Metadata in opts is kept by metric family. A sample of a cumulative
// series (opts' metadata types it a counter, a histogram or a summary's
// _sum or _count) with a start time st comes after a zero at st, on
// appendSTZero's conditions; a zero that cannot be written is left out
// and the sample written alone, as Prometheus' head does with
// created-timestamp zero ingestion.
func (v appenderV2) Append(_ storage.SeriesRef, ls labels.Labels, st, t int64, val float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	p := point{t: t, v: val}
	if h != nil || fh != nil {
		var err error
		if p, err = histogramPoint(ls, t, h, fh); err != nil {
			return 0, err
		}
	}
	if st != 0 && startsAtZero(ls, opts.Metadata.Type) && !stale(p) && v.a.window.CheckMillis(t) == nil {
		_, _ = v.a.appendSTZero(ls, t, zeroAt(st, p))
	}
	r, err := v.a.appendPoint(ls, p)
	if err != nil {
		return r, err
	}
	name := opts.MetricFamilyName
	if name == "" {
		name = ls.Get(labels.MetricName)
	}
	v.a.addMetadata(name, opts.Metadata)
	for _, e := range opts.Exemplars {
		if _, err := v.a.AppendExemplar(r, ls, e); err != nil {
			return r, err
		}
	}
	return r, nil
}

// startsAtZero reports whether a series of metric type typ counts from
// zero since its start time: counters, histograms (classic series and
// native) and a summary's _sum and _count, not its quantiles, and not
// gauges or untyped series (delta sums and histograms are unknown).
func startsAtZero(ls labels.Labels, typ model.MetricType) bool {
	switch typ {
	case model.MetricTypeCounter, model.MetricTypeHistogram:
		return true
	case model.MetricTypeSummary:
		return !ls.Has(model.QuantileLabel)
	}
	return false
}

// stale reports whether p is a staleness marker, which needs no zero.
func stale(p point) bool {
	switch {
	case p.h != nil:
		return value.IsStaleNaN(p.h.Sum)
	case p.fh != nil:
		return value.IsStaleNaN(p.fh.Sum)
	}
	return value.IsStaleNaN(p.v)
}

func (v appenderV2) Commit() error   { return v.a.Commit() }
func (v appenderV2) Rollback() error { return v.a.Rollback() }

// index adds a new series to the head's postings; h.mu is held.
func (h *metricsHead) index(s *memSeries) {
	h.epoch++
	if h.postings == nil {
		h.postings = map[string]map[string][]*memSeries{}
	}
	s.lset.Range(func(l labels.Label) {
		vals := h.postings[l.Name]
		if vals == nil {
			vals = map[string][]*memSeries{}
			h.postings[l.Name] = vals
		}
		if _, ok := vals[l.Value]; !ok {
			vl := h.valueList(l.Name)
			vl.fresh = append(vl.fresh, l.Value)
		}
		vals[l.Value] = append(vals[l.Value], s)
	})
}

// valueList is one label name's values in the head: sorted, and those
// added since it was last sorted. sorted may still hold values the head no
// longer has (readers skip those not in the postings); stale counts them,
// and past half of the list it is rebuilt. matched keeps, per regexp
// matcher, the values it matches: a dashboard asks the same selectors
// again and again, and matching a regexp against every value of a label
// with 100k values takes tens of milliseconds. New values are matched
// against the kept matchers as they are merged in.
type valueList struct {
	sorted, fresh []string
	stale         int
	matched       map[string]*matchedValues
}

type matchedValues struct {
	m      *labels.Matcher
	values []string // sorted; may hold values gone from the head
}

// maxMatchedValues bounds the values the head keeps for matchers, over
// all label names (16 bytes each, the strings being the series' own).
const maxMatchedValues = 1 << 18

// valueList returns name's list, made if new; h.mu is held exclusively.
func (h *metricsHead) valueList(name string) *valueList {
	if h.values == nil {
		h.values = map[string]*valueList{}
	}
	l := h.values[name]
	if l == nil {
		l = &valueList{}
		h.values[name] = l
	}
	return l
}

// refreshLocked merges the fresh values in and drops gone ones when they
// are many; h.mu is held (shared) and h.valuesMu.
func (h *metricsHead) refreshLocked(name string, l *valueList) {
	vals := h.postings[name]
	if l.stale > len(l.sorted)/2 {
		keep := func(v string) bool { _, ok := vals[v]; return !ok }
		l.sorted = slices.DeleteFunc(slices.Clone(l.sorted), keep)
		for _, mv := range l.matched {
			n := len(mv.values)
			mv.values = slices.DeleteFunc(slices.Clone(mv.values), keep)
			h.matchedSize -= n - len(mv.values)
		}
		l.stale = 0
	}
	if len(l.fresh) == 0 {
		return
	}
	fresh := slices.Clone(l.fresh)
	slices.Sort(fresh)
	fresh = slices.Compact(fresh)
	l.sorted = mergeSorted(l.sorted, fresh)
	for _, mv := range l.matched {
		var add []string
		for _, v := range fresh {
			if mv.m.Matches(v) {
				add = append(add, v)
			}
		}
		if len(add) > 0 {
			h.matchedSize += len(add)
			mv.values = mergeSorted(mv.values, add)
		}
	}
	l.fresh = nil
}

// mergeSorted merges two sorted lists into a new one, each value once.
func mergeSorted(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := strings.Compare(a[i], b[j]); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// matchingValues returns the values of m's label that m (a regexp
// matcher) matches, sorted, from the kept results or by matching every
// value once; h.mu is held (shared). The result is only read, and only
// while h.mu is held; it may hold values gone from the head.
func (h *metricsHead) matchingValues(m *labels.Matcher) []string {
	l := h.values[m.Name]
	if l == nil {
		return nil
	}
	h.valuesMu.Lock()
	defer h.valuesMu.Unlock()
	h.refreshLocked(m.Name, l)
	key := m.String()
	if mv := l.matched[key]; mv != nil {
		return mv.values
	}
	var out []string
	if p := m.Prefix(); p != "" {
		lo, _ := slices.BinarySearch(l.sorted, p)
		for _, v := range l.sorted[lo:] {
			if !strings.HasPrefix(v, p) {
				break
			}
			if m.Matches(v) {
				out = append(out, v)
			}
		}
	} else {
		for _, v := range l.sorted {
			if m.Matches(v) {
				out = append(out, v)
			}
		}
	}
	if h.matchedSize+len(out) > maxMatchedValues {
		for _, l := range h.values {
			l.matched = nil
		}
		h.matchedSize = 0
	}
	if l.matched == nil {
		l.matched = map[string]*matchedValues{}
	}
	l.matched[key] = &matchedValues{m: m, values: out}
	h.matchedSize += len(out)
	return out
}

func (h *metricsHead) selectSeries(ms []*labels.Matcher) []*memSeries {
	h.mu.RLock()
	defer h.mu.RUnlock()
	// The same selection at the same epoch selects the same series: a
	// dashboard's refresh or one trace's answer after another's finds
	// them made. (h.epoch does not change under h.mu held shared.)
	key := selectionKey(ms)
	if got, ok := h.selected.get(key, h.epoch); ok {
		return slices.Clone(got)
	}
	out := h.selectSeriesLocked(ms)
	h.selected.put(key, h.epoch, out, len(out))
	return slices.Clone(out)
}

// selectSeriesLocked is selectSeries without the cache; h.mu is held.
func (h *metricsHead) selectSeriesLocked(ms []*labels.Matcher) []*memSeries {
	var best []*memSeries
	found := false
	for _, m := range ms {
		if m.Matches("") {
			continue
		}
		var set []*memSeries
		vals := h.postings[m.Name]
		switch {
		case m.Type == labels.MatchEqual:
			set = vals[m.Value]
		case m.Type == labels.MatchRegexp && len(m.SetMatches()) > 0:
			// a|b|c: each value's series, each value once.
			values := slices.Clone(m.SetMatches())
			slices.Sort(values)
			for _, v := range slices.Compact(values) {
				set = append(set, vals[v]...)
			}
		case m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp:
			for _, v := range h.matchingValues(m) {
				set = append(set, vals[v]...) // none when gone
			}
		default:
			for v, ss := range vals {
				if m.Matches(v) {
					set = append(set, ss...)
				}
			}
		}
		if !found || len(set) < len(best) {
			best, found = set, true
		}
	}
	var out []*memSeries
	if !found {
		for _, s := range h.byRef {
			if matchesAll(s.lset, ms) {
				out = append(out, s)
			}
		}
		return out
	}
	for _, s := range best {
		if matchesAll(s.lset, ms) {
			out = append(out, s)
		}
	}
	return out
}
