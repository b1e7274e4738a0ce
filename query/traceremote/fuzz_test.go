package traceremote

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/model"
)

var seedID = model.TraceID{0xe7, 0xcc, 0xb6, 0x56, 0xfb, 0x75, 0x19, 0xcc, 0xe4, 0xf4, 0xde, 0x9a, 0x4b, 0x47, 0xa8, 0xd3}

// FuzzDecodeJaeger: whatever a traces backend answers is a trace, not
// found, or unavailable — never a panic; seeds in testdata/answers are
// Jaeger v2's own answers.
func FuzzDecodeJaeger(f *testing.F) {
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
		td, err := decodeJaeger(body, "http://jaeger", seedID)
		switch {
		case err == nil:
			if td.SpanCount() == 0 {
				t.Fatal("a trace without spans is not found, not an answer")
			}
		case !errors.Is(err, fault.ErrNotFound) && !errors.Is(err, fault.ErrUnavailable):
			t.Fatalf("an error of no kind: %v", err)
		}
	})
}

// TestDecodeJaegerSeeds: the seeds decode to what Jaeger said.
func TestDecodeJaegerSeeds(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "answers", "trace.json"))
	if err != nil {
		t.Fatal(err)
	}
	td, err := decodeJaeger(b, "http://jaeger", seedID)
	if err != nil || td.SpanCount() != 2 {
		t.Fatalf("trace.json: %d spans, %v", td.SpanCount(), err)
	}
	sp := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	if sp.TraceID() != [16]byte(seedID) {
		t.Fatalf("trace id %s", sp.TraceID())
	}
	b, err = os.ReadFile(filepath.Join("testdata", "answers", "empty.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeJaeger(b, "http://jaeger", seedID); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("empty.json: %v", err)
	}
}

// FuzzDecodeCatalog: Jaeger's services and operations answers, whatever
// they hold, are read or refused as the backend unavailable, never a
// panic. Seeds: testdata/answers/services.json, operations.json (Jaeger
// v1.76.0's answers).
func FuzzDecodeCatalog(f *testing.F) {
	for _, name := range []string{"services.json", "operations.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "answers", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := decodeServices(body, "http://jaeger"); err != nil && !errors.Is(err, fault.ErrUnavailable) {
			t.Fatalf("an error of no kind: %v", err)
		}
		if _, err := decodeOperations(body, "http://jaeger"); err != nil && !errors.Is(err, fault.ErrUnavailable) {
			t.Fatalf("an error of no kind: %v", err)
		}
	})
}
