package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/labels"
	"go.uber.org/zap"
)

// openMetrics builds the head: series refs continue after the largest in any
// partition; the WAL generations left by a crash are replayed, their chunks
// written, and then they are deleted; writes go to a new generation.
func (db *DB) openMetrics() error {
	h := &metricsHead{db: db, log: db.log.Named("metrics"), byHash: map[uint64][]*memSeries{}, byRef: map[uint64]*memSeries{}}
	db.metrics = h
	for _, p := range db.parts {
		ref, err := maxSeriesRef(p)
		if err != nil {
			return err
		}
		if ref > h.nextRef.Load() {
			h.nextRef.Store(ref)
		}
	}
	gens, err := listWALGens(db.opts.Dir)
	if err != nil {
		return err
	}
	for _, gen := range gens {
		if err := h.replay(gen); err != nil {
			return err
		}
	}
	if len(gens) > 0 {
		// What was replayed goes to the partition now, so the old
		// generations can go.
		if err := db.writeChunks(h.cutAll()); err != nil {
			return fmt.Errorf("write replayed chunks: %w", err)
		}
		for _, gen := range gens {
			if err := removeWALGen(db.opts.Dir, gen); err != nil {
				return err
			}
		}
		h.walGen = gens[len(gens)-1]
	}
	h.walGen++
	if h.wal, err = openWALGen(db.opts.Dir, h.walGen, db.opts); err != nil {
		return err
	}
	if err := h.writeSeriesRecord(h.wal); err != nil {
		return err
	}
	db.every(db.opts.MetricsCheckpointInterval, func() {
		if err := db.CheckpointMetrics(); err != nil && !errors.Is(err, ErrClosed) {
			db.log.Error("metrics checkpoint", zap.Error(err))
		}
	})
	return nil
}

func maxSeriesRef(p *partition) (uint64, error) {
	var ref uint64
	err := p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsSeries}, Reverse: true})
		defer it.Close()
		it.Seek([]byte{nsSeries, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		if it.Valid() {
			k := it.Item().Key()
			if len(k) != 9 {
				return fmt.Errorf("%w: series key of %d bytes", ErrCorrupt, len(k))
			}
			ref = binary.BigEndian.Uint64(k[1:])
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("partition %s: series refs: %w", p.name, err)
	}
	return ref, nil
}

// replay reads one WAL generation into the head, oldest record first.
func (h *metricsHead) replay(gen uint64) error {
	wal, err := openWALGen(h.db.opts.Dir, gen, h.db.opts)
	if err != nil {
		return err
	}
	defer wal.Close()
	var (
		sb      labels.ScratchBuilder
		cut     []*cutChunk
		records int
		samples int
	)
	err = wal.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsWAL}, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 9 {
				return fmt.Errorf("%w: WAL key of %d bytes", ErrCorrupt, len(k))
			}
			h.walSeq.Store(max(h.walSeq.Load(), binary.BigEndian.Uint64(k[1:])))
			val, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("%w: read WAL: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
			}
			_, payload, err := h.db.codec.decode(val)
			if err != nil {
				return err
			}
			series, smpls, err := decodeWALRecord(payload, &sb)
			if err != nil {
				return err
			}
			for _, ws := range series {
				if h.byRef[ws.ref] == nil {
					s := newMemSeries(ws.ref, ws.lset)
					hash := ws.lset.Hash()
					h.byHash[hash] = append(h.byHash[hash], s)
					h.byRef[ws.ref] = s
				}
				h.nextRef.Store(max(h.nextRef.Load(), ws.ref))
			}
			for _, smp := range smpls {
				s := h.byRef[smp.ref]
				if s == nil {
					return fmt.Errorf("%w: WAL sample for unknown series %d", ErrCorrupt, smp.ref)
				}
				c, _ := s.add(smp.point, h.db.opts.MetricsOutOfOrderWindow.Milliseconds())
				cut = append(cut, c...)
			}
			records++
			samples += len(smpls)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay metrics WAL generation %d: %w", gen, err)
	}
	if records > 0 {
		h.log.Info("metrics WAL replayed", zap.Uint64("generation", gen), zap.Int("records", records), zap.Int("samples", samples), zap.Int("series", len(h.byRef)))
	}
	return h.db.writeChunks(cut)
}

