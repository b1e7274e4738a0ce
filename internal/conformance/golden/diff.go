package golden

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
)

// Tolerance is what Diff takes as equal besides equal JSON values; the
// zero Tolerance compares field by field, exactly.
type Tolerance struct {
	// Numbers: two strings that read as numbers are equal to 1e-9
	// relative (sums may add up in another order), NaN to NaN.
	Numbers bool
	// Empty: null, [] and a field left out are equal where want has one
	// of them (a field got has and want lacks is still a difference).
	Empty bool
}

// JSON is v as encoding/json decodes its encoding into an any (maps,
// slices, float64s, strings, bools and nils), the form Diff compares.
func JSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("unmarshal: %w", err)
	}
	return out, nil
}

// Same reports whether got is want as JSON, within tol, and where they
// first differ (paths start at at). Both go through JSON first: goldens
// come back from a file, answers made here may hold Go types.
func Same(want, got any, at string, tol Tolerance) (bool, string) {
	w, err := JSON(want)
	if err != nil {
		return false, err.Error()
	}
	g, err := JSON(got)
	if err != nil {
		return false, err.Error()
	}
	if where := Diff(w, g, at, tol); where != "" {
		return false, where
	}
	return true, ""
}

// Diff returns the path of the first difference of two JSON values (as
// JSON returns them), with both values there; "" when they are equal
// within tol. Fields are visited in order, so a difference is always
// reported at the same place.
func Diff(want, got any, at string, tol Tolerance) string {
	differ := func() string { return fmt.Sprintf("%s: got %s, want %s", at, show(got), show(want)) }
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return differ()
		}
		keys := maps.Clone(w)
		maps.Copy(keys, g)
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			wv, wok := w[k]
			gv, gok := g[k]
			switch {
			case !wok:
				return fmt.Sprintf("%s.%s: got %s, want no such field", at, k, show(gv))
			case !gok && !tol.Empty:
				return fmt.Sprintf("%s.%s: missing, want %s", at, k, show(wv))
			}
			if d := Diff(wv, gv, at+"."+k, tol); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok && got == nil && len(w) == 0 && tol.Empty {
			return ""
		}
		if !ok {
			return differ()
		}
		for i := range min(len(w), len(g)) {
			if d := Diff(w[i], g[i], fmt.Sprintf("%s[%d]", at, i), tol); d != "" {
				return d
			}
		}
		if len(w) != len(g) {
			return fmt.Sprintf("%s: %d elements, want %d: got %s, want %s", at, len(g), len(w), show(got), show(want))
		}
		return ""
	case string:
		if g, ok := got.(string); ok && tol.Numbers && numbersEqual(w, g) {
			return ""
		}
	case nil:
		if g, ok := got.([]any); ok && len(g) == 0 && tol.Empty {
			return ""
		}
	}
	if !reflect.DeepEqual(want, got) {
		return differ()
	}
	return ""
}

// numbersEqual reports whether a and b read as numbers equal to 1e-9
// relative.
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

func show(v any) string {
	b, _ := json.Marshal(v)
	return Trim(string(b))
}
