package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lumenobs/lumen/internal/model"
)

// encodePostingsV1 is the first postings format, frozen here: partitions
// written before format 2 hold it and are read as they are.
func encodePostingsV1(es []searchEntry) []byte {
	base := uint64(es[0].bucket) * nsPerBucket
	b := binary.AppendUvarint(nil, uint64(len(es)))
	for _, e := range es {
		b = binary.AppendUvarint(b, uint64(e.trace))
		b = binary.AppendUvarint(b, (e.start-min(e.start, base))/1000)
		b = binary.AppendUvarint(b, e.minDur/1000)
		b = binary.AppendUvarint(b, (e.maxDur+999)/1000)
	}
	return b
}

const fuzzBucket = 1_796_000_000 // a second in 2026

// entriesFrom makes a term's postings of one bucket from fuzz bytes, 7
// bytes an entry: ordinals rising (one to four apart, under 64), a start in
// the bucket, a shortest and a longest duration.
func entriesFrom(data []byte) []searchEntry {
	var es []searchEntry
	ord := uint32(0)
	for len(data) >= 7 {
		ord += uint32(data[0]%4) + 1
		if ord >= 64 {
			break
		}
		lo := uint64(binary.LittleEndian.Uint16(data[4:])) * 997
		es = append(es, searchEntry{
			bucket: fuzzBucket,
			trace:  ord - 1,
			start:  fuzzBucket*nsPerBucket + uint64(binary.LittleEndian.Uint32(data[:4]))%nsPerBucket,
			minDur: lo,
			maxDur: lo + uint64(data[6])*uint64(data[6])*1013,
		})
		data = data[7:]
	}
	return es
}

