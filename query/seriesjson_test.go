package query

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// plainSeries has ServiceSeries' fields without its MarshalJSON.
type plainSeries struct {
	Service    string            `json:"service"`
	Metric     map[string]string `json:"metric"`
	Values     [][2]any          `json:"values"`
	Histograms []json.RawMessage `json:"histograms,omitempty"`
}

// TestServiceSeriesJSONIsEncodingJSONs: the hand-written encoding is byte
// for byte encoding/json's, escapes and odd values included.
func TestServiceSeriesJSONIsEncodingJSONs(t *testing.T) {
	for _, s := range []ServiceSeries{
		{Service: "cart", Metric: map[string]string{"__name__": "up", "job": "cart"}, Values: [][2]any{}},
		{Service: "c\"a<r>t&", Metric: map[string]string{"z": "é\u2028\x01", "a": "\xff\xfe", "span_name": `GET /a\b`},
			Values: [][2]any{{1796193452.99, "1"}, {0.0, "NaN"}, {1e-7, "+Inf"}, {1e22, "-1.5e-300"}, {-3.25, "0"}}},
		{Service: "h", Metric: map[string]string{}, Values: [][2]any{},
			Histograms: []json.RawMessage{json.RawMessage(`[1,{"count":"3","sum":"1.25","buckets":[[0,"0.5","1","1"]]}]`)}},
	} {
		got, err := json.Marshal(s)
		require.NoError(t, err)
		want, err := json.Marshal(plainSeries(s))
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
	_, err := json.Marshal(ServiceSeries{Values: [][2]any{{math.NaN(), "1"}}})
	require.Error(t, err, "a NaN time fails as it does in encoding/json")
}

// FuzzServiceSeriesJSON: for any labels and sample, the hand-written
// encoding is encoding/json's (or fails where it fails).
func FuzzServiceSeriesJSON(f *testing.F) {
	f.Add("cart", "span_name", "GET /a", 1796193452.99, "1")
	f.Add("c\"<", "\xff", "\u2028", 1e-7, "NaN")
	f.Fuzz(func(t *testing.T, svc, name, value string, ts float64, v string) {
		s := ServiceSeries{Service: svc, Metric: map[string]string{name: value, "__name__": v}, Values: [][2]any{{ts, v}}}
		got, err := json.Marshal(s)
		want, wantErr := json.Marshal(plainSeries(s))
		if wantErr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	})
}

// TestEncodeTraceResponse: the trace's answer written by hand says what
// encoding/json says of it, with and without each part.
func TestEncodeTraceResponse(t *testing.T) {
	full := TraceResponse{
		TraceID: "5b8efff798038103d269b633813fc60c", StartTime: time.Unix(1796193452, 990000001).UTC(), EndTime: time.Unix(1796193453, 0).UTC(),
		StartTimeUnixNano: "1796193452990000001", EndTimeUnixNano: "1796193453000000000", DurationNanos: 9999999, SpanCount: 2, LogCount: 1,
		Services: []string{"cart", "db"}, Truncated: "spans past 1 MiB",
		Trace: json.RawMessage(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]}}]}`),
		Logs:  []TraceLog{{Time: time.Unix(1796193452, 0).UTC(), TimeUnixNano: "1796193452000000000", Stream: map[string]string{"app": "<cart>"}, Line: "paid \"ok\"", SpanID: "0102030405060708"}},
		Metrics: &TraceMetrics{
			Exemplars:    []ExemplarSeries{{SeriesLabels: map[string]string{"__name__": "x"}, Exemplars: []Exemplar{{Labels: map[string]string{"trace_id": "5b"}, Value: "1", Timestamp: 1796193452.5}}}},
			Series:       []ServiceSeries{{Service: "cart", Metric: map[string]string{"__name__": "up"}, Values: [][2]any{{1796193452.0, "1"}}}},
			ServiceGraph: []Dependency{{Parent: "cart", Child: "db", CallCount: 3}},
			From:         time.Unix(1796193152, 0).UTC(), To: time.Unix(1796193753, 0).UTC(),
		},
	}
	empty := full
	empty.Trace, empty.Logs, empty.Metrics = nil, nil, nil
	noSeries := full
	noSeries.Metrics = &TraceMetrics{Series: []ServiceSeries{}}
	nilSeries := full
	nilSeries.Metrics = &TraceMetrics{}
	for _, r := range []TraceResponse{full, empty, noSeries, nilSeries} {
		want, err := json.Marshal(r)
		require.NoError(t, err)
		got, err := encodeTraceResponse(r)
		require.NoError(t, err)
		require.JSONEq(t, string(want), string(got))
	}
}
