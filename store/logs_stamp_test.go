package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/model"
)

// A line's own RFC 3339 time is stored as a stamp and written back as it
// was; anything else that looks like a time stays in the line.
func TestLogBlockStamps(t *testing.T) {
	at := time.Date(2026, 12, 3, 7, 14, 5, 123456789, time.UTC)
	ns := at.UnixNano()
	cases := []struct {
		line    string
		stamped string // the text stored as a stamp; "" for none
	}{
		{`{"ts":"2026-12-03T07:14:05.123456789Z","msg":"x"}`, "2026-12-03T07:14:05.123456789Z"},
		{"2026-12-03T07:14:05.123Z INFO ms, truncated", "2026-12-03T07:14:05.123Z"},
		{"ts=2026-12-03T07:14:05.120Z level=info fixed width", "2026-12-03T07:14:05.120Z"},
		{"ts=2026-12-03T07:14:05Z seconds", "2026-12-03T07:14:05Z"},
		{"ts=2026-12-03T07:13:59.000001Z a line written before its entry", "2026-12-03T07:13:59.000001Z"},
		{"ts=2026-12-03T23:59:59.999999999Z later the same day", "2026-12-03T23:59:59.999999999Z"},
		{"multi 2026-12-03T00:00:00.5Z\n\tat a.b(C.java:1)", "2026-12-03T00:00:00.5Z"},
		{"2026-12-03T07:14:05.123456789Z", "2026-12-03T07:14:05.123456789Z"},
		{"ts=2026-12-02T07:14:05.123456789Z the day before", ""},
		{"ts=2026-12-03T07:14:05.123456789+00:00 an offset", ""},
		{"ts=2026-12-03T24:00:00Z hour out of range", ""},
		{"ts=2026-12-03T07:60:00Z minute out of range", ""},
		{"ts=2026-12-03T07:14:60Z a leap second", ""},
		{"ts=2026-12-03T07:14:05.1234567891Z ten digits", ""},
		{"ts=2026-12-03T07:14:05.Z no digits", ""},
		{"ts=2026-12-03T07:14Z no seconds", ""},
		{"ts=2026-12-03T07:14:05", ""},
		{"ts=2026-12-03 07:14:05Z a space", ""},
		{"2026-12-03T", ""},
	}
	var es []LogEntry
	for i, c := range cases {
		es = append(es, LogEntry{T: ns + int64(i), Line: c.line, Metadata: labels.FromStrings("detected_level", "info")})
	}
	payload := encodeBlock(es)
	var sb labels.ScratchBuilder
	got, err := decodeBlock(payload, es[0].T, &sb)
	require.NoError(t, err)
	require.Equal(t, es, got)
	view, err := decodeBlockView(bytes.Clone(payload), es[0].T, &sb, nil) // writes its stamps into what it is given
	require.NoError(t, err)
	require.Equal(t, es, view)
	p, err := splitBlock(payload)
	require.NoError(t, err)
	stamped := 0
	for i, c := range cases {
		require.Equal(t, c.stamped != "", p.flags[i]&flagTimeInLine != 0, "line %q", c.line)
		if c.stamped != "" {
			stamped++
			require.False(t, bytes.Contains(p.lines, []byte(c.stamped)), "stamp %q still in the stored lines", c.stamped)
			require.Contains(t, string(p.lines), strings.Replace(c.line, c.stamped, blankStamp(byte(max(len(c.stamped)-21, 0))), 1), "the line stored with its stamp blank")
		}
	}
	require.Equal(t, 8, stamped)
	// Loki's stats count the lines as they were pushed.
	sum, err := sumBlock(payload)
	require.NoError(t, err)
	want := int64(0)
	for _, e := range es {
		want += int64(len(e.Line)) + 8 + 2 // detected_level, a pair
	}
	want += int64(len(LevelLabel) + len("info")) // its strings, once
	require.Equal(t, want-2*int64(len(es)), sum.Bytes)
}

// An id written against a stamp (no character between) keeps its line's
// time as text: ids are read from the line before its stamp is written
// back. A trace's lookup writes back only that trace's stamps.
func TestLogBlockStampBesideAnId(t *testing.T) {
	ns := time.Date(2026, 12, 3, 7, 14, 5, 0, time.UTC).UnixNano()
	glued := model.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x20, 0x26}
	other := model.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	es := []LogEntry{
		{T: ns, Line: "id=4bf92f3577b34da6a3ce929d0e0e2026-12-03T07:14:05Z", TraceID: glued},
		{T: ns + 1, Line: "ts=2026-12-03T07:14:05Z trace=4bf92f3577b34da6a3ce929d0e0e4736", TraceID: other},
		{T: ns + 2, Line: "ts=2026-12-03T07:14:05Z no trace"},
	}
	payload := encodeBlock(es)
	p, err := splitBlock(payload)
	require.NoError(t, err)
	require.Equal(t, []byte{flagTraceInLine, flagTraceInLine | flagTimeInLine, flagTimeInLine}, p.flags)
	var sb labels.ScratchBuilder
	got, err := decodeBlock(payload, ns, &sb)
	require.NoError(t, err)
	require.Equal(t, es, got)
	one, err := decodeBlockLines(payload, ns, &sb, false, &other)
	require.NoError(t, err)
	require.Equal(t, es[:2], one[:2])
	require.Equal(t, "ts=0000-00-00T00:00:00Z no trace", one[2].Line, "another line's stamp left blank")
}

