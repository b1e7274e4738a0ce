package logql

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// A pattern (Loki's `| pattern` and `|>` syntax) is literal text and
// captures: <name> captures into a label, <_> skips. Matching walks the
// line: a literal at the start must begin it, each capture runs to the
// first occurrence of the literal after it, and a capture whose literal
// is missing takes the rest of the line.

type patternNode struct {
	literal string // when not a capture
	capture string // the name; "_" skips
}

func (n patternNode) isCapture() bool { return n.capture != "" }

func (n patternNode) String() string {
	if n.isCapture() {
		return "<" + n.capture + ">"
	}
	return n.literal
}

var (
	errNoCapture   = errors.New("at least one capture is required")
	errInvalidExpr = errors.New("invalid expression")
	errNamedInLine = errors.New("named captures are not allowed")
)

// parsePattern splits a pattern into literals and captures; <x> is a
// capture only when x is a name (a letter or '_', then letters, digits
// and '_').
func parsePattern(s string) ([]patternNode, error) {
	if s == "" {
		return nil, errors.New("syntax error: unexpected $end")
	}
	if !utf8.ValidString(s) {
		return nil, errors.New("invalid UTF-8 in pattern")
	}
	var out []patternNode
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			out = append(out, patternNode{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		if s[i] == '<' {
			j := i + 1
			if j < len(s) && isIdentStart(s[j]) {
				for j < len(s) && isIdentPart(s[j]) {
					j++
				}
				if j < len(s) && s[j] == '>' {
					flush()
					out = append(out, patternNode{capture: s[i+1 : j]})
					i = j + 1
					continue
				}
			}
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		lit.WriteString(s[i : i+w])
		i += w
	}
	flush()
	return out, nil
}

func patternNames(nodes []patternNode) []string {
	var out []string
	for _, n := range nodes {
		if n.isCapture() && n.capture != "_" {
			out = append(out, n.capture)
		}
	}
	return out
}

// checkPattern is what `| pattern` requires: a named capture, no two
// captures in a row, no name twice.
func checkPattern(nodes []patternNode) error {
	names := patternNames(nodes)
	if len(names) == 0 {
		return errNoCapture
	}
	if err := checkNoConsecutive(nodes); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return fmt.Errorf("duplicate capture name (%s): %w", n, errInvalidExpr)
		}
		seen[n] = true
	}
	return nil
}

func checkNoConsecutive(nodes []patternNode) error {
	for i := 0; i+1 < len(nodes); i++ {
		if nodes[i].isCapture() && nodes[i+1].isCapture() {
			return fmt.Errorf("found consecutive capture '%s': %w", nodes[i].String()+nodes[i+1].String(), errInvalidExpr)
		}
	}
	return nil
}

// matchPattern returns the named captures' values, in order; fewer than
// the names when the line ends first, none when it does not match.
func matchPattern(nodes []patternNode, in string) []string {
	if in == "" || len(nodes) == 0 {
		return nil
	}
	var caps []string
	if !nodes[0].isCapture() {
		if !strings.HasPrefix(in, nodes[0].literal) {
			return nil
		}
		in = in[len(nodes[0].literal):]
		nodes = nodes[1:]
	}
	if len(nodes) == 0 {
		return nil
	}
	for len(nodes) > 0 {
		c := nodes[0]
		if len(nodes) == 1 {
			if c.capture != "_" {
				caps = append(caps, in)
			}
			return caps
		}
		lit := nodes[1].literal
		nodes = nodes[2:]
		i := strings.Index(in, lit)
		if i < 0 {
			if c.capture != "_" {
				caps = append(caps, in)
			}
			return caps
		}
		if c.capture != "_" {
			caps = append(caps, in[:i])
		}
		in = in[i+len(lit):]
	}
	return caps
}

// testPattern is the |> line filter: the whole line must follow the
// pattern, and no capture may be empty.
func testPattern(nodes []patternNode, in string) bool {
	if in == "" || len(nodes) == 0 {
		return in == "" && len(nodes) == 0
	}
	off := 0
	for i, n := range nodes {
		if n.isCapture() {
			continue
		}
		j := strings.Index(in[off:], n.literal)
		if j < 0 || i != 0 && j == 0 {
			return false
		}
		off += j + len(n.literal)
	}
	endsOnCapture := nodes[len(nodes)-1].isCapture()
	return endsOnCapture == (off != len(in))
}

// PatternParser is `| pattern "<ip> - <_> [<ts>] …"`: the named captures
// become labels.
type PatternParser struct {
	Pattern string
	nodes   []patternNode
	names   []string
}

func (*PatternParser) stage() {}

func (*PatternParser) requiredLabels() []string { return nil }

func (p *PatternParser) process(_ int64, line string, lb *lineLabels) (string, bool) {
	if lb.noLabels() {
		return line, true
	}
	for i, v := range matchPattern(p.nodes, line) {
		if !lb.extract(p.names[i], v) {
			return line, false
		}
	}
	return line, true
}
