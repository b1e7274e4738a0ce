// Package logids finds the trace and span ids a log line carries: in its
// structured metadata, in its stream labels, or in the line itself (JSON,
// logfmt, "key: value" text or a W3C traceparent). The server and the node
// agent both use it, so a line is linked to the same trace wherever it is
// read.
//
// The line is not parsed as JSON or logfmt. It is cut into word tokens
// ([A-Za-z0-9_.-]+) and a token whose name, lowercased and without '_',
// '.' and '-', is "traceid", "spanid" or "traceparent" takes the next token
// as its value when only quotes, ':', '=' and blanks stand between them.
// That reads the ids out of JSON ("trace_id":"…", "trace.id": "…"),
// logfmt (traceID=…) and free text (trace_id: …) alike, in one pass over
// the bytes and without allocating, which matters on the ingest path of
// every line; a full JSON or logfmt parse would cost ten times more and
// miss the free-text forms.
package logids

import (
	"encoding/hex"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/internal/model"
)

// IDs are the ids found for one line. Either may be empty; a span id is
// only kept with a trace id.
type IDs struct {
	Trace model.TraceID
	Span  model.SpanID
}

// Found reports whether a trace id was found.
func (ids IDs) Found() bool { return !ids.Trace.IsEmpty() }

// Extract looks for the ids in this order: structured metadata, stream
// labels, then the line; the first place that names a trace id wins, and
// the span id comes from that same place.
func Extract(metadata, stream labels.Labels, line string) IDs {
	return ExtractWith(metadata, FromLabels(stream), line)
}

// ExtractWith is Extract with the stream's ids already read
// (FromLabels(stream)), for the lines of one stream.
func ExtractWith(metadata labels.Labels, stream IDs, line string) IDs {
	if ids := FromLabels(metadata); ids.Found() {
		return ids
	}
	if stream.Found() {
		return stream
	}
	return FromLine(line)
}

// FromLabels reads the ids from labels named like trace_id, traceID,
// trace.id, span_id … or traceparent.
func FromLabels(ls labels.Labels) IDs {
	var ids IDs
	var parent IDs
	ls.Range(func(l labels.Label) {
		switch keyKind(l.Name) {
		case keyTrace:
			if id, ok := parseTrace(l.Value); ok && ids.Trace.IsEmpty() {
				ids.Trace = id
			}
		case keySpan:
			if id, ok := parseSpan(l.Value); ok && ids.Span.IsEmpty() {
				ids.Span = id
			}
		case keyParent:
			if p, ok := parseTraceparent(l.Value); ok && parent.Trace.IsEmpty() {
				parent = p
			}
		}
	})
	return settle(ids, parent)
}

// FromLine reads the ids from the text of a line.
func FromLine(line string) IDs {
	// A trace id is 16 or 32 hex digits, alone or inside a traceparent:
	// a line without 16 hex digits in a row, most lines, holds none, and
	// finding that out reads about one byte in eight.
	if !hasHexRun(line, 16) {
		return IDs{}
	}
	return scanLine(line)
}

// scanLine reads the ids from the words of a line.
func scanLine(line string) IDs {
	var ids, parent IDs
	pending := keyNone
	for i := 0; i < len(line); {
		c := line[i]
		if !isWord(c) {
			if pending != keyNone && !isSeparator(c) {
				pending = keyNone
			}
			i++
			continue
		}
		j := i + 1
		for j < len(line) && isWord(line[j]) {
			j++
		}
		tok := line[i:j]
		switch pending {
		case keyTrace:
			if id, ok := parseTrace(tok); ok && ids.Trace.IsEmpty() {
				ids.Trace = id
			}
		case keySpan:
			if id, ok := parseSpan(tok); ok && ids.Span.IsEmpty() {
				ids.Span = id
			}
		case keyParent:
			if p, ok := parseTraceparent(tok); ok && parent.Trace.IsEmpty() {
				parent = p
			}
		}
		if pending != keyNone {
			pending = keyNone
		} else {
			pending = keyKind(tok)
			if pending == keyNone && parent.Trace.IsEmpty() && len(tok) == traceparentLen {
				if p, ok := parseTraceparent(tok); ok {
					parent = p
				}
			}
		}
		i = j
	}
	return settle(ids, parent)
}

