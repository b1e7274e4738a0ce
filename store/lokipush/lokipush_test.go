package lokipush

import (
	"strings"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/store"
)

// TestRequestsCutBySize: a write is cut into pushes of about the size
// asked, streams split across them, every line once and in order; each
// push decodes as Loki decodes it; a line alone past the size is refused.
func TestRequestsCutBySize(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var streams []store.LogStream
	for s := range 3 {
		st := store.LogStream{Labels: labels.FromStrings("app", "a", "pod", strings.Repeat("p", s+1))}
		for i := range 50 {
			st.Entries = append(st.Entries, store.LogEntry{T: t0.Add(time.Duration(i) * time.Second).UnixNano(), Line: strings.Repeat("x", 40) + " " + string(rune('a'+i%26))})
		}
		streams = append(streams, st)
	}
	reqs, err := Requests(streams, 1000)
	require.NoError(t, err)
	require.Greater(t, len(reqs), 5)
	seen := map[string][]int64{}
	for _, r := range reqs {
		body, err := r.Push().Marshal()
		require.NoError(t, err)
		require.LessOrEqual(t, len(body), 1100, "about the size asked")
		var got push.PushRequest
		require.NoError(t, got.Unmarshal(body))
		n := 0
		for _, st := range got.Streams {
			for _, e := range st.Entries {
				seen[st.Labels] = append(seen[st.Labels], e.Timestamp.UnixNano())
				n++
			}
		}
		require.Equal(t, r.lines, n)
	}
	require.Len(t, seen, 3)
	for _, st := range streams {
		ts := seen[st.Labels.String()]
		require.Len(t, ts, 50, "every line once")
		for i := 1; i < len(ts); i++ {
			require.Less(t, ts[i-1], ts[i], "in order")
		}
	}

	_, err = Requests([]store.LogStream{{Labels: labels.FromStrings("app", "a"), Entries: []store.LogEntry{{T: 1, Line: strings.Repeat("y", 2000)}}}}, 1000)
	require.ErrorIs(t, err, fault.ErrTooLarge)
	require.ErrorContains(t, err, "max_request_bytes")
}

// TestEntryCarriesTheIDs: the ids Lumen found go as structured metadata,
// unless the line's metadata names them already.
func TestEntryCarriesTheIDs(t *testing.T) {
	id := model.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	span := model.SpanID{1, 2, 3, 4, 5, 6, 7, 8}
	e := Entry(&store.LogEntry{T: 5, Line: "x", TraceID: id, SpanID: span, Metadata: labels.FromStrings("user", "u1")})
	require.Equal(t, push.LabelsAdapter{{Name: "user", Value: "u1"}, {Name: "trace_id", Value: id.String()}, {Name: "span_id", Value: span.String()}}, e.StructuredMetadata)
	require.Equal(t, int64(5), e.Timestamp.UnixNano())
	e = Entry(&store.LogEntry{T: 5, Line: "x", TraceID: id, Metadata: labels.FromStrings("trace_id", "0102030405060708090A0B0C0D0E0F10")})
	require.Equal(t, push.LabelsAdapter{{Name: "trace_id", Value: "0102030405060708090A0B0C0D0E0F10"}}, e.StructuredMetadata, "as the client sent it")
	require.Nil(t, Entry(&store.LogEntry{T: 5, Line: "x"}).StructuredMetadata)
}
