package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/query"
)

// TestExemplarsLinkMetricsToTraces: a histogram bucket's exemplar, sent by
// remote write, names a trace; the trace's view lists it, and Prometheus'
// query_exemplars finds it.
func TestExemplarsLinkMetricsToTraces(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	// Only remote write's exemplars here; span metrics' are tested apart.
	cfg.SpanMetrics.Enabled = false
	s := startServer(t, cfg)
	const traceID = "5b8efff798038103d269b633813fc60c"
	code, body := post(t, "http://"+s.cfg.OTLP.HTTPAddr+"/v1/traces", "application/json", []byte(jsonTrace))
	require.Equal(t, http.StatusOK, code, body)

	now := time.Now().Truncate(time.Second)
	series := []prompb.Label{{Name: "__name__", Value: "http_request_duration_seconds_bucket"}, {Name: "job", Value: "cart"}, {Name: "le", Value: "0.5"}}
	req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:    series,
		Samples:   []prompb.Sample{{Timestamp: now.UnixMilli(), Value: 17}},
		Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: traceID}, {Name: "span_id", Value: "eee19b7ec3c1b174"}}, Value: 0.42, Timestamp: now.UnixMilli()}},
	}, {
		// An exemplar with no trace id is kept for query_exemplars only.
		Labels:    []prompb.Label{{Name: "__name__", Value: "queue_depth"}, {Name: "job", Value: "cart"}},
		Samples:   []prompb.Sample{{Timestamp: now.UnixMilli(), Value: 3}},
		Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "request", Value: "r-1"}}, Value: 3, Timestamp: now.UnixMilli()}},
	}}}
	pb, err := req.Marshal()
	require.NoError(t, err)
	code, _, body = remoteWrite(t, s, snappy.Encode(nil, pb), 1)
	require.Equal(t, http.StatusNoContent, code, body)

	check := func(s *server) {
		got := getTrace(t, s, traceID)
		require.NotNil(t, got.TraceResponse.Metrics)
		ex := got.TraceResponse.Metrics.Exemplars
		require.Equal(t, []query.ExemplarSeries{{
			SeriesLabels: map[string]string{"__name__": "http_request_duration_seconds_bucket", "job": "cart", "le": "0.5"},
			Exemplars: []query.Exemplar{{
				Labels:    map[string]string{"trace_id": traceID, "span_id": "eee19b7ec3c1b174"},
				Value:     "0.42",
				Timestamp: float64(now.UnixMilli()) / 1000,
			}},
		}}, ex)
		require.Equal(t, 2, got.SpanCount, "spans and exemplars in one answer")

		code, r := promGet(t, s, "/api/v1/query_exemplars", url.Values{"query": {`{job="cart"}`}, "start": {fmt.Sprint(now.Add(-time.Minute).Unix())}, "end": {fmt.Sprint(now.Add(time.Minute).Unix())}})
		require.Equal(t, http.StatusOK, code, r.Error)
		var qe []struct {
			SeriesLabels map[string]string `json:"seriesLabels"`
			Exemplars    []struct {
				Labels map[string]string `json:"labels"`
				Value  string            `json:"value"`
			} `json:"exemplars"`
		}
		require.NoError(t, json.Unmarshal(r.Data, &qe))
		require.Len(t, qe, 2, "%s", r.Data)
		values := map[string]string{}
		for _, q := range qe {
			values[q.SeriesLabels["__name__"]] = q.Exemplars[0].Value
		}
		require.Equal(t, map[string]string{"http_request_duration_seconds_bucket": "0.42", "queue_depth": "3"}, values)
	}
	check(s)
	s.stop()
	check(startServer(t, s.cfg))

	// A trace known only by an exemplar answers with its metrics.
	only := "0af7651916cd43dd8448eb211c80319c"
	req.Timeseries = req.Timeseries[:1]
	req.Timeseries[0].Samples[0].Timestamp = now.Add(time.Second).UnixMilli()
	req.Timeseries[0].Exemplars[0].Labels[0].Value = only
	req.Timeseries[0].Exemplars[0].Timestamp = now.Add(time.Second).UnixMilli()
	pb, err = req.Marshal()
	require.NoError(t, err)
	s2 := &server{cfg: s.cfg}
	code, _, body = remoteWrite(t, s2, snappy.Encode(nil, pb), 1)
	require.Equal(t, http.StatusNoContent, code, body)
	got := getTrace(t, s2, only)
	require.Equal(t, 0, got.SpanCount)
	require.Len(t, got.TraceResponse.Metrics.Exemplars, 1)
}

