package remotewrite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/internal/promtest"
	"github.com/lumenobs/lumen/internal/sendq"
)

func openQueue(t *testing.T, dir, url string) *sendq.Queue {
	t.Helper()
	return openQueueOf(t, "metrics", dir, url, 2)
}

func openQueueOf(t *testing.T, name, dir, url string, senders int) *sendq.Queue {
	t.Helper()
	send, err := NewSend(Config{URL: url, Timeout: 5 * time.Second})
	require.NoError(t, err)
	mp, err := sendq.MeterProvider(prometheus.NewRegistry())
	require.NoError(t, err)
	q, err := sendq.Open(context.Background(), name, sendq.Metrics, sendq.Config{Dir: dir, MaxBytes: 64 << 20, Senders: senders,
		Timeout: 5 * time.Second, InitialInterval: 20 * time.Millisecond, MaxInterval: 200 * time.Millisecond}, send, zap.NewNop(), mp)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q.Close(context.Background())) })
	return q
}

// TestRequestsAsPrometheusDecodesThem: what a commit sends, decoded by
// Prometheus' own remote-write decoder, is every series with its samples,
// histograms and exemplars, the families' metadata once, in requests of
// at most the set number of samples.
func TestRequestsAsPrometheusDecodesThem(t *testing.T) {
	url, received := decodingReceiver(t)
	a := New([]*sendq.Queue{openQueue(t, t.TempDir(), url)}, 25)
	app := a.AppenderV2(context.Background())
	meta := storage.AppendV2Options{Metadata: metadata.Metadata{Type: model.MetricTypeCounter, Help: "Requests.", Unit: "requests"}}
	for s := range 10 {
		ls := labels.FromStrings("__name__", "http_requests_total", "instance", fmt.Sprint(s))
		for i := range 10 {
			opts := meta
			if i == 9 {
				opts.Exemplars = []exemplar.Exemplar{{Labels: labels.FromStrings("trace_id", "0af7651916cd43dd8448eb211c80319c"), Value: 1, Ts: int64(i * 1000), HasTs: true}}
			}
			_, err := app.Append(0, ls, 0, int64(i*1000), float64(s*100+i), nil, nil, opts)
			require.NoError(t, err)
		}
	}
	h := &histogram.Histogram{Count: 3, Sum: 4.5, Schema: 0, ZeroThreshold: 0.001, PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 1}}
	_, err := app.Append(0, labels.FromStrings("__name__", "latency_seconds"), 0, 5000, 0, h, nil, storage.AppendV2Options{Metadata: metadata.Metadata{Type: model.MetricTypeHistogram}})
	require.NoError(t, err)
	require.NoError(t, app.Commit())

	reqs := received(101)
	samples := map[string][]prompb.Sample{}
	var metas []prompb.MetricMetadata
	exemplars := 0
	for _, r := range reqs {
		n := 0
		for _, ts := range r.Timeseries {
			n += len(ts.Samples) + len(ts.Histograms)
			ls := ts.ToLabels(&labels.ScratchBuilder{}, nil)
			samples[ls.String()] = append(samples[ls.String()], ts.Samples...)
			exemplars += len(ts.Exemplars)
			if len(ts.Histograms) > 0 {
				require.True(t, h.Equals(ts.Histograms[0].ToIntHistogram()), "%v", ts.Histograms[0].ToIntHistogram())
			}
		}
		require.LessOrEqual(t, n, 25, "a request holds at most the set number of samples")
		metas = append(metas, r.Metadata...)
	}
	require.Len(t, samples, 11)
	got := samples[`{__name__="http_requests_total", instance="3"}`]
	require.Len(t, got, 10)
	require.Equal(t, prompb.Sample{Timestamp: 9000, Value: 309}, got[9])
	require.Equal(t, 10, exemplars)
	sort.Slice(metas, func(i, j int) bool { return metas[i].MetricFamilyName < metas[j].MetricFamilyName })
	require.Equal(t, []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests.", Unit: "requests"},
		{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "latency_seconds"},
	}, metas)
}

// decodingReceiver is a remote-write receiver on loopback that decodes
// requests with Prometheus' own decoder; received waits for n samples and
// histograms and returns the requests.
func decodingReceiver(t *testing.T) (url string, received func(n int) []*prompb.WriteRequest) {
	var mu sync.Mutex
	var reqs []*prompb.WriteRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Encoding") != "snappy" || r.Header.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" {
			http.Error(w, "not remote write 1.0", http.StatusBadRequest)
			return
		}
		req, err := remote.DecodeWriteRequest(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		reqs = append(reqs, req)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func(n int) []*prompb.WriteRequest {
		var out []*prompb.WriteRequest
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			got := 0
			for _, r := range reqs {
				for _, ts := range r.Timeseries {
					got += len(ts.Samples) + len(ts.Histograms)
				}
			}
			out = slices.Clone(reqs)
			return got == n
		}, 10*time.Second, 10*time.Millisecond)
		return out
	}
}

