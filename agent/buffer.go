package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Signal is what a buffered record holds: an OTLP export request of logs,
// traces or metrics, compressed.
type Signal uint8

const (
	SignalLogs Signal = iota + 1
	SignalTraces
	SignalMetrics
)

func (s Signal) String() string {
	switch s {
	case SignalLogs:
		return "logs"
	case SignalTraces:
		return "traces"
	case SignalMetrics:
		return "metrics"
	}
	return "unknown"
}

// Position is how far a container log file has been read: the records up
// to and including the one that carries it hold every line before Offset.
type Position struct {
	Key    string // the file's identity (device:inode)
	Offset int64
}

// Record is one buffered request.
type Record struct {
	Signal    Signal
	Items     int        // log records, spans or data points
	Positions []Position // of the files whose lines it holds
	Body      []byte     // zstd-compressed OTLP protobuf export request

	seg  uint64 // where it was read from
	next int64  // offset just past it in seg
}

// mark is a place in the buffer: a segment and an offset in it. Marks
// only grow: a later record ends at a later mark.
type mark struct {
	seg uint64
	off int64
}

// atOrBefore tells whether m is not after o.
func (m mark) atOrBefore(o mark) bool { return m.seg < o.seg || (m.seg == o.seg && m.off <= o.off) }

// Buffer is a bounded on-disk FIFO of records: numbered segment files of
// framed records ([length][crc32c][payload]), appended with fsync before
// anything is acknowledged, read in order by the shipper, deleted once
// shipped. Past its size limit the oldest segment is dropped, counted.
// A read cursor file says where shipping stopped, so a restarted agent
// sends on from there.
type Buffer struct {
	dir    string
	max    int64
	segMax int64
	m      *Metrics
	// truncate cuts the written segment; a field so that a test can make
	// it fail.
	truncate func(f *os.File, size int64) error

	mu   sync.Mutex
	cond *sync.Cond
	segs []segment // oldest first; the last is the one written
	w    *os.File
	// torn is set when a write failed part-way: the written segment's
	// file may hold part of a frame past its size, to be cut before the
	// next append.
	torn    bool
	total   int64
	rSeg    uint64 // read cursor
	rOff    int64
	rFile   *os.File
	rFileID uint64
	closed  bool
	// cursor is rSeg and rOff, readable without mu (which an append holds
	// while it syncs).
	cursor atomic.Pointer[mark]
}

type segment struct {
	id   uint64
	size int64
}

const (
	frameHeader = 8
	// maxRecord bounds one record, so a corrupt length cannot ask for
	// gigabytes.
	maxRecord = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by a closed buffer.
var ErrClosed = errors.New("buffer closed")

// ErrCorrupt is returned by Next when it met a record it cannot read (a
// bad checksum or length, a torn or undecodable record, a missing
// segment) and skipped it: the error says where and how many bytes were
// skipped, and the next call goes on after them.
var ErrCorrupt = errors.New("buffer: corrupt record skipped")

// errFrame is a frame whose length or checksum is wrong.
var errFrame = errors.New("bad frame")

// OpenBuffer opens (or creates) the buffer in dir, cutting a record torn by
// a crash from the end of the newest segment.
func OpenBuffer(dir string, maxBytes int64, m *Metrics) (*Buffer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	b := &Buffer{dir: dir, max: maxBytes, segMax: min(8<<20, max(maxBytes/4, 64<<10)), m: m, truncate: (*os.File).Truncate}
	b.cond = sync.NewCond(&b.mu)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("buffer: %w", err)
		}
		b.segs = append(b.segs, segment{id: n, size: info.Size()})
	}
	sort.Slice(b.segs, func(i, j int) bool { return b.segs[i].id < b.segs[j].id })
	if len(b.segs) > 0 {
		last := &b.segs[len(b.segs)-1]
		valid, err := validLength(b.segPath(last.id))
		if err != nil {
			return nil, err
		}
		if valid != last.size {
			if err := os.Truncate(b.segPath(last.id), valid); err != nil {
				return nil, fmt.Errorf("buffer: cut a torn record: %w", err)
			}
			last.size = valid
		}
	}
	if len(b.segs) == 0 {
		b.segs = append(b.segs, segment{id: 1})
	}
	last := b.segs[len(b.segs)-1]
	if b.w, err = os.OpenFile(b.segPath(last.id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640); err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	for _, s := range b.segs {
		b.total += s.size
	}
	b.setCursor(b.segs[0].id, 0)
	if c, err := os.ReadFile(filepath.Join(dir, "cursor")); err == nil {
		var seg uint64
		var off int64
		if _, err := fmt.Sscanf(string(c), "%d %d", &seg, &off); err == nil {
			for _, s := range b.segs {
				if s.id == seg && off <= s.size {
					b.setCursor(seg, off)
				}
			}
		}
	}
	b.metrics()
	return b, nil
}

