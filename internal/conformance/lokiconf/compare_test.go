package lokiconf

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Same compares statuses by class, errors by status only, and results as
// JSON with numbers equal to 1e-9 relative (golden's tests cover the
// comparison itself).
func TestSame(t *testing.T) {
	series := func(labels string, pts ...[]string) map[string]any {
		return map[string]any{"type": "matrix", "series": []Series{{Labels: labels, Points: pts}}}
	}
	want := Answer{Status: 200, Result: series(`{a="1"}`, []string{"0", "1.5"}, []string{"60000", "3"})}
	for _, tc := range []struct {
		name      string
		want, got Answer
		where     string // "" when the same
	}{
		{"numbers equal to 1e-9 relative", want, Answer{Status: 200, Result: series(`{a="1"}`, []string{"0", "1.5000000000001"}, []string{"60000", "3"})}, ""},
		{"value", want, Answer{Status: 200, Result: series(`{a="1"}`, []string{"0", "1.6"}, []string{"60000", "3"})}, `result.series[0].points[0][1]: got "1.6", want "1.5"`},
		{"status", want, Answer{Status: 400, Error: "no"}, "status 400, want 200 (no)"},
		{"errors by status class only", Answer{Status: 400, Error: "a"}, Answer{Status: 422, Error: "b"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, where := Same(tc.want, tc.got)
			require.Equal(t, tc.where == "", ok)
			require.Equal(t, tc.where, where)
		})
	}
}

// The queries file parses, every query has a golden, and the corpus is
// the same on every call.
func TestQueriesAndGoldens(t *testing.T) {
	qs, err := LoadQueries(filepath.Join("testdata", "queries.txt"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(qs), 200)
	g, err := LoadGoldens(filepath.Join("testdata", "goldens.json"))
	require.NoError(t, err)
	for _, q := range qs {
		_, ok := g.Answers[q.Key]
		require.True(t, ok, "line %d: no golden (make logql-goldens)", q.Line)
	}
	a, err := PushBody(Corpus(), T0(testTime))
	require.NoError(t, err)
	b, err := PushBody(Corpus(), T0(testTime))
	require.NoError(t, err)
	require.Equal(t, a, b)
	_, err = LoadQueries(filepath.Join(t.TempDir(), "none"))
	require.Error(t, err)
	bad := filepath.Join(t.TempDir(), "bad.txt")
	require.NoError(t, os.WriteFile(bad, []byte("nonsense x=1\n{a=\"b\"}\n"), 0o644))
	_, err = LoadQueries(bad)
	require.ErrorContains(t, err, "unknown kind")
}

var testTime = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