func TestTraceShowsItsServicesSeries(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	now := time.Now().Truncate(time.Second).Add(-time.Hour)
	trace := strings.NewReplacer(
		`"1763800000000000000"`, fmt.Sprintf(`"%d"`, now.UnixNano()),
		`"1763800000100000000"`, fmt.Sprintf(`"%d"`, now.Add(100*time.Millisecond).UnixNano()),
		`"1763800000010000000"`, fmt.Sprintf(`"%d"`, now.Add(10*time.Millisecond).UnixNano()),
		`"1763800000020000000"`, fmt.Sprintf(`"%d"`, now.Add(20*time.Millisecond).UnixNano()),
	).Replace(jsonTrace)
	code, body := post(t, "http://"+s.cfg.OTLP.HTTPAddr+"/v1/traces", "application/json", []byte(trace))
	require.Equal(t, http.StatusOK, code, body)

	ts := func(name, label, value string, times ...time.Duration) prompb.TimeSeries {
		out := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}, {Name: label, Value: value}}}
		for i, d := range times {
			out.Samples = append(out.Samples, prompb.Sample{Timestamp: now.Add(d).UnixMilli(), Value: float64(i + 1)})
		}
		return out
	}
	req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		ts("cart_requests_total", "job", "cart", -20*time.Minute, -4*time.Minute, time.Minute, 4*time.Minute, 20*time.Minute),
		ts("cart_queue", "service_name", "cart", 2*time.Minute),
		ts("other_total", "job", "checkout", time.Minute),
		{
			Labels: []prompb.Label{{Name: "__name__", Value: "cart_latency_seconds"}, {Name: "job", Value: "cart"}},
			Histograms: []prompb.Histogram{prompb.FromIntHistogram(now.Add(time.Minute).UnixMilli(), &histogram.Histogram{
				Count: 3, Sum: 1.25, PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 1},
			})},
		},
	}}
	pb, err := req.Marshal()
	require.NoError(t, err)
	code, _, body = remoteWrite(t, s, snappy.Encode(nil, pb), 1)
	require.Equal(t, http.StatusNoContent, code, body)

	got := getTrace(t, s, "5b8efff798038103d269b633813fc60c")
	m := got.TraceResponse.Metrics
	require.NotNil(t, m)
	require.Equal(t, now.Add(-5*time.Minute).UTC(), m.From.UTC())
	byName := map[string]query.ServiceSeries{}
	for _, ss := range m.Series {
		require.Equal(t, "cart", ss.Service)
		byName[ss.Metric.Get("__name__")] = ss
	}
	require.Len(t, byName, 3, "the other service's series is not there: %+v", m.Series)
	// Only the samples within the trace's window ± 5 minutes.
	values := func(ss query.ServiceSeries) []string {
		var out []string
		for _, v := range ss.Values {
			out = append(out, strconv.FormatFloat(v.V, 'f', -1, 64))
		}
		return out
	}
	require.Equal(t, []string{"2", "3", "4"}, values(byName["cart_requests_total"]))
	require.Equal(t, []string{"1"}, values(byName["cart_queue"]))
	// Native histograms as Prometheus writes them in a matrix.
	h := byName["cart_latency_seconds"].Histograms
	require.Len(t, h, 1)
	require.JSONEq(t, fmt.Sprintf(`[%d,{"count":"3","sum":"1.25","buckets":[[0,"0.5","1","1"],[0,"1","2","2"]]}]`, now.Add(time.Minute).Unix()), string(h[0]))
}
