package loki

import (
	"strings"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/snappy"
	"github.com/stretchr/testify/require"
)

func protoSeed(t testing.TB) []byte {
	req := push.PushRequest{Streams: []push.Stream{{
		Labels: `{app="cart", env="prod"}`,
		Entries: []push.Entry{
			{Timestamp: time.Unix(1764400000, 5), Line: "level=info trace_id=4bf92f3577b34da6a3ce929d0e0e4736", StructuredMetadata: push.LabelsAdapter{{Name: "user", Value: "u1"}}},
			{Timestamp: time.Unix(1764400001, 0), Line: ""},
		},
	}}}
	pb, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, pb)
}

const jsonSeed = `{"streams":[{"stream":{"app":"cart"},"values":[["1764400000000000005","line",{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}],["1764400000000000006","x"]]}]}`

// FuzzDecodeProto: any body either decodes or is refused with an error;
// never a panic, never an allocation beyond the decoded-size bound.
func FuzzDecodeProto(f *testing.F) {
	f.Add(protoSeed(f))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, body []byte) {
		streams, err := decodeProto(body, 1<<20)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		for _, s := range streams {
			for _, e := range s.Entries {
				require.LessOrEqual(t, len(e.Line), 1<<20)
			}
		}
	})
}

// FuzzDecodeJSON: the same for the JSON body.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(jsonSeed))
	f.Add([]byte(`{"streams":[{"stream":{},"values":[[1,2,3,4]]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		streams, err := decodeJSON(body)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		for _, s := range streams {
			require.False(t, s.lset.IsEmpty() && len(s.Entries) > 0 && s.labels != "", "JSON streams carry parsed labels")
		}
	})
}

func TestDecodeSeeds(t *testing.T) {
	streams, err := decodeProto(protoSeed(t), 1<<20)
	require.NoError(t, err)
	require.Len(t, streams, 1)
	require.Equal(t, `{app="cart", env="prod"}`, streams[0].labels)
	require.Equal(t, int64(1764400000000000005), streams[0].Entries[0].T)
	require.Equal(t, "u1", streams[0].Entries[0].Metadata.Get("user"))

	streams, err = decodeJSON([]byte(jsonSeed))
	require.NoError(t, err)
	require.Equal(t, `{app="cart"}`, streams[0].lset.String())
	require.Len(t, streams[0].Entries, 2)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", streams[0].Entries[0].Metadata.Get("trace_id"))

	_, err = decodeProto(snappy.Encode(nil, make([]byte, 2<<20)), 1<<20)
	require.ErrorIs(t, err, errTooLarge)
	_, err = decodeJSON([]byte(strings.Replace(jsonSeed, `"1764400000000000006"`, `1764400000000000006`, 1)))
	require.ErrorContains(t, err, "streams[0].values[1]: timestamp 1764400000000000006 is not a string")
}
