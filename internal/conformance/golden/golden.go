// Package golden holds what the conformance suites (lokiconf, jaegerconf)
// share: the goldens file of a reference server's answers, the comparison
// of an answer with its golden as JSON, and the running of the reference
// server that records the goldens. Each suite keeps its own queries and
// the normalisation of its answers.
package golden

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// File is a goldens file: a reference server's answers (A) to the
// queries, by query name.
type File[A any] struct {
	Reference string       `json:"reference"` // e.g. "Loki v3.7.8"
	Answers   map[string]A `json:"answers"`
}

// Load reads a goldens file.
func Load[A any](path string) (File[A], error) {
	var f File[A]
	b, err := os.ReadFile(path)
	if err != nil {
		return f, fmt.Errorf("goldens: %w", err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("goldens %s: %w", path, err)
	}
	return f, nil
}

// Write stores f, indented, so that a regenerated file diffs well.
func (f File[A]) Write(path string) error {
	b, err := json.MarshalIndent(f, "", " ")
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

// Trim cuts s to 300 bytes, for messages.
func Trim(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
