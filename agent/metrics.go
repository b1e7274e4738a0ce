package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the agent's own, served on its /metrics.
type Metrics struct {
	linesRead     prometheus.Counter
	bytesRead     prometheus.Counter
	malformed     prometheus.Counter
	truncations   *prometheus.CounterVec
	filesTailed   prometheus.Gauge
	fileLag       *prometheus.GaugeVec
	itemsBuffered *prometheus.CounterVec
	itemsShipped  *prometheus.CounterVec
	itemsDropped  *prometheus.CounterVec
	bufferBytes   prometheus.Gauge
	requests      *prometheus.CounterVec
	retries       prometheus.Counter
	relayed       *prometheus.CounterVec

	corruptRecords prometheus.Counter
	corruptBytes   prometheus.Counter
	readErrors     prometheus.Counter
	relayRefused   *prometheus.CounterVec
	relayInFlight  prometheus.Gauge
	shipEndpoints  prometheus.Gauge
}

// NewMetrics registers the agent's metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		linesRead:     prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_agent_log_lines_read_total", Help: "Container log lines read (after joining split lines)."}),
		bytesRead:     prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_agent_log_bytes_read_total", Help: "Bytes of container log files read."}),
		malformed:     prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_agent_log_lines_malformed_total", Help: "Lines in neither the CRI nor the Docker format, shipped as they are."}),
		truncations:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lumen_agent_log_truncations_total", Help: "Files found truncated (copytruncate rotation), by whether the rotated copy was found and read."}, []string{"copy"}),
		filesTailed:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "lumen_agent_log_files", Help: "Container log files being read."}),
		fileLag:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lumen_agent_log_file_lag_bytes", Help: "Bytes of a log file not yet read."}, []string{"path"}),
		itemsBuffered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lumen_agent_buffered_items_total", Help: "Log records, spans and data points written to the on-disk buffer."}, []string{"signal"}),
		itemsShipped:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lumen_agent_shipped_items_total", Help: "Items the server acknowledged."}, []string{"signal"}),
		itemsDropped:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lumen_agent_dropped_items_total", Help: "Items dropped: buffer_full (the oldest, when the buffer is over its size) or rejected (the server refused them as malformed)."}, []string{"signal", "reason"}),
		bufferBytes:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "lumen_agent_buffer_bytes", Help: "Size of the on-disk buffer."}),
		requests:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lumen_agent_ship_requests_total", Help: "Requests to the server, by outcome (HTTP status, or error)."}, []string{"signal", "status"}),
		retries:       prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_agent_ship_retries_total", Help: "Requests sent again after a failure or a 429/503."}),
		relayed:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lumen_agent_relayed_items_total", Help: "Items received over OTLP from pods on the node."}, []string{"signal"}),

		corruptRecords: prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_agent_buffer_corrupt_records_total", Help: "Unreadable records (bad checksum or length, torn, undecodable, missing segment) the shipper skipped."}),
		corruptBytes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_agent_buffer_corrupt_bytes_total", Help: "Bytes of the buffer skipped as unreadable."}),
		readErrors:     prometheus.NewCounter(prometheus.CounterOpts{Name: "lumen_agent_buffer_read_errors_total", Help: "Failed reads of the buffer by the shipper (I/O errors), retried after a backoff."}),
		relayRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lumen_agent_relay_refused_total",
			Help: "OTLP requests from pods the relay refused: too_large, in_flight (the node's bytes in flight), pod_in_flight and pod_buffer (a pod's share of them and of the buffer), buffer (the buffer failed)."}, []string{"reason"}),
		relayInFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lumen_agent_relay_in_flight_bytes", Help: "Bytes of relayed requests being read, decoded and buffered."}),
		shipEndpoints: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lumen_agent_ship_replicas", Help: "Server replicas the agent shards spans among (ship.shard_by_trace_id; the addresses the server's host name resolves to)."}),
	}
	if reg != nil {
		reg.MustRegister(m.linesRead, m.bytesRead, m.malformed, m.truncations, m.filesTailed, m.fileLag, m.itemsBuffered,
			m.itemsShipped, m.itemsDropped, m.bufferBytes, m.requests, m.retries, m.relayed,
			m.corruptRecords, m.corruptBytes, m.readErrors, m.relayRefused, m.relayInFlight, m.shipEndpoints)
	}
	return m
}

func (m *Metrics) buffered(s Signal, n int) {
	m.itemsBuffered.WithLabelValues(s.String()).Add(float64(n))
}

func (m *Metrics) dropped(s Signal, reason string, n int) {
	m.itemsDropped.WithLabelValues(s.String(), reason).Add(float64(n))
}
