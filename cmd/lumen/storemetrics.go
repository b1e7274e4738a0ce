package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lumenobs/lumen/ingest/spanmetrics"
	"github.com/lumenobs/lumen/store"
)

// walSkipCollector exposes what WAL replays skipped, read when scraped.
type walSkipCollector struct {
	db   *store.DB
	desc *prometheus.Desc
}

func newWALSkipCollector(db *store.DB) prometheus.Collector {
	return walSkipCollector{db: db, desc: prometheus.NewDesc("lumen_wal_replay_skipped_records_total",
		"WAL records a replay skipped since start, by WAL (metrics, log) and reason (torn_tail, checksum, undecodable; unknown_series counts samples or lines of a series or stream the WAL never defined).",
		[]string{"wal", "reason"}, nil)}
}

func (c walSkipCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c walSkipCollector) Collect(ch chan<- prometheus.Metric) {
	for k, n := range c.db.WALReplaySkipped() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), k[0], k[1])
	}
}

func gaugeFunc(name, help string, f func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
}

func counterFunc(name, help string, f func() float64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
}

// headAndDiskMetrics expose the free-space floor's state and what the
// heads hold, read when scraped.
func headAndDiskMetrics(db *store.DB) []prometheus.Collector {
	disk := func(f func(store.DiskStatus) float64) func() float64 {
		return func() float64 { return f(db.DiskStatus()) }
	}
	head := func(f func(store.HeadStats) float64) func() float64 {
		return func() float64 { return f(db.HeadStats()) }
	}
	return []prometheus.Collector{
		gaugeFunc("lumen_store_free_disk_bytes", "Free bytes on the data dir's file system, as last read by the write path.",
			disk(func(s store.DiskStatus) float64 { return float64(s.FreeBytes) })),
		gaugeFunc("lumen_store_min_free_disk_bytes", "The free-space floor (--min-free-disk-bytes): below it writes are refused with 507.",
			disk(func(s store.DiskStatus) float64 { return float64(s.FloorBytes) })),
		gaugeFunc("lumen_store_disk_reserve_bytes", "The disk reserve's space while it is in place (--disk-reserve-bytes); 0 while spent: writes are refused until it is made again.",
			disk(func(s store.DiskStatus) float64 { return float64(s.ReserveBytes) })),
		counterFunc("lumen_store_disk_reserve_spent_total", "Times the disk reserve was released because the disk was full when the store had to make a file.",
			disk(func(s store.DiskStatus) float64 { return float64(s.ReserveSpent) })),
		gaugeFunc("lumen_store_disk_full", "1 while writes are refused because free space is below the floor, or the disk reserve is spent.",
			disk(func(s store.DiskStatus) float64 { return map[bool]float64{true: 1}[s.Full] })),
		counterFunc("lumen_store_writes_refused_disk_full_total", "Writes refused because free space was below the floor.",
			disk(func(s store.DiskStatus) float64 { return float64(s.Refused) })),
		gaugeFunc("lumen_head_series", "Metric series in memory (limit: --max-active-series).",
			head(func(s store.HeadStats) float64 { return float64(s.Series) })),
		gaugeFunc("lumen_head_streams", "Log streams in memory (limit: --max-active-streams).",
			head(func(s store.HeadStats) float64 { return float64(s.Streams) })),
		counterFunc("lumen_head_series_removed_total", "Idle metric series removed from memory (--head-idle-timeout).",
			head(func(s store.HeadStats) float64 { return float64(s.SeriesRemoved) })),
		counterFunc("lumen_head_streams_removed_total", "Idle log streams removed from memory (--head-idle-timeout).",
			head(func(s store.HeadStats) float64 { return float64(s.StreamsRemoved) })),
	}
}

// spanMetricsMetrics expose the span metrics generator's counts.
func spanMetricsMetrics(gen *spanmetrics.Generator) []prometheus.Collector {
	st := func(f func(spanmetrics.Stats) float64) func() float64 {
		return func() float64 { return f(gen.Stats()) }
	}
	return []prometheus.Collector{
		gaugeFunc("lumen_spanmetrics_keys", "RED keys (service, span name, kind, status) kept, up to span_metrics.max_series.",
			st(func(s spanmetrics.Stats) float64 { return float64(s.Keys) })),
		gaugeFunc("lumen_spanmetrics_edges", "Service-graph edges kept, up to span_metrics.max_series.",
			st(func(s spanmetrics.Stats) float64 { return float64(s.Edges) })),
		counterFunc("lumen_spanmetrics_overflow_spans_total", `Spans and edges counted in the otel_metric_overflow="true" series because span_metrics.max_series was reached.`,
			st(func(s spanmetrics.Stats) float64 { return float64(s.Overflow) })),
		counterFunc("lumen_spanmetrics_unpaired_spans_dropped_total", "Spans the service graph could not keep waiting for their partner (span_metrics.max_pending).",
			st(func(s spanmetrics.Stats) float64 { return float64(s.Dropped) })),
		counterFunc("lumen_spanmetrics_keys_expired_total", "RED keys and edges removed after span_metrics.stale_after with no span.",
			st(func(s spanmetrics.Stats) float64 { return float64(s.Expired) })),
	}
}
