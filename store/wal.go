package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/lumenobs/lumen/store/wlog"
)

// The WALs' directories under the data dir; their segment files are
// store/wlog's.
const (
	metricsWALDir = "wal"
	logsWALDir    = "logwal"
)

// walLog is one signal's write-ahead log (metrics in data/wal, logs in
// data/logwal): generations on disk, each one segment file of records
// (store/wlog), the newest one being written. A checkpoint rotates to a
// new generation and retires the older ones once what they held is in the
// partitions. The head that owns it serialises append against rotate.
//
// Replay never refuses to start over a record it cannot use: a torn tail,
// a frame whose checksum fails, a record that does not decode, or an item
// that refers to a series or stream the log never defined is counted in
// skipped (by reason), one warning is logged per generation, and the rest
// is replayed.
type walLog struct {
	name      string // metrics or logs, for errors
	root, sub string
	opts      Options
	codec     *codec
	s2        bool // records in S2 frames (codecS2), not zstd ones
	log       *zap.Logger

	seg *wlog.Segment // the generation being written
	gen uint64
	// older are generations replayed or rotated out whose contents could not
	// be written to the partitions yet: the next successful checkpoint
	// deletes them, a restart replays them.
	older []wlog.Gen

	skipped *walSkips
	wrote   func(n int) // counts bytes written, for the floor and the budget
}

// walFirst is the first record of a generation, defining every series or
// stream of the head, and define, which marks exactly those defined once
// the record is written.
type walFirst struct {
	rec    []byte
	define func()
	// more are records written after rec (the metrics head's carried
	// chunks), before any request's.
	more [][]byte
}

// dir is the directory of the log's generations.
func (w *walLog) dir() string { return filepath.Join(w.root, w.sub) }

func newWALLog(db *DB, name, sub string) *walLog {
	return &walLog{name: name, root: db.opts.Dir, sub: sub, opts: db.opts, codec: db.codec,
		log: db.log.Named("wal").With(zap.String("wal", name)), skipped: &db.walSkips, wrote: db.wrote}
}

// walSkips counts what replays skipped, by reason; the DB has one for all
// its logs.
type walSkips struct {
	mu sync.Mutex
	n  map[string]uint64 // "<wal>/<reason>" -> count
}

func (s *walSkips) add(wal, reason string, n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]uint64{}
	}
	s.n[wal+"/"+reason] += uint64(n)
}

func (s *walSkips) snapshot() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.n))
	for k, v := range s.n {
		out[k] = v
	}
	return out
}

// existing lists the generations on disk, oldest first.
func (w *walLog) existing() ([]wlog.Gen, error) { return wlog.List(w.dir()) }

// replay calls fn with every record of generation g that checks and
// decodes, oldest first; fn reports items it could not place through the
// counts it is given. Records that cannot be read are counted and
// skipped, never an error: only an unreadable file is.
func (w *walLog) replay(g wlog.Gen, fn func(payload []byte, c *wlog.Counts) error) (wlog.Counts, error) {
	var c wlog.Counts
	each := func(body []byte) error {
		_, payload, err := w.codec.decode(body)
		if err != nil {
			c.Skip(wlog.SkipUndecodable, 1)
			return nil
		}
		if err := fn(payload, &c); err != nil {
			if errors.Is(err, ErrCorrupt) {
				c.Skip(wlog.SkipUndecodable, 1)
				return nil
			}
			return err
		}
		c.Records++
		return nil
	}
	var err error
	if g.Legacy {
		err = replayLegacyWALGen(w.dir(), g.N, w.opts, each, &c)
	} else {
		err = wlog.Read(wlog.SegmentPath(w.dir(), g.N), each, &c)
	}
	for reason, n := range c.Skipped {
		w.skipped.add(w.name, reason, n)
	}
	if len(c.Skipped) > 0 {
		w.log.Warn("WAL replay skipped what it could not use", zap.Uint64("generation", g.N), zap.Int("records", c.Records), zap.Any("skipped", c.Skipped))
	}
	if err != nil {
		return c, fmt.Errorf("replay %s WAL generation %d: %w", w.name, g.N, err)
	}
	return c, nil
}

// recover brings a head back after a stop or a crash: every generation on
// disk is replayed (replay), what they held is written to the partitions
// (flush) and they are deleted; then a new generation starts with first().
// When flush fails (a full disk), the head keeps what was replayed, the
// old generations stay until a checkpoint writes it, and the store opens.
func (w *walLog) recover(replay func(g wlog.Gen) error, flush func() error, first func() walFirst) error {
	gens, err := w.existing()
	if err != nil {
		return err
	}
	for _, g := range gens {
		if err := replay(g); err != nil {
			return err
		}
	}
	var last uint64
	if len(gens) > 0 {
		last = gens[len(gens)-1].N
		if err := flush(); err != nil {
			w.log.Error("write what the WAL replayed; it stays in the head and the WAL until a checkpoint can", zap.Error(err))
			w.older = gens
		} else {
			for _, g := range gens {
				if err := w.remove(g); err != nil {
					return err
				}
			}
		}
	}
	return w.start(last, first())
}

// start opens the generation after last for writing and writes first (a
// record naming every series or stream the head holds) when not nil.
func (w *walLog) start(last uint64, first walFirst) error {
	seg, err := wlog.Create(wlog.SegmentPath(w.dir(), last+1), w.opts.SyncWrites)
	if err != nil {
		return w.classify(err)
	}
	for _, rec := range append([][]byte{first.rec}, first.more...) {
		if rec == nil {
			continue
		}
		frame := w.frame(nil, rec)
		if err := seg.Append(frame); err != nil {
			_ = seg.Close()
			_ = os.Remove(seg.Path())
			return w.classify(err)
		}
		w.wrote(len(frame) + wlog.FrameHeader)
	}
	w.seg, w.gen = seg, last+1
	if first.define != nil {
		first.define()
	}
	return nil
}

