package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// v1Request is a remote-write 1.0 body as Prometheus' queue manager sends it:
// prompb.WriteRequest, snappy block format.
func v1Request(t *testing.T, series map[string]string, job string, start time.Time, n int, step time.Duration) []byte {
	t.Helper()
	var req prompb.WriteRequest
	for name, instance := range series {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}, {Name: "instance", Value: instance}, {Name: "job", Value: job}}}
		for i := range n {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: start.Add(time.Duration(i) * step).UnixMilli(), Value: float64(i * 10)})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	pb, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, pb)
}

// v2Request is a remote-write 2.0 body: io.prometheus.write.v2.Request with
// its symbol table, snappy block format.
func v2Request(t *testing.T, lsets []labels.Labels, start time.Time, n int, step time.Duration) []byte {
	t.Helper()
	st := writev2.NewSymbolTable()
	var req writev2.Request
	for _, ls := range lsets {
		ts := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(ls, nil), Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: st.Symbolize("queue length")}}
		for i := range n {
			ts.Samples = append(ts.Samples, writev2.Sample{Timestamp: start.Add(time.Duration(i) * step).UnixMilli(), Value: float64(i)})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	req.Symbols = st.Symbols()
	pb, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, pb)
}

func remoteWrite(t *testing.T, s *server, body []byte, version int) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.api("/api/v1/write"), bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("User-Agent", "Prometheus/3.5.0")
	if version == 2 {
		req.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	} else {
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func promGet(t *testing.T, s *server, path string, params url.Values) (int, promResponse) {
	t.Helper()
	resp, err := http.Get(s.api(path) + "?" + params.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	var out promResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

func TestRemoteWriteAndPrometheusAPI(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.RemoteWrite.MaxRequestBytes = 64 << 10
	cfg.RemoteWrite.MaxDecodedBytes = 128 << 10
	s := startServer(t, cfg)
	start := time.Now().Add(-30 * time.Minute).Truncate(time.Minute)

	code, _, body := remoteWrite(t, s, v1Request(t, map[string]string{"up": "a:9100", "node_load1": "a:9100"}, "node", start, 121, 15*time.Second), 1)
	require.Equal(t, http.StatusNoContent, code, body)
	lsets := []labels.Labels{
		labels.FromStrings("__name__", "queue_length", "job", "worker", "queue", "emails"),
		labels.FromStrings("__name__", "queue_length", "job", "worker", "queue", "sms"),
	}
	code, hdr, body := remoteWrite(t, s, v2Request(t, lsets, start, 100, 15*time.Second), 2)
	require.Equal(t, http.StatusNoContent, code, body)
	require.Equal(t, "200", hdr.Get("X-Prometheus-Remote-Write-Samples-Written"), "2.0 senders are told what was written")

	at := start.Add(20 * time.Minute)
	code, r := promGet(t, s, "/api/v1/query", url.Values{"query": {`sum by (job) (queue_length)`}, "time": {fmt.Sprint(at.Unix())}})
	require.Equal(t, http.StatusOK, code, r.Error)
	require.JSONEq(t, fmt.Sprintf(`{"resultType":"vector","result":[{"metric":{"job":"worker"},"value":[%d,"160"]}]}`, at.Unix()), string(r.Data))

	// A subquery without a step steps at one minute, as in Prometheus
	// (it once had no interval and crashed the request).
	code, r = promGet(t, s, "/api/v1/query", url.Values{"query": {`count_over_time(sum(queue_length)[5m:])`}, "time": {fmt.Sprint(at.Unix())}})
	require.Equal(t, http.StatusOK, code, r.Error)
	require.JSONEq(t, fmt.Sprintf(`{"resultType":"vector","result":[{"metric":{},"value":[%d,"5"]}]}`, at.Unix()), string(r.Data))

	code, r = promGet(t, s, "/api/v1/query_range", url.Values{"query": {`up`}, "start": {fmt.Sprint(start.Unix())}, "end": {fmt.Sprint(start.Add(time.Minute).Unix())}, "step": {"30"}})
	require.Equal(t, http.StatusOK, code, r.Error)
	require.JSONEq(t, fmt.Sprintf(`{"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"a:9100","job":"node"},"values":[[%d,"0"],[%d,"20"],[%d,"40"]]}]}`,
		start.Unix(), start.Unix()+30, start.Unix()+60), string(r.Data))

	code, r = promGet(t, s, "/api/v1/series", url.Values{"match[]": {`{job="worker"}`}, "start": {fmt.Sprint(start.Unix())}})
	require.Equal(t, http.StatusOK, code, r.Error)
	require.JSONEq(t, `[{"__name__":"queue_length","job":"worker","queue":"emails"},{"__name__":"queue_length","job":"worker","queue":"sms"}]`, string(r.Data))

	code, r = promGet(t, s, "/api/v1/labels", url.Values{"start": {fmt.Sprint(start.Unix())}})
	require.Equal(t, http.StatusOK, code, r.Error)
	require.JSONEq(t, `["__name__","instance","job","queue"]`, string(r.Data))

	code, r = promGet(t, s, "/api/v1/label/__name__/values", url.Values{"start": {fmt.Sprint(start.Unix())}})
	require.Equal(t, http.StatusOK, code, r.Error)
	require.JSONEq(t, `["node_load1","queue_length","up"]`, string(r.Data))

	code, r = promGet(t, s, "/api/v1/status/buildinfo", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(r.Data), `"version":"dev"`)

	code, r = promGet(t, s, "/api/v1/query", url.Values{"query": {`sum(rate(up[5m]`}})
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "bad_data", r.ErrorType)
	require.Contains(t, r.Error, "unclosed left parenthesis")

	// The trace API is still Lumen's, beside Prometheus' routes.
	resp, err := http.Get(s.api("/api/v1/traces/" + "abababababababababababababababab"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	t.Run("bad input", func(t *testing.T) {
		valid := v1Request(t, map[string]string{"x": "b:1"}, "bad", start, 3, time.Second)
		raw, err := snappy.Decode(nil, valid)
		require.NoError(t, err)
		for _, tc := range []struct {
			name    string
			body    []byte
			version int
			code    int
			want    string
		}{
			{"not snappy", []byte("definitely not snappy"), 1, http.StatusBadRequest, "snappy"},
			{"truncated protobuf", snappy.Encode(nil, raw[:len(raw)-3]), 1, http.StatusBadRequest, ""},
			{"older than the out-of-order window", v1Request(t, map[string]string{"up": "a:9100"}, "node", start, 1, time.Second), 1, http.StatusBadRequest, "too old sample"},
			{"v2 symbol out of range", func() []byte {
				req := writev2.Request{Symbols: []string{"", "__name__", "x"}, Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 7}, Samples: []writev2.Sample{{Value: 1, Timestamp: start.UnixMilli()}}}}}
				pb, err := req.Marshal()
				require.NoError(t, err)
				return snappy.Encode(nil, pb)
			}(), 2, http.StatusBadRequest, ""},
			{"far in the future", v1Request(t, map[string]string{"future": "c:1"}, "clock", time.Now().Add(24*time.Hour), 1, time.Second), 1, http.StatusBadRequest, "too far in the future"},
			{"oversize", snappy.Encode(nil, bytes.Repeat([]byte{0}, 200<<10)), 1, http.StatusRequestEntityTooLarge, "over"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, _, body := remoteWrite(t, s, tc.body, tc.version)
				require.Equal(t, tc.code, code, body)
				require.Contains(t, body, tc.want)
			})
		}
	})
	require.InDelta(t, 442, metricValue(t, s, `lumen_ingest_items_stored_total{signal="metrics"}`), 0)
}

