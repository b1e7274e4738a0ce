package promrw_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lumenobs/lumen/ingest/promrw"
	"github.com/lumenobs/lumen/store"
)

// pair is Lumen's handler and Prometheus' own 1.0 write handler, each over
// a store of its own, to send the same requests to.
type pair struct {
	lumen, prom       http.Handler
	lumenDB, promDB   *store.DB
	lumenReg, promReg *prometheus.Registry
}

func newPair(t testing.TB) *pair {
	p := &pair{lumenDB: openStore(t), promDB: openStore(t), lumenReg: prometheus.NewRegistry(), promReg: prometheus.NewRegistry()}
	h, err := promrw.New(promrw.DefaultConfig(), p.lumenDB, p.lumenDB, nil, p.lumenReg, nil)
	require.NoError(t, err)
	p.lumen = h
	p.prom = remote.NewWriteHandler(slog.New(slog.DiscardHandler), p.promReg, p.promDB, remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, false, false, true)
	return p
}

// send posts the (uncompressed) body to both and returns both statuses.
func (p *pair) send(pb []byte) (lumen, prom int, lumenBody string) {
	body := snappy.Encode(nil, pb)
	l := post(p.lumen, body, false)
	r := post(p.prom, body, false)
	return l.Code, r.Code, l.Body.String()
}

// dump is everything a store holds: series, float samples and histograms.
func dump(t testing.TB, db *store.DB) string {
	q, err := db.Querier(math.MinInt64/1_000_000, math.MaxInt64/1_000_000)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".*"))
	var b strings.Builder
	var it chunkenc.Iterator
	for ss.Next() {
		s := ss.At()
		fmt.Fprintf(&b, "%s:", s.Labels())
		it = s.Iterator(it)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			switch vt {
			case chunkenc.ValFloat:
				ts, v := it.At()
				fmt.Fprintf(&b, " %d=%v", ts, v)
			case chunkenc.ValHistogram:
				ts, h := it.AtHistogram(nil)
				fmt.Fprintf(&b, " %d=%s", ts, h)
			case chunkenc.ValFloatHistogram:
				ts, h := it.AtFloatHistogram(nil)
				fmt.Fprintf(&b, " %d=%s", ts, h)
			}
		}
		require.NoError(t, it.Err())
		b.WriteString("\n")
	}
	require.NoError(t, ss.Err())
	return b.String()
}

