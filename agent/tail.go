package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/logids"
)

// LogsConfig configures the reading of container logs.
type LogsConfig struct {
	// Glob selects the files: /var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log.
	Glob string `yaml:"glob"`
	// ScanInterval is how often the glob is matched again for new and
	// rotated files.
	ScanInterval time.Duration `yaml:"scan_interval"`
	// PollInterval is how long the reader sleeps when no file grew.
	PollInterval time.Duration `yaml:"poll_interval"`
	// BatchLines, BatchBytes and FlushInterval bound one request: whichever
	// is reached first sends it.
	BatchLines    int           `yaml:"batch_lines"`
	BatchBytes    int           `yaml:"batch_bytes"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxLineBytes cuts longer lines (after joining the parts the runtime split).
	MaxLineBytes int `yaml:"max_line_bytes"`
	// RotateWait is how long a rotated-away or deleted file is still read
	// after it stops growing.
	RotateWait time.Duration `yaml:"rotate_wait"`
}

// DefaultLogsConfig reads kubelet's pod log directory.
func DefaultLogsConfig() LogsConfig {
	return LogsConfig{
		Glob: "/var/log/pods/*/*/*.log", ScanInterval: time.Second, PollInterval: 200 * time.Millisecond,
		BatchLines: 2000, BatchBytes: 1 << 20, FlushInterval: time.Second, MaxLineBytes: 256 << 10, RotateWait: 5 * time.Second,
	}
}

// Validate reports the first setting that cannot work.
func (c LogsConfig) Validate() error {
	if c.Glob == "" {
		return nil // reading logs is off
	}
	if _, err := filepath.Match(c.Glob, ""); err != nil {
		return fmt.Errorf("logs: glob %q: %w", c.Glob, err)
	}
	if c.ScanInterval <= 0 || c.PollInterval <= 0 || c.FlushInterval <= 0 || c.RotateWait < 0 {
		return fmt.Errorf("logs: scan_interval %s, poll_interval %s and flush_interval %s must be positive", c.ScanInterval, c.PollInterval, c.FlushInterval)
	}
	if c.BatchLines < 1 || c.BatchBytes < 1024 || c.MaxLineBytes < 1024 {
		return fmt.Errorf("logs: batch_lines %d must be positive, batch_bytes %d and max_line_bytes %d at least 1KiB", c.BatchLines, c.BatchBytes, c.MaxLineBytes)
	}
	return nil
}

// fpMax is how much of a file's start identifies it: enough to tell a file
// from one that took over its inode, and to find a copytruncate copy.
const fpMax = 256

// savedPos is a file's entry in the state directory's positions file.
type savedPos struct {
	Path   string `json:"path"`
	Offset int64  `json:"offset"`
	FP     uint64 `json:"fp"`
	FPLen  int    `json:"fp_len"`
}

// tailer reads one file, by its open descriptor, so a file renamed away is
// read to its end.
type tailer struct {
	key      string
	path     string
	f        *os.File
	pod      Pod
	podErr   error
	format   Format
	join     joiner
	offset   int64 // bytes consumed: complete lines
	safe     int64 // where a restart may resume: no split line pending
	size     int64
	fp       uint64
	fpLen    int
	rotated  bool // the path no longer names this file
	grewAt   time.Time
	resource pcommon.Map // for the current batch; nil until a line is added
	records  plog.LogRecordSlice
}

type collector struct {
	cfg       LogsConfig
	node      string
	buf       *Buffer
	log       *zap.Logger
	m         *Metrics
	pods      *podCache // nil without the Kubernetes API
	statePath string

	tailers map[string]*tailer // by file key
	byPath  map[string]*tailer
	saved   map[string]savedPos

	ld         plog.Logs
	lines      int
	bytes      int
	batchStart time.Time
	enc        *zstd.Encoder
	readBuf    []byte
	lastScan   time.Time
}

func newCollector(cfg LogsConfig, node, stateDir string, buf *Buffer, pods *podCache, log *zap.Logger, m *Metrics) (*collector, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	c := &collector{
		cfg: cfg, node: node, buf: buf, log: log, m: m, pods: pods, statePath: filepath.Join(stateDir, "positions.json"),
		tailers: map[string]*tailer{}, byPath: map[string]*tailer{}, saved: map[string]savedPos{},
		ld: plog.NewLogs(), enc: enc, readBuf: make([]byte, 256<<10),
	}
	if b, err := os.ReadFile(c.statePath); err == nil {
		if err := json.Unmarshal(b, &c.saved); err != nil {
			return nil, fmt.Errorf("positions %s: %w", c.statePath, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("positions: %w", err)
	}
	// Lines that reached the buffer but whose position was not saved (a
	// crash between the two writes): the buffer's records say how far.
	if err := buf.Pending(func(r Record) {
		for _, p := range r.Positions {
			s, ok := c.saved[p.Key]
			if !ok {
				// A new file whose first batch was buffered before its
				// position was saved: resume on its identity alone.
				s.FP, s.FPLen = fingerprint(bytes.NewReader(nil), 0)
			}
			if !ok || p.Offset > s.Offset {
				s.Offset = p.Offset
				c.saved[p.Key] = s
			}
		}
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func fileKey(info fs.FileInfo) (string, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	return strconv.FormatUint(uint64(st.Dev), 10) + ":" + strconv.FormatUint(st.Ino, 10), true
}

// fingerprint hashes the first n bytes of f (n ≤ fpMax; fewer if the file
// is shorter).
func fingerprint(f io.ReaderAt, n int) (uint64, int) {
	buf := make([]byte, n)
	got, _ := f.ReadAt(buf, 0)
	h := fnv.New64a()
	h.Write(buf[:got])
	return h.Sum64(), got
}

func (c *collector) run(ctx context.Context) {
	defer c.enc.Close()
	for {
		if time.Since(c.lastScan) >= c.cfg.ScanInterval {
			c.scan()
		}
		read := 0
		for _, t := range c.ordered() {
			read += c.read(t)
		}
		if c.lines > 0 && time.Since(c.batchStart) >= c.cfg.FlushInterval {
			c.flush()
		}
		c.closeDone()
		if read > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			c.flush()
			for _, t := range c.tailers {
				t.f.Close()
			}
			return
		case <-time.After(c.cfg.PollInterval):
		}
	}
}

func (c *collector) ordered() []*tailer {
	out := make([]*tailer, 0, len(c.tailers))
	for _, t := range c.tailers {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// scan matches the glob: new files get a tailer (resuming from a saved
// position that still names the same content), a path whose file changed
// marks the old tailer rotated.
func (c *collector) scan() {
	c.lastScan = time.Now()
	paths, _ := filepath.Glob(c.cfg.Glob)
	seen := map[string]bool{}
	for _, p := range paths {
		seen[p] = true
		info, err := os.Stat(p)
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		key, ok := fileKey(info)
		if !ok {
			continue
		}
		if cur := c.byPath[p]; cur != nil {
			if cur.key == key {
				continue
			}
			cur.rotated = true // renamed away: read on to its end
			delete(c.byPath, p)
		}
		if t := c.tailers[key]; t != nil {
			// A file renamed onto a watched name (unusual): follow it there.
			t.path, t.rotated = p, false
			c.byPath[p] = t
			continue
		}
		if t := c.open(p, key, info); t != nil {
			c.byPath[p] = t
		}
	}
	for p, t := range c.byPath {
		if !seen[p] {
			t.rotated = true // deleted (a pod gone) or renamed: drain it
			delete(c.byPath, p)
		}
	}
	// Files rotated while the agent was not running: a saved position whose
	// path now names another file is looked for by its identity in the
	// same directory.
	for key, s := range c.saved {
		if c.tailers[key] != nil {
			continue
		}
		entries, err := os.ReadDir(filepath.Dir(s.Path))
		if err != nil {
			delete(c.saved, key)
			continue
		}
		found := false
		for _, e := range entries {
			p := filepath.Join(filepath.Dir(s.Path), e.Name())
			info, err := os.Stat(p)
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			if k, ok := fileKey(info); ok && k == key {
				if t := c.open(p, key, info); t != nil {
					t.path = s.Path
					t.rotated = c.byPath[p] != t
				}
				found = true
				break
			}
		}
		if !found {
			delete(c.saved, key)
		}
	}
	c.m.filesTailed.Set(float64(len(c.tailers)))
	for _, t := range c.tailers {
		c.m.fileLag.WithLabelValues(t.path).Set(float64(max(0, t.size-t.offset)))
	}
}

func (c *collector) open(path, key string, info fs.FileInfo) *tailer {
	f, err := os.Open(path)
	if err != nil {
		c.log.Warn("open a log file", zap.String("path", path), zap.Error(err))
		return nil
	}
	t := &tailer{key: key, path: path, f: f, size: info.Size(), grewAt: time.Now(), join: joiner{max: c.cfg.MaxLineBytes}}
	t.pod, t.podErr = PodFromPath(path)
	if t.podErr != nil {
		c.log.Warn("a log file outside the pod directory layout; its lines carry no pod identity", zap.String("path", path), zap.Error(t.podErr))
	}
	if s, ok := c.saved[key]; ok {
		fp, n := fingerprint(f, s.FPLen)
		if n == s.FPLen && fp == s.FP && s.Offset <= info.Size() {
			t.offset, t.safe = s.Offset, s.Offset
		}
	}
	t.fp, t.fpLen = fingerprint(f, fpMax)
	c.tailers[key] = t
	return t
}

// read consumes what the file has grown by; it returns the bytes read.
func (c *collector) read(t *tailer) int {
	info, err := t.f.Stat()
	if err != nil {
		return 0
	}
	if info.Size() < t.offset {
		c.truncated(t)
	} else if info.Size() != t.size && t.fpLen > 0 && !t.rotated {
		// Truncated and written again past our offset before we looked:
		// the start of the file is no longer what it was.
		if fp, n := fingerprint(t.f, t.fpLen); n < t.fpLen || fp != t.fp {
			c.truncated(t)
		}
	}
	if info.Size() > t.size {
		t.grewAt = time.Now()
	}
	t.size = info.Size()
	if t.fpLen < fpMax && t.size > int64(t.fpLen) {
		t.fp, t.fpLen = fingerprint(t.f, fpMax)
	}
	total := 0
	for t.offset < t.size {
		n := c.readFrom(t, t.f, t.size)
		if n == 0 {
			break
		}
		total += n
	}
	return total
}

// readFrom reads complete lines of r from t.offset up to end, once (one
// buffer's worth), and returns the bytes consumed.
func (c *collector) readFrom(t *tailer, r io.ReaderAt, end int64) int {
	want := min(int64(len(c.readBuf)), end-t.offset)
	n, err := r.ReadAt(c.readBuf[:want], t.offset)
	if n == 0 {
		if err != nil && !errors.Is(err, io.EOF) {
			c.log.Warn("read a log file", zap.String("path", t.path), zap.Error(err))
		}
		return 0
	}
	data := c.readBuf[:n]
	pos := 0
	for pos < n {
		var line []byte
		if i := bytes.IndexByte(data[pos:], '\n'); i >= 0 {
			line = data[pos : pos+i]
			pos += i + 1
		} else if pos == 0 && n == len(c.readBuf) {
			line = data // a line longer than the buffer: take what there is
			pos = n
		} else {
			break // the rest of the line is not written yet
		}
		c.line(t, line)
		if t.join.pendingBytes() == 0 {
			t.safe = t.offset + int64(pos)
		}
		if c.lines >= c.cfg.BatchLines || c.bytes >= c.cfg.BatchBytes {
			c.flush()
		}
	}
	t.offset += int64(pos)
	c.m.bytesRead.Add(float64(pos))
	return pos
}

// line turns one line of the file into a log record (once a split line is
// whole).
func (c *collector) line(t *tailer, raw []byte) {
	raw = bytes.TrimSuffix(raw, []byte{'\r'})
	if t.format == FormatUnknown {
		t.format = DetectFormat(raw)
	}
	var e Entry
	var err error
	if t.format == FormatDocker {
		e, err = ParseDocker(raw)
	} else {
		e, err = ParseCRI(raw)
	}
	if err != nil {
		c.m.malformed.Inc()
		e = Entry{Time: time.Now(), Text: raw}
	}
	whole, ok := t.join.add(e)
	if !ok {
		return
	}
	c.emit(t, whole)
}

func (c *collector) emit(t *tailer, e Entry) {
	if t.resource == (pcommon.Map{}) {
		rl := c.ld.ResourceLogs().AppendEmpty()
		t.resource = rl.Resource().Attributes()
		if t.podErr == nil {
			var meta *PodMeta
			if c.pods != nil {
				meta = c.pods.byUID(t.pod.UID)
			}
			podResource(t.resource, t.pod, c.node, meta)
		} else {
			t.resource.PutStr("k8s.node.name", c.node)
		}
		t.resource.PutStr("log.file.path", t.path)
		t.records = rl.ScopeLogs().AppendEmpty().LogRecords()
	}
	r := t.records.AppendEmpty()
	r.SetTimestamp(pcommon.NewTimestampFromTime(e.Time))
	r.SetObservedTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	text := string(e.Text)
	r.Body().SetStr(text)
	if e.Stream != "" {
		r.Attributes().PutStr("log.iostream", e.Stream)
	}
	if ids := logids.FromLine(text); ids.Found() {
		r.SetTraceID(pcommon.TraceID(ids.Trace))
		r.SetSpanID(pcommon.SpanID(ids.Span))
	}
	if c.lines == 0 {
		c.batchStart = time.Now()
	}
	c.lines++
	c.bytes += len(text)
	c.m.linesRead.Inc()
}

// truncated handles a file cut to a shorter length in place (copytruncate):
// the lines past our offset went to the copy, which is looked for among the
// directory's files by the start of its content, and read from there.
func (c *collector) truncated(t *tailer) {
	found := false
	dir := filepath.Dir(t.path)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		info, err := os.Stat(p)
		if err != nil || !info.Mode().IsRegular() || info.Size() < t.offset {
			continue
		}
		if k, _ := fileKey(info); k == t.key {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if fp, n := fingerprint(f, t.fpLen); n == t.fpLen && fp == t.fp && t.fpLen > 0 {
			for t.offset < info.Size() {
				if c.readFrom(t, f, info.Size()) == 0 {
					break
				}
			}
			found = true
		}
		f.Close()
		if found {
			break
		}
	}
	c.m.truncations.WithLabelValues(strconv.FormatBool(found)).Inc()
	if !found {
		c.log.Warn("a log file was truncated and no copy of it was found: lines written just before may be missing", zap.String("path", t.path))
	}
	t.offset, t.safe, t.fp, t.fpLen = 0, 0, 0, 0
	t.join = joiner{max: c.cfg.MaxLineBytes}
}

// flush writes the batch to the buffer, then saves every file's position;
// a failure keeps the batch for the next try.
func (c *collector) flush() {
	if c.lines == 0 {
		c.savePositions()
		return
	}
	body, err := plogotlp.NewExportRequestFromLogs(c.ld).MarshalProto()
	if err != nil {
		c.log.Error("encode logs", zap.Error(err))
		return
	}
	rec := Record{Signal: SignalLogs, Items: c.lines, Body: c.enc.EncodeAll(body, nil)}
	for _, t := range c.tailers {
		if t.resource != (pcommon.Map{}) {
			rec.Positions = append(rec.Positions, Position{Key: t.key, Offset: t.safe})
		}
	}
	if err := c.buf.Append(rec); err != nil {
		c.log.Error("write logs to the buffer; will try again", zap.Error(err))
		return
	}
	c.ld = plog.NewLogs()
	c.lines, c.bytes = 0, 0
	for _, t := range c.tailers {
		t.resource, t.records = pcommon.Map{}, plog.LogRecordSlice{}
	}
	c.savePositions()
}

func (c *collector) savePositions() {
	state := make(map[string]savedPos, len(c.tailers))
	for key, t := range c.tailers {
		state[key] = savedPos{Path: t.path, Offset: t.safe, FP: t.fp, FPLen: t.fpLen}
	}
	for key, s := range c.saved {
		if _, ok := state[key]; !ok && c.tailers[key] == nil {
			state[key] = s
		}
	}
	b, _ := json.Marshal(state)
	if err := writeFileAtomic(c.statePath, b); err != nil {
		c.log.Error("save log positions", zap.Error(err))
		return
	}
	c.saved = state
}

// closeDone closes rotated files read to their end that stopped growing.
func (c *collector) closeDone() {
	changed := false
	for key, t := range c.tailers {
		if !t.rotated || t.offset < t.size || time.Since(t.grewAt) < c.cfg.RotateWait || t.resource != (pcommon.Map{}) {
			continue
		}
		if p := t.join.parts; len(p) > 0 {
			for _, part := range p { // a split line never finished: send what there is
				c.emit(t, Entry{Time: part.first, Text: part.buf})
			}
			t.join.parts = nil
			t.safe = t.offset
			continue
		}
		t.f.Close()
		delete(c.tailers, key)
		delete(c.saved, key)
		c.m.fileLag.DeleteLabelValues(t.path)
		changed = true
	}
	if changed {
		c.savePositions()
	}
}
