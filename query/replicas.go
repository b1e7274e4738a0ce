package query

import (
	"cmp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/internal/replica"
)

// replicaLookback is how long a replica's last sample counts in a sum of
// replicas, as PromQL's lookback delta: a replica gone stops counting.
const replicaLookback = 5 * 60 * 1000 // ms

// mergeReplicas answers series written by several replicas (each with its
// lumen_replica label) as one server's: the label is dropped; span
// metrics, partial per replica, are summed — at each time a replica wrote,
// the sum of every replica's latest value, as sum without (lumen_replica)
// — and any other series a replica makes (a recording rule's, the same on
// every replica) is taken from the first replica. Series without the label
// are left as they are; so is a group in which a series has native
// histograms (summing those is left to PromQL).
func mergeReplicas(in []ServiceSeries) []ServiceSeries {
	if !slices.ContainsFunc(in, func(s ServiceSeries) bool { return s.Metric.Has(replica.Label) }) {
		return in
	}
	type group struct {
		first   int
		members []ServiceSeries
	}
	var groups []*group
	byKey := map[string]*group{}
	for i, s := range in {
		key := s.Service + "\xff" + replica.Without(s.Metric).String()
		if !s.Metric.Has(replica.Label) {
			key += "\xffown" // a client's series is never merged with a replica's
		}
		g := byKey[key]
		if g == nil {
			g = &group{first: i}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.members = append(g.members, s)
	}
	out := make([]ServiceSeries, 0, len(groups))
	for _, g := range groups {
		m := g.members
		if !m[0].Metric.Has(replica.Label) || slices.ContainsFunc(m, func(s ServiceSeries) bool { return len(s.Histograms) > 0 }) {
			out = append(out, m...)
			continue
		}
		merged := m[0]
		merged.Metric = replica.Without(m[0].Metric)
		if len(m) > 1 && isSpanMetric(merged.Metric) {
			merged.Values = sumReplicas(m)
		}
		out = append(out, merged)
	}
	// The span metrics in label order, as one server's are selected; the
	// other series after them, in the order they came.
	slices.SortStableFunc(out, func(a, b ServiceSeries) int {
		ra, rb := isSpanMetric(a.Metric), isSpanMetric(b.Metric)
		switch {
		case ra && rb:
			return labels.Compare(a.Metric, b.Metric)
		case ra:
			return -1
		case rb:
			return 1
		}
		return 0
	})
	return out
}

func isSpanMetric(l labels.Labels) bool {
	return strings.HasPrefix(l.Get(labels.MetricName), "traces_spanmetrics_")
}

// sumReplicas is, at every time one of the series has a sample, the sum of
// each series' latest sample no older than replicaLookback.
func sumReplicas(m []ServiceSeries) []Sample {
	var ts []int64
	for _, s := range m {
		for _, v := range s.Values {
			ts = append(ts, v.T)
		}
	}
	slices.Sort(ts)
	ts = slices.Compact(ts)
	out := make([]Sample, 0, len(ts))
	next := make([]int, len(m)) // per series, the index of its first sample after t
	for _, t := range ts {
		sum, any := 0.0, false
		for i, s := range m {
			for next[i] < len(s.Values) && s.Values[next[i]].T <= t {
				next[i]++
			}
			if next[i] > 0 {
				if last := s.Values[next[i]-1]; t-last.T <= replicaLookback {
					sum += last.V
					any = true
				}
			}
		}
		if any {
			out = append(out, Sample{T: t, V: sum})
		}
	}
	return out
}

// mergeReplicaExemplars answers the exemplars of series written by several
// replicas under the series' labels without lumen_replica, merged in time
// order.
func mergeReplicaExemplars(in []exemplar.QueryResult) []exemplar.QueryResult {
	if !slices.ContainsFunc(in, func(r exemplar.QueryResult) bool { return r.SeriesLabels.Has(replica.Label) }) {
		return in
	}
	var out []exemplar.QueryResult
	at := map[string]int{}
	for _, r := range in {
		r.SeriesLabels = replica.Without(r.SeriesLabels)
		key := r.SeriesLabels.String()
		if i, ok := at[key]; ok {
			out[i].Exemplars = append(slices.Clone(out[i].Exemplars), r.Exemplars...)
			slices.SortStableFunc(out[i].Exemplars, func(a, b exemplar.Exemplar) int { return cmp.Compare(a.Ts, b.Ts) })
			continue
		}
		at[key] = len(out)
		out = append(out, r)
	}
	return out
}
