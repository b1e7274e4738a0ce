package lokiconf

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
)

// Goldens are a reference server's answers to the queries, by query key.
type Goldens struct {
	Reference string            `json:"reference"` // e.g. "Loki 3.7.8"
	Answers   map[string]Answer `json:"answers"`
}

// LoadGoldens reads a goldens file.
func LoadGoldens(path string) (Goldens, error) {
	var g Goldens
	b, err := os.ReadFile(path)
	if err != nil {
		return g, fmt.Errorf("goldens: %w", err)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return g, fmt.Errorf("goldens %s: %w", path, err)
	}
	return g, nil
}

// Write stores g, indented, so that a regenerated file diffs well.
func (g Goldens) Write(path string) error {
	b, err := json.MarshalIndent(g, "", " ")
	if err != nil {
		return fmt.Errorf("goldens: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("goldens: %w", err)
	}
	return nil
}

// Same reports whether got answers as want did: the same status class
// and, on success, the same result, numbers equal to 1e-9 relative (sums
// may add in another order). It returns where they first differ.
func Same(want, got Answer) (bool, string) {
	if want.Status/100 != got.Status/100 {
		return false, fmt.Sprintf("status %d, want %d (%s)", got.Status, want.Status, trim(got.Error+want.Error))
	}
	if want.Status != 200 {
		return true, ""
	}
	// Goldens come back from JSON; bring got to the same shape.
	var w, g any
	if err := roundTrip(want.Result, &w); err != nil {
		return false, err.Error()
	}
	if err := roundTrip(got.Result, &g); err != nil {
		return false, err.Error()
	}
	if where := diff(w, g, "result"); where != "" {
		return false, where
	}
	return true, ""
}

func roundTrip(v any, out *any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("marshal: %w", err)
	}
	return json.Unmarshal(b, out)
}

func trim(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

func diff(w, g any, at string) string {
	switch wv := w.(type) {
	case map[string]any:
		gv, ok := g.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: got %s, want %s", at, short(g), short(w))
		}
		for k := range wv {
			if d := diff(wv[k], gv[k], at+"."+k); d != "" {
				return d
			}
		}
		for k := range gv {
			if _, ok := wv[k]; !ok {
				return fmt.Sprintf("%s.%s: got %s, want nothing", at, k, short(gv[k]))
			}
		}
		return ""
	case []any:
		gv, ok := g.([]any)
		if !ok && len(wv) == 0 && g == nil {
			return ""
		}
		if !ok {
			return fmt.Sprintf("%s: got %s, want %s", at, short(g), short(w))
		}
		for i := 0; i < len(wv) && i < len(gv); i++ {
			if d := diff(wv[i], gv[i], fmt.Sprintf("%s[%d]", at, i)); d != "" {
				return d
			}
		}
		if len(wv) != len(gv) {
			return fmt.Sprintf("%s: %d elements, want %d", at, len(gv), len(wv))
		}
		return ""
	case string:
		gs, ok := g.(string)
		if ok && gs == wv {
			return ""
		}
		if ok && numbersEqual(wv, gs) {
			return ""
		}
		return fmt.Sprintf("%s: got %s, want %s", at, short(g), short(w))
	case nil:
		if a, ok := g.([]any); ok && len(a) == 0 {
			return ""
		}
	}
	if !reflect.DeepEqual(w, g) {
		return fmt.Sprintf("%s: got %s, want %s", at, short(g), short(w))
	}
	return ""
}

func numbersEqual(a, b string) bool {
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	if math.IsNaN(x) || math.IsNaN(y) {
		return math.IsNaN(x) && math.IsNaN(y)
	}
	if x == y {
		return true
	}
	return math.Abs(x-y) <= 1e-9*math.Max(1, math.Max(math.Abs(x), math.Abs(y)))
}

func short(v any) string {
	b, _ := json.Marshal(v)
	return trim(string(b))
}