// FuzzSearchPostings: any bytes decode without a panic, as postings (with
// either kind of batch table) to postings of known traces or to
// ErrCorrupt, and as a batch table; postings written in formats 3 and 2
// and in the first format read back the same, to the microsecond,
// durations rounded out; in format 4, durations rounded out to their codes.
func FuzzSearchPostings(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, postingsAlias, TermService, 3, 'w', 'e', 'b', 0})
	f.Add([]byte{1, 0, 1, 2, 3, 4, 5, 6, 9, 1, 2, 3, 4, 5, 6, 200, 200, 200, 200, 200, 200})
	f.Add([]byte{0, postingsV2, 2, 0, 0x80, 0x80, 1, 5, 0, 1, 7, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		traces := make([]model.TraceID, 64)
		starts := make([]uint64, 64) // each trace began before the bucket
		for i := range traces {
			traces[i][0] = byte(i)
			starts[i] = fuzzBucket*nsPerBucket - uint64(i)*12_345_678
		}
		var raw []byte
		for _, id := range traces {
			raw = append(raw, id[:]...)
		}
		ids, err := idsTable(raw) // formats 1 and 2 (0x06)
		require.NoError(t, err)
		table, err := decodeBatchTable(encodeBatchTable(traces, starts)) // format 3 (0x07)
		require.NoError(t, err)
		for i := range traces {
			us, ok := table.start(i)
			require.True(t, ok)
			require.Equal(t, starts[i]/1000, us)
			require.Equal(t, traces[i], table.id(i))
		}
		for _, tb := range []batchTable{ids, table} {
			err := decodePostings(fuzzBucket, data, tb, func(p posting) bool {
				require.Less(t, int(p.id[0]), len(traces))
				return true
			})
			if err != nil {
				require.ErrorIs(t, err, ErrCorrupt)
			}
		}
		// Any bytes as a batch table: read or refused as corrupt; what
		// reads writes back to the same traces and starts.
		if bt, err := decodeBatchTable(data); err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
		} else {
			var ids []model.TraceID
			var ns []uint64
			valid := true
			for i := range bt.n {
				us, ok := bt.start(i)
				valid = valid && ok
				ids, ns = append(ids, bt.id(i)), append(ns, us*1000)
			}
			if valid {
				again, err := decodeBatchTable(encodeBatchTable(ids, ns))
				require.NoError(t, err)
				require.Equal(t, bt.n, again.n)
				for i := range bt.n {
					require.Equal(t, bt.id(i), again.id(i))
					a, _ := bt.start(i)
					b, _ := again.start(i)
					require.Equal(t, a, b)
				}
			}
		}
		err = decodePostings(fuzzBucket, data, table, func(p posting) bool {
			require.Less(t, int(p.id[0]), len(traces))
			return true
		})
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
		}
		if term, ok, err := postingsAliasOf(data); ok {
			require.NoError(t, err)
			again, ok, err := postingsAliasOf(aliasPostings(term))
			require.True(t, ok)
			require.NoError(t, err)
			require.Equal(t, term, again)
		} else if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
		}

		es := entriesFrom(data)
		if len(es) == 0 {
			return
		}
		var want, coded []posting
		for _, e := range es {
			p := posting{id: traces[e.trace], start: e.start / 1000 * 1000, minDur: e.minDur / 1000 * 1000, maxDur: (e.maxDur + 999) / 1000 * 1000}
			want = append(want, p)
			p.minDur = codeDuration(durationCode(p.minDur/1000, false)) * 1000
			p.maxDur = codeDuration(durationCode(p.maxDur/1000, true)) * 1000
			coded = append(coded, p)
		}
		v2, v3 := encodePostingsIn(postingsV2, es, nil), encodePostingsIn(postingsV3, es, starts)
		for name, enc := range map[string][]byte{"format 4": encodePostings(es, starts), "format 3": v3, "format 2": v2, "first format": encodePostingsV1(es)} {
			tb, w := ids, want
			switch name {
			case "format 4":
				tb, w = table, coded
			case "format 3":
				tb = table
			}
			var got []posting
			require.NoError(t, decodePostings(fuzzBucket, enc, tb, func(p posting) bool { got = append(got, p); return true }), name)
			require.Equal(t, w, got, name)
			_, ok, err := postingsAliasOf(enc)
			require.False(t, ok, name)
			require.NoError(t, err, name)
		}
		// Format 4's durations enclose the µs ones, within a step.
		for i := range want {
			require.LessOrEqual(t, coded[i].minDur, want[i].minDur)
			require.GreaterOrEqual(t, coded[i].maxDur, want[i].maxDur)
			require.LessOrEqual(t, want[i].minDur-coded[i].minDur, want[i].minDur/8)
			require.LessOrEqual(t, coded[i].maxDur-want[i].maxDur, want[i].maxDur/8)
		}
		require.Less(t, len(v2), len(encodePostingsV1(es))+3, "format 2 is no larger but for its two-byte mark")
		// A format 3 table for the entries' own traces, started where
		// their first entry is: every start is stored as 0.
		own := slices.Clone(starts)
		for _, e := range es {
			own[e.trace] = e.start
		}
		require.LessOrEqual(t, len(encodePostingsIn(postingsV3, es, own)), len(v2), "format 3 stores starts after the trace's")
		require.LessOrEqual(t, len(encodePostings(es, starts)), len(v3), "format 4 is no larger than format 3")
	})
}

