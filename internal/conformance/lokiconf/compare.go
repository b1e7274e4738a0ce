package lokiconf

import (
	"fmt"

	"github.com/lumenobs/lumen/internal/conformance/golden"
)

// Goldens are a reference server's answers to the queries, by query key
// (Reference is e.g. "Loki 3.7.8").
type Goldens = golden.File[Answer]

// LoadGoldens reads a goldens file.
func LoadGoldens(path string) (Goldens, error) { return golden.Load[Answer](path) }

// tolerance: numbers equal to 1e-9 relative (sums may add up in another
// order); an empty list the same as null or a field left out.
var tolerance = golden.Tolerance{Numbers: true, Empty: true}

// Same reports whether got answers as want did: the same status class
// and, on success, the same result, numbers equal to 1e-9 relative (sums
// may add in another order). It returns where they first differ.
func Same(want, got Answer) (bool, string) {
	if want.Status/100 != got.Status/100 {
		return false, fmt.Sprintf("status %d, want %d (%s)", got.Status, want.Status, golden.Trim(got.Error+want.Error))
	}
	if want.Status != 200 {
		return true, ""
	}
	return golden.Same(want.Result, got.Result, "result", tolerance)
}
