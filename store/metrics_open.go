package store

import (
	"errors"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/store/wlog"
)

// openMetrics builds the head: series refs continue after the largest in any
// partition; the WAL generations left by a crash are replayed, their chunks
// written, and then they are deleted; writes go to a new generation.
func (db *DB) openMetrics() error {
	h := &metricsHead{db: db, log: db.log.Named("metrics"), byHash: map[uint64][]*memSeries{}, byRef: map[uint64]*memSeries{}}
	h.selected.max = maxCachedSelected
	db.metrics = h
	for _, p := range db.parts {
		ref, err := maxSetRef(p, nsSeries)
		if err != nil {
			return err
		}
		if ref > h.nextRef.Load() {
			h.nextRef.Store(ref)
		}
	}
	h.wal = newWALLog(db, "metrics", metricsWALDir)
	// S2, as the log WAL: a record lives until the next checkpoint, and
	// zstd's fastest level took a seventh of remote write's CPU.
	h.wal.s2 = true
	if err := h.wal.recover(h.replay, func() error { return db.writeChunks(h.cutAll()) }, h.seriesRecord); err != nil {
		return err
	}
	db.every(db.opts.MetricsCheckpointInterval, nil, func() {
		if err := db.CheckpointMetrics(); err != nil && !errors.Is(err, ErrClosed) {
			db.log.Error("metrics checkpoint", zap.Error(err))
		}
	})
	return nil
}

// replay reads one WAL generation into the head, oldest record first.
// Samples of series the WAL never defined are counted and skipped. Chunks
// that fill are written; if that fails they stay in the head, and the WAL,
// for a later checkpoint.
func (h *metricsHead) replay(g wlog.Gen) error {
	var (
		sb      labels.ScratchBuilder
		cut     []*cutChunk
		samples int
	)
	counts, err := h.wal.replay(g, func(payload []byte, c *wlog.Counts) error {
		series, smpls, err := decodeWALRecord(payload, &sb)
		if err != nil {
			return err
		}
		for _, ws := range series {
			if h.byRef[ws.ref] == nil {
				h.add(ws.ref, ws.lset, ws.lset.Hash()).lastAppend.Store(h.db.opts.Now().UnixNano())
			}
			h.nextRef.Store(max(h.nextRef.Load(), ws.ref))
		}
		for _, smp := range smpls {
			s := h.byRef[smp.ref]
			if s == nil {
				c.Skip(wlog.SkipUnknownSeries, 1)
				continue
			}
			c, _ := s.add(smp.point, h.db.opts.MetricsOutOfOrderWindow.Milliseconds(), &h.heldBytes)
			cut = append(cut, c...)
		}
		samples += len(smpls)
		return nil
	})
	if err != nil {
		return err
	}
	if counts.Records > 0 {
		h.log.Info("metrics WAL replayed", zap.Uint64("generation", g.N), zap.Int("records", counts.Records), zap.Int("samples", samples), zap.Int("series", len(h.byRef)))
	}
	if err := h.db.writeChunks(cut); err != nil {
		h.log.Error("write chunks the WAL replayed; they stay in the head", zap.Error(err))
	}
	return nil
}

// cutAll cuts every series' open chunk.
func (h *metricsHead) cutAll() []*cutChunk { return h.cut(false) }

// cutUncarried cuts every series' open chunk but those the checkpoint
// carried into its new generation (checkpointFirst).
func (h *metricsHead) cutUncarried() []*cutChunk { return h.cut(true) }

func (h *metricsHead) cut(keepCarried bool) []*cutChunk {
	var unwritten int64
	if keepCarried {
		unwritten = h.carried
	}
	h.unwritten.Store(unwritten)
	all := h.allSeries()
	slices.SortFunc(all, func(a, b *memSeries) int {
		switch {
		case a.ref < b.ref:
			return -1
		case a.ref > b.ref:
			return 1
		}
		return 0
	})
	var cut []*cutChunk
	for _, s := range all {
		s.mu.Lock()
		cut = append(cut, s.failedLocked()...)
		if !keepCarried || !s.carry {
			cut = append(cut, s.cutLocked(&h.heldBytes)...)
		}
		s.carry = false
		cut = append(cut, s.cutOOOLocked()...)
		s.mu.Unlock()
	}
	return cut
}

// carryRecordBytes bounds the chunk bytes of one record a checkpoint
// carries open chunks in.
const carryRecordBytes = 8 << 20

// carryRecordSamples bounds the samples of one such record: a replay
// decodes a record's samples at once (40 bytes each), and a held chunk of
// a steady counter holds hundreds of samples in a few dozen bytes.
const carryRecordSamples = 256 << 10

// encodeWALChunksOf is encodeWALChunks of the carried series' held chunks
// and open float chunks, size bytes in all, read in place.
func encodeWALChunksOf(series []*memSeries, size int) []byte {
	chunks := make([]walChunk, 0, len(series))
	for _, s := range series {
		s.mu.Lock()
		if s.held.n > 0 {
			chunks = append(chunks, walChunk{ref: s.ref, kind: walDecimalChunk, data: s.held.data})
		}
		chunks = append(chunks, walChunk{ref: s.ref, kind: walXORChunk, data: s.open.chunk.Bytes()})
		s.mu.Unlock()
	}
	return encodeWALChunks(chunks, size)
}