// TestDurationCodes: a code rounded down is at most the duration and one
// rounded up at least, within an eighth, exact below 16 µs; codes rise
// with durations; every code stands for the duration it is the code of.
func TestDurationCodes(t *testing.T) {
	values := []uint64{0, 1, 15, 16, 17, 31, 32, 33, 200, 5199, 1 << 20, 1<<20 + 1, 1<<52 - 1, 1 << 52, 1<<52 + 1, math.MaxUint64}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		values = append(values, rnd.Uint64()>>rnd.IntN(64))
	}
	for _, us := range values {
		lo, hi := durationCode(us, false), durationCode(us, true)
		require.LessOrEqual(t, lo, hi)
		require.LessOrEqual(t, hi, uint64(maxDurationCode))
		require.LessOrEqual(t, codeDuration(lo), us, "%d µs", us)
		require.Equal(t, lo, durationCode(codeDuration(lo), false))
		if us < exactDurationCodes {
			require.Equal(t, us, codeDuration(lo))
			require.Equal(t, lo, hi)
		}
		if us <= codeDuration(maxDurationCode) {
			require.GreaterOrEqual(t, codeDuration(hi), us, "%d µs", us)
			require.LessOrEqual(t, codeDuration(hi)-us, us/8, "%d µs", us)
			require.LessOrEqual(t, us-codeDuration(lo), us/8, "%d µs", us)
		}
		if us > 0 {
			require.LessOrEqual(t, durationCode(us-1, false), lo)
		}
	}
	for c := range uint64(maxDurationCode) {
		require.Less(t, codeDuration(c), codeDuration(c+1))
		require.Equal(t, c, durationCode(codeDuration(c), true))
	}
	require.Less(t, durationCode(5000, true), uint64(128), "5 ms takes a byte")
}

// TestSearchPostingsLongDurations: in format 4, durations of any length —
// up to 2^64 ns, past the last code — read back as bounds that enclose
// them: the shortest at most, the longest at least (unbounded past the
// codes), so that pruning by duration never drops a trace that meets it.
func TestSearchPostingsLongDurations(t *testing.T) {
	durs := []uint64{0, 999, 1000, 15_999, 245_000_000, 3600e9, 1 << 60, 1 << 52 * 1000, 1<<52*1000 + 1, math.MaxUint64 - 998, math.MaxUint64} // rising
	traces := make([]model.TraceID, len(durs)*len(durs))
	starts := make([]uint64, len(traces))
	var es []searchEntry
	for i, lo := range durs {
		for j, hi := range durs[i:] {
			k := i*len(durs) + i + j
			traces[k][0], traces[k][1] = byte(i), byte(j)
			starts[k] = fuzzBucket * nsPerBucket
			es = append(es, searchEntry{bucket: fuzzBucket, trace: uint32(k), start: starts[k] + 5000, minDur: lo, maxDur: hi})
		}
	}
	table, err := decodeBatchTable(encodeBatchTable(traces, starts))
	require.NoError(t, err)
	var got []posting
	require.NoError(t, decodePostings(fuzzBucket, encodePostings(es, starts), table, func(p posting) bool { got = append(got, p); return true }))
	require.Len(t, got, len(es))
	for i, e := range es {
		require.LessOrEqual(t, got[i].minDur, e.minDur, "shortest of %d..%d ns", e.minDur, e.maxDur)
		require.GreaterOrEqual(t, got[i].maxDur, e.maxDur, "longest of %d..%d ns", e.minDur, e.maxDur)
		require.Equal(t, e.start, got[i].start)
		if e.maxDur >= 1<<52*1000+1 {
			require.Equal(t, uint64(math.MaxUint64), got[i].maxDur, "past the codes: unbounded")
		}
	}
}

// TestSearchPostingsAliases: a term whose postings in a second and batch
// are another's is written as an alias of it — here the resource
// attributes of requests with one resource, and a span attribute every span
// of a service has — and searches driven by it answer as before.
func TestSearchPostingsAliases(t *testing.T) {
	db, _ := openMetricsStore(t, t.TempDir()) // keeps everything
	defer db.Close()
	ctx := context.Background()
	t0 := uint64(1_796_000_000) * nsPerBucket
	const n = 40
	for i := range n {
		require.NoError(t, db.WriteTraces(ctx, oneResourceRequest(i, t0)))
	}
	parts, err := db.snapshot()
	require.NoError(t, err)
	aliases, postings := 0, 0
	for _, p := range parts {
		require.NoError(t, p.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{nsSearchTerm}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				require.NoError(t, it.Item().Value(func(v []byte) error {
					if _, ok, _ := postingsAliasOf(v); ok {
						aliases++
					} else {
						postings++
					}
					return nil
				}))
			}
			return nil
		}))
	}
	// Per request, every span has every term: the postings of all traces,
	// and as aliases of them the service, the span name, the root span,
	// the resource's host.name and k8s.pod.name, the span's http.route.
	require.Equal(t, 6*n, aliases, "aliases")
	require.Equal(t, n, postings, "postings")

	for _, drive := range []Term{{TermService, "api", ""}, {TermResAttr, "host.name", "node-1"}, {TermSpanAttr, "http.route", "/orders"}} {
		res, err := db.SearchTraces(ctx, TraceSearch{Start: t0, End: t0 + 2*n*nsPerBucket, Drive: drive, Limit: 1000, MinDuration: 30e6})
		require.NoError(t, err)
		require.Len(t, res.Traces, 5*n, "%v: the traces whose span lasts 30 ms or more", drive)
		for _, tr := range res.Traces {
			require.Equal(t, 1, int(tr.TraceID[2])%2, "%v", drive)
		}
	}
}

