package limits

import (
	"errors"
	"fmt"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/internal/fault"
)

// Limits bound what the store takes in and what one query may gather.
// Every ingest path — OTLP, remote write, Loki push, span metrics — writes
// through the store, which checks them once for all (its heads hold the
// counts); the query APIs read the per-query ones through the store too. Defaults follow Mimir's and Loki's
// per-tenant limits where they have them, scaled to one appliance.
type Limits struct {
	// MaxLabelNamesPerSeries bounds a metric series' labels, its name
	// included (Mimir: max_label_names_per_series, 30).
	MaxLabelNamesPerSeries int `yaml:"max_label_names_per_series"`
	// MaxLabelNamesPerStream bounds a log stream's labels (Loki:
	// max_label_names_per_series, 15).
	MaxLabelNamesPerStream int `yaml:"max_label_names_per_stream"`
	// MaxLabelNameLength and MaxLabelValueLength bound one label (Mimir
	// and Loki: 1024 and 2048 bytes).
	MaxLabelNameLength  int `yaml:"max_label_name_length"`
	MaxLabelValueLength int `yaml:"max_label_value_length"`
	// MaxActiveSeries bounds the metric series in the head; a new one past
	// it is refused (Mimir: max_global_series_per_user). 0: none.
	MaxActiveSeries int `yaml:"max_active_series"`
	// MaxSeriesPerMetric bounds one metric name's series in the head
	// (Mimir: max_global_series_per_metric). 0: none.
	MaxSeriesPerMetric int `yaml:"max_series_per_metric"`
	// MaxActiveStreams bounds the log streams in the head (Loki:
	// max_global_streams_per_user). 0: none.
	MaxActiveStreams int `yaml:"max_active_streams"`
	// MaxSeriesPerQuery bounds the series one PromQL selector (or series,
	// label names or values request) may gather; past it the query fails
	// (Mimir: max_fetched_series_per_query). 0: none.
	MaxSeriesPerQuery int `yaml:"max_series_per_query"`
	// MaxTraceBytes bounds the span frames (decoded) one trace read takes;
	// past it the answer is the spans read so far, marked truncated (Tempo
	// bounds a trace by max_bytes_per_trace). 0: none.
	MaxTraceBytes int64 `yaml:"max_trace_bytes"`
	// MaxTraceLogLines bounds the log lines of one trace answer: the newest
	// are kept, the answer marked truncated. 0: none.
	MaxTraceLogLines int `yaml:"max_trace_log_lines"`
}

// Default returns the limits `lumen serve` runs with.
func Default() Limits {
	return Limits{
		MaxLabelNamesPerSeries: 30,
		MaxLabelNamesPerStream: 15,
		MaxLabelNameLength:     1024,
		MaxLabelValueLength:    2048,
		MaxActiveSeries:        2_000_000,
		MaxSeriesPerMetric:     200_000,
		MaxActiveStreams:       100_000,
		MaxSeriesPerQuery:      500_000,
		MaxTraceBytes:          64 << 20,
		MaxTraceLogLines:       20_000,
	}
}

// Validate reports the first limit that cannot work.
func (l Limits) Validate() error {
	switch {
	case l.MaxLabelNamesPerSeries < 2 || l.MaxLabelNamesPerStream < 1:
		return fmt.Errorf("limits: label names per series %d (at least 2: the name and one) and per stream %d (at least 1) are too low", l.MaxLabelNamesPerSeries, l.MaxLabelNamesPerStream)
	case l.MaxLabelNameLength < 1 || l.MaxLabelValueLength < 1:
		return fmt.Errorf("limits: label name length %d and value length %d must be positive", l.MaxLabelNameLength, l.MaxLabelValueLength)
	case l.MaxActiveSeries < 0 || l.MaxSeriesPerMetric < 0 || l.MaxActiveStreams < 0 || l.MaxSeriesPerQuery < 0 || l.MaxTraceBytes < 0 || l.MaxTraceLogLines < 0:
		return errors.New("limits: active series, series per metric, active streams, series per query, trace bytes and trace log lines must not be negative")
	}
	return nil
}

// CheckLabels applies the label-shape limits to a series or stream.
func (l Limits) CheckLabels(kind string, lset labels.Labels, maxNames int) error {
	if n := lset.Len(); n > maxNames {
		return fmt.Errorf("%w: %s %s has %d labels, more than the limit of %d (max_label_names_per_%s)", fault.ErrLimit, kind, TruncLabels(lset), n, maxNames, kind)
	}
	var err error
	lset.Range(func(lb labels.Label) {
		switch {
		case err != nil:
		case len(lb.Name) > l.MaxLabelNameLength:
			err = fmt.Errorf("%w: %s %s: label name of %d bytes, longer than the limit of %d (max_label_name_length)", fault.ErrLimit, kind, TruncLabels(lset), len(lb.Name), l.MaxLabelNameLength)
		case len(lb.Value) > l.MaxLabelValueLength:
			err = fmt.Errorf("%w: %s %s: value of label %q is %d bytes, longer than the limit of %d (max_label_value_length)", fault.ErrLimit, kind, TruncLabels(lset), lb.Name, len(lb.Value), l.MaxLabelValueLength)
		}
	})
	return err
}

// TruncLabels names a label set in an error without echoing a huge one.
func TruncLabels(lset labels.Labels) string {
	s := lset.String()
	if len(s) > 256 {
		return s[:256] + "…}"
	}
	return s
}
