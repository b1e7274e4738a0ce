package store

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/model"
)

func fuzzEntries() []LogEntry {
	return []LogEntry{
		{T: 1_000, Line: "level=info msg=started"},
		{T: 1_000, Line: "level=info msg=started", Metadata: labels.FromStrings("user", "u1")},
		{T: 2_500, Line: `{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`, TraceID: model.TraceID{1}, SpanID: model.SpanID{2}},
		{T: 9_000_000_000, Line: ""},
		{T: 9_000_000_001, Line: "ts=1 traceID=4bf92f3577b34da6a3ce929d0e0e4736 spanID=00f067aa0ba902b7", TraceID: model.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			SpanID: model.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, Metadata: labels.FromStrings("detected_level", "info")},
		{T: 9_000_000_002, Line: "X-TRACE 4BF92F3577B34DA6A3CE929D0E0E4736", TraceID: model.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			Metadata: labels.FromStrings("detected_level", "warn", "user", "u2")},
		{T: 9_000_000_003, Line: "odd level", Metadata: labels.FromStrings("detected_level", "notice")},
		// Lines that write their own time (stamps, logs_stamp.go).
		{T: 9_000_000_004, Line: `{"ts":"1970-01-01T00:00:09.000000004Z","msg":"own time"}`},
		{T: 9_000_000_005, Line: "1970-01-01T00:00:09.120Z WARN 120 ms later\n\tat x.y(Z.java:1)", Metadata: labels.FromStrings("detected_level", "warn")},
		{T: 9_000_000_006, Line: "at=1970-01-01T00:00:08Z traceID=4bf92f3577b34da6a3ce929d0e0e4736", TraceID: model.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}},
	}
}

// FuzzLogBlock feeds arbitrary bytes to the block decoder (it must refuse,
// never panic or allocate without bound) and checks that what it accepts
// encodes back to the same entries.
func FuzzLogBlock(f *testing.F) {
	f.Add(encodeBlock(sortEntries(fuzzEntries())), int64(1_000))
	f.Add([]byte{1, 0, 0, 0}, int64(0))
	f.Add(encodeBlockV1(sortEntries(fuzzEntries())), int64(1_000))
	f.Add([]byte{0, 2, 0, 0, 0, 64, 1, 'a', '\n', 'b', '\n'}, int64(0))
	f.Fuzz(func(t *testing.T, b []byte, mint int64) {
		var sb labels.ScratchBuilder
		sum, sumErr := sumBlock(b)
		es, err := decodeBlock(b, mint, &sb)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			if sumErr != nil {
				require.ErrorIs(t, sumErr, ErrCorrupt)
			}
			return
		}
		again, err := decodeBlock(encodeBlock(es), es[0].T, &sb)
		require.NoError(t, err)
		require.Equal(t, es, again)
		// Loki's stats of a block are those of the same lines written now.
		require.NoError(t, sumErr)
		require.Equal(t, int64(len(es)), sum.Entries)
		now, err := sumBlock(encodeBlock(es))
		require.NoError(t, err)
		require.Equal(t, now, sum)
		// Read for one trace: every line, that trace's metadata, no other's.
		one, err := decodeBlockLines(b, mint, &sb, false, &es[0].TraceID)
		require.NoError(t, err)
		require.Len(t, one, len(es))
		p, err := splitBlock(b)
		require.NoError(t, err)
		stamps := p.stamps
		for i := range es {
			want := es[i]
			var off uint64
			var digits byte
			if p.flags[i]&flagTimeInLine != 0 {
				off, digits, _ = nextStamp(&stamps)
			}
			if want.TraceID != es[0].TraceID {
				want.Metadata = labels.EmptyLabels()
				if p.flags[i]&flagTimeInLine != 0 { // the line holds its stamp's blank
					want.Line = want.Line[:off] + blankStamp(digits) + want.Line[off+uint64(stampLen(digits)):]
				}
			}
			require.Equal(t, want, one[i])
		}
	})
}

func TestLogBlockReadForOneTrace(t *testing.T) {
	es := sortEntries(append(fuzzEntries(),
		LogEntry{T: 3_000, Line: "mine", TraceID: model.TraceID{7}, Metadata: labels.FromStrings("pod", "a")},
		LogEntry{T: 3_001, Line: "other", TraceID: model.TraceID{8}, Metadata: labels.FromStrings("pod", "b", "user", "u9")}))
	var sb labels.ScratchBuilder
	got, err := decodeBlockLines(encodeBlock(es), es[0].T, &sb, false, &model.TraceID{7})
	require.NoError(t, err)
	require.Len(t, got, len(es))
	for _, e := range got {
		switch e.Line {
		case "mine":
			require.Equal(t, labels.FromStrings("pod", "a"), e.Metadata)
		case "other":
			require.True(t, e.Metadata.IsEmpty(), "another trace's metadata was decoded")
			require.Equal(t, model.TraceID{8}, e.TraceID)
		}
	}
}

// FuzzLogWALRecord does the same for log WAL records.
func FuzzLogWALRecord(f *testing.F) {
	es := fuzzEntries()
	f.Add(encodeLogWALRecord([]walStream{{ref: 7, lset: labels.FromStrings("app", "cart")}}, func(add func(uint64, *LogEntry)) {
		for i := range es {
			add(7, &es[i])
		}
	}))
	f.Add([]byte{logWALRecord, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var sb labels.ScratchBuilder
		streams, entries, err := decodeLogWALRecord(b, &sb)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		again := encodeLogWALRecord(streams, func(add func(uint64, *LogEntry)) {
			for i := range entries {
				add(entries[i].ref, &entries[i].LogEntry)
			}
		})
		s2, e2, err := decodeLogWALRecord(again, &sb)
		require.NoError(t, err)
		require.Equal(t, streams, s2)
		require.Equal(t, entries, e2)
	})
}