// TestV1AppenderAsPrometheusDecodes: Prometheus' first appender interface
// (the remote-write handler's, the rules') sends the same: samples,
// histograms, exemplars, metadata, and the zero sample at a start
// timestamp.
func TestV1AppenderAsPrometheusDecodes(t *testing.T) {
	url, received := decodingReceiver(t)
	a := New([]*sendq.Queue{openQueue(t, t.TempDir(), url)}, 2000)
	app := a.Appender(context.Background())
	ls := labels.FromStrings("__name__", "jobs_total", "queue", "mail")
	_, err := app.AppendSTZeroSample(0, ls, 2000, 1000)
	require.NoError(t, err)
	_, err = app.AppendSTZeroSample(0, ls, 1000, 2000)
	require.ErrorIs(t, err, storage.ErrOutOfOrderST)
	_, err = app.Append(0, ls, 2000, 7)
	require.NoError(t, err)
	_, err = app.AppendExemplar(0, ls, exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "abc"), Value: 7, Ts: 2000, HasTs: true})
	require.NoError(t, err)
	_, err = app.UpdateMetadata(0, ls, metadata.Metadata{Type: model.MetricTypeCounter, Help: "Jobs done."})
	require.NoError(t, err)
	fh := &histogram.FloatHistogram{Count: 2, Sum: 1, Schema: 1, PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []float64{2}}
	_, err = app.AppendHistogram(0, labels.FromStrings("__name__", "wait_seconds"), 2000, nil, fh)
	require.NoError(t, err)
	_, err = app.Append(0, labels.EmptyLabels(), 2000, 1)
	require.ErrorIs(t, err, storage.ErrOutOfBounds)
	require.NoError(t, app.Commit())

	reqs := received(3)
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Len(t, r.Timeseries, 2)
	require.Equal(t, []prompb.Sample{{Timestamp: 1000, Value: 0}, {Timestamp: 2000, Value: 7}}, r.Timeseries[0].Samples)
	require.Equal(t, []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 7, Timestamp: 2000}}, r.Timeseries[0].Exemplars)
	require.True(t, fh.Equals(r.Timeseries[1].Histograms[0].ToFloatHistogram()))
	require.Equal(t, []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "jobs_total", Help: "Jobs done."}}, r.Metadata)
}

// TestRealPrometheusAfterItWasDown: samples and a native histogram
// committed while the receiver — a real Prometheus — is not running are
// sent once it is, and it answers them; a rolled-back commit is not sent.
func TestRealPrometheusAfterItWasDown(t *testing.T) {
	addr := loopback.FreeAddr(t)
	a := New([]*sendq.Queue{openQueue(t, t.TempDir(), "http://"+addr+"/api/v1/write")}, 2000)
	now := time.Now().Truncate(time.Second).Add(-time.Minute)
	app := a.AppenderV2(context.Background())
	for i := range 5 {
		_, err := app.Append(0, labels.FromStrings("__name__", "queued_total", "job", "lumen"), 0, now.Add(time.Duration(i)*time.Second).UnixMilli(), float64(i), nil, nil, storage.AppendV2Options{})
		require.NoError(t, err)
	}
	h := &histogram.Histogram{Count: 3, Sum: 4.5, Schema: 0, ZeroThreshold: 0.001, PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 1}}
	_, err := app.Append(0, labels.FromStrings("__name__", "queued_seconds", "job", "lumen"), 0, now.UnixMilli(), 0, h, nil, storage.AppendV2Options{})
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	rolled := a.AppenderV2(context.Background())
	_, err = rolled.Append(0, labels.FromStrings("__name__", "rolled_back_total"), 0, now.UnixMilli(), 1, nil, nil, storage.AppendV2Options{})
	require.NoError(t, err)
	require.NoError(t, rolled.Rollback())
	time.Sleep(300 * time.Millisecond) // sends refused: nothing listens

	promtest.StartPrometheus(t, addr, false)
	query := func(q string) []any {
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q) + fmt.Sprintf("&time=%d", now.Add(10*time.Second).Unix()))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var out struct {
			Data struct {
				Result []any `json:"result"`
			} `json:"data"`
		}
		body, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(body, &out)
		return out.Data.Result
	}
	require.Eventually(t, func() bool { return len(query("queued_total[1m]")) == 1 }, 30*time.Second, 50*time.Millisecond)
	res := query("queued_total[1m]")[0].(map[string]any)
	require.Len(t, res["values"], 5)
	require.Equal(t, []any{float64(now.Add(4 * time.Second).Unix()), "4"}, res["values"].([]any)[4])
	hist := query("histogram_count(queued_seconds)")
	require.Len(t, hist, 1)
	require.Equal(t, "3", hist[0].(map[string]any)["value"].([]any)[1])
	require.Empty(t, query("rolled_back_total"), "a rolled-back commit is not sent")
}

// TestEachSeriesInOrder: over several queues, each sending one request at
// a time, every series' samples reach the receiver in the order they were
// committed — also after the receiver refused everything for a while and
// the queues send what piled up — as a receiver without an out-of-order
// window needs (Prometheus refuses an older sample, and its request, after
// a newer one).
func TestEachSeriesInOrder(t *testing.T) {
	var mu sync.Mutex
	down := true
	last := map[string]int64{}
	var disorder []string
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		req, err := remote.DecodeWriteRequest(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, ts := range req.Timeseries {
			key := fmt.Sprint(ts.Labels)
			for _, smp := range ts.Samples {
				if smp.Timestamp <= last[key] {
					disorder = append(disorder, fmt.Sprintf("%s: %d after %d", key, smp.Timestamp, last[key]))
				}
				last[key] = smp.Timestamp
				n++
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	var qs []*sendq.Queue
	for i := range 3 {
		qs = append(qs, openQueueOf(t, fmt.Sprintf("metrics-%d", i), t.TempDir(), srv.URL, 1))
	}
	a := New(qs, 7)
	commit := func(from, to int) {
		for c := from; c < to; c++ {
			app := a.AppenderV2(context.Background())
			for s := range 20 {
				_, err := app.Append(0, labels.FromStrings("__name__", "ordered_total", "instance", fmt.Sprint(s)), 0, int64(1000+c), float64(c), nil, nil, storage.AppendV2Options{})
				require.NoError(t, err)
			}
			require.NoError(t, app.Commit())
		}
	}
	commit(0, 40) // queued while the receiver refuses
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	down = false
	mu.Unlock()
	commit(40, 80) // while the backlog is sent
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return n == 80*20
	}, 20*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, disorder)
}
