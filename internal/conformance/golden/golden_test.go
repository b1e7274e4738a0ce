package golden_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/conformance/golden"
)

type answer struct {
	Status int `json:"status"`
	Body   any `json:"body,omitempty"`
}

func TestWriteLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "testdata", "goldens.json")
	f := golden.File[answer]{Reference: "Loki v3.7.8", Answers: map[string]answer{
		"ok":  {Status: 200, Body: map[string]any{"data": []any{"a", 1.5}}},
		"bad": {Status: 400},
	}}
	require.NoError(t, f.Write(path))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, `{
 "reference": "Loki v3.7.8",
 "answers": {
  "bad": {
   "status": 400
  },
  "ok": {
   "status": 200,
   "body": {
    "data": [
     "a",
     1.5
    ]
   }
  }
 }
}
`, string(b), "indented, one value a line, ending in a newline")
	got, err := golden.Load[answer](path)
	require.NoError(t, err)
	require.Equal(t, f, got)

	_, err = golden.Load[answer](filepath.Join(t.TempDir(), "none.json"))
	require.ErrorContains(t, err, "goldens: ")
	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte("{"), 0o644))
	_, err = golden.Load[answer](bad)
	require.ErrorContains(t, err, bad)
}

func TestDiff(t *testing.T) {
	loose := golden.Tolerance{Numbers: true, Empty: true}
	series := func(labels string, pts ...any) map[string]any {
		return map[string]any{"type": "matrix", "series": []any{map[string]any{"labels": labels, "points": pts}}}
	}
	pt := func(t, v string) any { return []any{t, v} }
	want := series(`{a="1"}`, pt("0", "1.5"), pt("60000", "3"))
	for _, tc := range []struct {
		name      string
		want, got any
		tol       golden.Tolerance
		where     string // "" when equal
	}{
		{"equal", want, series(`{a="1"}`, pt("0", "1.5"), pt("60000", "3")), golden.Tolerance{}, ""},
		{"numbers equal to 1e-9 relative", want, series(`{a="1"}`, pt("0", "1.5000000000001"), pt("60000", "3")), loose, ""},
		{"numbers exactly", want, series(`{a="1"}`, pt("0", "1.5000000000001"), pt("60000", "3")), golden.Tolerance{},
			`result.series[0].points[0][1]: got "1.5000000000001", want "1.5"`},
		{"NaN equals NaN", "NaN", "NaN", loose, ""},
		{"NaN is not a number", "NaN", "1", loose, `result: got "1", want "NaN"`},
		{"value", want, series(`{a="1"}`, pt("0", "1.6"), pt("60000", "3")), loose,
			`result.series[0].points[0][1]: got "1.6", want "1.5"`},
		{"time", want, series(`{a="1"}`, pt("1", "1.5"), pt("60000", "3")), loose,
			`result.series[0].points[0][0]: got "1", want "0"`},
		{"labels", want, series(`{a="2"}`, pt("0", "1.5"), pt("60000", "3")), loose,
			`result.series[0].labels: got "{a=\"2\"}", want "{a=\"1\"}"`},
		{"points", want, series(`{a="1"}`, pt("0", "1.5")), loose,
			`result.series[0].points: 1 elements, want 2: got [["0","1.5"]], want [["0","1.5"],["60000","3"]]`},
		{"not a number", want, series(`{a="1"}`, pt("0", "1.5x"), pt("60000", "3")), loose,
			`result.series[0].points[0][1]: got "1.5x", want "1.5"`},
		{"type", map[string]any{"type": "matrix"}, map[string]any{"type": "vector"}, loose,
			`result.type: got "vector", want "matrix"`},
		{"object or not", want, "x", loose, `result: got "x", want {"series":[{"labels":"{a=\"1\"}","points":[["0","1.5"],["60000","3"]]}],"type":"matrix"}`},
		{"first difference in field order", map[string]any{"a": "1", "b": "1"}, map[string]any{"a": "2", "b": "2"}, loose,
			`result.a: got "2", want "1"`},
		{"field got has", map[string]any{}, map[string]any{"x": []any{}}, loose, `result.x: got [], want no such field`},
		{"field got lacks", map[string]any{"x": []any{}}, map[string]any{}, golden.Tolerance{}, `result.x: missing, want []`},
		{"empty list left out", map[string]any{"x": []any{}}, map[string]any{}, loose, ""},
		{"null left out", map[string]any{"x": nil}, map[string]any{}, loose, ""},
		{"empty list or null", []any{}, nil, loose, ""},
		{"null or empty list", nil, []any{}, loose, ""},
		{"null or empty list exactly", nil, []any{}, golden.Tolerance{}, "result: got [], want null"},
		{"list left out", map[string]any{"x": []any{"a"}}, map[string]any{}, loose, `result.x: got null, want ["a"]`},
		{"numbers", 1.0, 2.0, loose, "result: got 2, want 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.where, golden.Diff(tc.want, tc.got, "result", tc.tol))
		})
	}
}

// Same compares Go values as their JSON.
func TestSame(t *testing.T) {
	type point struct {
		T int64   `json:"t"`
		V float64 `json:"v"`
	}
	ok, where := golden.Same([]any{map[string]any{"t": 1.0, "v": 2.5}}, []point{{T: 1, V: 2.5}}, "data", golden.Tolerance{})
	require.True(t, ok, where)
	ok, where = golden.Same([]any{map[string]any{"t": 1.0, "v": 2.5}}, []point{{T: 1, V: 3}}, "data", golden.Tolerance{})
	require.False(t, ok)
	require.Equal(t, "data[0].v: got 3, want 2.5", where)
	ok, where = golden.Same(nil, func() {}, "data", golden.Tolerance{})
	require.False(t, ok)
	require.Contains(t, where, "marshal")
}
