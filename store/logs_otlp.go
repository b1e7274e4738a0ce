package store

import (
	"context"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/lumenobs/lumen/internal/logids"
	"github.com/lumenobs/lumen/internal/model"
)

// OTLP log records become lines of the log store the way Loki's OTLP
// ingestion maps them: a stream per resource, labelled with the resource
// attributes below (dots as underscores); every other resource attribute,
// the scope, the record's attributes, severity and ids are the line's
// structured metadata; the body is the line (maps and arrays as JSON).
var otlpStreamAttributes = map[string]bool{
	"service.name":                true,
	"service.namespace":           true,
	"service.instance.id":         true,
	"deployment.environment":      true,
	"deployment.environment.name": true,
	"cloud.region":                true,
	"cloud.availability_zone":     true,
	"k8s.cluster.name":            true,
	"k8s.namespace.name":          true,
	"k8s.pod.name":                true,
	"k8s.container.name":          true,
	"container.name":              true,
	"k8s.replicaset.name":         true,
	"k8s.deployment.name":         true,
	"k8s.statefulset.name":        true,
	"k8s.daemonset.name":          true,
	"k8s.cronjob.name":            true,
	"k8s.job.name":                true,
}

// WriteLogs stores OTLP log records (mapped as above) and returns once
// they are durable. A record's trace and span ids are its own when set;
// otherwise they are looked for in its attributes, its resource's labels
// and its body (logids).
func (db *DB) WriteLogs(ctx context.Context, ld plog.Logs) error {
	return db.WriteLogStreams(ctx, OTLPLogStreams(ld))
}

// OTLPLogStreams maps OTLP log records to log streams.
func OTLPLogStreams(ld plog.Logs) []LogStream {
	var out []LogStream
	for _, rl := range ld.ResourceLogs().All() {
		var stream labels.ScratchBuilder
		var rest []labels.Label
		hasService := false
		for k, v := range rl.Resource().Attributes().All() {
			if otlpStreamAttributes[k] {
				stream.Add(LabelName(k), v.AsString())
				hasService = hasService || k == "service.name"
			} else {
				rest = append(rest, labels.Label{Name: LabelName(k), Value: v.AsString()})
			}
		}
		if !hasService {
			stream.Add("service_name", "unknown_service")
		}
		stream.Sort()
		lset := stream.Labels()
		st := LogStream{Labels: lset}
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				var md labels.ScratchBuilder
				for _, l := range rest {
					md.Add(l.Name, l.Value)
				}
				if n := sl.Scope().Name(); n != "" {
					md.Add("scope_name", n)
				}
				if v := sl.Scope().Version(); v != "" {
					md.Add("scope_version", v)
				}
				for k, v := range lr.Attributes().All() {
					md.Add(LabelName(k), v.AsString())
				}
				if s := lr.SeverityText(); s != "" {
					md.Add("severity_text", s)
				}
				if n := lr.SeverityNumber(); n != plog.SeverityNumberUnspecified {
					md.Add("severity_number", strconv.Itoa(int(n)))
				}
				if id := lr.TraceID(); !id.IsEmpty() {
					md.Add("trace_id", id.String())
				}
				if id := lr.SpanID(); !id.IsEmpty() {
					md.Add("span_id", id.String())
				}
				md.Sort()
				meta := dedupe(md.Labels())
				line := lr.Body().AsString()
				e := LogEntry{T: int64(logTime(lr)), Line: line, Metadata: meta}
				if id := lr.TraceID(); !id.IsEmpty() {
					e.TraceID, e.SpanID = model.TraceID(id), model.SpanID(lr.SpanID())
				} else {
					ids := logids.Extract(meta, lset, line)
					e.TraceID, e.SpanID = ids.Trace, ids.Span
				}
				st.Entries = append(st.Entries, e)
			}
		}
		out = append(out, st)
	}
	return out
}

// logTime is the time a record is filed under: when it happened, or when it
// was observed if the source did not say.
func logTime(lr plog.LogRecord) uint64 {
	if ts := lr.Timestamp(); ts != 0 {
		return uint64(ts)
	}
	return uint64(lr.ObservedTimestamp())
}

// dedupe keeps the first of labels with the same name (attributes of the
// record after those of the resource, once sanitized, can collide).
func dedupe(ls labels.Labels) labels.Labels {
	if _, dup := ls.HasDuplicateLabelNames(); !dup {
		return ls
	}
	var b labels.ScratchBuilder
	prev := ""
	ls.Range(func(l labels.Label) {
		if l.Name != prev {
			b.Add(l.Name, l.Value)
		}
		prev = l.Name
	})
	return b.Labels()
}

// LabelName turns an OTLP attribute key into a label name as Loki and
// Prometheus do: every character outside [a-zA-Z0-9_] becomes '_', and a
// leading digit gets a '_' before it.
func LabelName(k string) string {
	ok := k != "" && !(k[0] >= '0' && k[0] <= '9')
	for i := 0; ok && i < len(k); i++ {
		c := k[i]
		ok = c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	}
	if ok {
		return k
	}
	var b strings.Builder
	if k == "" || (k[0] >= '0' && k[0] <= '9') {
		b.WriteByte('_')
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
