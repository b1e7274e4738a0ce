// Package promrw receives Prometheus remote-write (1.0 and 2.0) through
// Prometheus' own write handler, with size and concurrency limits in front.
package promrw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/klauspost/compress/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lumenobs/lumen/internal/admit"
	"github.com/lumenobs/lumen/internal/telemetry"
)

// Config bounds what one request may cost.
type Config struct {
	// MaxRequestBytes bounds a request body as sent (snappy-compressed).
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxDecodedBytes bounds a request body after snappy decoding.
	MaxDecodedBytes int64 `yaml:"max_decoded_bytes"`
	// MaxInFlight bounds the requests being written at once; past it, a
	// request waits up to QueueWait, then gets 429 with Retry-After.
	MaxInFlight int           `yaml:"max_in_flight"`
	QueueWait   time.Duration `yaml:"queue_wait"`
}

// DefaultConfig returns limits well above what Prometheus sends (its queue
// manager sends at most a few MiB per request).
func DefaultConfig() Config {
	return Config{MaxRequestBytes: 16 << 20, MaxDecodedBytes: 64 << 20, MaxInFlight: 16, QueueWait: 2 * time.Second}
}

// Validate reports the first limit that cannot work.
func (c Config) Validate() error {
	switch {
	case c.MaxRequestBytes < 1024 || c.MaxDecodedBytes < c.MaxRequestBytes:
		return fmt.Errorf("remote write: request limits %d (sent) and %d (decoded) must be at least 1 KiB and in that order", c.MaxRequestBytes, c.MaxDecodedBytes)
	case c.MaxInFlight < 1:
		return fmt.Errorf("remote write: max in flight %d is not positive", c.MaxInFlight)
	case c.QueueWait < 0:
		return fmt.Errorf("remote write: queue wait %s is negative", c.QueueWait)
	}
	return nil
}

// MetadataSetter keeps metric metadata (type, unit, help) by metric name.
type MetadataSetter interface {
	SetMetadata(byName map[string]metadata.Metadata) error
}

// Handler serves POST /api/v1/write.
type Handler struct {
	cfg  Config
	next http.Handler
	meta MetadataSetter
	gate *admit.Gate
	m    *telemetry.Ingest
	log  *zap.Logger
}

// New returns the remote-write handler over app: Prometheus' write handler,
// accepting 1.0 (prometheus.WriteRequest) and 2.0 (io.prometheus.write.v2.Request).
// Metadata of 1.0 requests, which Prometheus' handler does not pass on, goes
// to meta; 2.0 metadata reaches the store through the appender.
func New(cfg Config, app storage.Appendable, meta MetadataSetter, log *zap.Logger, reg prometheus.Registerer, m *telemetry.Ingest) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("ingest.promrw")
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if m == nil {
		m = telemetry.NewIngest(nil)
	}
	next := remote.NewWriteHandler(telemetry.Slog(log), reg, countingAppendable{app, m},
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}, false, false, true)
	return &Handler{cfg: cfg, next: next, meta: meta, gate: admit.New(cfg.MaxInFlight, cfg.QueueWait, "remote-write requests"), m: m, log: log}, nil
}

var errTooLarge = errors.New("request too large")

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.gate.Enter(w, r) {
		h.m.Rejected.WithLabelValues("metrics", "overload").Inc()
		return
	}
	defer h.gate.Leave()

	body, decoded, err := h.readBody(r)
	if err != nil {
		h.m.Rejected.WithLabelValues("metrics", "invalid").Inc()
		code := http.StatusBadRequest
		if errors.Is(err, errTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		http.Error(w, err.Error(), code)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	h.next.ServeHTTP(rec, r)
	if rec.code < 300 && h.meta != nil && !strings.Contains(r.Header.Get("Content-Type"), "io.prometheus.write.v2") {
		if md := v1Metadata(decoded); len(md) > 0 {
			if err := h.meta.SetMetadata(md); err != nil {
				h.log.Warn("metric metadata not stored", zap.Int("metrics", len(md)), zap.Error(err))
			}
		}
	}
	if rec.code >= 300 {
		reason := "invalid"
		if rec.code >= 500 {
			reason = "unavailable"
		}
		h.m.Rejected.WithLabelValues("metrics", reason).Inc()
	}
}

// readBody reads the snappy body within the sent limit and checks the size
// it claims to decode to, so a small body cannot make the decoder allocate
// without bound.
func (h *Handler) readBody(r *http.Request) (body, decoded []byte, err error) {
	body, err = io.ReadAll(io.LimitReader(r.Body, h.cfg.MaxRequestBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(body)) > h.cfg.MaxRequestBytes {
		return nil, nil, fmt.Errorf("%w: body over %d bytes", errTooLarge, h.cfg.MaxRequestBytes)
	}
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, nil, fmt.Errorf("body is not snappy-compressed (block format): %w", err)
	}
	if int64(n) > h.cfg.MaxDecodedBytes {
		return nil, nil, fmt.Errorf("%w: body decodes to %d bytes, over %d", errTooLarge, n, h.cfg.MaxDecodedBytes)
	}
	// A length header can look right on any bytes: decode once (snappy
	// decodes at GB/s) so that a body that is not snappy gets an error that
	// says so; the decoded bytes serve the metadata scan.
	if decoded, err = snappy.Decode(make([]byte, n), body); err != nil {
		return nil, nil, fmt.Errorf("body is not snappy-compressed (block format): %w", err)
	}
	return body, decoded, nil
}

// v1Metadata reads the metadata (field 3) of a decoded 1.0 WriteRequest,
// skipping its time series without decoding them.
func v1Metadata(b []byte) map[string]metadata.Metadata {
	out := map[string]metadata.Metadata{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out
		}
		b = b[n:]
		if num == 3 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return out
			}
			var mm prompb.MetricMetadata
			if err := mm.Unmarshal(v); err == nil && mm.MetricFamilyName != "" {
				out[mm.MetricFamilyName] = metadata.Metadata{Type: model.MetricType(strings.ToLower(mm.Type.String())), Unit: mm.Unit, Help: mm.Help}
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return out
		}
		b = b[n:]
	}
	return out
}

// countingAppendable counts the samples offered and the samples committed.
type countingAppendable struct {
	app storage.Appendable
	m   *telemetry.Ingest
}

func (c countingAppendable) Appender(ctx context.Context) storage.Appender {
	return &countingAppender{Appender: c.app.Appender(ctx), m: c.m}
}

type countingAppender struct {
	storage.Appender
	m *telemetry.Ingest
	n int
}

func (a *countingAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	a.m.Received.WithLabelValues("metrics").Inc()
	ref, err := a.Appender.Append(ref, l, t, v)
	if err == nil {
		a.n++
	}
	return ref, err
}

func (a *countingAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	a.m.Received.WithLabelValues("metrics").Inc()
	ref, err := a.Appender.AppendHistogram(ref, l, t, h, fh)
	if err == nil {
		a.n++
	}
	return ref, err
}

func (a *countingAppender) Commit() error {
	err := a.Appender.Commit()
	if err == nil {
		a.m.Stored.WithLabelValues("metrics").Add(float64(a.n))
	}
	a.n = 0
	return err
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}