func (b *Buffer) segPath(id uint64) string { return filepath.Join(b.dir, fmt.Sprintf("%020d.seg", id)) }

// setCursor moves the read cursor (under mu).
func (b *Buffer) setCursor(seg uint64, off int64) {
	b.rSeg, b.rOff = seg, off
	b.cursor.Store(&mark{seg: seg, off: off})
}

// shipped is how far the buffer was read and acknowledged: every record
// that ends at or before it was shipped, or dropped.
func (b *Buffer) shipped() mark { return *b.cursor.Load() }

// validLength is the length of a segment's prefix of whole, intact records.
func validLength(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("buffer: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("buffer: %w", err)
	}
	r := bufio.NewReader(f)
	var off int64
	for {
		n, err := readFrame(r, info.Size()-off-frameHeader, nil)
		if err != nil {
			return off, nil //nolint:nilerr // the end, or a torn or corrupt record: keep what precedes it
		}
		off += n
	}
}

// readFrame reads one frame, whose payload may be at most limit bytes
// (what is left of its segment: a longer one is torn, and is not read into
// memory); payload, when not nil, receives it.
func readFrame(r io.Reader, limit int64, payload *[]byte) (int64, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	n := binary.LittleEndian.Uint32(h[:4])
	if n == 0 || n > maxRecord {
		return 0, fmt.Errorf("%w: record length %d", errFrame, n)
	}
	if int64(n) > limit {
		return 0, io.ErrUnexpectedEOF
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	if crc32.Checksum(buf, crcTable) != binary.LittleEndian.Uint32(h[4:]) {
		return 0, fmt.Errorf("%w: record checksum mismatch", errFrame)
	}
	if payload != nil {
		*payload = buf
	}
	return int64(frameHeader + n), nil
}

func encodeRecord(r Record) []byte {
	p := make([]byte, 0, 32+len(r.Body))
	p = append(p, byte(r.Signal))
	p = binary.AppendUvarint(p, uint64(r.Items))
	p = binary.AppendUvarint(p, uint64(len(r.Positions)))
	for _, pos := range r.Positions {
		p = binary.AppendUvarint(p, uint64(len(pos.Key)))
		p = append(p, pos.Key...)
		p = binary.AppendUvarint(p, uint64(pos.Offset))
	}
	return append(p, r.Body...)
}

// errMalformed is a frame whose payload is not a record.
var errMalformed = errors.New("buffer: malformed record")

// decodeRecord reads a payload written by encodeRecord.
func decodeRecord(p []byte) (Record, error) {
	if len(p) < 1 {
		return Record{}, errMalformed
	}
	r := Record{Signal: Signal(p[0])}
	p = p[1:]
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	items, ok1 := uv()
	npos, ok2 := uv()
	if !ok1 || !ok2 || npos > uint64(len(p)) || items > 1<<31 {
		return Record{}, errMalformed
	}
	r.Items = int(items)
	for range npos {
		kl, ok := uv()
		if !ok || kl > uint64(len(p)) {
			return Record{}, errMalformed
		}
		key := string(p[:kl])
		p = p[kl:]
		off, ok := uv()
		if !ok || off > 1<<62 {
			return Record{}, errMalformed
		}
		r.Positions = append(r.Positions, Position{Key: key, Offset: int64(off)})
	}
	r.Body = p
	return r, nil
}

// Append writes a record and syncs it to disk. When the buffer is over its
// size, the oldest segments are dropped and their items counted.
func (b *Buffer) Append(r Record) error {
	_, err := b.append(r)
	return err
}

// append is Append that also tells where the record ends.
func (b *Buffer) append(r Record) (mark, error) {
	frame, err := encodeFrame(r)
	if err != nil {
		return mark{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return mark{}, ErrClosed
	}
	if err := b.repair(); err != nil {
		return mark{}, err
	}
	if last := b.segs[len(b.segs)-1]; last.size > 0 && last.size+int64(len(frame)) > b.segMax {
		if err := b.rotate(); err != nil {
			return mark{}, err
		}
	}
	last := &b.segs[len(b.segs)-1]
	if err := b.write(frame); err != nil {
		return mark{}, err
	}
	last.size += int64(len(frame))
	b.total += int64(len(frame))
	end := mark{seg: last.id, off: last.size}
	b.m.buffered(r.Signal, r.Items)
	for b.total > b.max && len(b.segs) > 1 {
		b.dropOldest()
	}
	b.metrics()
	b.cond.Broadcast()
	return end, nil
}

// encodeFrame is a record framed: [length][crc32c][payload].
func encodeFrame(r Record) ([]byte, error) {
	p := encodeRecord(r)
	if len(p) > maxRecord {
		return nil, fmt.Errorf("buffer: record of %d bytes is over the %d limit", len(p), maxRecord)
	}
	frame := make([]byte, frameHeader, frameHeader+len(p))
	binary.LittleEndian.PutUint32(frame[:4], uint32(len(p)))
	binary.LittleEndian.PutUint32(frame[4:], crc32.Checksum(p, crcTable))
	return append(frame, p...), nil
}

// write appends a frame to the written segment and syncs it. A write or
// sync that fails may leave part of the frame in the file (ENOSPC half
// way, say): the segment is marked torn and cut back to its last whole
// frame before anything else is appended, or the frame would follow the
// torn one and be unreadable. A frame whose sync failed is cut too: the
// caller was told it is not stored and will send it again.
func (b *Buffer) write(frame []byte) error {
	if _, err := b.w.Write(frame); err != nil {
		b.torn = true
		_ = b.repair() // if this fails, the next append tries again first
		return fmt.Errorf("buffer: write: %w", err)
	}
	if err := b.w.Sync(); err != nil {
		b.torn = true
		_ = b.repair()
		return fmt.Errorf("buffer: sync: %w", err)
	}
	return nil
}

// repair cuts a torn write from the end of the written segment; when it
// cannot, it starts a new segment, so that the next frame is appended
// after whole ones (what is past the old segment's size is never read in
// this run; after a restart it is skipped as corrupt).
func (b *Buffer) repair() error {
	if !b.torn {
		return nil
	}
	last := b.segs[len(b.segs)-1]
	if err := b.truncate(b.w, last.size); err == nil {
		b.torn = false
		return nil
	}
	if err := b.rotate(); err != nil {
		return fmt.Errorf("buffer: segment %d holds a torn record that cannot be cut: %w", last.id, err)
	}
	b.torn = false
	return nil
}

// rotate starts a new segment to write to. The new file is opened before
// the old one is closed, so that a failure leaves the buffer writable.
func (b *Buffer) rotate() error {
	next := segment{id: b.segs[len(b.segs)-1].id + 1}
	w, err := os.OpenFile(b.segPath(next.id), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("buffer: new segment: %w", err)
	}
	_ = b.w.Close() // its frames were synced, and a torn one is past its size
	b.w = w
	b.segs = append(b.segs, next)
	syncDir(b.dir)
	return nil
}

// dropOldest deletes the oldest segment, counting the unshipped items in it.
func (b *Buffer) dropOldest() {
	s := b.segs[0]
	from := int64(0)
	if b.rSeg == s.id {
		from = b.rOff
	} else if b.rSeg > s.id {
		from = s.size // all of it was shipped
	}
	if from < s.size {
		if f, err := os.Open(b.segPath(s.id)); err == nil {
			if _, err := f.Seek(from, io.SeekStart); err == nil {
				r := bufio.NewReader(f)
				var p []byte
				for {
					if _, err := readFrame(r, maxRecord, &p); err != nil {
						break
					}
					if rec, err := decodeRecord(p); err == nil {
						b.m.dropped(rec.Signal, "buffer_full", rec.Items)
					}
				}
			}
			f.Close()
		}
	}
	if b.rFile != nil && b.rFileID == s.id {
		b.rFile.Close()
		b.rFile = nil
	}
	_ = os.Remove(b.segPath(s.id))
	b.total -= s.size
	b.segs = b.segs[1:]
	if b.rSeg <= s.id {
		b.setCursor(b.segs[0].id, 0)
	}
}

func (b *Buffer) metrics() {
	b.m.bufferBytes.Set(float64(b.total))
}

// Next returns the oldest record not yet acknowledged, waiting for one.
func (b *Buffer) Next(ctx context.Context) (Record, error) {
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.closed {
			return Record{}, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return Record{}, err
		}
		// Move past a finished segment.
		for i, s := range b.segs {
			if s.id == b.rSeg && b.rOff >= s.size && i+1 < len(b.segs) {
				b.setCursor(b.segs[i+1].id, 0)
			}
		}
		if sz := b.segSize(b.rSeg); b.rOff < sz {
			return b.readNext(sz)
		}
		b.cond.Wait()
	}
}

// readNext reads the record at the cursor, in a segment of sz bytes. A
// record that cannot be read is skipped (ErrCorrupt); another failure
// (an I/O error) is returned as it is, with the segment closed so that the
// next call opens it again.
func (b *Buffer) readNext(sz int64) (Record, error) {
	seg, off := b.rSeg, b.rOff
	rec, err := b.readAt(seg, off, sz)
	switch {
	case err == nil:
		return rec, nil
	case errors.Is(err, fs.ErrNotExist):
		return Record{}, b.skip(seg, off, sz, err)
	case errors.Is(err, errFrame), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errMalformed):
		return Record{}, b.skip(seg, off, b.frameEnd(seg, off, sz), err)
	}
	b.closeReader()
	return Record{}, err
}

