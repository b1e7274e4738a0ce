package store

import (
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/prometheus/model/labels"
	"go.uber.org/zap"
)

// openMetrics builds the head: series refs continue after the largest in any
// partition, and the WAL left by a crash is replayed.
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
	wal, err := openWAL(db.opts.Dir, db.opts)
	if err != nil {
		return err
	}
	h.wal = wal
	return h.replay()
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
			ref = uint64(k[1])<<56 | uint64(k[2])<<48 | uint64(k[3])<<40 | uint64(k[4])<<32 | uint64(k[5])<<24 | uint64(k[6])<<16 | uint64(k[7])<<8 | uint64(k[8])
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("partition %s: series refs: %w", p.name, err)
	}
	return ref, nil
}

// replay reads the WAL into the head, oldest record first.
func (h *metricsHead) replay() error {
	var (
		sb      labels.ScratchBuilder
		cut     []*cutChunk
		records int
		samples int
	)
	err := h.wal.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsWAL}, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 9 {
				return fmt.Errorf("%w: WAL key of %d bytes", ErrCorrupt, len(k))
			}
			seq := uint64(k[1])<<56 | uint64(k[2])<<48 | uint64(k[3])<<40 | uint64(k[4])<<32 | uint64(k[5])<<24 | uint64(k[6])<<16 | uint64(k[7])<<8 | uint64(k[8])
			h.walSeq.Store(max(h.walSeq.Load(), seq))
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
				if c, _ := s.add(smp.t, smp.v); c != nil {
					cut = append(cut, c)
				}
			}
			records++
			samples += len(smpls)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay metrics WAL: %w", err)
	}
	if records > 0 {
		h.log.Info("metrics WAL replayed", zap.Int("records", records), zap.Int("samples", samples), zap.Int("series", len(h.byRef)))
	}
	return h.db.writeChunks(cut)
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
	h.mu.RLock()
	all := make([]*memSeries, 0, len(h.byRef))
	for _, s := range h.byRef {
		all = append(all, s)
	}
	h.mu.RUnlock()
	slices.SortFunc(all, func(a, b *memSeries) int { return int(a.ref - b.ref) })
	var cut []*cutChunk
	for _, s := range all {
		s.mu.Lock()
		if c := s.cutLocked(); c != nil {
			cut = append(cut, c)
		}
		s.mu.Unlock()
	}
	if err := db.writeChunks(cut); err != nil {
		_ = h.wal.Close()
		return fmt.Errorf("write head chunks: %w (the WAL is kept and replays on open)", err)
	}
	if err := h.wal.Close(); err != nil {
		return fmt.Errorf("close metrics WAL: %w", err)
	}
	return removeWAL(db.opts.Dir)
}
