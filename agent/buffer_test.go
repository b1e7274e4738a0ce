package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func rec(i int) Record {
	return Record{Signal: SignalLogs, Items: i + 1, Positions: []Position{{Key: "1:2", Offset: int64(i * 10)}}, Body: bytes.Repeat([]byte{byte(i)}, 1000+i)}
}

func next(t *testing.T, b *Buffer) Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBufferKeepsOrderAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBuffer(dir, 1<<20, NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 { // several segments (64 KiB each at this size)
		if err := b.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		r := next(t, b)
		if r.Items != i+1 || len(r.Body) != 1000+i || r.Positions[0].Offset != int64(i*10) {
			t.Fatalf("record %d: %+v", i, r.Positions)
		}
		if err := b.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	r := next(t, b) // read, not acknowledged: sent again after a restart
	if r.Items != 101 {
		t.Fatal(r.Items)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = OpenBuffer(dir, 1<<20, NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var pending int
	if err := b.Pending(func(Record) { pending++ }); err != nil {
		t.Fatal(err)
	}
	if pending != 200 {
		t.Fatalf("%d pending after reopening, want 200", pending)
	}
	for i := 100; i < 300; i++ {
		r := next(t, b)
		if r.Items != i+1 {
			t.Fatalf("got record %d, want %d", r.Items-1, i)
		}
		if err := b.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("shipped segments were not deleted: %v", segs)
	}
}

func TestBufferCutsATornRecord(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBuffer(dir, 1<<20, NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := b.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{200, 3, 0, 0, 1, 2, 3}) // a crash in the middle of a write
	f.Close()
	b, err = OpenBuffer(dir, 1<<20, NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Append(rec(3)); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		r := next(t, b)
		if r.Items != i+1 {
			t.Fatalf("record %d: items %d", i, r.Items)
		}
		b.Ack(r)
	}
}

func TestBufferDropsTheOldestWhenFull(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	b, err := OpenBuffer(t.TempDir(), 1<<20, m)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	big := func(i int) Record {
		return Record{Signal: SignalTraces, Items: 10, Body: bytes.Repeat([]byte(fmt.Sprint(i)), 20<<10)}
	}
	for i := range 200 { // ~4 MB into a 1 MiB buffer
		if err := b.Append(big(i)); err != nil {
			t.Fatal(err)
		}
	}
	if b.Bytes() > 1<<20 {
		t.Fatalf("buffer holds %d bytes, over its 1 MiB", b.Bytes())
	}
	dropped := testutil.ToFloat64(m.itemsDropped.WithLabelValues("traces", "buffer_full"))
	var kept int
	if err := b.Pending(func(r Record) { kept += r.Items }); err != nil {
		t.Fatal(err)
	}
	if int(dropped)+kept != 2000 || dropped == 0 {
		t.Fatalf("dropped %v + kept %d != 2000 items", dropped, kept)
	}
	// What is left starts where the dropping stopped and runs to the newest.
	first := next(t, b)
	if !bytes.HasPrefix(first.Body, []byte(fmt.Sprint(200-kept/10))) {
		t.Fatalf("oldest kept record is not the one after the dropped ones")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(rec(1)))
	f.Add(encodeRecord(Record{Signal: SignalMetrics, Items: 3, Body: []byte("x")}))
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := decodeRecord(p)
		if err != nil {
			return
		}
		again, err := decodeRecord(encodeRecord(r))
		if err != nil || again.Items != r.Items || again.Signal != r.Signal || len(again.Positions) != len(r.Positions) || !bytes.Equal(again.Body, r.Body) {
			t.Fatalf("a record does not survive encoding: %+v", r)
		}
	})
}

// frameOffsets are where records 0…n-1 (rec(i)) start in one segment.
func frameOffsets(n int) []int64 {
	offs := make([]int64, n)
	var off int64
	for i := range n {
		offs[i] = off
		off += int64(frameHeader + len(encodeRecord(rec(i))))
	}
	return offs
}

// TestBufferSkipsWhatItCannotRead: a record with a bad checksum is
// skipped alone; a bad length (which leaves no way to find the next
// record) skips the rest of its segment; a missing segment is skipped
// whole. Each skip is an ErrCorrupt, counted, and reading goes on.
func TestBufferSkipsWhatItCannotRead(t *testing.T) {
	offs := frameOffsets(300)
	restOfSegment1 := func(seg1Size int64, seg2First int) (int64, int) { return seg1Size - offs[2], seg2First }
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, seg1 string)
		// skip is how many bytes are skipped and which record is read next,
		// given segment 1's size and its successor's first record.
		skip func(seg1Size int64, seg2First int) (int64, int)
	}{
		{"bad checksum", func(t *testing.T, seg1 string) { overwrite(t, seg1, offs[2]+frameHeader+20, []byte{0xff, 0x00}) },
			func(int64, int) (int64, int) { return offs[3] - offs[2], 3 }},
		{"bad length", func(t *testing.T, seg1 string) { overwrite(t, seg1, offs[2], []byte{0xff, 0xff, 0xff, 0xff}) }, restOfSegment1},
		{"length past the segment's end", func(t *testing.T, seg1 string) { overwrite(t, seg1, offs[2], []byte{0x00, 0x00, 0x08, 0x00}) }, restOfSegment1},
		{"missing segment", func(t *testing.T, seg1 string) { require.NoError(t, os.Remove(seg1)) }, restOfSegment1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := NewMetrics(nil)
			b, err := OpenBuffer(dir, 1<<20, m) // 256 KiB segments: 300 records fill two
			require.NoError(t, err)
			defer b.Close()
			for i := range 300 {
				require.NoError(t, b.Append(rec(i)))
			}
			for range 2 {
				require.NoError(t, b.Ack(next(t, b)))
			}
			seg1Size, seg2First := b.segs[0].size, 0
			for offs[seg2First] < seg1Size {
				seg2First++
			}
			skipped, first := tc.skip(seg1Size, seg2First)
			tc.corrupt(t, filepath.Join(dir, "00000000000000000001.seg"))
			b.closeReader() // as after a restart: the file is opened again

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = b.Next(ctx)
			require.ErrorIs(t, err, ErrCorrupt)
			for i := first; i < 300; i++ {
				r := next(t, b)
				require.Equal(t, i+1, r.Items)
				require.NoError(t, b.Ack(r))
			}
			require.Equal(t, 1.0, testutil.ToFloat64(m.corruptRecords))
			require.Equal(t, float64(skipped), testutil.ToFloat64(m.corruptBytes))
		})
	}
}

func overwrite(t *testing.T, path string, off int64, p []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(p, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}
