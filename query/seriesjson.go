package query

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
)

// encodeTraceResponseTo appends json.Marshal(r) to dst, without
// encoding/json's reflection over the metrics' series or its second pass
// over every Marshaler's output (the trace's OTLP/JSON, each series): a
// trace's answer carries a hundred series or more, and encoding them was a
// third of its time. The trace and the metrics come last.
func encodeTraceResponseTo(dst []byte, r TraceResponse) ([]byte, error) {
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
	b := append(slices.Grow(dst, size+1), head[:len(head)-1]...) // less its closing brace
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

// Sample is a float sample of a series, written [unix seconds, "value"] as
// Prometheus writes a matrix's samples.
type Sample struct {
	T int64 // ms
	V float64
}

func (p Sample) appendJSON(b []byte) ([]byte, error) {
	b, err := appendSeconds(append(b, '['), p.T)
	if err != nil {
		return nil, err
	}
	// A float's text is digits, '.', '-', '+', "NaN" or "Inf": nothing
	// to escape.
	b = strconv.AppendFloat(append(b, ',', '"'), p.V, 'f', -1, 64)
	return append(b, '"', ']'), nil
}

// appendSeconds appends ms/1000 as encoding/json writes the float64
// ms/1000: under 10^15 ms (31,000 years) that is the decimal itself, its
// fraction's trailing zeros trimmed (a decimal of at most 15 digits is the
// shortest that reads back as the float64 nearest it), written here
// without formatting a float.
func appendSeconds(b []byte, ms int64) ([]byte, error) {
	if ms <= -1e15 || ms >= 1e15 {
		return appendJSONValue(b, float64(ms)/1000)
	}
	if ms < 0 {
		b, ms = append(b, '-'), -ms
	}
	b = strconv.AppendInt(b, ms/1000, 10)
	if frac := ms % 1000; frac != 0 {
		digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
		n := 3
		for digits[n-1] == '0' {
			n--
		}
		b = append(append(b, '.'), digits[:n]...)
	}
	return b, nil
}

// MarshalJSON writes the sample as [unix seconds, "value"].
func (p Sample) MarshalJSON() ([]byte, error) { return p.appendJSON(nil) }

// UnmarshalJSON reads a sample written as [unix seconds, "value"].
func (p *Sample) UnmarshalJSON(b []byte) error {
	var pair [2]json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	var sec float64
	var val string
	if err := json.Unmarshal(pair[0], &sec); err != nil {
		return fmt.Errorf("sample time: %w", err)
	}
	if err := json.Unmarshal(pair[1], &val); err != nil {
		return fmt.Errorf("sample value: %w", err)
	}
	v, err := strconv.ParseFloat(val, 64)
	if err != nil {
		return fmt.Errorf("sample value: %w", err)
	}
	*p = Sample{T: int64(math.Round(sec * 1000)), V: v}
	return nil
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
	first := true
	s.Metric.Range(func(l labels.Label) { // sorted by name, as encoding/json writes a map
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, l.Name)
		b = append(b, ':')
		b = appendJSONString(b, l.Value)
	})
	b = append(b, `},"values":`...)
	if s.Values == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, v := range s.Values {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = v.appendJSON(b); err != nil {
				return nil, fmt.Errorf("series %s: %w", s.Metric, err)
			}
		}
		b = append(b, ']')
	}
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
