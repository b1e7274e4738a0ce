// Package loki receives Loki pushes (POST /loki/api/v1/push): snappy
// protobuf as promtail, Alloy and the Loki clients send it
// (github.com/grafana/loki/pkg/push types), or JSON as Loki's API documents
// it, optionally gzip- or deflate-encoded; structured metadata kept; trace
// and span ids found in every line (internal/logids).
package loki

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/admit"
	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/logids"
	"github.com/lumenobs/lumen/internal/telemetry"
	"github.com/lumenobs/lumen/store"
)

// Config bounds what one push may cost.
type Config struct {
	// MaxRequestBytes bounds a body as sent.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxDecodedBytes bounds a body once decompressed.
	MaxDecodedBytes int64 `yaml:"max_decoded_bytes"`
	// MaxLineBytes bounds one line, as Loki's max_line_size does.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// MaxInFlight bounds the pushes being written at once; past it a push
	// waits up to QueueWait, then gets 429 with Retry-After.
	MaxInFlight int           `yaml:"max_in_flight"`
	QueueWait   time.Duration `yaml:"queue_wait"`
	// MaxInFlightBytes bounds the bodies being read at once (as much as
	// each declares). Past it, a push waits up to QueueWait, then gets 429.
	MaxInFlightBytes int64 `yaml:"max_in_flight_bytes"`
	// BodyTimeout is how long a client may take to send its body; then it
	// gets 408. The body is read before a write slot is taken, so slow
	// clients cannot hold the slots.
	BodyTimeout time.Duration `yaml:"body_timeout"`
}

// DefaultConfig returns Loki's own defaults where it has them (256 KiB
// lines) and limits well above what its clients send.
func DefaultConfig() Config {
	return Config{MaxRequestBytes: 16 << 20, MaxDecodedBytes: 64 << 20, MaxLineBytes: 256 << 10, MaxInFlight: 16, QueueWait: 2 * time.Second,
		MaxInFlightBytes: 128 << 20, BodyTimeout: 30 * time.Second}
}

// Validate reports the first limit that cannot work.
func (c Config) Validate() error {
	switch {
	case c.MaxRequestBytes < 1024 || c.MaxDecodedBytes < c.MaxRequestBytes:
		return fmt.Errorf("loki push: request limits %d (sent) and %d (decoded) must be at least 1 KiB and in that order", c.MaxRequestBytes, c.MaxDecodedBytes)
	case c.MaxLineBytes < 1:
		return fmt.Errorf("loki push: max line bytes %d is not positive", c.MaxLineBytes)
	case c.MaxInFlight < 1:
		return fmt.Errorf("loki push: max in flight %d is not positive", c.MaxInFlight)
	case c.QueueWait < 0:
		return fmt.Errorf("loki push: queue wait %s is negative", c.QueueWait)
	case c.MaxInFlightBytes < c.MaxRequestBytes:
		return fmt.Errorf("loki push: max in-flight bytes %d is below one largest body (%d)", c.MaxInFlightBytes, c.MaxRequestBytes)
	case c.BodyTimeout <= 0:
		return fmt.Errorf("loki push: body timeout %s is not positive", c.BodyTimeout)
	}
	return nil
}

// Writer stores log streams.
type Writer interface {
	WriteLogStreams(ctx context.Context, streams []store.LogStream) error
	// TimeWindow is the range of line times the store keeps (not too
	// old, not too far ahead), read once per push.
	TimeWindow() store.TimeWindow
	// ValidateStream refuses a stream's labels as Loki does and past the
	// label limits, naming the limit.
	ValidateStream(lset labels.Labels) error
}

// Handler serves POST /loki/api/v1/push.
type Handler struct {
	cfg   Config
	w     Writer
	gate  *admit.Gate
	bytes *admit.Bytes
	m     *telemetry.Ingest
	log   *zap.Logger
	now   func() time.Time
}

