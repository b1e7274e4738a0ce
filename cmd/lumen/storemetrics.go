package main

import (
	"github.com/prometheus/client_golang/prometheus"

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

// diskCollector exposes the free-space floor's state, read when scraped.
type diskCollector struct {
	db                       *store.DB
	free, floor, full, refus *prometheus.Desc
}

func newDiskCollector(db *store.DB) prometheus.Collector {
	return diskCollector{db: db,
		free:  prometheus.NewDesc("lumen_store_free_disk_bytes", "Free bytes on the data dir's file system, as last read by the write path.", nil, nil),
		floor: prometheus.NewDesc("lumen_store_min_free_disk_bytes", "The free-space floor (--min-free-disk-bytes): below it writes are refused with 507.", nil, nil),
		full:  prometheus.NewDesc("lumen_store_disk_full", "1 while writes are refused because free space is below the floor.", nil, nil),
		refus: prometheus.NewDesc("lumen_store_writes_refused_disk_full_total", "Writes refused because free space was below the floor.", nil, nil),
	}
}

func (c diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.free
	ch <- c.floor
	ch <- c.full
	ch <- c.refus
}

func (c diskCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.db.DiskStatus()
	full := 0.0
	if st.Full {
		full = 1
	}
	ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(st.FreeBytes))
	ch <- prometheus.MustNewConstMetric(c.floor, prometheus.GaugeValue, float64(st.FloorBytes))
	ch <- prometheus.MustNewConstMetric(c.full, prometheus.GaugeValue, full)
	ch <- prometheus.MustNewConstMetric(c.refus, prometheus.CounterValue, float64(st.Refused))
}
