package drain

import (
	"bytes"
	"regexp"
	"strings"
	"unicode"

	"github.com/buger/jsonparser"
	"github.com/go-logfmt/logfmt"

	"github.com/lumenobs/lumen/internal/logfmtscan"
)

// Line formats, guessed from a stream's first line: each has its
// tokenizer.
const (
	FormatJSON    = "json"
	FormatLogfmt  = "logfmt"
	FormatUnknown = "unknown"
)

var logfmtLine = regexp.MustCompile(`^(\w+?=([^"]\S*?|".+?") )*?(\w+?=([^"]\S*?|".+?"))+$`)

// DetectFormat guesses a line's format: an object in braces is JSON, a
// run of key=value pairs logfmt, anything else free text.
func DetectFormat(line string) string {
	switch {
	case len(line) < 2:
		return FormatUnknown
	case line[0] == '{' && line[len(line)-1] == '}':
		return FormatJSON
	case logfmtLine.MatchString(line):
		return FormatLogfmt
	}
	return FormatUnknown
}

// tokenizer splits a line into the tokens Drain compares, and joins a
// cluster's tokens back into its pattern. state is what the join needs
// besides the tokens (where the spaces were).
type tokenizer interface {
	tokenize(line string) (tokens []string, state []int, ok bool)
	join(tokens []string, state []int) string
}

func newTokenizer(format string, cfg Config) tokenizer {
	p := punctuation{maxLen: cfg.MaxLineLength}
	switch format {
	case FormatJSON:
		return jsonTokenizer{p: p, fields: cfg.JSONFields}
	case FormatLogfmt:
		return logfmtTokenizer{maxLen: cfg.MaxLineLength}
	}
	return p
}

// punctuation splits free text at spaces and punctuation (a punctuation
// character is a token of its own, a space is remembered), keeping
// letters, digits and _ - . : / inside words; at most 127 tokens, the
// rest of the line being the last.
type punctuation struct{ maxLen int }

func isWordByte(r rune) bool {
	switch r {
	case '_', '-', '.', ':', '/':
		return true
	}
	return false
}

func (p punctuation) tokenize(line string) ([]string, []int, bool) {
	if len(line) > p.maxLen {
		return nil, nil, false
	}
	tokens := make([]string, 0, 32)
	var spaces []int
	start := 0
	for i, r := range line {
		if len(tokens) >= 127 {
			break
		}
		if unicode.IsLetter(r) || unicode.IsNumber(r) || isWordByte(r) {
			continue
		}
		if r != ' ' && r != '=' && !unicode.IsPunct(r) {
			continue
		}
		if i > start {
			tokens = append(tokens, line[start:i])
		}
		if r == ' ' {
			spaces = append(spaces, len(tokens)-1)
		} else {
			// The character's first byte only, as Loki does: a
			// multi-byte punctuation mark splits across two tokens.
			tokens = append(tokens, line[i:i+1])
		}
		start = i + 1
	}
	if start < len(line) {
		tokens = append(tokens, line[start:])
	}
	return tokens, spaces, true
}

func (punctuation) join(tokens []string, spaces []int) string {
	var b strings.Builder
	next := 0
	for i, t := range tokens {
		b.WriteString(t)
		for next < len(spaces) && spaces[next] == i {
			b.WriteByte(' ')
			next++
		}
	}
	return b.String()
}

// jsonTokenizer tokenizes, as free text, the first of the configured
// top-level string fields a JSON line has (its message); a line without
// one is not mined.
type jsonTokenizer struct {
	p      punctuation
	fields []string
}

func (t jsonTokenizer) tokenize(line string) ([]string, []int, bool) {
	for _, f := range t.fields {
		v, typ, _, err := jsonparser.Get([]byte(line), f)
		if err == nil && typ == jsonparser.String {
			if len(v) > t.p.maxLen {
				return nil, nil, false
			}
			return t.p.tokenize(string(v))
		}
	}
	return nil, nil, false
}

func (t jsonTokenizer) join(tokens []string, spaces []int) string {
	return Param + t.p.join(tokens, spaces) + Param
}

// logfmtTokenizer makes each key and each value a token; the values of
// time and trace id fields are parameters from the start. A line that is
// not valid logfmt is not mined.
type logfmtTokenizer struct{ maxLen int }

func variableKey(k []byte) bool {
	return bytes.EqualFold(k, []byte("ts")) || bytes.Equal(k, []byte("t")) || bytes.EqualFold(k, []byte("traceID")) ||
		bytes.EqualFold(k, []byte("time")) || bytes.EqualFold(k, []byte("timestamp"))
}

func (t logfmtTokenizer) tokenize(line string) ([]string, []int, bool) {
	if len(line) > t.maxLen {
		return nil, nil, false
	}
	var s logfmtscan.Scanner
	s.Reset([]byte(line))
	tokens := make([]string, 0, 32)
	for !s.Done() && s.Scan() {
		v := string(s.Value())
		if variableKey(s.Key()) {
			v = Param
		}
		tokens = append(tokens, string(s.Key()), v)
	}
	if s.Err() != nil {
		return nil, nil, false
	}
	return tokens, nil, true
}

func (logfmtTokenizer) join(tokens []string, _ []int) string {
	if len(tokens) == 0 {
		return ""
	}
	if len(tokens)%2 == 1 {
		tokens = append(tokens[:len(tokens):len(tokens)], "")
	}
	var b bytes.Buffer
	enc := logfmt.NewEncoder(&b)
	for i := 0; i < len(tokens); i += 2 {
		if err := enc.EncodeKeyval(tokens[i], []byte(tokens[i+1])); err != nil {
			return ""
		}
	}
	return b.String()
}

// collapseParams turns a run of parameters (<_><_><_>) into one, as Loki
// writes patterns. Like Loki's, it does not look for a new run right at
// the end of one.
func collapseParams(s string) string {
	first := strings.Index(s, Param+Param)
	if first < 0 {
		return s
	}
	out := make([]byte, 0, len(s))
	low := 0
	for i := first; i < len(s)-5; i++ {
		if s[i:i+3] != Param {
			continue
		}
		high := i + 3
		for high < len(s)-2 && s[high:high+3] == Param {
			high += 3
		}
		out = append(out, s[low:i+3]...)
		low = high
		i = high
	}
	return string(append(out, s[low:]...))
}
