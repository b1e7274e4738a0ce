package store

import (
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
	}
}

// FuzzLogBlock feeds arbitrary bytes to the block decoder (it must refuse,
// never panic or allocate without bound) and checks that what it accepts
// encodes back to the same entries.
func FuzzLogBlock(f *testing.F) {
	f.Add(encodeBlock(sortEntries(fuzzEntries())), int64(1_000))
	f.Add([]byte{1, 0, 0, 0}, int64(0))
	f.Fuzz(func(t *testing.T, b []byte, mint int64) {
		var sb labels.ScratchBuilder
		es, err := decodeBlock(b, mint, &sb)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		again, err := decodeBlock(encodeBlock(es), es[0].T, &sb)
		require.NoError(t, err)
		require.Equal(t, es, again)
	})
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
