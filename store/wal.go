package store

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// walLog is one signal's write-ahead log (metrics in data/wal, logs in
// data/logwal): generations on disk, each a Badger directory of records
// keyed 0x30 seq[8], the newest one being written. A checkpoint rotates to
// a new generation and retires the old one once what it held is in the
// partitions. The head that owns it serialises append against rotate.
type walLog struct {
	name      string // metrics or logs, for errors
	root, sub string
	opts      Options
	codec     *codec

	db  *badger.DB // the generation being written
	gen uint64
	seq atomic.Uint64
}

func newWALLog(db *DB, name, sub string) *walLog {
	return &walLog{name: name, root: db.opts.Dir, sub: sub, opts: db.opts, codec: db.codec}
}

// existing lists the generations on disk, oldest first.
func (w *walLog) existing() ([]uint64, error) { return listWALGens(w.root, w.sub) }

// replay calls fn with every record of generation gen, oldest first.
func (w *walLog) replay(gen uint64, fn func(payload []byte) error) (int, error) {
	wdb, err := openWALGen(w.root, w.sub, gen, w.opts)
	if err != nil {
		return 0, err
	}
	defer wdb.Close()
	records := 0
	err = wdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsWAL}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 9 {
				return fmt.Errorf("%w: WAL key of %d bytes", ErrCorrupt, len(k))
			}
			w.seq.Store(max(w.seq.Load(), binary.BigEndian.Uint64(k[1:])))
			val, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("%w: read %s WAL: %v", ErrUnavailable, w.name, err) //nolint:errorlint // Badger errors stay inside the store
			}
			_, payload, err := w.codec.decode(val)
			if err != nil {
				return err
			}
			if err := fn(payload); err != nil {
				return err
			}
			records++
		}
		return nil
	})
	if err != nil {
		return records, fmt.Errorf("replay %s WAL generation %d: %w", w.name, gen, err)
	}
	return records, nil
}

// recover brings a head back after a stop or a crash: every generation on
// disk is replayed (replay), what they held is written to the partitions
// (flush) and they are deleted; then a new generation starts with first().
func (w *walLog) recover(replay func(gen uint64) error, flush func() error, first func() []byte) error {
	gens, err := w.existing()
	if err != nil {
		return err
	}
	for _, gen := range gens {
		if err := replay(gen); err != nil {
			return err
		}
	}
	var last uint64
	if len(gens) > 0 {
		if err := flush(); err != nil {
			return fmt.Errorf("write what the %s WAL replayed: %w", w.name, err)
		}
		for _, gen := range gens {
			if err := w.remove(gen); err != nil {
				return err
			}
		}
		last = gens[len(gens)-1]
	}
	return w.start(last, first())
}

// start opens the generation after last for writing and writes first (a
// record naming every series or stream the head holds) when not nil.
func (w *walLog) start(last uint64, first []byte) error {
	wdb, err := openWALGen(w.root, w.sub, last+1, w.opts)
	if err != nil {
		return err
	}
	if first != nil {
		if _, err := w.put(wdb, first); err != nil {
			_ = wdb.Close()
			return err
		}
	}
	w.db, w.gen = wdb, last+1
	return nil
}

// append writes one record durably and returns its size on disk.
func (w *walLog) append(payload []byte) (int, error) { return w.put(w.db, payload) }

func (w *walLog) put(wdb *badger.DB, payload []byte) (int, error) {
	val := w.codec.encodeFast(codecZstdOTLP, payload)
	if err := wdb.Update(func(txn *badger.Txn) error { return txn.Set(walKey(w.seq.Add(1)), val) }); err != nil {
		return 0, fmt.Errorf("%w: %s WAL: %v", ErrUnavailable, w.name, err) //nolint:errorlint // Badger errors stay inside the store
	}
	return len(val), nil
}

// rotate makes a new generation, starting with first, the one written, and
// returns the old one for retire.
func (w *walLog) rotate(first []byte) (*badger.DB, uint64, error) {
	old, oldGen := w.db, w.gen
	if err := w.start(oldGen, first); err != nil {
		_ = w.remove(oldGen + 1)
		return nil, 0, err
	}
	return old, oldGen, nil
}

// retire closes an old generation and deletes it.
func (w *walLog) retire(old *badger.DB, gen uint64) error {
	if err := old.Close(); err != nil {
		return fmt.Errorf("close %s WAL generation %d: %w", w.name, gen, err)
	}
	return w.remove(gen)
}

// close closes the generation being written and, when its contents are
// in the partitions, deletes it.
func (w *walLog) close(keep bool) error {
	if w.db == nil {
		return nil
	}
	if keep {
		return w.db.Close()
	}
	return w.retire(w.db, w.gen)
}

func (w *walLog) remove(gen uint64) error { return removeWALGen(w.root, w.sub, gen) }

// headState is what a head with a WAL shares with checkpoint and shutdown:
// commits hold mu shared while they append and apply; closed stops them.
type headState struct {
	mu     sync.RWMutex
	closed bool
}

// checkpoint bounds a WAL: under h.mu held exclusively, so that every
// commit to the old generation has been applied to the head, a new
// generation starts with first() and the head is cut; then what was cut is
// written and the old generation deleted. If writing fails, the old
// generation stays and replays on the next open.
func checkpoint[T any](h *headState, w *walLog, first func() []byte, cut func() T, write func(T) error) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	old, oldGen, err := w.rotate(first())
	if err != nil {
		h.mu.Unlock()
		return err
	}
	c := cut()
	h.mu.Unlock()
	if err := write(c); err != nil {
		_ = old.Close()
		return fmt.Errorf("%s checkpoint: %w (WAL generation %d kept)", w.name, err, oldGen)
	}
	return w.retire(old, oldGen)
}

// shutdown stops commits, writes everything the head holds and, once that
// is durable, deletes the WAL; if writing fails the WAL is kept to replay.
func shutdown[T any](h *headState, w *walLog, cut func() T, write func(T) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if err := write(cut()); err != nil {
		_ = w.close(true)
		return fmt.Errorf("write the %s head: %w (the WAL is kept and replays on open)", w.name, err)
	}
	return w.close(false)
}
