// Package promtest holds what the PromQL packages' tests share: a
// Queryable whose selected series may be read by several goroutines at
// once, as Lumen's store's may.
package promtest

import (
	"context"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// Concurrent reads a store's series into lists of samples as they are
// selected (floats, and histograms as float histograms), which any number
// of iterators read at once; it says so (ConcurrentSeries).
type Concurrent struct{ storage.Queryable }

// ConcurrentSeries reports that the selected series may be read at once.
func (Concurrent) ConcurrentSeries() bool { return true }

// Querier returns the store's querier, its selections copied.
func (c Concurrent) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := c.Queryable.Querier(mint, maxt)
	return listQuerier{q}, err
}

type listQuerier struct{ storage.Querier }

func (l listQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	set := l.Querier.Select(ctx, sortSeries, hints, ms...)
	var out []storage.Series
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		var samples []chunks.Sample
		it = s.Iterator(it)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt == chunkenc.ValFloat {
				t, f := it.At()
				samples = append(samples, fSample{t, f})
				continue
			}
			t, h := it.AtFloatHistogram(nil)
			samples = append(samples, hSample{t, h})
		}
		if it.Err() != nil {
			return storage.ErrSeriesSet(it.Err())
		}
		out = append(out, storage.NewListSeries(s.Labels(), samples))
	}
	if set.Err() != nil {
		return storage.ErrSeriesSet(set.Err())
	}
	return &listSet{series: out, i: -1, warnings: set.Warnings()}
}

// SeriesSet is a set of the given series, in their order.
func SeriesSet(series []storage.Series) storage.SeriesSet { return &listSet{series: series, i: -1} }

type listSet struct {
	series   []storage.Series
	i        int
	warnings annotations.Annotations
}

func (s *listSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *listSet) At() storage.Series                { return s.series[s.i] }
func (s *listSet) Err() error                        { return nil }
func (s *listSet) Warnings() annotations.Annotations { return s.warnings }

type fSample struct {
	t int64
	f float64
}

func (s fSample) T() int64                      { return s.t }
func (s fSample) ST() int64                     { return 0 }
func (s fSample) F() float64                    { return s.f }
func (s fSample) H() *histogram.Histogram       { return nil }
func (s fSample) FH() *histogram.FloatHistogram { return nil }
func (s fSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fSample) Copy() chunks.Sample           { return s }

type hSample struct {
	t int64
	h *histogram.FloatHistogram
}

func (s hSample) T() int64                      { return s.t }
func (s hSample) ST() int64                     { return 0 }
func (s hSample) F() float64                    { return 0 }
func (s hSample) H() *histogram.Histogram       { return nil }
func (s hSample) FH() *histogram.FloatHistogram { return s.h }
func (s hSample) Type() chunkenc.ValueType      { return chunkenc.ValFloatHistogram }
func (s hSample) Copy() chunks.Sample           { return hSample{s.t, s.h.Copy()} }
