package lokiremote

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// FuzzDecodeResult: whatever a logs backend answers is decoded or refused
// with an error, never a panic; seeds in testdata/answers are Loki's own
// answers (streams, categorized streams, vector, matrix, scalar).
func FuzzDecodeResult(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "answers", "*.json"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/answers: %v", err)
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := decodeResult(body)
		if err != nil {
			return
		}
		for _, s := range res.Streams {
			if err := s.Labels.Validate(func(labels.Label) error { return nil }); err != nil {
				t.Fatalf("stream labels: %v", err)
			}
		}
		a, err := decode(body)
		if err != nil {
			t.Fatalf("decodeResult took what decode refuses: %v", err)
		}
		if a.Data.ResultType != res.Type {
			t.Fatalf("type %q answered as %q", a.Data.ResultType, res.Type)
		}
	})
}

// TestDecodeResultSeeds: the seeds decode to what Loki said.
func TestDecodeResultSeeds(t *testing.T) {
	for name, want := range map[string]struct {
		typ     string
		streams int
		series  int
	}{
		"streams.json": {"streams", 2, 0}, "categorized.json": {"streams", 1, 0},
		"vector.json": {"vector", 0, 2}, "matrix.json": {"matrix", 0, 1}, "scalar.json": {"scalar", 0, 0},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", "answers", name))
		if err != nil {
			t.Fatal(err)
		}
		res, err := decodeResult(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Type != want.typ || len(res.Streams) != want.streams || len(res.Series) != want.series {
			t.Fatalf("%s: %s with %d streams and %d series", name, res.Type, len(res.Streams), len(res.Series))
		}
	}
}
