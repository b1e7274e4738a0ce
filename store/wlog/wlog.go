// Package wlog is the store's write-ahead log on disk: segment files of
// CRC-checked frames, one file per generation, written with write(2) and
// fsync, with concurrent writers sharing an fsync, and read back with
// what cannot be read counted rather than refused. It knows nothing of
// what the frames hold: the records and their replay into the heads are
// the store's (store/wal.go, metrics_wal.go, logs_wal.go), as
// Prometheus keeps tsdb/wlog apart from tsdb/record and the head.
package wlog

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Reasons a replay skips what it read, the values of
// lumen_wal_replay_skipped_records_total's reason label. Read and
// ReadFrames count the first three; the store counts the others.
const (
	SkipTornTail      = "torn_tail"      // a frame cut short (or zeros) at the end: a crash mid-write
	SkipChecksum      = "checksum"       // a frame whose CRC does not match
	SkipUndecodable   = "undecodable"    // a frame that checks but whose record does not decode
	SkipUnknownSeries = "unknown_series" // a sample, exemplar or line of a series or stream never defined
)

// Counts is what one generation's replay found: records used, and what
// was skipped by reason.
type Counts struct {
	Records int
	Skipped map[string]int
}

// Skip counts n items skipped for reason.
func (c *Counts) Skip(reason string, n int) {
	if n <= 0 {
		return
	}
	if c.Skipped == nil {
		c.Skipped = map[string]int{}
	}
	c.Skipped[reason] += n
}

// A WAL generation is one segment file, <dir>/<generation as 16 hex
// digits>.wal, written with write(2) and made durable with fsync — never
// through a memory mapping, so a full disk is an error to answer, not a
// SIGBUS:
//
//	segment := "LWAL" version[1]=1 { frame }
//	frame   := len[4 BE] crc32c(body)[4 BE] body[len]
//	body    := what the caller appends (the store: codec[1] zstd(record))
//
// Writers that arrive together share one fsync (the first to sync syncs
// for everyone whose frame is written by then). A failed write is cut off
// the file before the next one, so a frame never follows a torn one; a
// crash can still leave a torn frame at the end, which replay counts and
// stops at. Generations written by earlier versions are Badger
// directories (LegacyDir), which the store reads itself.
const (
	Magic       = "LWAL"
	Version     = 1
	FrameHeader = 8
	// MaxFrame bounds one record: larger lengths are a torn or corrupt
	// frame, not an allocation to attempt.
	MaxFrame = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Gen names one generation on disk.
type Gen struct {
	N      uint64
	Legacy bool // a Badger directory, from before segment files
}

func SegmentPath(dir string, gen uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.wal", gen))
}

// LegacyDir is a legacy generation's Badger directory.
func LegacyDir(dir string, gen uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x", gen))
}

// List returns the generations in dir, oldest first. Other files are
// ignored.
func List(dir string) ([]Gen, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list WAL %s: %w", dir, err)
	}
	var gens []Gen
	for _, e := range entries {
		name, legacy := e.Name(), e.IsDir()
		if !legacy {
			var ok bool
			if name, ok = strings.CutSuffix(name, ".wal"); !ok {
				continue
			}
		}
		n, err := strconv.ParseUint(name, 16, 64)
		if err != nil || len(name) != 16 {
			continue
		}
		gens = append(gens, Gen{N: n, Legacy: legacy})
	}
	slices.SortFunc(gens, func(a, b Gen) int {
		switch {
		case a.N != b.N:
			return cmp.Compare(a.N, b.N)
		case a.Legacy == b.Legacy:
			return 0
		case a.Legacy:
			return -1
		}
		return 1
	})
	return gens, nil
}

// Remove deletes generation g of dir.
func Remove(dir string, g Gen) error {
	var err error
	if g.Legacy {
		err = os.RemoveAll(LegacyDir(dir, g.N))
	} else {
		err = os.Remove(SegmentPath(dir, g.N))
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove WAL %s generation %d: %w", dir, g.N, err)
	}
	return nil
}

// Segment is the generation being written.
type Segment struct {
	path string
	sync bool

	mu     sync.Mutex // serialises writes
	f      *os.File
	size   int64 // bytes of whole frames in the file
	broken error // set when the file could not be repaired or synced

	syncMu sync.Mutex // one fsync at a time
	synced atomic.Int64
}

// Create creates a new segment with its header, durably (the directory
// entry too) when sync is set; then every Append is durable when it
// returns.
func Create(path string, sync bool) (*Segment, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create WAL dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("create WAL segment: %w", err)
	}
	s := &Segment{path: path, sync: sync, f: f}
	hdr := append([]byte(Magic), Version)
	if _, err := f.WriteAt(hdr, 0); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("write WAL segment header: %w", err)
	}
	s.size = int64(len(hdr))
	if sync {
		if err := f.Sync(); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			return nil, fmt.Errorf("sync WAL segment: %w", err)
		}
		if err := SyncDir(filepath.Dir(path)); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			return nil, err
		}
	}
	s.synced.Store(s.size)
	return s, nil
}