// settle prefers an explicit trace id; a traceparent fills in when there is
// none, and a span id is kept only beside a trace id.
func settle(ids, parent IDs) IDs {
	if ids.Trace.IsEmpty() {
		return parent
	}
	return ids
}

// hasHexRun reports whether s holds n hex digits in a row. It looks at
// every n-th byte: a byte that is not a digit cannot be inside the run, so
// the next n-1 bytes need no look unless a later one is a digit, from which
// the run is measured both ways.
func hasHexRun(s string, n int) bool {
	for i := n - 1; i < len(s); {
		if !isHex[s[i]] {
			i += n
			continue
		}
		lo, hi := i, i+1
		for lo > 0 && isHex[s[lo-1]] {
			lo--
		}
		for hi < len(s) && isHex[s[hi]] && hi-lo < n {
			hi++
		}
		if hi-lo >= n {
			return true
		}
		// s[hi] is not a digit: a run ends at hi+n at the earliest.
		i = hi + n
	}
	return false
}

var isHex = func() (t [256]bool) {
	for _, c := range "0123456789abcdefABCDEF" {
		t[c] = true
	}
	return t
}()

type key int

const (
	keyNone key = iota
	keyTrace
	keySpan
	keyParent
)

// keyKind classifies a key by its name lowercased without '_', '.' and '-'.
func keyKind(name string) key {
	if len(name) < 6 || len(name) > 16 {
		return keyNone
	}
	// Each key ends in 'd' or 't', before any '_', '.' or '-': most words
	// are done here.
	last := len(name) - 1
	for last > 0 && (name[last] == '_' || name[last] == '.' || name[last] == '-') {
		last--
	}
	if c := name[last] | 0x20; c != 'd' && c != 't' {
		return keyNone
	}
	var buf [16]byte
	n := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_' || c == '.' || c == '-':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	switch string(buf[:n]) {
	case "traceid":
		return keyTrace
	case "spanid":
		return keySpan
	case "traceparent":
		return keyParent
	}
	return keyNone
}

func isWord(c byte) bool { return wordBytes[c] }

var wordBytes = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
	}
	return t
}()

func isSeparator(c byte) bool {
	return c == '"' || c == '\'' || c == ':' || c == '=' || c == ' ' || c == '\t' || c == '\\'
}

// parseTrace accepts 32 hex digits, or 16 (a 64-bit id, as Jaeger and
// Zipkin clients write them, widened with zeros as OpenTelemetry does).
func parseTrace(s string) (model.TraceID, bool) {
	var id model.TraceID
	switch len(s) {
	case 32:
		if _, err := hex.Decode(id[:], []byte(s)); err != nil {
			return id, false
		}
	case 16:
		if _, err := hex.Decode(id[8:], []byte(s)); err != nil {
			return id, false
		}
	default:
		return id, false
	}
	return id, !id.IsEmpty()
}

func parseSpan(s string) (model.SpanID, bool) {
	var id model.SpanID
	if len(s) != 16 {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, false
	}
	return id, !id.IsEmpty()
}

// traceparentLen is the length of a W3C traceparent of version 00:
// 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>.
const traceparentLen = 2 + 1 + 32 + 1 + 16 + 1 + 2

func parseTraceparent(s string) (IDs, bool) {
	if len(s) < traceparentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return IDs{}, false
	}
	// Version ff is invalid; a future version may append fields after '-'.
	if s[:2] == "ff" || !isHex2(s[:2]) || !isHex2(s[53:55]) || (len(s) > traceparentLen && (s[:2] == "00" || s[55] != '-')) {
		return IDs{}, false
	}
	tid, ok1 := parseTrace(s[3:35])
	sid, ok2 := parseSpan(s[36:52])
	if !ok1 || !ok2 || len(s[3:35]) != 32 {
		return IDs{}, false
	}
	return IDs{Trace: tid, Span: sid}, true
}

func isHex2(s string) bool {
	var b [1]byte
	_, err := hex.Decode(b[:], []byte(s))
	return err == nil
}
