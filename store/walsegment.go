package store

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
	"syscall"
)

// A WAL generation is one segment file, data/wal/<generation as 16 hex
// digits>.wal (data/logwal for logs), written with write(2) and made
// durable with fsync — never through a memory mapping, so a full disk is
// an error to answer, not a SIGBUS:
//
//	segment := "LWAL" version[1]=1 { frame }
//	frame   := len[4 BE] crc32c(body)[4 BE] body[len]
//	body    := codec[1] zstd(record)           (frame.go's codecZstdOTLP)
//
// Writers that arrive together share one fsync (the first to sync syncs
// for everyone whose frame is written by then). A failed write is cut off
// the file before the next one, so a frame never follows a torn one; a
// crash can still leave a torn frame at the end, which replay counts and
// stops at. Generations written by earlier versions are Badger
// directories (wal_legacy.go), replayed the same way and then deleted.
const (
	walMagic       = "LWAL"
	walVersion     = 1
	walFrameHeader = 8
	// walMaxFrame bounds one record: larger lengths are a torn or corrupt
	// frame, not an allocation to attempt.
	walMaxFrame = 1 << 30
)

var walCRC = crc32.MakeTable(crc32.Castagnoli)

// walGen names one generation on disk.
type walGen struct {
	n      uint64
	legacy bool // a Badger directory, from before segment files
}

func walSegmentPath(root, sub string, gen uint64) string {
	return filepath.Join(root, sub, fmt.Sprintf("%016x.wal", gen))
}

// walGenDir is a legacy generation's Badger directory.
func walGenDir(root, sub string, gen uint64) string {
	return filepath.Join(root, sub, fmt.Sprintf("%016x", gen))
}

const (
	metricsWALDir = "wal"
	logsWALDir    = "logwal"
)

// listWALGens returns the generations on disk, oldest first. Leftover
// temporary files are ignored.
func listWALGens(root, sub string) ([]walGen, error) {
	entries, err := os.ReadDir(filepath.Join(root, sub))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list WAL %s: %w", sub, err)
	}
	var gens []walGen
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
		gens = append(gens, walGen{n: n, legacy: legacy})
	}
	slices.SortFunc(gens, func(a, b walGen) int {
		switch {
		case a.n != b.n:
			return cmp.Compare(a.n, b.n)
		case a.legacy == b.legacy:
			return 0
		case a.legacy:
			return -1
		}
		return 1
	})
	return gens, nil
}

func removeWALGen(root, sub string, g walGen) error {
	var err error
	if g.legacy {
		err = os.RemoveAll(walGenDir(root, sub, g.n))
	} else {
		err = os.Remove(walSegmentPath(root, sub, g.n))
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove WAL %s generation %d: %w", sub, g.n, err)
	}
	return nil
}

// walSegment is the generation being written.
type walSegment struct {
	path string
	sync bool

	mu     sync.Mutex // serialises writes
	f      *os.File
	size   int64 // bytes of whole frames in the file
	broken error // set when the file could not be repaired or synced

	syncMu sync.Mutex // one fsync at a time
	synced atomic.Int64
}

// createWALSegment creates a new segment with its header, durably (the
// directory entry too).
func createWALSegment(path string, sync bool) (*walSegment, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create WAL dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("create WAL segment: %w", err)
	}
	s := &walSegment{path: path, sync: sync, f: f}
	hdr := append([]byte(walMagic), walVersion)
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
		if err := syncDir(filepath.Dir(path)); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			return nil, err
		}
	}
	s.synced.Store(s.size)
	return s, nil
}

func syncDir(dir string) error {
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

// append writes one frame of body and returns once it is durable (when
// the segment syncs). A frame that could not be written whole is cut off
// again, so the next one follows the last whole frame.
func (s *walSegment) append(body []byte) error {
	frame := make([]byte, walFrameHeader, walFrameHeader+len(body))
	binary.BigEndian.PutUint32(frame, uint32(len(body)))
	binary.BigEndian.PutUint32(frame[4:], crc32.Checksum(body, walCRC))
	frame = append(frame, body...)

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
func (s *walSegment) syncTo(end int64) error {
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

func (s *walSegment) close() error {
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

// readWALSegment calls fn with the body of every whole frame whose
// checksum matches, in order. A frame cut short ends the segment (a torn
// tail); a frame whose checksum fails is skipped; both are counted. Only
// an error reading the file, or one from fn, is returned.
func readWALSegment(path string, fn func(body []byte) error, c *replayCounts) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open WAL segment: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	hdr := make([]byte, len(walMagic)+1)
	if n, err := io.ReadFull(r, hdr); err != nil {
		if n > 0 {
			c.skip(skipTornTail, 1)
		}
		return nil // a crash before the header was durable: empty
	}
	if string(hdr[:len(walMagic)]) != walMagic || hdr[len(walMagic)] != walVersion {
		c.skip(skipUndecodable, 1)
		return nil
	}
	return readWALFrames(r, fn, c)
}

// readWALFrames reads frames until the end of r.
func readWALFrames(r io.Reader, fn func(body []byte) error, c *replayCounts) error {
	var head [walFrameHeader]byte
	var body []byte
	for {
		n, err := io.ReadFull(r, head[:])
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				c.skip(skipTornTail, 1)
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
			c.skip(skipTornTail, 1)
			return nil
		}
		if size > walMaxFrame {
			c.skip(skipTornTail, 1)
			return nil
		}
		if cap(body) < int(size) {
			body = make([]byte, size)
		}
		body = body[:size]
		if _, err := io.ReadFull(r, body); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				c.skip(skipTornTail, 1)
				return nil
			}
			return fmt.Errorf("read WAL segment: %w", err)
		}
		if crc32.Checksum(body, walCRC) != sum {
			c.skip(skipChecksum, 1)
			continue
		}
		if err := fn(body); err != nil {
			return err
		}
	}
}

// isDiskFull reports whether err is the file system running out of space
// or quota. Badger formats the errors it wraps into text, so their text is
// looked at too.
func isDiskFull(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error())
}