// cutAll cuts every series' open chunk.
func (h *metricsHead) cutAll() []*cutChunk {
	h.mu.RLock()
	all := make([]*memSeries, 0, len(h.byRef))
	for _, s := range h.byRef {
		all = append(all, s)
	}
	h.mu.RUnlock()
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
		if c := s.cutLocked(); c != nil {
			cut = append(cut, c)
		}
		cut = append(cut, s.cutOOOLocked()...)
		s.mu.Unlock()
	}
	return cut
}

// writeSeriesRecord writes one WAL record that defines every series in the
// head, the first record of a new generation.
func (h *metricsHead) writeSeriesRecord(wal *badger.DB) error {
	h.mu.RLock()
	series := make([]walSeries, 0, len(h.byRef))
	for _, s := range h.byRef {
		series = append(series, walSeries{ref: s.ref, lset: s.lset})
	}
	h.mu.RUnlock()
	if len(series) == 0 {
		return nil
	}
	rec := h.db.codec.encodeFast(codecZstdOTLP, encodeWALRecord(series, nil))
	if err := wal.Update(func(txn *badger.Txn) error { return txn.Set(walKey(h.walSeq.Add(1)), rec) }); err != nil {
		return fmt.Errorf("%w: metrics WAL series record: %v", ErrUnavailable, err) //nolint:errorlint // Badger errors stay inside the store
	}
	return nil
}

// CheckpointMetrics bounds the WAL: new requests go to a new generation, every
// open chunk is cut and written, and the old generation is deleted. It runs
// on a timer (MetricsCheckpointInterval); tests call it directly. If writing
// the chunks fails, the old generation stays and replays on the next open.
func (db *DB) CheckpointMetrics() error {
	h := db.metrics
	h.closeMu.Lock()
	if h.closed {
		h.closeMu.Unlock()
		return ErrClosed
	}
	wal, err := openWALGen(db.opts.Dir, h.walGen+1, db.opts)
	if err != nil {
		h.closeMu.Unlock()
		return err
	}
	// The new generation starts with every series the head knows, so that
	// its records can be replayed without the old one.
	if err := h.writeSeriesRecord(wal); err != nil {
		h.closeMu.Unlock()
		_ = wal.Close()
		_ = removeWALGen(db.opts.Dir, h.walGen+1)
		return err
	}
	oldWAL, oldGen := h.wal, h.walGen
	h.wal, h.walGen = wal, h.walGen+1
	// Every commit that wrote to the old generation has applied its samples
	// (commits hold closeMu shared), so these chunks cover it all.
	cut := h.cutAll()
	h.closeMu.Unlock()

	if err := db.writeChunks(cut); err != nil {
		_ = oldWAL.Close()
		return fmt.Errorf("checkpoint: write chunks: %w (WAL generation %d kept)", err, oldGen)
	}
	if err := oldWAL.Close(); err != nil {
		return fmt.Errorf("checkpoint: close WAL generation %d: %w", oldGen, err)
	}
	return removeWALGen(db.opts.Dir, oldGen)
}

// closeMetrics stops commits, writes every open chunk to the head partition,
// and, once they are durable, deletes the WAL.
func (db *DB) closeMetrics() error {
	h := db.metrics
	if h == nil {
		return nil
	}
	h.closeMu.Lock()
	defer h.closeMu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if err := db.writeChunks(h.cutAll()); err != nil {
		_ = h.wal.Close()
		return fmt.Errorf("write head chunks: %w (the WAL is kept and replays on open)", err)
	}
	if err := h.wal.Close(); err != nil {
		return fmt.Errorf("close metrics WAL: %w", err)
	}
	return removeWALGen(db.opts.Dir, h.walGen)
}
