package query

import (
	"testing"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// Series of several replicas are answered as one server's: span metrics
// summed at every time a replica wrote (each replica's latest sample, if
// not older than the lookback), another series a replica makes taken
// from the first, a client's series left alone, span metrics first in
// label order.
func TestMergeReplicas(t *testing.T) {
	calls := func(replica, span string) labels.Labels {
		return labels.FromStrings("__name__", "traces_spanmetrics_calls_total", "lumen_replica", replica, "service", "api", "span_name", span)
	}
	rule := func(replica string) labels.Labels {
		return labels.FromStrings("__name__", "service:traces_spanmetrics_calls:rate5m", "lumen_replica", replica, "service", "api")
	}
	client := labels.FromStrings("__name__", "http_requests_total", "service", "api")
	in := []ServiceSeries{
		{Service: "api", Metric: calls("lumen-0", "POST /pay"), Values: []Sample{{T: 1000, V: 1}, {T: 16000, V: 3}, {T: 400000, V: 5}}},
		{Service: "api", Metric: calls("lumen-0", "GET /a"), Values: []Sample{{T: 1000, V: 7}}},
		{Service: "api", Metric: calls("lumen-1", "POST /pay"), Values: []Sample{{T: 8000, V: 10}, {T: 23000, V: 20}}},
		{Service: "api", Metric: client, Values: []Sample{{T: 1000, V: 42}}},
		{Service: "api", Metric: rule("lumen-1"), Values: []Sample{{T: 2000, V: 0.5}}},
		{Service: "api", Metric: rule("lumen-0"), Values: []Sample{{T: 3000, V: 0.5}}},
	}
	got := mergeReplicas(in)
	want := []ServiceSeries{
		{Service: "api", Metric: labels.FromStrings("__name__", "traces_spanmetrics_calls_total", "service", "api", "span_name", "GET /a"), Values: []Sample{{T: 1000, V: 7}}},
		// lumen-1's last sample (23 s) no longer counts at 400 s.
		{Service: "api", Metric: labels.FromStrings("__name__", "traces_spanmetrics_calls_total", "service", "api", "span_name", "POST /pay"),
			Values: []Sample{{T: 1000, V: 1}, {T: 8000, V: 11}, {T: 16000, V: 13}, {T: 23000, V: 23}, {T: 400000, V: 5}}},
		{Service: "api", Metric: client, Values: []Sample{{T: 1000, V: 42}}},
		{Service: "api", Metric: labels.FromStrings("__name__", "service:traces_spanmetrics_calls:rate5m", "service", "api"), Values: []Sample{{T: 2000, V: 0.5}}},
	}
	require.Equal(t, want, got)

	// One server's series come back as they were.
	one := []ServiceSeries{{Service: "api", Metric: client, Values: []Sample{{T: 1, V: 1}}}}
	require.Equal(t, one, mergeReplicas(one))

	// Exemplars: under the series without the label, in time order.
	ex := mergeReplicaExemplars([]exemplar.QueryResult{
		{SeriesLabels: calls("lumen-0", "POST /pay"), Exemplars: []exemplar.Exemplar{{Value: 1, Ts: 30}}},
		{SeriesLabels: calls("lumen-1", "POST /pay"), Exemplars: []exemplar.Exemplar{{Value: 2, Ts: 10}}},
	})
	require.Len(t, ex, 1)
	require.False(t, ex[0].SeriesLabels.Has("lumen_replica"))
	require.Equal(t, []int64{10, 30}, []int64{ex[0].Exemplars[0].Ts, ex[0].Exemplars[1].Ts})
}
