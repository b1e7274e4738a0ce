package drain

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTokenizers(t *testing.T) {
	cfg := DefaultConfig()
	for _, tc := range []struct {
		name, format, line string
		tokens             []string
		joined             string
	}{
		{"punctuation splits, words keep _-.:/", FormatUnknown, `10.0.0.1 - [30/Nov/2026:10:00:00 +0000] "GET /a?q=1"`,
			[]string{"10.0.0.1", "-", "[", "30/Nov/2026:10:00:00", "+0000", "]", `"`, "GET", "/a", "?", "q", "=", "1", `"`},
			`10.0.0.1 - [30/Nov/2026:10:00:00 +0000] "GET /a?q=1"`},
		{"a tab stays inside a token", FormatUnknown, "tab\tseparated x", []string{"tab\tseparated", "x"}, "tab\tseparated x"},
		{"logfmt pairs, time values are parameters", FormatLogfmt, `ts=2026 level=info msg="a b" retry`,
			[]string{"ts", Param, "level", "info", "msg", "a b", "retry", ""}, `ts=<_> level=info msg="a b" retry=`},
		{"logfmt values unquoted as Loki does: \\' and control characters", FormatLogfmt, "msg=\"it\\'s\\t\x01\"",
			[]string{"msg", "it's\t\x01"}, `msg="it's\t\u0001"`},
		{"json mines the message field", FormatJSON, `{"level":"info","msg":"user 42 logged in"}`,
			[]string{"user", "42", "logged", "in"}, "<_>user 42 logged in<_>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := newTokenizer(tc.format, cfg)
			tokens, state, ok := tok.tokenize(tc.line)
			require.True(t, ok)
			require.Equal(t, tc.tokens, tokens)
			require.Equal(t, tc.joined, tok.join(tokens, state))
		})
	}
	_, _, ok := newTokenizer(FormatLogfmt, cfg).tokenize(`level=error msg="unterminated`)
	require.False(t, ok, "a line that is not logfmt is not mined")
	_, _, ok = newTokenizer(FormatJSON, cfg).tokenize(`{"level":"info"}`)
	require.False(t, ok, "a JSON line without a message field is not mined")
}

func TestDetectFormat(t *testing.T) {
	require.Equal(t, FormatJSON, DetectFormat(`{"a":1}`))
	require.Equal(t, FormatLogfmt, DetectFormat(`level=info msg="hello world" n=1`))
	require.Equal(t, FormatUnknown, DetectFormat(`GET /index.html 200`))
}

func TestCollapseParams(t *testing.T) {
	require.Equal(t, "a <_> b", collapseParams("a <_><_><_> b"))
	require.Equal(t, "<_>x<_>", collapseParams("<_><_>x<_>"))
	require.Equal(t, "no params", collapseParams("no params"))
}

func TestMining(t *testing.T) {
	d := New(DefaultConfig(), FormatUnknown)
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range 30 {
		d.Train(fmt.Sprintf("connected to 10.0.0.%d port %d", i, 80+i%2), base.Add(time.Duration(i)*time.Second).UnixNano())
	}
	d.Train("short line", base.UnixNano()) // under 4 tokens: not mined
	ps := d.Patterns(base.UnixMilli(), base.Add(time.Hour).UnixMilli(), time.Minute.Milliseconds())
	require.Len(t, ps, 1)
	require.Equal(t, "connected to <_> port <_>", ps[0].Pattern)
	require.Equal(t, []Sample{{T: base.UnixMilli(), N: 30}}, ps[0].Samples)

	// By 10-second samples, the range cut at 15s.
	ps = d.Patterns(base.UnixMilli(), base.Add(15*time.Second).UnixMilli(), 10_000)
	require.Equal(t, []Sample{{T: base.UnixMilli(), N: 10}, {T: base.Add(10 * time.Second).UnixMilli(), N: 10}}, ps[0].Samples)
}
