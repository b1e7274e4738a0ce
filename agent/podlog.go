package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Pod is the identity of a container log file, as its path names it:
// /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log.
type Pod struct {
	Namespace, Name, UID, Container string
	Restart                         int
}

// PodFromPath reads a pod's identity from the last three elements of a
// container log's path. Kubernetes names cannot hold '_', so the directory
// splits unambiguously.
func PodFromPath(path string) (Pod, error) {
	file := filepath.Base(path)
	container := filepath.Base(filepath.Dir(path))
	podDir := filepath.Base(filepath.Dir(filepath.Dir(path)))
	parts := strings.Split(podDir, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Pod{}, fmt.Errorf("pod directory %q is not <namespace>_<pod>_<uid>", podDir)
	}
	restart, err := strconv.Atoi(strings.TrimSuffix(file, ".log"))
	if err != nil || !strings.HasSuffix(file, ".log") || restart < 0 {
		return Pod{}, fmt.Errorf("log file %q is not <restart count>.log", file)
	}
	if container == "" || container == "." || container == "/" {
		return Pod{}, fmt.Errorf("no container directory in %q", path)
	}
	return Pod{Namespace: parts[0], Name: parts[1], UID: parts[2], Container: container, Restart: restart}, nil
}

// Format is a container log file's line format.
type Format uint8

const (
	FormatUnknown Format = iota
	// FormatCRI is the container runtime interface's: `<RFC3339Nano> <stream> <P|F> <text>`.
	FormatCRI
	// FormatDocker is Docker's json-file: {"log":"…\n","stream":"stdout","time":"…"}.
	FormatDocker
)

// Entry is one line a container wrote, or one part of it.
type Entry struct {
	Time   time.Time
	Stream string // stdout or stderr
	Text   []byte // without the trailing newline
	// Partial is set when the runtime split a long line and more follows.
	Partial bool
}

var errLine = errors.New("malformed container log line")

// DetectFormat tells the format from a file's first line.
func DetectFormat(line []byte) Format {
	if len(line) > 0 && line[0] == '{' {
		return FormatDocker
	}
	return FormatCRI
}

// ParseCRI reads one CRI log line (without its newline).
func ParseCRI(line []byte) (Entry, error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return Entry{}, fmt.Errorf("%w: no space after the timestamp", errLine)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Entry{}, fmt.Errorf("%w: timestamp %q", errLine, ts)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != "stdout" && string(stream) != "stderr") {
		return Entry{}, fmt.Errorf("%w: stream %q is not stdout or stderr", errLine, stream)
	}
	tag, text, _ := bytes.Cut(rest, []byte{' '})
	// The tag is P (partial) or F (full), possibly followed by ':' options.
	flags, _, _ := bytes.Cut(tag, []byte{':'})
	var partial bool
	switch string(flags) {
	case "P":
		partial = true
	case "F":
	default:
		return Entry{}, fmt.Errorf("%w: tag %q is not P or F", errLine, tag)
	}
	return Entry{Time: t, Stream: string(stream), Text: text, Partial: partial}, nil
}

type dockerLine struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// ParseDocker reads one json-file log line. Docker splits lines longer than
// 16 KiB into entries whose text lacks the final newline.
func ParseDocker(line []byte) (Entry, error) {
	var d dockerLine
	if err := json.Unmarshal(line, &d); err != nil {
		return Entry{}, fmt.Errorf("%w: %w", errLine, err)
	}
	if d.Stream != "stdout" && d.Stream != "stderr" {
		return Entry{}, fmt.Errorf("%w: stream %q is not stdout or stderr", errLine, d.Stream)
	}
	text, full := strings.CutSuffix(d.Log, "\n")
	return Entry{Time: d.Time, Stream: d.Stream, Text: []byte(text), Partial: !full}, nil
}

// joiner joins the parts of lines the runtime split, per stream, up to max
// bytes (past it the line is cut and sent as it is).
type joiner struct {
	max   int
	parts map[string]*pending
}

type pending struct {
	first time.Time
	buf   []byte
}

// add takes one entry; it returns a whole line when one is complete.
func (j *joiner) add(e Entry) (Entry, bool) {
	if j.parts == nil {
		j.parts = map[string]*pending{}
	}
	p := j.parts[e.Stream]
	if !e.Partial && p == nil {
		return e, true
	}
	if p == nil {
		p = &pending{first: e.Time}
		j.parts[e.Stream] = p
	}
	p.buf = append(p.buf, e.Text...)
	if e.Partial && len(p.buf) < j.max {
		return Entry{}, false
	}
	delete(j.parts, e.Stream)
	text := p.buf
	if len(text) > j.max {
		text = text[:j.max]
	}
	return Entry{Time: p.first, Stream: e.Stream, Text: text}, true
}

// pendingBytes is how much of split lines waits for its end.
func (j *joiner) pendingBytes() int {
	n := 0
	for _, p := range j.parts {
		n += len(p.buf)
	}
	return n
}
