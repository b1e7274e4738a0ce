package logql

import (
	"bytes"
	"iter"
	"unicode/utf8"

	"github.com/lumenobs/lumen/internal/logfmtscan"
)

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
	var sc logfmtscan.Scanner
	for key, val := range l.pairs(&sc, line) {
		if bytes.ContainsRune(val, utf8.RuneError) {
			val = bytes.Map(invalidToSpace, val)
		}
		if !l.KeepEmpty && len(val) == 0 {
			continue
		}
		if !lb.extract(key, string(val)) {
			return line, false
		}
		if lb.allRequired() {
			break
		}
	}
	if l.Strict && sc.Err() != nil {
		lb.setError(errLogfmt, sc.Err())
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
	var sc logfmtscan.Scanner
	for key, val := range l.pairs(&sc, line) {
		always := l.isName(key)
		if !always && (!lb.hints.shouldExtract(key) || lb.wasExtracted(key)) {
			continue
		}
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
	if l.Strict && sc.Err() != nil {
		lb.setError(errLogfmt, sc.Err())
	}
	return line, true
}

// pairs reads line with sc and yields its pairs, keys sanitized (a key
// that sanitizes to nothing left out). A malformed pair is left out, or
// with Strict ends the line; sc.Err() tells afterwards.
func (l *LogfmtParser) pairs(sc *logfmtscan.Scanner, line string) iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		sc.Reset([]byte(line))
		for !sc.Done() {
			if !sc.Scan() {
				if l.Strict {
					return
				}
				continue
			}
			if key := SanitizeKey(string(sc.Key())); key != "" && !yield(key, sc.Value()) {
				return
			}
		}
	}
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