// New returns the push handler over w.
func New(cfg Config, w Writer, log *zap.Logger, m *telemetry.Ingest) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	if m == nil {
		m = telemetry.NewIngest(nil)
	}
	return &Handler{cfg: cfg, w: w, gate: admit.New(cfg.MaxInFlight, cfg.QueueWait, "log pushes"),
		bytes: admit.NewBytes(cfg.MaxInFlightBytes, cfg.QueueWait, "log push bodies"), m: m, log: log.Named("ingest.loki"), now: time.Now}, nil
}

var errTooLarge = errors.New("request too large")

// errUnsupported marks a content encoding the handler does not know (415).
var errUnsupported = errors.New("unsupported")

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "push takes POST", http.StatusMethodNotAllowed)
		return
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		h.m.Rejected.WithLabelValues("logs", "invalid").Inc()
		http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
		return
	}
	held := admit.Declared(r, h.cfg.MaxRequestBytes)
	if !h.bytes.Acquire(w, r, held) {
		h.m.Rejected.WithLabelValues("logs", "overload").Inc()
		return
	}
	body, err := admit.ReadBody(w, r, h.cfg.MaxRequestBytes, h.cfg.BodyTimeout)
	h.bytes.Release(held)
	if err != nil {
		if errors.Is(err, admit.ErrReadTimeout) {
			err = fmt.Errorf("%w: %w", fault.ErrTimeout, err)
		}
		h.m.Rejected.WithLabelValues("logs", fault.HTTPError(w, err).Reason).Inc()
		return
	}
	if !h.gate.Enter(w, r) {
		h.m.Rejected.WithLabelValues("logs", "overload").Inc()
		return
	}
	defer h.gate.Leave()

	streams, err := h.decode(r, body)
	if err != nil {
		h.m.Rejected.WithLabelValues("logs", "invalid").Inc()
		code := http.StatusBadRequest
		switch {
		case errors.Is(err, errTooLarge):
			code = http.StatusRequestEntityTooLarge
		case errors.Is(err, errUnsupported):
			code = http.StatusUnsupportedMediaType
		}
		http.Error(w, err.Error(), code)
		return
	}
	good, refused, problems := h.check(streams)
	received := 0
	for _, s := range streams {
		received += len(s.Entries)
	}
	h.m.Received.WithLabelValues("logs").Add(float64(received))
	if refused > 0 {
		h.m.Rejected.WithLabelValues("logs", "invalid").Add(float64(refused))
	}
	if err := h.w.WriteLogStreams(r.Context(), good); err != nil {
		n := received - refused
		c := fault.HTTPError(w, fmt.Errorf("push not stored: %w", err))
		h.m.Rejected.WithLabelValues("logs", c.Reason).Add(float64(n))
		if c.HTTP >= 500 {
			h.log.Warn("push not stored", zap.Int("lines", n), zap.Error(err))
		}
		return
	}
	h.m.Stored.WithLabelValues("logs").Add(float64(received - refused))
	if len(problems) > 0 {
		// As Loki: the valid streams are stored, the answer names what
		// was not (a client does not retry a 400).
		http.Error(w, fmt.Sprintf("%d of %d lines refused: %s", refused, received, strings.Join(problems, "; ")), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// stream is a decoded stream before checks: its labels as sent.
type stream struct {
	labels  string // the protobuf's label string; empty for JSON
	lset    labels.Labels
	Entries []store.LogEntry
}

// checkContentType refuses, before the body is read, a push that is
// neither JSON nor protobuf. Loki reads any type but JSON as snappy
// protobuf, so that a browser page could push a text/plain body (a
// "simple" cross-site request, sent without asking); Lumen takes only
// the types its clients send.
func checkContentType(v string) error {
	ct, _, err := mime.ParseMediaType(v)
	switch {
	case v == "":
		return errors.New("push without a Content-Type: send application/x-protobuf (snappy) or application/json")
	case err != nil:
		return fmt.Errorf("push Content-Type %q does not parse: %w", v, err)
	}
	switch ct {
	case "application/json", "application/x-protobuf", "application/protobuf":
		return nil
	}
	return fmt.Errorf("push Content-Type %q is not taken: send application/x-protobuf (snappy) or application/json", ct)
}

// decode reads, decompresses and decodes a push body.
func (h *Handler) decode(r *http.Request, body []byte) ([]stream, error) {
	var err error
	if int64(len(body)) > h.cfg.MaxRequestBytes {
		return nil, fmt.Errorf("%w: body over %d bytes", errTooLarge, h.cfg.MaxRequestBytes)
	}
	if body, err = decompress(r.Header.Get("Content-Encoding"), body, h.cfg.MaxDecodedBytes); err != nil {
		return nil, err
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		return decodeJSON(body)
	}
	return decodeProto(body, h.cfg.MaxDecodedBytes)
}

func decompress(encoding string, body []byte, limit int64) ([]byte, error) {
	var rd io.ReadCloser
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("body is not gzip-compressed: %w", err)
		}
		rd = zr
	case "deflate":
		rd = flate.NewReader(bytes.NewReader(body))
	default:
		return nil, fmt.Errorf("%w content encoding %q: send gzip, deflate or none", errUnsupported, encoding)
	}
	defer rd.Close()
	out, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, fmt.Errorf("body does not decompress (%s): %w", encoding, err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("%w: body decompresses to over %d bytes", errTooLarge, limit)
	}
	return out, nil
}

