package store

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/model"
)

// TestConcurrentTraceReadsShareNoPayload: span frames are decoded into
// pooled buffers; traces read at once from many frames come back whole and
// stay so after the buffers are reused by other reads.
func TestConcurrentTraceReadsShareNoPayload(t *testing.T) {
	db, err := Open(DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	const requests, traces, spans = 8, 20, 5
	want := map[model.TraceID][]string{}
	for r := range requests {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%d", r))
		ss := rs.ScopeSpans().AppendEmpty()
		for tr := range traces {
			id := model.TraceID{byte(r + 1), byte(tr + 1)}
			for s := range spans {
				sp := ss.Spans().AppendEmpty()
				sp.SetTraceID(pcommon.TraceID(id))
				sp.SetSpanID(pcommon.SpanID{byte(r + 1), byte(tr + 1), byte(s + 1)})
				name := fmt.Sprintf("op-%d-%d-%d", r, tr, s)
				sp.SetName(name)
				sp.Attributes().PutStr("payload", fmt.Sprintf("%0200d", r*1000+tr*10+s))
				sp.Attributes().PutEmptyBytes("raw").FromRaw([]byte(name))
				sp.SetStartTimestamp(pcommon.Timestamp(1e18 + uint64(s)))
				sp.SetEndTimestamp(pcommon.Timestamp(1e18 + uint64(s) + 1000))
				want[id] = append(want[id], name+"/"+fmt.Sprintf("%0200d", r*1000+tr*10+s))
			}
		}
		require.NoError(t, db.WriteTraces(context.Background(), td))
	}
	got := func(tr Trace) []string {
		var out []string
		for _, rs := range tr.Spans.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					p, _ := sp.Attributes().Get("payload")
					raw, _ := sp.Attributes().Get("raw")
					out = append(out, string(raw.Bytes().AsRaw())+"/"+p.Str())
				}
			}
		}
		return out
	}
	ids := make([]model.TraceID, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var held []Trace
			for i := range 100 {
				id := ids[(g*31+i*7)%len(ids)]
				tr, err := db.Trace(context.Background(), id)
				if !assertNoErr(t, err) {
					return
				}
				held = append(held, tr)
				if !assertEqual(t, want[id], got(tr)) {
					return
				}
			}
			// Read again after other reads reused the buffers.
			for i, tr := range held {
				if !assertEqual(t, want[ids[(g*31+i*7)%len(ids)]], got(tr)) {
					return
				}
			}
		})
	}
	wg.Wait()
}

func assertNoErr(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

func assertEqual(t *testing.T, want, got []string) bool {
	t.Helper()
	if fmt.Sprint(want) != fmt.Sprint(got) {
		t.Errorf("want %v, got %v", want, got)
		return false
	}
	return true
}
