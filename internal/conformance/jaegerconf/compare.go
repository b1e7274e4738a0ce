package jaegerconf

import (
	"fmt"

	"github.com/lumenobs/lumen/internal/conformance/golden"
)

// Goldens are the reference's answers to the queries, by query name
// (Reference is e.g. "Jaeger v1.76.0 (v2 binary, memory storage)").
type Goldens = golden.File[Answer]

// LoadGoldens reads a goldens file.
func LoadGoldens(path string) (Goldens, error) { return golden.Load[Answer](path) }

// Compare reports whether got answers q as the reference did in g, field
// by field: the same status and the same envelope (for an error, the
// same codes). A query with a documented difference is compared with the
// reference's answer adjusted as documented, or with its answer to
// another query. It returns where they first differ.
func Compare(g Goldens, q Query, got Answer) (bool, string) {
	name := q.Name
	if q.sameAs != "" {
		name = q.sameAs
	}
	want, ok := g.Answers[name]
	if !ok {
		return false, fmt.Sprintf("no golden for %q: run make jaeger-goldens", name)
	}
	if want.Status != got.Status {
		return false, fmt.Sprintf("status %d, want %d (%s)", got.Status, want.Status, golden.Trim(got.Error+" | "+want.Error))
	}
	w, err := golden.JSON(want.Body) // a copy: adjust must not change g
	if err != nil {
		return false, err.Error()
	}
	if q.adjust != nil {
		if env, ok := w.(map[string]any); ok {
			env["data"] = q.adjust(env["data"])
		}
	}
	return golden.Same(w, got.Body, "body", golden.Tolerance{})
}