// Stamps are found and written back exactly for any time and any digits,
// as Go's own RFC 3339 formatting writes them.
func TestStampsAgreeWithTimeFormat(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	var f stampFinder
	for i := range 20000 {
		ns := rnd.Int64N(maxStampNanos)
		if i%4 == 0 {
			ns -= ns % int64(time.Millisecond)
		}
		tm := time.Unix(0, ns).UTC()
		for digits := range byte(10) {
			layout := "2006-01-02T15:04:05Z"
			if digits > 0 {
				layout = "2006-01-02T15:04:05." + string(bytes.Repeat([]byte("0"), int(digits))) + "Z"
			}
			text := tm.Format(layout)
			var w stampWriter
			require.Equal(t, text, string(w.append(nil, tm.Truncate(time.Duration(powersOfTen[9-digits])).UnixNano(), digits)))
			line := "level=info ts=" + text + " msg=x"
			off, n, d, delta, ok := f.find(line, ns)
			require.True(t, ok, "%s", line)
			require.Equal(t, len("level=info ts="), off)
			require.Equal(t, len(text), n)
			require.Equal(t, digits, d)
			require.Equal(t, tm.Truncate(time.Duration(powersOfTen[9-digits])).UnixNano()-ns, delta)
		}
		nano := tm.Format(time.RFC3339Nano)
		_, n, _, delta, ok := f.find(nano, ns)
		require.True(t, ok)
		require.Equal(t, len(nano), n)
		require.Zero(t, delta, "%s", nano)
	}
	// Before 1970 and past the bound, no stamp is looked for.
	_, _, _, _, ok := f.find("1969-12-31T23:59:59Z", -1)
	require.False(t, ok)
	_, _, _, _, ok = f.find(fmt.Sprint(time.Unix(0, maxStampNanos).UTC().Format(time.RFC3339Nano)), maxStampNanos)
	require.False(t, ok)
}

// A stamp read from a block whose distance from its entry's time is more
// than a day, or lands before 1970, or whose offset is past its line or not
// at its blank, is refused as corrupt.
func TestLogBlockStampRefused(t *testing.T) {
	ns := time.Date(2026, 12, 3, 7, 14, 5, 0, time.UTC).UnixNano()
	es := []LogEntry{{T: ns, Line: "ts=2026-12-03T07:14:05Z x"}}
	good := encodeBlock(es)
	p, err := splitBlock(good)
	require.NoError(t, err)
	require.Equal(t, []byte{3, 0, 0}, p.stamps, "offset 3, no digits, same time")
	at := len(good) - len(p.lines) - len(p.stamps) // the stamps come right before the lines here
	var sb labels.ScratchBuilder
	for name, stamp := range map[string][]byte{
		"offset past the line": {9, 0, 0},
		"more than a day":      append([]byte{3, 0}, varint(nanosPerDay)...),
		"before 1970":          append([]byte{3, 0}, varint(-ns-1)...),
		"ten digits":           {3, 10, 0},
		"no blank there":       {0, 0, 0},
		"other digits":         {3, 1, 0},
	} {
		bad := append(append(append([]byte{}, good[:at]...), stamp...), p.lines...)
		_, err := decodeBlock(bad, ns, &sb)
		require.ErrorIs(t, err, ErrCorrupt, name)
	}
}

func varint(v int64) []byte {
	var b [10]byte
	n := binary.PutVarint(b[:], v)
	return b[:n]
}

// stampedBlock is a block of application lines that write their own
// time, and of access lines that do not.
func stampedBlock() []LogEntry {
	at := time.Date(2026, 12, 3, 7, 14, 5, 0, time.UTC)
	var es []LogEntry
	for i := range 5000 {
		ts := at.Add(time.Duration(i) * time.Microsecond)
		line := fmt.Sprintf(`{"ts":%q,"level":"info","logger":"cart.service","msg":"order persisted","user_id":"u-%d","item":"sku-%d","qty":3,"duration_ms":%d.%d}`, ts.Format(time.RFC3339Nano), i*7919%100000, i*104729%20000, i%97, i%10)
		if i%3 == 0 {
			line = fmt.Sprintf(`10.1.%d.%d - - [%s] "GET /api/v1/cart HTTP/1.1" 200 %d "-" "curl/8.5.0" 0.%03d`, i%256, i*7%256, ts.Format("02/Jan/2006:15:04:05 -0700"), i*31%50000, i%1000)
		}
		es = append(es, LogEntry{T: ts.UnixNano(), Line: line, Metadata: labels.FromStrings("detected_level", "info")})
	}
	return es
}

func BenchmarkEncodeBlockStamps(b *testing.B) {
	es := stampedBlock()
	b.ReportAllocs()
	for b.Loop() {
		encodeBlock(es)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(es)), "ns/line")
}

// BenchmarkDecodeBlockStamps reads that block as a query does (its lines
// views of the payload, every stamp written back).
func BenchmarkDecodeBlockStamps(b *testing.B) {
	es := stampedBlock()
	payload := encodeBlock(es)
	work := bytes.Clone(payload)
	var sb labels.ScratchBuilder
	b.ReportAllocs()
	for b.Loop() {
		copy(work, payload)
		if _, err := decodeBlockView(work, es[0].T, &sb, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(es)), "ns/line")
}
