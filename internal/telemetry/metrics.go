package telemetry

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Ingest counts what each ingest path received, stored and rejected.
type Ingest struct {
	Received *prometheus.CounterVec // labels: signal
	Stored   *prometheus.CounterVec // labels: signal
	Rejected *prometheus.CounterVec // labels: signal, reason
}

// NewIngest registers the ingest counters on reg.
func NewIngest(reg prometheus.Registerer) *Ingest {
	m := &Ingest{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lumen_ingest_items_received_total",
			Help: "Spans, log records or samples received, before validation.",
		}, []string{"signal"}),
		Stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lumen_ingest_items_stored_total",
			Help: "Spans, log records or samples durably stored.",
		}, []string{"signal"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lumen_ingest_items_rejected_total",
			Help: "Spans, log records or samples refused, by reason (invalid, overload, unavailable).",
		}, []string{"signal", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Received, m.Stored, m.Rejected)
	}
	return m
}

// Register registers cs with reg, failing on the first that cannot be
// (a name already registered with other labels).
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}
