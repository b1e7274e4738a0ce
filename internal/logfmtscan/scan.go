// Package logfmtscan reads the key=value pairs of a logfmt line as Loki's
// decoder (pkg/logql/log/logfmt, after go-logfmt) reads them, for the
// LogQL logfmt parser, detected_fields and the pattern miner alike.
package logfmtscan

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Scanner reads the pairs of a line: a key runs to '=' or a space; a
// value is bare (to the next space) or double-quoted with JSON's escapes
// (and \'); a key alone has no value. A malformed pair is skipped up to
// the next space and kept as the line's error. The zero Scanner reads an
// empty line.
type Scanner struct {
	line       []byte
	pos        int
	key, value []byte
	err        error
}

// SyntaxError is Loki's error for a malformed pair; Pos counts bytes
// from 1.
type SyntaxError struct {
	Msg string
	Pos int
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("logfmt syntax error at pos %d : %s", e.Pos, e.Msg)
}

// Reset starts reading line.
func (s *Scanner) Reset(line []byte) {
	s.line, s.pos, s.err = line, 0, nil
	s.key, s.value = nil, nil
}

// Done reports whether the whole line was read.
func (s *Scanner) Done() bool { return s.pos >= len(s.line) }

// Key and Value are the last pair scanned; they point into the line (or,
// for a value with escapes, into a copy). Value is nil for a key alone
// and an empty value.
func (s *Scanner) Key() []byte   { return s.key }
func (s *Scanner) Value() []byte { return s.value }

// Err is the last malformed pair's error (a *SyntaxError), if any.
func (s *Scanner) Err() error { return s.err }

// Scan reads the next pair. It returns false at the end of the line or
// when the pair is malformed (then Err says why, and the next Scan goes
// on after it).
func (s *Scanner) Scan() bool {
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
				s.unexpected(c)
				return s.skip()
			}
			s.key = line[start:s.pos]
			if badKey(s.key, multibyte) {
				s.fail("invalid key")
				return s.skip()
			}
			return s.scanValue()
		case c == '"':
			s.unexpected(c)
			return s.skip()
		case c <= ' ':
			return s.bareKey(start, multibyte)
		case c >= utf8.RuneSelf:
			multibyte = true
		}
	}
	return s.bareKey(start, multibyte)
}

func (s *Scanner) fail(msg string) { s.err = &SyntaxError{Msg: msg, Pos: s.pos + 1} }

func (s *Scanner) unexpected(c byte) { s.fail(fmt.Sprintf("unexpected %q", c)) }

// badKey: a key with invalid UTF-8 is malformed.
func badKey(key []byte, multibyte bool) bool {
	return multibyte && bytes.ContainsRune(key, utf8.RuneError)
}

// bareKey ends a key without a value at pos.
func (s *Scanner) bareKey(start int, multibyte bool) bool {
	s.key = s.line[start:s.pos]
	if badKey(s.key, multibyte) {
		s.fail("invalid key")
		return false
	}
	return true
}

// skip moves past the rest of a malformed pair; Scan returns false.
func (s *Scanner) skip() bool {
	for s.pos < len(s.line) && s.line[s.pos] > ' ' {
		s.pos++
	}
	return false
}

// scanValue reads the value after the '=' at pos.
func (s *Scanner) scanValue() bool {
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
			s.unexpected(c)
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

// quoted reads the double-quoted value at pos.
func (s *Scanner) quoted() bool {
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
			if escaped {
				v, ok := unquote(line[start:s.pos])
				if !ok {
					s.fail("invalid quoted value")
					return false
				}
				s.value = v
			} else if i > start+1 {
				s.value = line[start+1 : i]
			}
			return true
		}
	}
	s.pos = len(line)
	s.fail("unterminated quoted value")
	return false
}

// unquote unquotes a double-quoted string with JSON's escapes (and \')
// as Loki does: control characters pass, invalid UTF-8 and lone
// surrogates become U+FFFD.
func unquote(s []byte) ([]byte, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return nil, false
	}
	s = s[1 : len(s)-1]
	out := make([]byte, 0, len(s))
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			r++
			if r >= len(s) {
				return nil, false
			}
			switch s[r] {
			case '"', '\\', '/', '\'':
				out = append(out, s[r])
				r++
			case 'b':
				out, r = append(out, '\b'), r+1
			case 'f':
				out, r = append(out, '\f'), r+1
			case 'n':
				out, r = append(out, '\n'), r+1
			case 'r':
				out, r = append(out, '\r'), r+1
			case 't':
				out, r = append(out, '\t'), r+1
			case 'u':
				rr := hex4(s[r-1:])
				if rr < 0 {
					return nil, false
				}
				r += 5
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, hex4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						out = utf8.AppendRune(out, dec)
						break
					}
					rr = unicode.ReplacementChar
				}
				out = utf8.AppendRune(out, rr)
			default:
				return nil, false
			}
		case c == '"':
			return nil, false
		case c < utf8.RuneSelf:
			out = append(out, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			out = utf8.AppendRune(out, rr)
		}
	}
	return out, true
}

// hex4 reads \uXXXX at the start of s, or -1.
func hex4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	v, err := strconv.ParseUint(string(s[2:6]), 16, 64)
	if err != nil {
		return -1
	}
	return rune(v)
}