// decodeProto decodes a snappy-compressed push.PushRequest. Lines and
// labels are copied out of the body.
func decodeProto(body []byte, maxDecoded int64) ([]stream, error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, fmt.Errorf("body is not snappy-compressed (block format): %w", err)
	}
	if int64(n) > maxDecoded {
		return nil, fmt.Errorf("%w: body decodes to %d bytes, over %d", errTooLarge, n, maxDecoded)
	}
	buf := rawPool.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledRaw {
			rawPool.Put(buf)
		}
	}()
	raw, err := snappy.Decode((*buf)[:cap(*buf)], body)
	if err != nil {
		return nil, fmt.Errorf("body is not snappy-compressed (block format): %w", err)
	}
	*buf = raw
	// Lumen's decoder reads what it knows exactly as the push package
	// does; anything else is left to the push package, which decides.
	if out, ok := decodePush(raw); ok {
		return out, nil
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("body is not a Loki PushRequest protobuf: %w", err)
	}
	return fromPushRequest(req), nil
}

// rawPool holds decoded bodies: nothing decoded refers to one.
var rawPool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledRaw = 8 << 20

// fromPushRequest is the streams of a decoded PushRequest. Unmarshal copies
// every string out of the body: they are kept as they are.
func fromPushRequest(req push.PushRequest) []stream {
	out := make([]stream, 0, len(req.Streams))
	for _, s := range req.Streams {
		st := stream{labels: s.Labels, Entries: make([]store.LogEntry, 0, len(s.Entries))}
		for _, e := range s.Entries {
			le := store.LogEntry{T: e.Timestamp.UnixNano(), Line: e.Line}
			if len(e.StructuredMetadata) > 0 {
				var b labels.ScratchBuilder
				for _, l := range e.StructuredMetadata {
					b.Add(l.Name, l.Value)
				}
				b.Sort()
				le.Metadata = b.Labels()
			}
			st.Entries = append(st.Entries, le)
		}
		out = append(out, st)
	}
	return out
}

type jsonRequest struct {
	Streams []jsonStream `json:"streams"`
}

type jsonStream struct {
	Stream map[string]string `json:"stream"`
	Values []json.RawMessage `json:"values"`
}

// decodeJSON decodes Loki's JSON push body:
// {"streams":[{"stream":{"label":"value"},"values":[["<unix ns>","<line>",{"key":"value"}]]}]}.
func decodeJSON(body []byte) ([]stream, error) {
	var req jsonRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("body is not a Loki JSON push (%s): %w", `{"streams":[{"stream":{…},"values":[["<unix ns>","<line>"]]}]}`, err)
	}
	out := make([]stream, 0, len(req.Streams))
	for i, s := range req.Streams {
		var b labels.ScratchBuilder
		for k, v := range s.Stream {
			b.Add(k, v)
		}
		b.Sort()
		st := stream{lset: b.Labels(), Entries: make([]store.LogEntry, 0, len(s.Values))}
		for j, raw := range s.Values {
			e, err := jsonEntry(raw)
			if err != nil {
				return nil, fmt.Errorf("streams[%d].values[%d]: %w", i, j, err)
			}
			st.Entries = append(st.Entries, e)
		}
		out = append(out, st)
	}
	return out, nil
}