func invalidSamples(t testing.TB, reg *prometheus.Registry) float64 {
	n, err := testutil.GatherAndCount(reg, "prometheus_api_remote_write_invalid_labels_samples_total")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_api_remote_write_invalid_labels_samples_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

func series(ls []string, samples ...prompb.Sample) prompb.TimeSeries {
	ts := prompb.TimeSeries{Samples: samples}
	for i := 0; i+1 < len(ls); i += 2 {
		ts.Labels = append(ts.Labels, prompb.Label{Name: ls[i], Value: ls[i+1]})
	}
	return ts
}

// v1Cases are requests that exercise every check of Prometheus' handler.
func v1Cases(now int64) map[string][]byte {
	lbl := func(name, value string) []byte { // a Label message
		b := protowire.AppendTag(nil, 1, protowire.BytesType)
		b = protowire.AppendString(b, name)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		return protowire.AppendString(b, value)
	}
	smp := func(v float64, ts int64) []byte {
		b := protowire.AppendTag(nil, 1, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v))
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(ts))
	}
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, v)
	}
	req := func(tss ...[]byte) []byte {
		var b []byte
		for _, ts := range tss {
			b = field(b, 1, ts)
		}
		return b
	}
	m := func(r prompb.WriteRequest) []byte {
		pb, _ := r.Marshal()
		return pb
	}
	s := func(ts int64, v float64) prompb.Sample { return prompb.Sample{Timestamp: ts, Value: v} }
	h := prompb.FromIntHistogram(now, &histogram.Histogram{Count: 5, Sum: 10, Schema: 0, ZeroCount: 1,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{2, 0}})
	badH := prompb.FromIntHistogram(now, &histogram.Histogram{Count: 1, Sum: 1, Schema: 0,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{2, 0}})
	fh := prompb.FromFloatHistogram(now, &histogram.FloatHistogram{Count: 2.5, Sum: 3, Schema: 1,
		PositiveSpans: []histogram.Span{{Offset: 1, Length: 1}}, PositiveBuckets: []float64{2.5}})
	tsLabelsAfterSamples := field(field(nil, 2, smp(4, now)), 1, lbl("__name__", "late_labels"))
	tsLabelsAfterSamples = field(tsLabelsAfterSamples, 1, lbl("job", "a"))
	unknown := field(req(field(field(nil, 1, lbl("__name__", "unknown_fields")), 2, smp(1, now))), 9, []byte("x"))
	unknown = append(unknown, protowire.AppendTag(nil, 15, protowire.VarintType)...)
	unknown = protowire.AppendVarint(unknown, 7)
	return map[string][]byte{
		"ok": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			series([]string{"__name__", "up", "job", "a"}, s(now-1000, 1), s(now, 2)),
			series([]string{"__name__", "up", "job", "b"}, s(now, 3)),
		}}),
		"unsorted labels": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"job", "a", "__name__", "up"}, s(now+1000, 5))}}),
		"duplicate name":  m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "dup", "job", "a", "job", "b"}, s(now, 1)), series([]string{"__name__", "ok_after_dup"}, s(now, 1))}}),
		"no metric name":  m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"job", "a"}, s(now, 1)), series([]string{"__name__", "ok_after_noname"}, s(now, 1))}}),
		"empty metric":    m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "", "job", "a"}, s(now, 1))}}),
		"invalid utf8":    m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "bad_utf8", "job", "a\xff"}, s(now, 1)), series([]string{"__name__", "bad\xfe"}, s(now, 1))}}),
		"empty label name": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			series([]string{"__name__", "empty_name", "", "v"}, s(now, 1))}}),
		"empty label value": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			series([]string{"__name__", "empty_value", "a", ""}, s(now, 1))}}),
		"utf8 names":   m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "température.°C", "lieu", "Zürich"}, s(now, 21.5))}}),
		"long value":   m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "long", "v", strings.Repeat("x", 300)}, s(now, 1))}}),
		"future":       m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "future"}, s(now, 1)), series([]string{"__name__", "up", "job", "a"}, s(now+int64(time.Hour/time.Millisecond), 1))}}),
		"out of order": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "ooo"}, s(now, 1), s(now-60_000, 2))}}),
		"same series twice": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			series([]string{"__name__", "twice"}, s(now-2000, 1)), series([]string{"__name__", "twice"}, s(now-1000, 2))}}),
		"duplicate sample": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			series([]string{"__name__", "dupsample"}, s(now-5000, 1)), series([]string{"__name__", "dupsample"}, s(now-5000, 2))}}),
		"same sample again": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "up", "job", "b"}, s(now, 3))}}),
		"stale marker":      m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "gone"}, s(now, math.Float64frombits(0x7ff0000000000002)))}}),
		"no samples":        m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "nosamples"})}}),
		"histograms": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: []prompb.Label{{Name: "__name__", Value: "h"}}, Histograms: []prompb.Histogram{h}},
			{Labels: []prompb.Label{{Name: "__name__", Value: "fh"}}, Histograms: []prompb.Histogram{fh}},
		}}),
		"invalid histogram": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "badh"}}, Histograms: []prompb.Histogram{badH}}}}),
		"exemplars": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "ex"}},
			Samples:   []prompb.Sample{{Timestamp: now, Value: 1}},
			Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "0af7651916cd43dd8448eb211c80319c"}}, Value: 1, Timestamp: now}}}}}),
		"labels after samples":  req(tsLabelsAfterSamples),
		"unknown fields":        unknown,
		"truncated":             m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "trunc"}, s(now, 1))}})[:9],
		"wrong wire type":       append(protowire.AppendTag(nil, 1, protowire.VarintType), 1),
		"label wrong wire type": req(field(nil, 1, append(protowire.AppendTag(nil, 1, protowire.VarintType), 3))),
		"sample wrong wire type": req(field(field(nil, 1, lbl("__name__", "wt")), 2,
			append(protowire.AppendTag(nil, 1, protowire.VarintType), 3))),
		"tag zero":       {0x00, 0x01},
		"empty body":     {},
		"metadata only":  m(prompb.WriteRequest{Metadata: []prompb.MetricMetadata{{MetricFamilyName: "up", Type: prompb.MetricMetadata_GAUGE, Help: "Up."}}}),
		"series of many": m(prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series([]string{"__name__", "many", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5"}, s(now-3000, 1), s(now-2000, 2), s(now-1000, 3))}}),
	}
}

// TestV1MatchesPrometheusHandler sends the same 1.0 requests to Lumen's
// handler and to Prometheus' own, each over its own store, twice (the
// second time the series are in the head, so Lumen finds them by their
// label bytes): the same status, the same data stored, the same count of
// samples skipped for invalid labels.
func TestV1MatchesPrometheusHandler(t *testing.T) {
	now := time.Now().Add(-time.Minute).UnixMilli()
	cases := v1Cases(now)
	p := newPair(t)
	for round := range 2 {
		for _, name := range sortedKeys(cases) {
			l, r, body := p.send(cases[name])
			require.Equal(t, r, l, "round %d, %s: %s", round, name, body)
			if l >= 400 {
				require.NotEmpty(t, strings.TrimSpace(body), name)
			}
			require.Equal(t, dump(t, p.promDB), dump(t, p.lumenDB), "round %d, after %s", round, name)
		}
	}
	require.Equal(t, invalidSamples(t, p.promReg), invalidSamples(t, p.lumenReg))
	require.Positive(t, invalidSamples(t, p.lumenReg))
	got := dump(t, p.lumenDB)
	require.Contains(t, got, `{__name__="late_labels", job="a"}:`)
	require.Contains(t, got, `{__name__="long", v="`+strings.Repeat("x", 300)+`"}:`)
	require.Contains(t, got, `{__name__="h"}:`)
	require.NotContains(t, got, `{__name__="dup"`)

	// The exemplar reached the store.
	eq, err := p.lumenDB.ExemplarQuerier(context.Background())
	require.NoError(t, err)
	ex, err := eq.Select(0, math.MaxInt64/1_000_000, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "ex")})
	require.NoError(t, err)
	require.Len(t, ex, 1)
	require.Len(t, ex[0].Exemplars, 1)
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Stable order, so a failure names the same request every run.
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