// append writes one record durably and returns its size on disk.
func (w *walLog) append(payload []byte) (int, error) {
	buf := walFramePool.Get().(*[]byte)
	frame := w.frame(append((*buf)[:0], make([]byte, wlog.FrameHeader)...), payload)
	err := w.seg.AppendFrame(frame)
	n := len(frame)
	*buf = frame
	if cap(frame) <= maxPooledRecord {
		walFramePool.Put(buf)
	}
	if err != nil {
		return 0, w.classify(err)
	}
	w.wrote(n)
	return n, nil
}

// walFramePool holds buffers for frames, which the segment has copied
// to its file when append returns.
var walFramePool = sync.Pool{New: func() any { return new([]byte) }}

// frame appends the frame value of a record to dst.
func (w *walLog) frame(dst, payload []byte) []byte {
	if w.s2 {
		return appendS2(dst, payload)
	}
	return w.codec.appendFast(dst, codecZstdOTLP, payload)
}

// classify wraps a write error as the store's: a full disk, or unavailable.
func (w *walLog) classify(err error) error {
	if isDiskFull(err) {
		return fmt.Errorf("%w: %s WAL: %v", ErrDiskFull, w.name, err) //nolint:errorlint // OS errors stay inside the store
	}
	return fmt.Errorf("%w: %s WAL: %v", ErrUnavailable, w.name, err) //nolint:errorlint // OS errors stay inside the store
}

// walRotation is what a rotation moved out of the way: the generations to
// delete once their contents are in the partitions.
type walRotation struct {
	seg  *wlog.Segment
	gens []wlog.Gen
}

// rotate makes a new generation, starting with first, the one written, and
// returns the old ones for retire.
func (w *walLog) rotate(first walFirst) (walRotation, error) {
	old, oldGen := w.seg, w.gen
	if err := w.start(oldGen, first); err != nil {
		return walRotation{}, err
	}
	r := walRotation{seg: old, gens: append(w.older, wlog.Gen{N: oldGen})}
	w.older = nil
	return r, nil
}

// retire closes a rotated generation and deletes it with the older ones,
// oldest first. When one cannot be deleted it returns it and those after
// it: they must stay known (w.older), to be deleted before any newer
// generation is — a generation replayed without the one after it could
// rebuild a chunk that a newer generation finished, shorter, and write it
// over the finished one.
func (w *walLog) retire(r walRotation) ([]wlog.Gen, error) {
	if err := r.seg.Close(); err != nil {
		w.log.Warn("close WAL segment", zap.Error(err))
	}
	for i, g := range r.gens {
		if err := w.remove(g); err != nil {
			return r.gens[i:], err
		}
	}
	return nil, nil
}

// keep puts a rotation back: its contents could not be written, so its
// generations stay until the next checkpoint (or replay on the next open).
func (w *walLog) keep(r walRotation) {
	_ = r.seg.Close()
	w.older = append(r.gens, w.older...)
}

// close closes the generation being written and, when its contents are
// in the partitions, deletes it and the older ones.
func (w *walLog) close(keep bool) error {
	if w.seg == nil {
		return nil
	}
	if keep {
		return w.seg.Close()
	}
	_, err := w.retire(walRotation{seg: w.seg, gens: append(w.older, wlog.Gen{N: w.gen})})
	return err // the store is closing: what is left replays on the next open
}

func (w *walLog) remove(g wlog.Gen) error { return wlog.Remove(w.dir(), g) }

// headState is what a head with a WAL shares with checkpoint and shutdown:
// commits hold mu shared while they append and apply; closed stops them.
type headState struct {
	mu     sync.RWMutex
	closed bool
}

// checkpoint bounds a WAL: under h.mu held exclusively, so that every
// commit to the old generation has been applied to the head, idle series
// or streams are removed, a new generation starts with first() and the
// head is cut; then what was cut is
// written and the old generations deleted. If writing fails, they stay
// until a later checkpoint succeeds, and replay on the next open.
func checkpoint[T any](h *headState, w *walLog, removeIdle func(), first func() walFirst, cut func() T, write func(T) error) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	// Idle series or streams leave before the new generation names them.
	removeIdle()
	r, err := w.rotate(first())
	if err != nil {
		h.mu.Unlock()
		return err
	}
	c := cut()
	h.mu.Unlock()
	if err := write(c); err != nil {
		h.mu.Lock()
		w.keep(r)
		h.mu.Unlock()
		return fmt.Errorf("%s checkpoint: %w (the WAL is kept)", w.name, err)
	}
	if rest, err := w.retire(r); err != nil {
		h.mu.Lock()
		w.older = append(rest, w.older...)
		h.mu.Unlock()
		return err
	}
	return nil
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

// defined tracks, for one series or stream, whether the WAL generation
// being written defines it: a record that refers to a series not yet
// defined carries its definition, so that no record ever depends on one a
// rolled-back or failed request did not write. A rotation starts every
// generation with all of them, defined.
type defined struct{ ok atomic.Bool }

// WALReplaySkipped returns, by WAL ("metrics", "log") and reason
// ("torn_tail", "checksum", "undecodable", "unknown_series"), how many
// records (items, for unknown_series) replays skipped since the store
// opened: lumen_wal_replay_skipped_records_total.
func (db *DB) WALReplaySkipped() map[[2]string]uint64 {
	out := map[[2]string]uint64{}
	for k, v := range db.walSkips.snapshot() {
		wal, reason, _ := strings.Cut(k, "/")
		out[[2]string{wal, reason}] = v
	}
	return out
}
