// Package logql parses and evaluates LogQL, Loki's query language, over
// Lumen's log store: stream selectors, the log pipeline (line and label
// filters, the json, logfmt, pattern, regexp and unpack parsers,
// line_format, label_format, drop, keep, decolorize; stages.go), and the
// range and vector aggregations Grafana's Loki data source uses.
//
// Loki's own LogQL packages live in its main module, which is under the
// AGPL and so cannot be a dependency; the grammar here is written from
// Loki's documentation, and its errors name the line and column as Loki's
// do ("parse error at line 1, col 8: …").
package logql

import (
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// ErrParse marks a query that does not parse; the message gives the
// position.
var ErrParse = errors.New("parse error")

// MaxDepth bounds how deeply a query may nest parentheses and vector
// aggregations, so that no query can exhaust the parser's stack (a Go
// stack overflow ends the process).
const MaxDepth = 128

// ErrTooDeep marks a query nested deeper than MaxDepth; the errors that
// wrap it wrap ErrParse too.
var ErrTooDeep = errors.New("nested too deeply")

// ParseError is a LogQL syntax error at a position of the query.
type ParseError struct {
	Line, Col int
	Msg       string
	tooDeep   bool
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("parse error at line %d, col %d: %s", e.Line, e.Col, e.Msg)
}

func (e *ParseError) Unwrap() []error {
	if e.tooDeep {
		return []error{ErrParse, ErrTooDeep}
	}
	return []error{ErrParse}
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tDuration // 5m, 1h30m, 10ms
	tBytes    // 10KB, 1MiB
	tLBrace
	tRBrace
	tLParen
	tRParen
	tLBracket
	tRBracket
	tComma
	tPipe      // |
	tPipeExact // |=
	tPipeMatch // |~
	tNeq       // !=
	tNre       // !~
	tEq        // =
	tEqEq      // ==
	tRe        // =~
	tGt
	tGte
	tLt
	tLte
	tAdd // +
	tSub // - (a binary operator; -5 after an operator is a number)
	tMul // *
	tDiv // /
	tMod // %
	tPow // ^
	tNpa // !> (a line filter: does not follow a pattern)
)

var tokNames = map[tokKind]string{
	tEOF: "end of query", tIdent: "identifier", tString: "string", tNumber: "number", tDuration: "duration",
	tBytes: "bytes", tLBrace: "{", tRBrace: "}", tLParen: "(", tRParen: ")", tLBracket: "[", tRBracket: "]",
	tComma: ",", tPipe: "|", tPipeExact: "|=", tPipeMatch: "|~", tNeq: "!=", tNre: "!~", tEq: "=", tEqEq: "==",
	tRe: "=~", tGt: ">", tGte: ">=", tLt: "<", tLte: "<=",
	tAdd: "+", tSub: "-", tMul: "*", tDiv: "/", tMod: "%", tPow: "^",
	tNpa: "!>",
}

type token struct {
	kind tokKind
	text string // identifiers, numbers, durations; unquoted strings
	pos  int    // byte offset in the query
}

func (t token) String() string {
	switch t.kind {
	case tIdent, tNumber, tDuration, tBytes:
		return strconv.Quote(t.text)
	case tString:
		return "string " + strconv.Quote(t.text)
	}
	return strconv.Quote(tokNames[t.kind])
}

type lexer struct {
	src  string
	pos  int
	toks []token
}

func lex(src string) ([]token, error) {
	l := &lexer{src: src}
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		l.toks = append(l.toks, t)
		if t.kind == tEOF {
			return l.toks, nil
		}
	}
}

