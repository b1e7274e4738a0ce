package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

func TestMetricMetadata(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	s := startServer(t, cfg)
	// 1.0: metadata in a request of its own, as Prometheus sends it.
	req := prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "node_cpu_seconds_total", Help: "Seconds the CPUs spent in each mode.", Unit: "seconds"},
		{Type: prompb.MetricMetadata_GAUGEHISTOGRAM, MetricFamilyName: "queue_wait", Help: "Wait."},
	}}
	pb, err := req.Marshal()
	require.NoError(t, err)
	code, _, body := remoteWrite(t, s, snappy.Encode(nil, pb), 1)
	require.Equal(t, http.StatusNoContent, code, body)
	// 2.0: metadata with each series.
	code, _, body = remoteWrite(t, s, v2Request(t, []labels.Labels{labels.FromStrings("__name__", "queue_length", "job", "w")}, time.Now().Add(-time.Minute), 2, time.Second), 2)
	require.Equal(t, http.StatusNoContent, code, body)

	type entry struct{ Type, Help, Unit string }
	get := func(s *server, params url.Values) map[string][]entry {
		code, r := promGet(t, s, "/api/v1/metadata", params)
		require.Equal(t, http.StatusOK, code, r.Error)
		var out map[string][]entry
		require.NoError(t, json.Unmarshal(r.Data, &out))
		return out
	}
	want := map[string][]entry{
		"node_cpu_seconds_total": {{"counter", "Seconds the CPUs spent in each mode.", "seconds"}},
		"queue_wait":             {{"gaugehistogram", "Wait.", ""}},
		"queue_length":           {{"gauge", "queue length", ""}},
	}
	require.Equal(t, want, get(s, nil))
	require.Equal(t, map[string][]entry{"queue_wait": want["queue_wait"]}, get(s, url.Values{"metric": {"queue_wait"}}))
	require.Len(t, get(s, url.Values{"limit": {"2"}}), 2)
	code, r := promGet(t, s, "/api/v1/metadata", url.Values{"limit": {"many"}})
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "bad_data", r.ErrorType)

	s.stop()
	s = startServer(t, cfg)
	require.Equal(t, want, get(s, nil), "metadata survives a restart")
}