// TestCutBlocksStayVisibleUntilWritten: between a cut (a full block, a
// checkpoint) and the block's write to a partition, queries still see its
// lines, and once written, see them once.
func TestCutBlocksStayVisibleUntilWritten(t *testing.T) {
	o := DefaultOptions(t.TempDir())
	o.Retention = 0
	db, err := Open(o)
	require.NoError(t, err)
	defer db.Close()
	id := model.TraceID{9}
	st := LogStream{Labels: labels.FromStrings("app", "a")}
	for i := range 50 {
		st.Entries = append(st.Entries, LogEntry{T: int64(1000 + i), Line: "line", TraceID: id})
	}
	require.NoError(t, db.WriteLogStreams(t.Context(), []LogStream{st}))
	q := LogSelect{Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "a")}, Start: 0, End: 1 << 40}
	lines := func() int {
		got, err := db.SelectLogs(t.Context(), q)
		require.NoError(t, err)
		n := 0
		for _, s := range got {
			n += len(s.Entries)
		}
		tr, err := db.Trace(t.Context(), id)
		require.NoError(t, err)
		require.Len(t, tr.Logs, 1)
		require.Len(t, tr.Logs[0].Entries, n, "the trace's lines are the query's")
		series, err := db.LogSeries(t.Context(), q.Matchers, 0, 1<<40)
		require.NoError(t, err)
		require.Len(t, series, 1)
		return n
	}
	cut := db.logs.cutAll()
	require.Len(t, cut, 1)
	require.Empty(t, db.logs.byRef[cut[0].s.ref].entries)
	require.Equal(t, 50, lines(), "cut, not yet written")
	require.NoError(t, db.writeLogBlocks(cut))
	require.Empty(t, cut[0].s.pending)
	require.Equal(t, 50, lines(), "written, read once")
}

// Both log compressions read back the same lines, and better is smaller on
// lines like an application's.
func TestLogCompressionSettings(t *testing.T) {
	var es []LogEntry
	for i := range 5000 {
		es = append(es, LogEntry{T: int64(i) * 1_000, Line: fmt.Sprintf(`{"level":"info","msg":"order persisted","user_id":"u-%d","item":"sku-%d","duration_ms":%d.%d}`, i*7919%100000, i*104729%20000, i%97, i%10),
			Metadata: labels.FromStrings("detected_level", "info")})
	}
	payload := encodeBlock(es)
	sizes := map[string]int{}
	for _, setting := range []string{LogCompressionFast, LogCompressionBetter} {
		c, err := newCodec(setting)
		require.NoError(t, err)
		val := c.encodeBlock(codecZstdLogBlock, payload)
		sizes[setting] = len(val)
		_, got, err := c.decode(val)
		require.NoError(t, err)
		var sb labels.ScratchBuilder
		back, err := decodeBlock(got, es[0].T, &sb)
		require.NoError(t, err)
		require.Equal(t, es, back)
		c.close()
	}
	require.Less(t, sizes[LogCompressionBetter], sizes[LogCompressionFast], "better compresses more: %v", sizes)
}

// encodeBlockV1 encodes entries as blocks were written before separated
// lines and the flags 8, 16 and 32: every length listed, ids and metadata
// whole.
func encodeBlockV1(es []LogEntry) []byte {
	b := binary.AppendUvarint(nil, uint64(len(es)))
	prev := es[0].T
	for _, e := range es {
		b = binary.AppendUvarint(b, uint64(e.T-prev))
		prev = e.T
	}
	for _, e := range es {
		var f byte
		if !e.TraceID.IsEmpty() {
			f |= flagTrace
		}
		if !e.SpanID.IsEmpty() {
			f |= flagSpan
		}
		if !e.Metadata.IsEmpty() {
			f |= flagMetadata
		}
		b = append(b, f)
	}
	for _, e := range es {
		if !e.TraceID.IsEmpty() {
			b = append(b, e.TraceID[:]...)
		}
		if !e.SpanID.IsEmpty() {
			b = append(b, e.SpanID[:]...)
		}
	}
	for _, e := range es {
		if !e.Metadata.IsEmpty() {
			b = encodeLabels(b, e.Metadata)
		}
	}
	for _, e := range es {
		b = binary.AppendUvarint(b, uint64(len(e.Line)))
	}
	for _, e := range es {
		b = append(b, e.Line...)
	}
	return b
}

// Blocks written by earlier builds read as they did, and sum up as blocks
// written now do.
func TestLogBlockEarlierLayoutReads(t *testing.T) {
	es := sortEntries(append(fuzzEntries(),
		LogEntry{T: 9_000_000_010, Line: "ERROR boom\n\tat a.b(C.java:1)\n\tat d.e(F.java:2)", Metadata: labels.FromStrings("detected_level", "error", "trace_id", "x")},
		LogEntry{T: 9_000_000_011, Line: "\n"}))
	var sb labels.ScratchBuilder
	old, now := encodeBlockV1(es), encodeBlock(es)
	require.NotEqual(t, old, now)
	for _, payload := range [][]byte{old, now} {
		got, err := decodeBlock(payload, es[0].T, &sb)
		require.NoError(t, err)
		require.Equal(t, es, got)
	}
	a, err := sumBlock(old)
	require.NoError(t, err)
	b, err := sumBlock(now)
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.Equal(t, int64(len(es)), b.Entries)
}