// skip moves the cursor from off to to in seg past what cannot be read,
// counts it, and says so.
func (b *Buffer) skip(seg uint64, off, to int64, cause error) error {
	b.m.corruptRecords.Inc()
	b.m.corruptBytes.Add(float64(to - off))
	b.setCursor(seg, to)
	return fmt.Errorf("%w: segment %d at offset %d, %d bytes skipped: %w", ErrCorrupt, seg, off, to-off, cause)
}

// frameEnd is where the unreadable frame at off in seg (of sz bytes) ends:
// its length when that is sane and a readable frame (or the segment's end)
// follows, else the segment's end (a corrupt length leaves no way to find
// the next frame).
func (b *Buffer) frameEnd(seg uint64, off, sz int64) int64 {
	if b.rFile == nil || b.rFileID != seg {
		return sz
	}
	var h [frameHeader]byte
	if _, err := b.rFile.ReadAt(h[:], off); err != nil {
		return sz
	}
	n := int64(binary.LittleEndian.Uint32(h[:4]))
	end := off + frameHeader + n
	if n == 0 || n > maxRecord || end > sz {
		return sz
	}
	if end == sz {
		return end
	}
	if _, err := readFrame(io.NewSectionReader(b.rFile, end, sz-end), sz-end-frameHeader, nil); err != nil {
		return sz
	}
	return end
}

