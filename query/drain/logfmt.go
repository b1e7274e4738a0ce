package drain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// LogfmtScanner reads key=value pairs from a line as Loki's logfmt parser
// reads them: a bare key has an empty value, a pair that does not scan is
// skipped (its error kept), and a quoted value is unquoted as a JSON
// string is.
type LogfmtScanner struct {
	line       []byte
	pos        int
	key, value []byte
	err        error
}

// Reset starts reading line.
func (s *LogfmtScanner) Reset(line []byte) {
	s.line, s.pos, s.err = line, 0, nil
	s.key, s.value = nil, nil
}

// Done reports whether the whole line was read.
func (s *LogfmtScanner) Done() bool { return s.pos >= len(s.line) }

// Key and Value are the last pair scanned; they point into the line (or,
// for a value with escapes, a copy).
func (s *LogfmtScanner) Key() []byte   { return s.key }
func (s *LogfmtScanner) Value() []byte { return s.value }

// Err is the first error met, if any.
func (s *LogfmtScanner) Err() error { return s.err }

func (s *LogfmtScanner) fail(at int, format string, a ...any) {
	s.err = fmt.Errorf("logfmt syntax error at pos %d : %s", at+1, fmt.Sprintf(format, a...))
}

// Scan reads the next pair. It returns false at the end of the line or
// when the pair does not scan (then Err says why, and the next Scan goes
// on after it).
func (s *LogfmtScanner) Scan() bool {
	s.key, s.value = nil, nil
	line := s.line
	for s.pos < len(line) && line[s.pos] <= ' ' {
		s.pos++
	}
	if s.pos >= len(line) {
		return false
	}
	start, multibyte := s.pos, false
	for ; s.pos < len(line); s.pos++ {
		c := line[s.pos]
		switch {
		case c == '=':
			if s.pos == start {
				s.fail(s.pos, "unexpected %q", c)
				return s.skip()
			}
			s.key = line[start:s.pos]
			if multibyte && bytes.ContainsRune(s.key, utf8.RuneError) {
				s.fail(s.pos, "invalid key")
				return s.skip()
			}
			return s.scanValue()
		case c == '"':
			s.fail(s.pos, "unexpected %q", c)
			return s.skip()
		case c <= ' ':
			return s.bareKey(start, multibyte)
		case c >= utf8.RuneSelf:
			multibyte = true
		}
	}
	return s.bareKey(start, multibyte)
}

func (s *LogfmtScanner) bareKey(start int, multibyte bool) bool {
	s.key = s.line[start:s.pos]
	if multibyte && bytes.ContainsRune(s.key, utf8.RuneError) {
		s.fail(s.pos, "invalid key")
		return false
	}
	return true
}

// skip moves past the rest of a pair that does not scan.
func (s *LogfmtScanner) skip() bool {
	for s.pos < len(s.line) && s.line[s.pos] > ' ' {
		s.pos++
	}
	return false
}

func (s *LogfmtScanner) scanValue() bool {
	line := s.line
	s.pos++ // the '='
	if s.pos >= len(line) || line[s.pos] <= ' ' {
		return true
	}
	if line[s.pos] == '"' {
		return s.quoted()
	}
	start := s.pos
	for ; s.pos < len(line); s.pos++ {
		c := line[s.pos]
		if c == '=' || c == '"' {
			s.fail(s.pos, "unexpected %q", c)
			return s.skip()
		}
		if c <= ' ' {
			break
		}
	}
	if s.pos > start {
		s.value = line[start:s.pos]
	}
	return true
}

func (s *LogfmtScanner) quoted() bool {
	line := s.line
	start := s.pos
	escaped, inEscape := false, false
	for i := s.pos + 1; i < len(line); i++ {
		c := line[i]
		switch {
		case inEscape:
			inEscape = false
		case c == '\\':
			escaped, inEscape = true, true
		case c == '"':
			s.pos = i + 1
			if !escaped {
				if i > start+1 {
					s.value = line[start+1 : i]
				}
				return true
			}
			var v string
			if err := json.Unmarshal(line[start:s.pos], &v); err != nil {
				s.fail(s.pos-1, "invalid quoted value")
				return false
			}
			s.value = []byte(v)
			return true
		}
	}
	s.pos = len(line)
	s.fail(s.pos-1, "unterminated quoted value")
	return false
}