func jsonEntry(raw json.RawMessage) (store.LogEntry, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil || len(parts) < 2 || len(parts) > 3 {
		return store.LogEntry{}, errors.New(`want ["<unix epoch in nanoseconds>", "<log line>"] or with a third element, an object of structured metadata`)
	}
	var ts string
	if err := json.Unmarshal(parts[0], &ts); err != nil {
		return store.LogEntry{}, fmt.Errorf("timestamp %s is not a string: Loki takes unix epoch nanoseconds as a string", parts[0])
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return store.LogEntry{}, fmt.Errorf("timestamp %q is not unix epoch nanoseconds", ts)
	}
	var e store.LogEntry
	e.T = t
	if err := json.Unmarshal(parts[1], &e.Line); err != nil {
		return store.LogEntry{}, fmt.Errorf("log line %s is not a string", parts[1])
	}
	if len(parts) == 3 {
		var md map[string]string
		if err := json.Unmarshal(parts[2], &md); err != nil {
			return store.LogEntry{}, fmt.Errorf("structured metadata %s is not an object of strings", parts[2])
		}
		var b labels.ScratchBuilder
		for k, v := range md {
			b.Add(k, v)
		}
		b.Sort()
		e.Metadata = b.Labels()
	}
	return e, nil
}

// check validates the decoded streams as Loki does and finds every line's
// trace and span ids. Invalid streams and lines are left out and described.
func (h *Handler) check(streams []stream) (good []store.LogStream, refused int, problems []string) {
	window := h.w.TimeWindow()
	note := func(format string, a ...any) {
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf(format, a...))
		}
	}
	for i, s := range streams {
		lset := s.lset
		if s.labels != "" || lset.IsEmpty() {
			var err error
			if lset, err = parseStreamLabels(s.labels); err != nil {
				refused += len(s.Entries)
				note("stream %d: %v", i, err)
				continue
			}
		}
		if err := h.w.ValidateStream(lset); err != nil {
			refused += len(s.Entries)
			note("stream %d %s: %v", i, lset, err)
			continue
		}
		st := store.LogStream{Labels: lset, Entries: s.Entries[:0]}
		fromStream := logids.FromLabels(lset)
		for j, e := range s.Entries {
			switch {
			case len(e.Line) > h.cfg.MaxLineBytes:
				refused++
				note("stream %s line %d: %d bytes, over the limit of %d", lset, j, len(e.Line), h.cfg.MaxLineBytes)
				continue
			}
			if err := window.Check(e.T); err != nil {
				refused++
				note("stream %s line %d: %v", lset, j, err)
				continue
			}
			if err := validMetadata(e.Metadata); err != nil {
				refused++
				note("stream %s line %d: %v", lset, j, err)
				continue
			}
			ids := logids.ExtractWith(e.Metadata, fromStream, e.Line)
			e.TraceID, e.SpanID = ids.Trace, ids.Span
			st.Entries = append(st.Entries, e)
		}
		if len(st.Entries) > 0 {
			good = append(good, st)
		}
	}
	return good, refused, problems
}

// parseStreamLabels parses a protobuf stream's label string,
// {name="value", …}, with Prometheus' parser (the same selector syntax).
func parseStreamLabels(s string) (labels.Labels, error) {
	if strings.TrimSpace(s) == "" {
		return labels.EmptyLabels(), errors.New("stream labels are empty: a stream needs at least one label")
	}
	ls, err := labelParser.ParseMetric(s)
	if err != nil {
		return labels.EmptyLabels(), fmt.Errorf("stream labels %q do not parse: %w", s, err)
	}
	return ls, nil
}

var labelParser = parser.NewParser(parser.Options{})

func validMetadata(md labels.Labels) error {
	var err error
	md.Range(func(l labels.Label) {
		if err == nil && !store.ValidLabelName(l.Name) {
			err = fmt.Errorf("structured metadata name %q is not a valid label name", l.Name)
		}
	})
	return err
}