// checkpointFirst is what a checkpoint's new generation starts with: the
// record that defines every series of the head, then the held chunks and
// open float chunks of the series that took samples since the last
// checkpoint, as records of chunk samples (kinds 0x03 and 0x02). Those
// chunks stay in the head — their samples are durable in the new
// generation, which the old one can be deleted without — and fill up to
// chunkSamples (heldSamples): at a 15-s scrape a checkpoint every 15
// minutes would otherwise cut chunks of 60 samples, at 1 minute of 15,
// each a key of its own. The chunks of a series that took nothing since
// the last checkpoint are cut and written, so that an idle series can
// leave the head, as are those of a series whose open chunk is a
// histogram's. Runs with commits stopped, as does the cut after it
// (cutUncarried).
func (h *metricsHead) checkpointFirst() walFirst {
	all := h.allSeries()
	first := seriesRecordOf(all)
	h.carried = 0
	// Commits are stopped: open chunks do not change until the cut. A
	// record's chunk bytes are copied once, into the record.
	var (
		batch   []*memSeries
		size    int
		samples int
	)
	flush := func() {
		if len(batch) > 0 {
			first.more = append(first.more, encodeWALChunksOf(batch, size))
		}
		batch, size, samples = batch[:0], 0, 0
	}
	for _, s := range all {
		s.mu.Lock()
		c := s.open.chunk
		// Set or cleared for every series: a rotation that failed after
		// this leaves no stale mark for the next checkpoint. (A series
		// with a held chunk has an open one: the sample that finished a
		// chunk started the next.)
		s.carry = s.fresh && c != nil && c.Encoding() == chunkenc.EncXOR && c.NumSamples() > 0
		s.fresh = false
		if s.carry {
			n := s.held.n + c.NumSamples()
			h.carried += int64(n)
			samples += n
			size += len(s.held.data) + len(c.Bytes())
			batch = append(batch, s)
		}
		s.mu.Unlock()
		if size >= carryRecordBytes || samples >= carryRecordSamples {
			flush()
		}
	}
	flush()
	return first
}

// allSeries lists the head's series.
func (h *metricsHead) allSeries() []*memSeries {
	h.mu.RLock()
	defer h.mu.RUnlock()
	all := make([]*memSeries, 0, len(h.byRef))
	for _, s := range h.byRef {
		all = append(all, s)
	}
	return all
}

// seriesRecord is a WAL record that defines every series in the head, the
// first record of a new generation (nil when there are none), and what
// marks those series defined once it is written. A series created while
// the generation starts is not among them, and is defined by the first
// record that refers to it.
func (h *metricsHead) seriesRecord() walFirst { return seriesRecordOf(h.allSeries()) }

// seriesRecordOf is seriesRecord of the series all.
func seriesRecordOf(all []*memSeries) walFirst {
	series := make([]walSeries, 0, len(all))
	for _, s := range all {
		series = append(series, walSeries{ref: s.ref, lset: s.lset})
	}
	define := func() {
		for _, s := range all {
			s.defined.ok.Store(true)
		}
	}
	if len(series) == 0 {
		return walFirst{define: define}
	}
	return walFirst{rec: encodeWALRecord(series, nil), define: define}
}

// CheckpointMetrics bounds the WAL: new requests go to a new generation, the
// open float chunks that took samples since the last checkpoint are carried
// into it (checkpointFirst), every other open chunk is cut and written, and
// the old generation is deleted. It runs on a timer
// (MetricsCheckpointInterval); tests call it directly. If writing the chunks
// fails, the old generation stays and replays on the next open.
func (db *DB) CheckpointMetrics() error { return db.checkpointMetrics(true) }

// checkpointMetrics is CheckpointMetrics; without carry every open chunk is
// cut, for the disk budget, which wants the WAL's samples in the partition
// it can drop.
func (db *DB) checkpointMetrics(carry bool) error {
	h := db.metrics
	h.checkpointMu.Lock()
	defer h.checkpointMu.Unlock()
	// The new generation starts with every series the head knows, so that
	// its records can be replayed without the old one.
	if !carry {
		return checkpoint(&h.state, h.wal, h.removeIdle, h.seriesRecord, h.cutAll, db.writeChunks)
	}
	return checkpoint(&h.state, h.wal, h.removeIdle, h.checkpointFirst, h.cutUncarried, db.writeChunks)
}

// closeMetrics stops commits, writes every open chunk to the head partition,
// and, once they are durable, deletes the WAL.
func (db *DB) closeMetrics() error {
	h := db.metrics
	if h == nil {
		return nil
	}
	h.checkpointMu.Lock()
	defer h.checkpointMu.Unlock()
	return shutdown(&h.state, h.wal, h.cutAll, db.writeChunks)
}
