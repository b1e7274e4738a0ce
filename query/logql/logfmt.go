package logql

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// logfmtScanner reads key=value pairs from a logfmt line the way Loki's
// decoder does (go-logfmt's rules): a key runs to '=' or a space; a value
// is bare (to the next space) or double-quoted with JSON escapes; a key
// alone has no value. A malformed pair is skipped up to the next space and
// remembered as the line's error.
type logfmtScanner struct {
	line       []byte
	pos        int
	key, value []byte
	err        error
}

// logfmtSyntaxError is Loki's error text for a malformed pair.
type logfmtSyntaxError struct {
	msg string
	pos int
}

func (e *logfmtSyntaxError) Error() string {
	return fmt.Sprintf("logfmt syntax error at pos %d : %s", e.pos, e.msg)
}

func (s *logfmtScanner) eol() bool { return s.pos >= len(s.line) }

func (s *logfmtScanner) fail(msg string) { s.err = &logfmtSyntaxError{msg: msg, pos: s.pos + 1} }

func (s *logfmtScanner) unexpected(c byte) { s.fail(fmt.Sprintf("unexpected %q", c)) }

// skipValue moves past a malformed pair; next returns false.
func (s *logfmtScanner) skipValue() bool {
	if i := bytes.IndexFunc(s.line[s.pos:], func(r rune) bool { return r <= ' ' }); i >= 0 {
		s.pos += i
	} else {
		s.pos = len(s.line)
	}
	return false
}

func (s *logfmtScanner) badKey(key []byte, multibyte bool) bool {
	return multibyte && bytes.ContainsRune(key, utf8.RuneError)
}

// next reads the next pair; false when the line ends or the pair is
// malformed.
func (s *logfmtScanner) next() bool {
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
			if s.pos > start {
				s.key = line[start:s.pos]
				if s.badKey(s.key, multibyte) {
					s.fail("invalid key")
					return s.skipValue()
				}
			}
			if s.key == nil {
				s.unexpected(c)
				return s.skipValue()
			}
			return s.afterEqual()
		case c == '"':
			s.unexpected(c)
			return s.skipValue()
		case c <= ' ':
			s.key = line[start:s.pos]
			if s.badKey(s.key, multibyte) {
				s.fail("invalid key")
				return false
			}
			return true
		case c >= utf8.RuneSelf:
			multibyte = true
		}
	}
	if s.pos > start {
		s.key = line[start:s.pos]
		if s.badKey(s.key, multibyte) {
			s.fail("invalid key")
			return false
		}
	}
	return true
}

func (s *logfmtScanner) afterEqual() bool {
	line := s.line
	s.pos++
	if s.pos >= len(line) {
		return true
	}
	switch c := line[s.pos]; {
	case c <= ' ':
		return true
	case c == '"':
		return s.quoted()
	}
	start := s.pos
	for ; s.pos < len(line); s.pos++ {
		switch c := line[s.pos]; {
		case c == '=' || c == '"':
			s.unexpected(c)
			return s.skipValue()
		case c <= ' ':
			if s.pos > start {
				s.value = line[start:s.pos]
			}
			return true
		}
	}
	if s.pos > start {
		s.value = line[start:s.pos]
	}
	return true
}

func (s *logfmtScanner) quoted() bool {
	line := s.line
	start := s.pos
	escaped, esc := false, false
	for i := s.pos + 1; i < len(line); i++ {
		c := line[i]
		switch {
		case esc:
			esc = false
		case c == '\\':
			escaped, esc = true, true
		case c == '"':
			s.pos = i + 1
			if escaped {
				v, ok := unquoteJSON(line[start:s.pos])
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

// unquoteJSON unquotes a double-quoted string with JSON's escapes (and
// \'); invalid UTF-8 becomes U+FFFD.
func unquoteJSON(s []byte) ([]byte, bool) {
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

// LogfmtParser is `| logfmt`: each key=value pair of the line becomes a
// label; with Exprs (`| logfmt level, d="duration"`) only those, under
// their names. Strict stops at the first malformed pair and marks the
// line LogfmtParserErr; otherwise malformed pairs are skipped. KeepEmpty
// keeps keys without a value as empty labels.
type LogfmtParser struct {
	Strict, KeepEmpty bool
	Exprs             []LabelExpr
}

func (*LogfmtParser) stage() {}

func (l *LogfmtParser) process(_ int64, line string, lb *lineLabels) (string, bool) {
	if len(l.Exprs) > 0 {
		return l.processExprs(line, lb)
	}
	if lb.noLabels() {
		return line, true
	}
	sc := &logfmtScanner{line: []byte(line)}
	for !sc.eol() {
		if !sc.next() {
			if l.Strict {
				break
			}
			continue
		}
		key := sanitizeKey(string(sc.key))
		if key == "" {
			continue
		}
		if lb.collides(key) {
			key += extractedSuffix
		}
		if lb.skip(key) {
			continue
		}
		val := sc.value
		if bytes.ContainsRune(val, utf8.RuneError) {
			val = bytes.Map(invalidToSpace, val)
		}
		if !l.KeepEmpty && len(val) == 0 {
			continue
		}
		lb.setParsed(key, string(val))
		if !lb.keepParsing(key) {
			return line, false
		}
		if lb.allRequired() {
			break
		}
	}
	if l.Strict && sc.err != nil {
		lb.setError(errLogfmt, sc.err)
		return line, lb.keepParsing(errorLabel)
	}
	return line, true
}

// processExprs extracts the named keys only. Every name is set, empty
// when the line lacks it; a key's later values replace earlier ones.
func (l *LogfmtParser) processExprs(line string, lb *lineLabels) (string, bool) {
	if lb.noLabels() {
		return line, true
	}
	for _, e := range l.Exprs {
		if !lb.collides(e.Name) {
			lb.setParsed(e.Name, "")
		}
	}
	sc := &logfmtScanner{line: []byte(line)}
	for !sc.eol() {
		if !sc.next() {
			if l.Strict {
				break
			}
			continue
		}
		key := sanitizeKey(string(sc.key))
		if key == "" {
			continue
		}
		always := l.isName(key)
		if !always && (!lb.hints.shouldExtract(key) || lb.wasExtracted(key)) {
			continue
		}
		val := sc.value
		if bytes.ContainsRune(val, utf8.RuneError) {
			val = nil
		}
		for _, e := range l.Exprs {
			if key == e.Expr {
				key = e.Name
				break
			}
		}
		if !l.isName(key) {
			continue
		}
		if lb.collides(key) {
			key += extractedSuffix
			if lb.skip(key) {
				break
			}
		}
		lb.setParsed(key, string(val))
		if lb.allRequired() {
			break
		}
	}
	if l.Strict && sc.err != nil {
		lb.setError(errLogfmt, sc.err)
	}
	return line, true
}

func (l *LogfmtParser) isName(s string) bool {
	for _, e := range l.Exprs {
		if e.Name == s {
			return true
		}
	}
	return false
}

func (l *LogfmtParser) requiredLabels() []string { return nil }

func invalidToSpace(r rune) rune {
	if r == utf8.RuneError {
		return ' '
	}
	return r
}