// SyncDir makes dir's entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %q to sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %q: %w", dir, err)
	}
	return nil
}

// Append writes one frame of body and returns once it is durable (when
// the segment syncs). A frame that could not be written whole is cut off
// again, so the next one follows the last whole frame.
func (s *Segment) Append(body []byte) error {
	frame := make([]byte, FrameHeader, FrameHeader+len(body))
	return s.AppendFrame(append(frame, body...))
}

// AppendFrame is Append of frame[FrameHeader:], the body, with room for the
// header before it, which AppendFrame fills in: no copy of the body.
func (s *Segment) AppendFrame(frame []byte) error {
	body := frame[FrameHeader:]
	binary.BigEndian.PutUint32(frame, uint32(len(body)))
	binary.BigEndian.PutUint32(frame[4:], crc32.Checksum(body, castagnoli))

	s.mu.Lock()
	if s.broken != nil {
		err := s.broken
		s.mu.Unlock()
		return err
	}
	if _, err := s.f.WriteAt(frame, s.size); err != nil {
		if terr := s.f.Truncate(s.size); terr != nil {
			s.broken = fmt.Errorf("WAL segment cannot be repaired after a failed write: %w", terr)
		}
		s.mu.Unlock()
		return fmt.Errorf("write WAL frame of %d bytes: %w", len(frame), err)
	}
	s.size += int64(len(frame))
	end := s.size
	s.mu.Unlock()
	if !s.sync {
		return nil
	}
	return s.syncTo(end)
}

// syncTo returns once the file is durable up to end: the caller syncs
// unless a sync that started after its write already did.
func (s *Segment) syncTo(end int64) error {
	if s.synced.Load() >= end {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced.Load() >= end {
		return nil
	}
	s.mu.Lock()
	target, broken := s.size, s.broken
	s.mu.Unlock()
	if broken != nil {
		return broken
	}
	if err := s.f.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the pages:
		// nothing more is acknowledged from this file; the next
		// checkpoint starts a new one.
		s.mu.Lock()
		s.broken = fmt.Errorf("WAL segment sync failed: %w", err)
		s.mu.Unlock()
		return fmt.Errorf("sync WAL segment: %w", err)
	}
	s.synced.Store(target)
	return nil
}

// Fail makes every Append fail with err until Fail(nil), as if the file
// could not be written or repaired: how tests inject a failed write.
func (s *Segment) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broken = err
}

// Path is the segment's file.
func (s *Segment) Path() string { return s.path }

// Close closes the segment's file.
func (s *Segment) Close() error {
	if s == nil || s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("close WAL segment: %w", err)
	}
	return nil
}

// Read calls fn with the body of every whole frame whose
// checksum matches, in order. A frame cut short ends the segment (a torn
// tail); a frame whose checksum fails is skipped; both are counted. Only
// an error reading the file, or one from fn, is returned.
func Read(path string, fn func(body []byte) error, c *Counts) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open WAL segment: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	hdr := make([]byte, len(Magic)+1)
	if n, err := io.ReadFull(r, hdr); err != nil {
		if n > 0 {
			c.Skip(SkipTornTail, 1)
		}
		return nil // a crash before the header was durable: empty
	}
	if string(hdr[:len(Magic)]) != Magic || hdr[len(Magic)] != Version {
		c.Skip(SkipUndecodable, 1)
		return nil
	}
	return ReadFrames(r, fn, c)
}

// ReadFrames reads frames until the end of r, as Read.
func ReadFrames(r io.Reader, fn func(body []byte) error, c *Counts) error {
	var head [FrameHeader]byte
	var body []byte
	for {
		n, err := io.ReadFull(r, head[:])
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				c.Skip(SkipTornTail, 1)
				return nil
			}
			return fmt.Errorf("read WAL segment: %w", err)
		}
		_ = n
		size := binary.BigEndian.Uint32(head[:])
		sum := binary.BigEndian.Uint32(head[4:])
		if size == 0 && sum == 0 {
			// zeros: space the file system allocated but the crash did
			// not fill; nothing after it was written.
			c.Skip(SkipTornTail, 1)
			return nil
		}
		if size > MaxFrame {
			c.Skip(SkipTornTail, 1)
			return nil
		}
		if cap(body) < int(size) {
			body = make([]byte, size)
		}
		body = body[:size]
		if _, err := io.ReadFull(r, body); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				c.Skip(SkipTornTail, 1)
				return nil
			}
			return fmt.Errorf("read WAL segment: %w", err)
		}
		if crc32.Checksum(body, castagnoli) != sum {
			c.Skip(SkipChecksum, 1)
			continue
		}
		if err := fn(body); err != nil {
			return err
		}
	}
}
