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
