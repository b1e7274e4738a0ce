package jaegerconf

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
)

// Goldens are the reference's answers to the queries, by query name.
type Goldens struct {
	Reference string            `json:"reference"` // e.g. "Jaeger v1.76.0 (v2 binary, memory storage)"
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
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("goldens: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("goldens: %w", err)
	}
	return nil
}

// Compare reports whether got answers q as the reference did, field by
// field: the same status and the same envelope (for an error, the same
// codes). A query with a documented difference is compared with the
// reference's answer adjusted as documented, or with its answer to
// another query. It returns where they first differ.
func (g Goldens) Compare(q Query, got Answer) (bool, string) {
	name := q.Name
	if q.sameAs != "" {
		name = q.sameAs
	}
	want, ok := g.Answers[name]
	if !ok {
		return false, fmt.Sprintf("no golden for %q: run make jaeger-goldens", name)
	}
	if want.Status != got.Status {
		return false, fmt.Sprintf("status %d, want %d (%s)", got.Status, want.Status, trim(got.Error+" | "+want.Error))
	}
	var w, gv any
	if err := roundTrip(want.Body, &w); err != nil {
		return false, err.Error()
	}
	if err := roundTrip(got.Body, &gv); err != nil {
		return false, err.Error()
	}
	if q.adjust != nil {
		if env, ok := w.(map[string]any); ok {
			env["data"] = q.adjust(env["data"])
		}
	}
	if where := diff(w, gv, "body"); where != "" {
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

// diff returns the path of the first difference of two JSON values, with
// both values there; "" when they are equal.
func diff(want, got any, path string) string {
	show := func(v any) string {
		b, _ := json.Marshal(v)
		return trim(string(b))
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %s, want %s", path, show(got), show(want))
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			wv, wok := w[k]
			gv, gok := g[k]
			switch {
			case !wok:
				return fmt.Sprintf("%s.%s: %s, want no such field", path, k, show(gv))
			case !gok:
				return fmt.Sprintf("%s.%s: missing, want %s", path, k, show(wv))
			}
			if d := diff(wv, gv, path+"."+k); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Sprintf("%s: %s, want %s", path, show(got), show(want))
		}
		for i := range min(len(w), len(g)) {
			if d := diff(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return d
			}
		}
		if len(w) != len(g) {
			return fmt.Sprintf("%s: %d elements, want %d: %s, want %s", path, len(g), len(w), show(got), show(want))
		}
		return ""
	}
	if !reflect.DeepEqual(want, got) {
		return fmt.Sprintf("%s: %s, want %s", path, show(got), show(want))
	}
	return ""
}
