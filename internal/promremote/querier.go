package promremote

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
)

// Querier implements storage.Queryable: a selection over [mint, maxt] is
// the backend's answer to the range-vector query {matchers}[maxt-mint]
// at maxt — its raw samples, as Prometheus' API gives them (float samples;
// native histograms are left out with a warning).
func (b *Backend) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{b: b, mint: mint, maxt: maxt}, nil
}

type querier struct {
	b          *Backend
	mint, maxt int64
}

// selector writes matchers as a PromQL selector.
func selector(ms []*labels.Matcher) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func (q *querier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	if maxt < mint {
		return storage.EmptySeriesSet()
	}
	// The range is left-open: one millisecond more takes a sample at mint.
	expr := fmt.Sprintf("%s[%dms]", selector(ms), maxt-mint+1)
	v, warnings, err := q.b.api.Query(ctx, expr, time.UnixMilli(maxt))
	if err != nil {
		return storage.ErrSeriesSet(fmt.Errorf("metrics backend %s: %s: %w", q.b.cfg.URL, expr, err))
	}
	var annos annotations.Annotations
	for _, w := range warnings {
		annos.Add(fmt.Errorf("metrics backend %s: %s", q.b.cfg.URL, w))
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return storage.ErrSeriesSet(fmt.Errorf("metrics backend %s: %s: a %s, not a matrix", q.b.cfg.URL, expr, v.Type()))
	}
	out := make([]storage.Series, 0, len(m))
	histograms := false
	for _, ss := range m {
		samples := make([]sample, len(ss.Values))
		for i, p := range ss.Values {
			samples[i] = sample{t: int64(p.Timestamp), v: float64(p.Value)}
		}
		histograms = histograms || len(ss.Histograms) > 0
		if len(samples) > 0 {
			out = append(out, &series{lset: labelsOf(model.LabelSet(ss.Metric)), samples: samples})
		}
	}
	if histograms {
		annos.Add(fmt.Errorf("metrics backend %s: native histograms of %s are not read through its query API", q.b.cfg.URL, expr))
	}
	slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	if hints != nil && hints.Limit > 0 && len(out) > hints.Limit {
		out = out[:hints.Limit]
	}
	return &seriesSet{series: out, annos: annos}
}

func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var match []string
	if len(ms) > 0 {
		match = []string{selector(ms)}
	}
	vals, warnings, err := q.b.api.LabelValues(ctx, name, match, time.UnixMilli(q.mint), time.UnixMilli(q.maxt))
	if err != nil {
		return nil, nil, fmt.Errorf("metrics backend %s: values of %s: %w", q.b.cfg.URL, name, err)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return limit(out, hints), warningsOf(q.b, warnings), nil
}

func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var match []string
	if len(ms) > 0 {
		match = []string{selector(ms)}
	}
	names, warnings, err := q.b.api.LabelNames(ctx, match, time.UnixMilli(q.mint), time.UnixMilli(q.maxt))
	if err != nil {
		return nil, nil, fmt.Errorf("metrics backend %s: label names: %w", q.b.cfg.URL, err)
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = string(n)
	}
	return limit(out, hints), warningsOf(q.b, warnings), nil
}

func (q *querier) Close() error { return nil }

func limit(s []string, hints *storage.LabelHints) []string {
	slices.Sort(s)
	if hints != nil && hints.Limit > 0 && len(s) > hints.Limit {
		return s[:hints.Limit]
	}
	return s
}

func warningsOf(b *Backend, ws []string) annotations.Annotations {
	var annos annotations.Annotations
	for _, w := range ws {
		annos.Add(fmt.Errorf("metrics backend %s: %s", b.cfg.URL, w))
	}
	return annos
}

type sample struct {
	t int64
	v float64
}

type series struct {
	lset    labels.Labels
	samples []sample
}

func (s *series) Labels() labels.Labels { return s.lset }
func (s *series) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return &iterator{samples: s.samples, i: -1}
}

type iterator struct {
	samples []sample
	i       int
}

func (it *iterator) Next() chunkenc.ValueType {
	if it.i+1 >= len(it.samples) {
		it.i = len(it.samples)
		return chunkenc.ValNone
	}
	it.i++
	return chunkenc.ValFloat
}

func (it *iterator) Seek(t int64) chunkenc.ValueType {
	if it.i < 0 {
		it.i = 0
	}
	for ; it.i < len(it.samples); it.i++ {
		if it.samples[it.i].t >= t {
			return chunkenc.ValFloat
		}
	}
	return chunkenc.ValNone
}

func (it *iterator) At() (int64, float64) { return it.samples[it.i].t, it.samples[it.i].v }
func (it *iterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	return it.samples[it.i].t, nil
}
func (it *iterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return it.samples[it.i].t, nil
}
func (it *iterator) AtT() int64  { return it.samples[it.i].t }
func (it *iterator) AtST() int64 { return 0 }
func (it *iterator) Err() error  { return nil }

type seriesSet struct {
	series []storage.Series
	i      int
	annos  annotations.Annotations
}

func (s *seriesSet) Next() bool {
	if s.i >= len(s.series) {
		return false
	}
	s.i++
	return true
}
func (s *seriesSet) At() storage.Series                { return s.series[s.i-1] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return s.annos }

// ExemplarQuerier implements storage.ExemplarQueryable with the backend's
// query_exemplars.
func (b *Backend) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	return exemplarQuerier{b: b, ctx: ctx}, nil
}

type exemplarQuerier struct {
	b   *Backend
	ctx context.Context
}

// Select asks for the exemplars of each selector (the union, as
// Prometheus' API answers several match[]), over [start, end] ms.
func (q exemplarQuerier) Select(start, end int64, matchers ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	var out []exemplar.QueryResult
	for _, ms := range matchers {
		res, err := q.b.api.QueryExemplars(q.ctx, selector(ms), time.UnixMilli(start), time.UnixMilli(end))
		if err != nil {
			return nil, fmt.Errorf("metrics backend %s: exemplars of %s: %w", q.b.cfg.URL, selector(ms), err)
		}
		for _, r := range res {
			qr := exemplar.QueryResult{SeriesLabels: labelsOf(r.SeriesLabels)}
			for _, e := range r.Exemplars {
				qr.Exemplars = append(qr.Exemplars, exemplar.Exemplar{Labels: labelsOf(e.Labels), Value: float64(e.Value), Ts: int64(e.Timestamp), HasTs: true})
			}
			out = append(out, qr)
		}
	}
	return out, nil
}

func labelsOf(ls model.LabelSet) labels.Labels {
	b := labels.NewScratchBuilder(len(ls))
	for name, value := range ls {
		b.Add(string(name), string(value))
	}
	b.Sort()
	return b.Labels()
}

// Metadata is the backend's metadata of metric (every metric when empty),
// at most limit names (0: no limit).
func (b *Backend) Metadata(ctx context.Context, metric string, limit int) (map[string][]metadata.Metadata, error) {
	l := ""
	if limit > 0 {
		l = strconv.Itoa(limit)
	}
	res, err := b.api.Metadata(ctx, metric, l)
	if err != nil {
		return nil, fmt.Errorf("metrics backend %s: metadata: %w", b.cfg.URL, err)
	}
	out := make(map[string][]metadata.Metadata, len(res))
	for name, ms := range res {
		for _, m := range ms {
			out[name] = append(out[name], metadata.Metadata{Type: model.MetricType(m.Type), Help: m.Help, Unit: m.Unit})
		}
	}
	return out, nil
}
