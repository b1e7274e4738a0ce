package ruler

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/zap"
)

// SelfMetrics writes Lumen's own metrics (what /metrics shows) into its
// store every interval, as a Prometheus scraping itself would, with the
// labels job and instance given, so that the ready-made "lumen" rules can
// watch Lumen. It returns when ctx is done.
func SelfMetrics(ctx context.Context, g prometheus.Gatherer, app storage.Appendable, interval time.Duration, target labels.Labels, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := WriteSelfMetrics(ctx, g, app, target, time.Now()); err != nil {
			log.Warn("own metrics not written", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// WriteSelfMetrics writes what g gathers at now, classic histograms and
// summaries as their series, each with target's labels.
func WriteSelfMetrics(ctx context.Context, g prometheus.Gatherer, app storage.Appendable, target labels.Labels, now time.Time) error {
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return fmt.Errorf("gather: %w", err)
	}
	ts := now.UnixMilli()
	a := app.Appender(ctx)
	b := labels.NewBuilder(labels.EmptyLabels())
	add := func(name string, m *dto.Metric, v float64, extra ...string) error {
		b.Reset(target)
		for _, lp := range m.GetLabel() {
			b.Set(lp.GetName(), lp.GetValue())
		}
		for i := 0; i+1 < len(extra); i += 2 {
			b.Set(extra[i], extra[i+1])
		}
		b.Set(labels.MetricName, name)
		_, err := a.Append(0, b.Labels(), ts, v)
		return err
	}
	var errs int
	var first error
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			var err error
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				err = add(name, m, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				err = add(name, m, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				err = add(name, m, m.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					if err == nil {
						err = add(name, m, q.GetValue(), "quantile", formatFloat(q.GetQuantile()))
					}
				}
				if err == nil {
					err = add(name+"_sum", m, s.GetSampleSum())
				}
				if err == nil {
					err = add(name+"_count", m, float64(s.GetSampleCount()))
				}
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				if len(h.GetBucket()) == 0 { // native only: not written
					continue
				}
				for _, bk := range h.GetBucket() {
					if err == nil {
						err = add(name+"_bucket", m, float64(bk.GetCumulativeCount()), "le", formatFloat(bk.GetUpperBound()))
					}
				}
				if bks := h.GetBucket(); err == nil && !math.IsInf(bks[len(bks)-1].GetUpperBound(), 1) {
					err = add(name+"_bucket", m, float64(h.GetSampleCount()), "le", "+Inf")
				}
				if err == nil {
					err = add(name+"_sum", m, h.GetSampleSum())
				}
				if err == nil {
					err = add(name+"_count", m, float64(h.GetSampleCount()))
				}
			}
			if err != nil {
				if errs++; first == nil {
					first = err
				}
			}
		}
	}
	if err := a.Commit(); err != nil {
		return fmt.Errorf("write own metrics: %w", err)
	}
	if first != nil {
		return fmt.Errorf("%d of own series not written, the first: %w", errs, first)
	}
	return nil
}

// formatFloat writes a bound or quantile as Prometheus' exposition does.
func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