// oneResourceRequest is request r as an SDK sends it, one resource: ten
// one-span traces of service api starting in second r; odd traces last
// 40 ms, even ones 20 ms.
func oneResourceRequest(r int, t0 uint64) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	ra := rs.Resource().Attributes()
	ra.PutStr("service.name", "api")
	ra.PutStr("host.name", "node-1")
	ra.PutStr("k8s.pod.name", "api-0")
	for j := range 10 {
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{0xaa, byte(r), byte(j)})
		sp.SetSpanID(pcommon.SpanID{1, byte(r), byte(j)})
		sp.SetName("GET /orders")
		sp.Attributes().PutStr("http.route", "/orders")
		start := t0 + uint64(r)*nsPerBucket + uint64(j)*1e6
		sp.SetStartTimestamp(pcommon.Timestamp(start))
		sp.SetEndTimestamp(pcommon.Timestamp(start + uint64(20+20*(j%2))*1e6))
	}
	return td
}

// TestAggregateEntries: entries of one (term, bucket, trace) merge into
// one with the earliest start and the shortest and longest durations, in
// term, bucket and trace order — through the packed integer sort and
// through its fallback (buckets a year apart, ordinals past 2^22).
func TestAggregateEntries(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 5))
	for _, wide := range []bool{false, true} {
		const terms = 7
		var es []searchEntry
		for range 5000 {
			e := searchEntry{term: int32(rnd.IntN(terms)), bucket: 1_796_000_000 + uint32(rnd.IntN(3)), trace: uint32(rnd.IntN(40))}
			if wide && rnd.IntN(2) == 0 {
				e.bucket += 365 * 86400
				e.trace += 1 << 23
			}
			e.start = uint64(e.bucket)*nsPerBucket + rnd.Uint64N(nsPerBucket)
			e.minDur = rnd.Uint64N(1e9)
			e.maxDur = e.minDur
			es = append(es, e)
		}
		type key struct {
			term          int32
			bucket, trace uint32
		}
		want := map[key]searchEntry{}
		for _, e := range es {
			k := key{e.term, e.bucket, e.trace}
			if w, ok := want[k]; ok {
				e.start, e.minDur, e.maxDur = min(w.start, e.start), min(w.minDur, e.minDur), max(w.maxDur, e.maxDur)
			}
			want[k] = e
		}
		got := aggregateEntries(slices.Clone(es), terms)
		require.Len(t, got, len(want), "wide %v", wide)
		require.True(t, slices.IsSortedFunc(got, func(a, b searchEntry) int {
			return cmp.Or(cmp.Compare(a.term, b.term), cmp.Compare(a.bucket, b.bucket), cmp.Compare(a.trace, b.trace))
		}), "wide %v", wide)
		for i, e := range got {
			require.Equal(t, want[key{e.term, e.bucket, e.trace}], e, "wide %v, entry %d", wide, i)
			if i > 0 {
				require.NotEqual(t, key{got[i-1].term, got[i-1].bucket, got[i-1].trace}, key{e.term, e.bucket, e.trace})
			}
		}
	}
}