// errAt builds a ParseError at byte offset pos of src.
func errAt(src string, pos int, format string, a ...any) *ParseError {
	line, col := 1, 1
	for i, r := range src {
		if i >= pos {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return &ParseError{Line: line, Col: col, Msg: fmt.Sprintf(format, a...)}
}

func (l *lexer) next() (token, error) {
	for l.pos < len(l.src) {
		r, w := utf8.DecodeRuneInString(l.src[l.pos:])
		if r == '#' { // a comment runs to the end of the line
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.pos++
			}
			continue
		}
		if !unicode.IsSpace(r) {
			break
		}
		l.pos += w
	}
	start := l.pos
	if l.pos >= len(l.src) {
		return token{kind: tEOF, pos: start}, nil
	}
	c := l.src[l.pos]
	two := ""
	if l.pos+1 < len(l.src) {
		two = l.src[l.pos : l.pos+2]
	}
	op := func(k tokKind, n int) (token, error) {
		l.pos += n
		return token{kind: k, text: l.src[start:l.pos], pos: start}, nil
	}
	switch two {
	case "|=":
		return op(tPipeExact, 2)
	case "|~":
		return op(tPipeMatch, 2)
	case "!=":
		return op(tNeq, 2)
	case "!~":
		return op(tNre, 2)
	case "!>":
		return op(tNpa, 2)
	case "==":
		return op(tEqEq, 2)
	case "=~":
		return op(tRe, 2)
	case ">=":
		return op(tGte, 2)
	case "<=":
		return op(tLte, 2)
	}
	switch c {
	case '{':
		return op(tLBrace, 1)
	case '}':
		return op(tRBrace, 1)
	case '(':
		return op(tLParen, 1)
	case ')':
		return op(tRParen, 1)
	case '[':
		return op(tLBracket, 1)
	case ']':
		return op(tRBracket, 1)
	case ',':
		return op(tComma, 1)
	case '|':
		return op(tPipe, 1)
	case '=':
		return op(tEq, 1)
	case '>':
		return op(tGt, 1)
	case '<':
		return op(tLt, 1)
	case '+':
		return op(tAdd, 1)
	case '*':
		return op(tMul, 1)
	case '/':
		return op(tDiv, 1)
	case '%':
		return op(tMod, 1)
	case '^':
		return op(tPow, 1)
	case '-':
		if l.afterOperand() {
			return op(tSub, 1)
		}
	case '"', '`':
		return l.str(c)
	}
	if c == '-' && (l.pos+1 >= len(l.src) || l.src[l.pos+1] < '0' || l.src[l.pos+1] > '9') {
		return op(tSub, 1)
	}
	if c >= '0' && c <= '9' || (c == '-' || c == '.') && l.pos+1 < len(l.src) && l.src[l.pos+1] >= '0' && l.src[l.pos+1] <= '9' {
		return l.number()
	}
	if isIdentStart(c) {
		for l.pos < len(l.src) && isIdentPart(l.src[l.pos]) {
			l.pos++
		}
		return token{kind: tIdent, text: l.src[start:l.pos], pos: start}, nil
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.pos:])
	return token{}, errAt(l.src, start, "unexpected character %q", r)
}

// afterOperand reports whether the previous token ends an operand, so that
// a '-' next is subtraction (a - 1) rather than a negative number (> -1).
func (l *lexer) afterOperand() bool {
	if len(l.toks) == 0 {
		return false
	}
	switch l.toks[len(l.toks)-1].kind {
	case tRParen, tRBracket, tNumber, tDuration, tBytes:
		return true
	}
	return false
}

func isIdentStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isIdentPart(c byte) bool  { return isIdentStart(c) || '0' <= c && c <= '9' }

// str reads a double-quoted string (Go escapes) or a backquoted raw one.
func (l *lexer) str(q byte) (token, error) {
	start := l.pos
	l.pos++
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == '\\' && q == '"':
			l.pos += 2
			continue
		case c == q:
			l.pos++
			raw := l.src[start:l.pos]
			if q == '`' {
				return token{kind: tString, text: raw[1 : len(raw)-1], pos: start}, nil
			}
			s, err := strconv.Unquote(raw)
			if err != nil {
				return token{}, errAt(l.src, start, "invalid string %s: %v", raw, err)
			}
			return token{kind: tString, text: s, pos: start}, nil
		}
		l.pos++
	}
	return token{}, errAt(l.src, start, "string not terminated")
}

// number reads a number, a duration (5m, 1h30m, 250ms) or a byte size
// (10KB, 1.5MiB).
func (l *lexer) number() (token, error) {
	start := l.pos
	if l.src[l.pos] == '-' {
		l.pos++
	}
	for l.pos < len(l.src) && (isIdentPart(l.src[l.pos]) || l.src[l.pos] == '.') {
		l.pos++
	}
	text := l.src[start:l.pos]
	if _, err := strconv.ParseFloat(text, 64); err == nil {
		return token{kind: tNumber, text: text, pos: start}, nil
	}
	if _, err := parseDuration(text); err == nil {
		return token{kind: tDuration, text: text, pos: start}, nil
	}
	if _, err := parseBytes(text); err == nil {
		return token{kind: tBytes, text: text, pos: start}, nil
	}
	return token{}, errAt(l.src, start, "%q is neither a number, a duration nor a byte size", text)
}
