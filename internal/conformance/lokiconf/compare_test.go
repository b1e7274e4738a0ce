package lokiconf

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSame(t *testing.T) {
	series := func(labels string, pts ...[]string) map[string]any {
		return map[string]any{"type": "matrix", "series": []Series{{Labels: labels, Points: pts}}}
	}
	want := Answer{Status: 200, Result: series(`{a="1"}`, []string{"0", "1.5"}, []string{"60000", "3"})}
	ok, _ := Same(want, Answer{Status: 200, Result: series(`{a="1"}`, []string{"0", "1.5000000000001"}, []string{"60000", "3"})})
	require.True(t, ok, "numbers equal to 1e-9 relative")
	for name, got := range map[string]Answer{
		"value":  {Status: 200, Result: series(`{a="1"}`, []string{"0", "1.6"}, []string{"60000", "3"})},
		"time":   {Status: 200, Result: series(`{a="1"}`, []string{"1", "1.5"}, []string{"60000", "3"})},
		"labels": {Status: 200, Result: series(`{a="2"}`, []string{"0", "1.5"}, []string{"60000", "3"})},
		"points": {Status: 200, Result: series(`{a="1"}`, []string{"0", "1.5"})},
		"status": {Status: 400, Error: "no"},
		"type":   {Status: 200, Result: map[string]any{"type": "vector", "series": []Series{{Labels: `{a="1"}`, Points: [][]string{{"0", "1.5"}, {"60000", "3"}}}}}},
		"line":   {Status: 200, Result: map[string]any{"type": "matrix", "series": []Series{{Labels: `{a="1"}`, Points: [][]string{{"0", "1.5x"}, {"60000", "3"}}}}}},
	} {
		ok, where := Same(want, got)
		require.False(t, ok, name)
		require.NotEmpty(t, where, name)
	}
	ok, _ = Same(Answer{Status: 400, Error: "a"}, Answer{Status: 400, Error: "b"})
	require.True(t, ok, "errors compare by status class only")
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
