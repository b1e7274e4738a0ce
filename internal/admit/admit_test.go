package admit

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadAll reads bodies whose Content-Length is right, says too little,
// too much, nothing (chunked) or more than the limit: each gives back the
// body's bytes as sent, at most limit+1 of them.
func TestReadAll(t *testing.T) {
	body := strings.Repeat("remote write body ", 1000)
	const limit = 10_000
	for _, tc := range []struct {
		name     string
		body     string
		declared int64
	}{
		{"declared right", body[:5000], 5000},
		{"declared too little", body[:5000], 100},
		{"declared too much", body[:5000], 9000},
		{"not declared", body[:5000], -1},
		{"empty", "", 0},
		{"empty, not declared", "", -1},
		{"over the limit", body, int64(len(body))},
		{"over the limit, not declared", body, -1},
		{"at the limit", body[:limit], limit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One byte a read: every growth step is taken.
			rd := io.LimitReader(iotest.OneByteReader(strings.NewReader(tc.body)), limit+1)
			got, err := readAll(rd, tc.declared, limit)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.body[:min(len(tc.body), limit+1)]
			if !bytes.Equal(got, []byte(want)) {
				t.Fatalf("read %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

// TestReadAllError passes on the reader's error with what was read.
func TestReadAllError(t *testing.T) {
	boom := errors.New("boom")
	rd := io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom))
	got, err := readAll(rd, 10, 100)
	if !errors.Is(err, boom) || string(got) != "abc" {
		t.Fatalf("got %q, %v", got, err)
	}
}
