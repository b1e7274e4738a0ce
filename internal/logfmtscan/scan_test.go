package logfmtscan_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/logfmtscan"
)

// scanAll reads line as the LogQL parser does without --strict: every
// pair that scans, as key=value (key alone for no value), and the error.
func scanAll(line string) ([]string, string) {
	var s logfmtscan.Scanner
	s.Reset([]byte(line))
	var pairs []string
	for !s.Done() {
		if !s.Scan() {
			continue
		}
		p := string(s.Key())
		if s.Value() != nil {
			p += "=" + string(s.Value())
		}
		pairs = append(pairs, p)
	}
	if s.Err() == nil {
		return pairs, ""
	}
	return pairs, s.Err().Error()
}

func TestScanner(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		pairs      []string
		err        string
	}{
		{"pairs", `level=info msg="a b" n=1`, []string{"level=info", "msg=a b", "n=1"}, ""},
		{"key alone, empty values", `retry a= b="" c`, []string{"retry", "a", "b", "c"}, ""},
		{"spaces and tabs", "  a=1\t\tb=2 ", []string{"a=1", "b=2"}, ""},
		{"escapes", `a="x\"y\\z\n\t\u00e9\ud83d\ude80" b="it\'s"`, []string{"a=x\"y\\z\n\té🚀", "b=it's"}, ""},
		{"lone surrogate", `a="\ud800x"`, []string{"a=\ufffdx"}, ""},
		{"control characters pass in an escaped value", "a=\"x\\n\x01\"", []string{"a=x\n\x01"}, ""},
		{"invalid UTF-8 in a value", "a=\"\\n\xff\"", []string{"a=\n\ufffd"}, ""},
		{"unknown escape", `a="\q" b=2`, []string{"b=2"}, "logfmt syntax error at pos 7 : invalid quoted value"},
		{"unterminated", `a=1 b="x y`, []string{"a=1"}, "logfmt syntax error at pos 11 : unterminated quoted value"},
		{"equals first", `=x b=2`, []string{"b=2"}, "logfmt syntax error at pos 1 : unexpected '='"},
		{"quote in a key", `a"b=1 c=2`, []string{"c=2"}, "logfmt syntax error at pos 2 : unexpected '\"'"},
		{"quote in a value", `a=b"c d=2`, []string{"d=2"}, "logfmt syntax error at pos 4 : unexpected '\"'"},
		{"equals in a value", `a=b=c d=2`, []string{"d=2"}, "logfmt syntax error at pos 4 : unexpected '='"},
		{"invalid key", "k\xff=1 b=2", []string{"b=2"}, "logfmt syntax error at pos 3 : invalid key"},
		{"invalid bare key", "k\xff b=2", []string{"b=2"}, "logfmt syntax error at pos 3 : invalid key"},
		{"the last error", `=a =bb`, nil, "logfmt syntax error at pos 4 : unexpected '='"},
		{"empty", "", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pairs, err := scanAll(tc.line)
			require.Equal(t, tc.pairs, pairs)
			require.Equal(t, tc.err, err)
		})
	}
	var s logfmtscan.Scanner
	s.Reset([]byte(`a="x`))
	require.False(t, s.Scan())
	var se *logfmtscan.SyntaxError
	require.True(t, errors.As(s.Err(), &se))
	require.Equal(t, logfmtscan.SyntaxError{Msg: "unterminated quoted value", Pos: 5}, *se)
	s.Reset([]byte("b=1"))
	require.True(t, s.Scan())
	require.NoError(t, s.Err(), "Reset forgets the error")
	require.True(t, s.Done())
}

// FuzzScanner: any line is read to its end, each Scan moving on; keys
// are never empty nor hold a space, '=' or '"', and errors point into
// the line.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		`level=info msg="processed job" duration=12ms`, `a="unterminated b=1 c d e`, `a="\ud83d\ude80\'" =x "`,
		"k\xff=1 b=\"\\u00zz\"", `{"msg":"json"}`, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var s logfmtscan.Scanner
		s.Reset([]byte(line))
		for n := 0; !s.Done(); n++ {
			if n > len(line) {
				t.Fatalf("%q: more scans than bytes", line)
			}
			if !s.Scan() {
				continue
			}
			if k := s.Key(); len(k) == 0 || bytes.ContainsAny(k, "=\" \t\n") {
				t.Fatalf("%q: key %q", line, k)
			}
		}
		var se *logfmtscan.SyntaxError
		if err := s.Err(); err != nil && (!errors.As(err, &se) || se.Pos < 1 || se.Pos > len(line)+1) {
			t.Fatalf("%q: error %v", line, err)
		}
	})
}
