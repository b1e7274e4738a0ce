// Package replica names the series a Lumen replica makes itself (span
// metrics, the service graph, recording rules, ALERTS and its own health)
// when several replicas write to one remote metrics backend: each
// replica's series carry the label lumen_replica, as the replicas of a
// Prometheus HA pair carry their external replica label, so no two
// replicas write the same series. Span metrics and the service graph are
// then partial per replica and summed at query time
// (sum without (lumen_replica)); a recording rule's series are the same on
// every replica (max without (lumen_replica), or the backend's
// deduplication).
package replica

import (
	"context"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
)

// Label is the label that names the replica a series comes from.
const Label = "lumen_replica"

// Appendable is app whose series carry Label=name; app itself when name is
// empty (one replica: series as they always were).
func Appendable(app storage.Appendable, name string) storage.Appendable {
	if name == "" {
		return app
	}
	return appendable{app: app, name: name}
}

// Without is l without Label.
func Without(l labels.Labels) labels.Labels {
	if !l.Has(Label) {
		return l
	}
	return labels.NewBuilder(l).Del(Label).Labels()
}

type appendable struct {
	app  storage.Appendable
	name string
}

func (a appendable) Appender(ctx context.Context) storage.Appender {
	return &appender{Appender: a.app.Appender(ctx), b: labels.NewBuilder(labels.EmptyLabels()), name: a.name}
}

// appender adds the label to every series it is given; every method of
// storage.Appender that takes labels is here, so none passes them on
// without it.
type appender struct {
	storage.Appender
	b    *labels.Builder
	name string
}

func (a *appender) with(l labels.Labels) labels.Labels {
	a.b.Reset(l)
	return a.b.Set(Label, a.name).Labels()
}

func (a *appender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	return a.Appender.Append(ref, a.with(l), t, v)
}

func (a *appender) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	return a.Appender.AppendExemplar(ref, a.with(l), e)
}

func (a *appender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.Appender.AppendHistogram(ref, a.with(l), t, h, fh)
}

func (a *appender) AppendHistogramSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.Appender.AppendHistogramSTZeroSample(ref, a.with(l), t, st, h, fh)
}

func (a *appender) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	return a.Appender.UpdateMetadata(ref, a.with(l), m)
}

func (a *appender) AppendSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64) (storage.SeriesRef, error) {
	return a.Appender.AppendSTZeroSample(ref, a.with(l), t, st)
}