// TestRemoteWriteNativeHistograms: integer and float native histograms
// through remote write 1.0 and 2.0, as Prometheus' queue manager encodes
// them; an invalid one is refused with 400 naming the problem.
func TestRemoteWriteNativeHistograms(t *testing.T) {
	s := startServer(t, testConfig(t, t.TempDir()))
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	hist := func(i int) *histogram.Histogram {
		n := int64(i + 1)
		return &histogram.Histogram{
			Schema: 2, ZeroThreshold: 1e-9, ZeroCount: 1, Count: uint64(1 + 3*n), Sum: 1.5 * float64(n),
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 3}}, PositiveBuckets: []int64{n, 0, 0},
		}
	}
	var v1 prompb.WriteRequest
	ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "rpc_seconds"}, {Name: "job", Value: "v1"}}}
	for i := range 20 {
		ts.Histograms = append(ts.Histograms, prompb.FromIntHistogram(start.Add(time.Duration(i)*15*time.Second).UnixMilli(), hist(i)))
	}
	v1.Timeseries = append(v1.Timeseries, ts)
	pb, err := v1.Marshal()
	require.NoError(t, err)
	code, _, body := remoteWrite(t, s, snappy.Encode(nil, pb), 1)
	require.Equal(t, http.StatusNoContent, code, body)

	st := writev2.NewSymbolTable()
	v2ts := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "rpc_seconds", "job", "v2"), nil),
		Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM}}
	for i := range 20 {
		v2ts.Histograms = append(v2ts.Histograms, writev2.FromFloatHistogram(0, start.Add(time.Duration(i)*15*time.Second).UnixMilli(), hist(i).ToFloat(nil)))
	}
	v2 := writev2.Request{Symbols: st.Symbols(), Timeseries: []writev2.TimeSeries{v2ts}}
	pb, err = v2.Marshal()
	require.NoError(t, err)
	code, hdr, body := remoteWrite(t, s, snappy.Encode(nil, pb), 2)
	require.Equal(t, http.StatusNoContent, code, body)
	require.Equal(t, "20", hdr.Get("X-Prometheus-Remote-Write-Histograms-Written"))

	at := fmt.Sprint(start.Add(19 * 15 * time.Second).Unix())
	for query, want := range map[string]string{
		`histogram_count(rpc_seconds)`:               `[{"metric":{"job":"v1"},"value":[%s,"61"]},{"metric":{"job":"v2"},"value":[%s,"61"]}]`,
		`sum(histogram_sum(rpc_seconds))`:            `[{"metric":{},"value":[%s,"60"]}]`,
		`histogram_count(increase(rpc_seconds[5m]))`: `[{"metric":{"job":"v1"},"value":[%s,"60"]},{"metric":{"job":"v2"},"value":[%s,"60"]}]`,
		`count_over_time(rpc_seconds[5m])`:           `[{"metric":{"job":"v1"},"value":[%s,"20"]},{"metric":{"job":"v2"},"value":[%s,"20"]}]`,
	} {
		code, r := promGet(t, s, "/api/v1/query", url.Values{"query": {query}, "time": {at}})
		require.Equal(t, http.StatusOK, code, r.Error)
		require.JSONEq(t, `{"resultType":"vector","result":`+strings.ReplaceAll(want, "%s", at)+`}`, string(r.Data), query)
	}

	bad := hist(30)
	bad.Count = 2 // fewer than its buckets hold
	v1 = prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: ts.Labels, Histograms: []prompb.Histogram{prompb.FromIntHistogram(time.Now().UnixMilli(), bad)}}}}
	pb, err = v1.Marshal()
	require.NoError(t, err)
	code, _, body = remoteWrite(t, s, snappy.Encode(nil, pb), 1)
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "observation count")
}

func TestRemoteWriteSurvivesSIGKILL(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cmd := startChild(t, cfg, io.Discard)
	s := &server{cfg: cfg}
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	code, _, body := remoteWrite(t, s, v1Request(t, map[string]string{"jobs_total": "w:1"}, "batch", start, 150, time.Second), 1)
	require.Equal(t, http.StatusNoContent, code, body)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	s = startServer(t, cfg)
	code, r := promGet(t, s, "/api/v1/query", url.Values{"query": {`count_over_time(jobs_total[10m])`}, "time": {fmt.Sprint(start.Add(149 * time.Second).Unix())}})
	require.Equal(t, http.StatusOK, code, r.Error)
	require.Contains(t, string(r.Data), `"150"`, "all 150 acknowledged samples: %s", r.Data)
}
