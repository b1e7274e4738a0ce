package query

import (
	"encoding/json"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// plainSeries has ServiceSeries' fields without its MarshalJSON, its
// samples as [2]any pairs of a float and a string.
type plainSeries struct {
	Service    string            `json:"service"`
	Metric     map[string]string `json:"metric"`
	Values     [][2]any          `json:"values"`
	Histograms []json.RawMessage `json:"histograms,omitempty"`
}

func plain(s ServiceSeries) plainSeries {
	p := plainSeries{Service: s.Service, Metric: s.Metric.Map(), Histograms: s.Histograms}
	if s.Values != nil {
		p.Values = [][2]any{}
	}
	for _, v := range s.Values {
		p.Values = append(p.Values, [2]any{float64(v.T) / 1000, strconv.FormatFloat(v.V, 'f', -1, 64)})
	}
	return p
}

// TestServiceSeriesJSONIsEncodingJSONs: the hand-written encoding is byte
// for byte encoding/json's, escapes and odd values included.
func TestServiceSeriesJSONIsEncodingJSONs(t *testing.T) {
	for _, s := range []ServiceSeries{
		{Service: "cart", Metric: labels.FromMap(map[string]string{"__name__": "up", "job": "cart"}), Values: []Sample{}},
		{Service: "c\"a<r>t&", Metric: labels.FromMap(map[string]string{"z": "é\u2028\x01", "a": "\xff\xfe", "span_name": `GET /a\b`}),
			Values: []Sample{{1796193452990, 1}, {0, math.NaN()}, {1, math.Inf(1)}, {math.MaxInt64, -1.5e-300}, {-3250, 0}, {math.MinInt64, math.Inf(-1)}, {7, 1e22},
				{-1, 0.1}, {-999, 2}, {1e15 - 1, 3}, {1e15, 4}, {-1e15 + 1, 5}, {-1e15, 6}, {999_999_999_999_990, 7}, {100, 8}, {1010, 9}}},
		{Service: "h", Metric: labels.FromMap(map[string]string{}), Values: []Sample{},
			Histograms: []json.RawMessage{json.RawMessage(`[1,{"count":"3","sum":"1.25","buckets":[[0,"0.5","1","1"]]}]`)}},
		{Service: "nil", Metric: labels.FromMap(map[string]string{})},
	} {
		got, err := json.Marshal(s)
		require.NoError(t, err)
		want, err := json.Marshal(plain(s))
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
		// And reads back.
		var back ServiceSeries
		require.NoError(t, json.Unmarshal(got, &back))
		require.Len(t, back.Values, len(s.Values))
		for i, v := range s.Values {
			if v.T > -1<<53 && v.T < 1<<53 { // a float64 of seconds holds ms exactly
				require.Equal(t, v.T, back.Values[i].T)
			}
			require.Equal(t, strconv.FormatFloat(v.V, 'f', -1, 64), strconv.FormatFloat(back.Values[i].V, 'f', -1, 64))
		}
	}
}

// FuzzServiceSeriesJSON: for any labels and sample, the hand-written
// encoding is encoding/json's (or fails where it fails), and reads back.
func FuzzServiceSeriesJSON(f *testing.F) {
	f.Add("cart", "span_name", "GET /a", int64(1796193452990), 1.0)
	f.Add("c\"<", "\xff", "\u2028", int64(-1), math.NaN())
	f.Add("", "", "", int64(-999_999_999_999_999), 0.0)
	f.Fuzz(func(t *testing.T, svc, name, value string, ts int64, v float64) {
		s := ServiceSeries{Service: svc, Metric: labels.FromMap(map[string]string{name: value, "__name__": value}), Values: []Sample{{ts, v}}}
		got, err := json.Marshal(s)
		want, wantErr := json.Marshal(plain(s))
		if wantErr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
		var back ServiceSeries
		require.NoError(t, json.Unmarshal(got, &back))
		require.Equal(t, strconv.FormatFloat(v, 'f', -1, 64), strconv.FormatFloat(back.Values[0].V, 'f', -1, 64))
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
			Series:       []ServiceSeries{{Service: "cart", Metric: labels.FromMap(map[string]string{"__name__": "up"}), Values: []Sample{{1796193452000, 1}}}},
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
		got, err := encodeTraceResponseTo(nil, r)
		require.NoError(t, err)
		require.JSONEq(t, string(want), string(got))
		// Into a used buffer, as answers reuse them: the same bytes.
		again, err := encodeTraceResponseTo(append(make([]byte, 0, 8), "old bytes"...)[:0], r)
		require.NoError(t, err)
		require.Equal(t, string(got), string(again))
	}
}