// FuzzV1MatchesPrometheusHandler sends arbitrary 1.0 bodies (uncompressed
// here; the handler gets them snappy-compressed) to Lumen's handler and
// Prometheus': the same status class and the same data stored, never a
// panic or a 5xx. Seeds: testdata/fuzz and v1Cases.
func FuzzV1MatchesPrometheusHandler(f *testing.F) {
	now := time.Now().Add(-time.Minute).UnixMilli()
	for _, name := range sortedKeys(v1Cases(now)) {
		f.Add(v1Cases(now)[name])
	}
	p := newPair(f)
	f.Fuzz(func(t *testing.T, pb []byte) {
		l, r, body := p.send(pb)
		require.Less(t, l, 500, body)
		require.Equal(t, r/100, l/100, body)
		require.Equal(t, dump(t, p.promDB), dump(t, p.lumenDB))
	})
}

// TestV1SeedsWritten keeps the corpus of FuzzV1MatchesPrometheusHandler in
// testdata in step with v1Cases (LUMEN_WRITE_SEEDS=1 writes it).
func TestV1SeedsWritten(t *testing.T) {
	if os.Getenv("LUMEN_WRITE_SEEDS") == "" {
		t.Skip("LUMEN_WRITE_SEEDS=1 writes testdata/fuzz/FuzzV1MatchesPrometheusHandler")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzV1MatchesPrometheusHandler")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, pb := range v1Cases(1_700_000_000_000) {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		require.NoError(t, os.WriteFile(file, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", pb), 0o644))
	}
}

// A series the store already holds that remote write 1.0 must refuse — no
// metric name, a value not in UTF-8, put there another way — is refused
// all the same when it is found by its label bytes: the same status, data
// and count of skipped samples as Prometheus' handler.
func TestV1RefusesInvalidSeriesTheStoreHolds(t *testing.T) {
	now := time.Now().Add(-time.Minute).UnixMilli()
	held := []labels.Labels{
		labels.FromStrings("job", "nameless"),
		labels.FromStrings("__name__", "bad_utf8", "v", "a\xffb"),
		labels.FromStrings("__name__", "fine", "v", "ok"),
	}
	p := newPair(t)
	for _, db := range []*store.DB{p.lumenDB, p.promDB} {
		a := db.Appender(context.Background())
		for _, ls := range held {
			_, err := a.Append(0, ls, now-1000, 1)
			require.NoError(t, err)
		}
		require.NoError(t, a.Commit())
	}
	var req prompb.WriteRequest
	for _, ls := range held {
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: now, Value: 2}}}
		ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		req.Timeseries = append(req.Timeseries, ts)
	}
	pb, err := req.Marshal()
	require.NoError(t, err)
	l, r, body := p.send(pb)
	require.Equal(t, r, l, body)
	require.Equal(t, dump(t, p.promDB), dump(t, p.lumenDB))
	require.Equal(t, invalidSamples(t, p.promReg), invalidSamples(t, p.lumenReg))
	require.Equal(t, 2.0, invalidSamples(t, p.lumenReg), "the nameless series and the one not in UTF-8")
	require.Contains(t, dump(t, p.lumenDB), `{__name__="fine", v="ok"}:`)
}
