package query

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// encodeTraceResponse is json.Marshal(r), without encoding/json's
// reflection over the metrics' series or its second pass over every
// Marshaler's output (the trace's OTLP/JSON, each series): a trace's
// answer carries a hundred series or more, and encoding them was a third
// of its time. The trace and the metrics come last.
func encodeTraceResponse(r TraceResponse) ([]byte, error) {
	trace, metrics := r.Trace, r.Metrics
	r.Trace, r.Metrics = nil, nil
	head, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode trace %s: %w", r.TraceID, err)
	}
	size := len(head) + len(trace) + 256
	if metrics != nil {
		for _, s := range metrics.Series {
			size += 160 + 32*len(s.Values) + 96*len(s.Histograms)
		}
	}
	b := append(make([]byte, 0, size), head[:len(head)-1]...) // less its closing brace
	if len(trace) > 0 {
		b = append(b, `,"trace":`...)
		b = append(b, trace...) // OTLP/JSON as ptrace writes it: compact
	}
	if metrics != nil {
		b = append(b, `,"metrics":`...)
		if b, err = metrics.appendJSON(b); err != nil {
			return nil, fmt.Errorf("encode trace %s: %w", r.TraceID, err)
		}
	}
	return append(b, '}'), nil
}

func (m *TraceMetrics) appendJSON(b []byte) ([]byte, error) {
	var err error
	marshal := func(b []byte, name string, v any) []byte {
		enc, merr := json.Marshal(v)
		if merr != nil && err == nil {
			err = fmt.Errorf("%s: %w", name, merr)
		}
		return append(b, enc...)
	}
	b = marshal(append(b, `{"exemplars":`...), "exemplars", m.Exemplars)
	b = append(b, `,"series":`...)
	if m.Series == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, s := range m.Series {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = s.appendJSON(b); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	b = marshal(append(b, `,"serviceGraph":`...), "serviceGraph", m.ServiceGraph)
	b = marshal(append(b, `,"from":`...), "from", m.From)
	b = marshal(append(b, `,"to":`...), "to", m.To)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// MarshalJSON writes a service's series as encoding/json would, without
// its reflection.
func (s ServiceSeries) MarshalJSON() ([]byte, error) {
	return s.appendJSON(make([]byte, 0, 128+32*len(s.Values)))
}

func (s ServiceSeries) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"service":`...)
	b = appendJSONString(b, s.Service)
	b = append(b, `,"metric":{`...)
	names := make([]string, 0, len(s.Metric))
	for k := range s.Metric {
		names = append(names, k)
	}
	slices.Sort(names) // encoding/json writes a map's keys sorted
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, s.Metric[k])
	}
	b = append(b, `},"values":[`...)
	for i, v := range s.Values {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, x := range v {
			if j > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSONValue(b, x); err != nil {
				return nil, fmt.Errorf("series %s: %w", s.Metric["__name__"], err)
			}
		}
		b = append(b, ']')
	}
	b = append(b, ']')
	if len(s.Histograms) > 0 {
		b = append(b, `,"histograms":[`...)
		for i, h := range s.Histograms {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, h...)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// appendJSONValue appends a sample's time (float64) or value (string); any
// other type as encoding/json writes it.
func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return appendJSONString(b, x), nil
	case float64:
		// encoding/json's own format for the range it writes without an
		// exponent; the rest (and NaN, an error there too) through it.
		if a := math.Abs(x); x == 0 || (a >= 1e-6 && a < 1e21) {
			return strconv.AppendFloat(b, x, 'f', -1, 64), nil
		}
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %v: %w", v, err)
	}
	return append(b, enc...), nil
}

// appendJSONString appends s quoted. Printable ASCII other than what
// encoding/json escapes (", \, and <, > and & for HTML) is copied; any
// other string goes through encoding/json, so the escapes and the
// replacement of invalid UTF-8 are its own.
func appendJSONString(b []byte, s string) []byte {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s) // a string always encodes
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
