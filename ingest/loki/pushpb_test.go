package loki

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// pushSeeds are uncompressed PushRequest bodies: valid ones of every field,
// and ones Lumen's decoder leaves to the push package.
func pushSeeds(t testing.TB) [][]byte {
	req := push.PushRequest{Streams: []push.Stream{
		{Labels: `{app="cart", env="prod"}`, Hash: 42, Entries: []push.Entry{
			{Timestamp: time.Unix(1764400000, 5), Line: "level=info trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
				StructuredMetadata: push.LabelsAdapter{{Name: "user", Value: "u1"}, {Name: "b", Value: "2"}}, Parsed: push.LabelsAdapter{{Name: "p", Value: "q"}}},
			{Timestamp: time.Unix(1764400001, 0), Line: ""},
			{Timestamp: time.Unix(-62135596800, 0), Line: "year one"},
			{Timestamp: time.Unix(253402300799, 999999999), Line: "year 9999"},
		}},
		{Labels: `{app="web"}`},
		{Entries: []push.Entry{{Timestamp: time.Unix(0, 0), Line: "no labels"}}},
	}}
	pb, err := req.Marshal()
	require.NoError(t, err)
	entry := func(fields ...[]byte) []byte {
		var e []byte
		for _, f := range fields {
			e = append(e, f...)
		}
		s := protowire.AppendTag(nil, streamEntries, protowire.BytesType)
		s = protowire.AppendBytes(s, e)
		return protowire.AppendBytes(protowire.AppendTag(nil, pushStreams, protowire.BytesType), s)
	}
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	ts := func(sec, nanos uint64) []byte {
		b := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), sec)
		return field(entryTimestamp, protowire.AppendVarint(protowire.AppendTag(b, 2, protowire.VarintType), nanos))
	}
	return [][]byte{
		pb,
		{},
		entry(field(entryLine, []byte("no timestamp"))),
		entry(field(entryTimestamp, nil), field(entryLine, []byte("empty timestamp"))),
		entry(ts(5, 1), ts(6, 2), field(entryLine, []byte("a")), field(entryLine, []byte("last line wins"))),
		entry(ts(1, 1e9), field(entryLine, []byte("nanos out of range"))),
		entry(ts(1, uint64(1<<64-1)), field(entryLine, []byte("negative nanos"))),
		entry(ts(uint64(253402300800), 0), field(entryLine, []byte("year 10000"))),
		entry(ts(1, 1<<33+7), field(entryLine, []byte("nanos beyond int32"))),
		entry(field(9, []byte("unknown field"))),
		entry(protowire.AppendVarint(protowire.AppendTag(nil, entryLine, protowire.VarintType), 1)),
		append(pb, 0x0a, 0x05, 0x01),
		append(protowire.AppendTag(nil, 2, protowire.VarintType), 1),
		{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
}

// FuzzDecodePushMatchesLoki: whatever Lumen's decoder accepts, the push
// package's Unmarshal accepts too and reads the same streams, lines, times
// and metadata; decodeProto answers every body as that Unmarshal does.
func FuzzDecodePushMatchesLoki(f *testing.F) {
	for _, s := range pushSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req push.PushRequest
		refErr := req.Unmarshal(raw)
		got, ok := decodePush(raw)
		if !ok {
			return
		}
		require.NoError(t, refErr, "Lumen's decoder took what the push package refuses")
		want := fromPushRequest(req)
		if len(want) == 0 {
			require.Empty(t, got)
			return
		}
		require.Equal(t, want, got)
	})
}

func TestDecodePushSeeds(t *testing.T) {
	taken := 0
	for i, raw := range pushSeeds(t) {
		var req push.PushRequest
		refErr := req.Unmarshal(raw)
		got, ok := decodePush(raw)
		if ok {
			taken++
			require.NoError(t, refErr, "seed %d", i)
			want := fromPushRequest(req)
			if len(want) == 0 {
				require.Empty(t, got, "seed %d", i)
				continue
			}
			require.Equal(t, want, got, "seed %d", i)
		}
	}
	require.GreaterOrEqual(t, taken, 6, "the valid seeds take the fast path")
}

// TestPushSeedsWritten keeps FuzzDecodePushMatchesLoki's corpus in
// testdata from pushSeeds.
func TestPushSeedsWritten(t *testing.T) {
	if os.Getenv("LUMEN_WRITE_SEEDS") == "" {
		t.Skip("LUMEN_WRITE_SEEDS=1 writes testdata/fuzz/FuzzDecodePushMatchesLoki")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodePushMatchesLoki")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for i, raw := range pushSeeds(t) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "seed"+string(rune('a'+i))), []byte("go test fuzz v1\n[]byte("+quoteBytes(raw)+")\n"), 0o644))
	}
}

func quoteBytes(b []byte) string {
	const hexd = "0123456789abcdef"
	s := []byte{'"'}
	for _, c := range b {
		s = append(s, '\\', 'x', hexd[c>>4], hexd[c&15])
	}
	return string(append(s, '"'))
}