func (b *Buffer) closeReader() {
	if b.rFile != nil {
		b.rFile.Close()
		b.rFile = nil
	}
}

func (b *Buffer) segSize(id uint64) int64 {
	for _, s := range b.segs {
		if s.id == id {
			return s.size
		}
	}
	return 0
}

// readAt reads the record at off in seg, whose size is sz: a frame that
// runs past sz is torn.
func (b *Buffer) readAt(seg uint64, off, sz int64) (Record, error) {
	if b.rFile == nil || b.rFileID != seg {
		b.closeReader()
		f, err := os.Open(b.segPath(seg))
		if err != nil {
			return Record{}, fmt.Errorf("buffer: %w", err)
		}
		b.rFile, b.rFileID = f, seg
	}
	var p []byte
	n, err := readFrame(io.NewSectionReader(b.rFile, off, sz-off), sz-off-frameHeader, &p)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Record{}, fmt.Errorf("buffer: segment %d at %d: %w", seg, off, err)
	}
	rec, err := decodeRecord(p)
	if err != nil {
		return Record{}, err
	}
	rec.seg, rec.next = seg, off+n
	return rec, nil
}

// Ack marks a record shipped: the cursor moves past it and is saved, and
// segments wholly shipped are deleted.
func (b *Buffer) Ack(r Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if r.seg != b.rSeg || r.next <= b.rOff {
		return nil // its segment was dropped meanwhile
	}
	b.setCursor(b.rSeg, r.next)
	if err := writeFileAtomic(filepath.Join(b.dir, "cursor"), []byte(fmt.Sprintf("%d %d\n", b.rSeg, b.rOff))); err != nil {
		return err
	}
	for len(b.segs) > 1 && (b.segs[0].id < b.rSeg || (b.segs[0].id == b.rSeg && b.rOff >= b.segs[0].size)) {
		s := b.segs[0]
		if b.rFile != nil && b.rFileID == s.id {
			b.rFile.Close()
			b.rFile = nil
		}
		if err := os.Remove(b.segPath(s.id)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("buffer: %w", err)
		}
		b.total -= s.size
		b.segs = b.segs[1:]
		if b.rSeg == s.id {
			b.setCursor(b.segs[0].id, 0)
		}
	}
	b.metrics()
	return nil
}

// Pending calls fn for every record not yet shipped, oldest first; at
// start-up it tells how far each file's lines reached the buffer.
func (b *Buffer) Pending(fn func(Record)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.segs {
		if s.id < b.rSeg {
			continue
		}
		f, err := os.Open(b.segPath(s.id))
		if err != nil {
			return fmt.Errorf("buffer: %w", err)
		}
		start := int64(0)
		if s.id == b.rSeg {
			start = b.rOff
		}
		r := bufio.NewReader(io.NewSectionReader(f, start, s.size-start))
		var p []byte
		for {
			if _, err := readFrame(r, maxRecord, &p); err != nil {
				break
			}
			if rec, err := decodeRecord(p); err == nil {
				fn(rec)
			}
		}
		f.Close()
	}
	return nil
}

// Bytes is the buffer's size on disk.
func (b *Buffer) Bytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// Close closes the files; records stay on disk for the next start.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.cond.Broadcast()
	if b.rFile != nil {
		b.rFile.Close()
	}
	return b.w.Close()
}

// writeFileAtomic replaces a small file so that a crash leaves the old or
// the new content, never a mix.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
