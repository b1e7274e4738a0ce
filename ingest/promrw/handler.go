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
	"sync"
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
	"github.com/lumenobs/lumen/internal/fault"
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
	// MaxInFlightBytes bounds the request bytes in memory at once: bodies
	// being read (as much as each declares) and what they decode to. Past
	// it, a request waits up to QueueWait, then gets 429.
	MaxInFlightBytes int64 `yaml:"max_in_flight_bytes"`
	// BodyTimeout is how long a client may take to send its body; then it
	// gets 408 and its memory is freed. The body is read before a write
	// slot is taken, so slow clients cannot hold the slots.
	BodyTimeout time.Duration `yaml:"body_timeout"`
}

// DefaultConfig returns limits well above what Prometheus sends (its queue
// manager sends at most a few MiB per request).
func DefaultConfig() Config {
	return Config{MaxRequestBytes: 16 << 20, MaxDecodedBytes: 64 << 20, MaxInFlight: 16, QueueWait: 2 * time.Second,
		MaxInFlightBytes: 256 << 20, BodyTimeout: 30 * time.Second}
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
	case c.MaxInFlightBytes < c.MaxDecodedBytes+c.MaxRequestBytes:
		return fmt.Errorf("remote write: max in-flight bytes %d is below one largest request (%d sent + %d decoded)", c.MaxInFlightBytes, c.MaxRequestBytes, c.MaxDecodedBytes)
	case c.BodyTimeout <= 0:
		return fmt.Errorf("remote write: body timeout %s is not positive", c.BodyTimeout)
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
	app  storage.Appendable
	next http.Handler // 2.0
	// invalid is Prometheus' handler's count of samples of series skipped
	// for their labels, which the 1.0 path adds to.
	invalid *invalidLabelsCounter
	meta    MetadataSetter
	gate    *admit.Gate
	bytes   *admit.Bytes
	m       *telemetry.Ingest
	log     *zap.Logger
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
	invalid := &invalidLabelsCounter{Registerer: reg}
	next := remote.NewWriteHandler(telemetry.Slog(log), invalid, countingAppendable{app, m}, accepted, false, false, true)
	return &Handler{cfg: cfg, app: app, next: next, invalid: invalid, meta: meta, gate: admit.New(cfg.MaxInFlight, cfg.QueueWait, "remote-write requests"),
		bytes: admit.NewBytes(cfg.MaxInFlightBytes, cfg.QueueWait, "remote-write requests"), m: m, log: log}, nil
}

// ServeHTTP checks the Content-Type and Content-Encoding (415 before the
// body is read), reads the body within the byte budget and the body
// deadline, then takes a write slot and hands the request to Prometheus'
// handler. Store failures that handler would answer 500 (a full disk, a
// limit, an unavailable store) are answered as internal/fault classifies
// them.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	msg, err := messageType(r.Header)
	if err != nil {
		// The body is refused unread: close the connection rather than
		// have the server read (up to 256 KiB of) it before answering.
		w.Header().Set("Connection", "close")
		h.m.Rejected.WithLabelValues("metrics", "invalid").Inc()
		http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
		return
	}
	held := admit.Declared(r, h.cfg.MaxRequestBytes)
	if !h.bytes.Acquire(w, r, held) {
		h.m.Rejected.WithLabelValues("metrics", "overload").Inc()
		return
	}
	defer func() { h.bytes.Release(held) }()
	body, decoded, err := h.readBody(w, r, &held)
	defer putDecoded(decoded)
	if err != nil {
		if !errors.Is(err, errBudget) {
			h.m.Rejected.WithLabelValues("metrics", fault.HTTPError(w, err).Reason).Inc()
		} else {
			h.m.Rejected.WithLabelValues("metrics", "overload").Inc()
		}
		return
	}
	if !h.gate.Enter(w, r) {
		h.m.Rejected.WithLabelValues("metrics", "overload").Inc()
		return
	}
	defer h.gate.Leave()

	if msg == remoteapi.WriteV1MessageType {
		h.serveV1(w, r, decoded)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	var failed storeError
	rec := &captured{header: http.Header{}, code: http.StatusOK}
	h.next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), storeErrorKey{}, &failed)))
	if rec.code == http.StatusInternalServerError && failed.err != nil {
		c := fault.HTTPError(w, fmt.Errorf("remote write not stored: %w", failed.err))
		h.m.Rejected.WithLabelValues("metrics", c.Reason).Inc()
		if c.HTTP >= 500 {
			h.log.Warn("remote write not stored", zap.Error(failed.err))
		}
		return
	}
	rec.send(w)
	if rec.code >= 300 {
		reason := "invalid"
		if rec.code >= 500 {
			reason = "unavailable"
		}
		h.m.Rejected.WithLabelValues("metrics", reason).Inc()
	}
}

// serveV1 stores a 1.0 request (see v1.go) and answers as Prometheus'
// handler does: 204 when stored, 400 naming what is wrong with the
// request, a store error as internal/fault classifies it. The metadata of a
// stored request is kept.
func (h *Handler) serveV1(w http.ResponseWriter, r *http.Request, decoded []byte) {
	wr, err := h.writeV1(r.Context(), decoded)
	h.m.Received.WithLabelValues("metrics").Add(float64(wr.offered))
	if wr.invalid > 0 && h.invalid.c != nil {
		h.invalid.c.Add(float64(wr.invalid))
	}
	if err != nil {
		if code := v1Status(err); code != 0 {
			h.m.Rejected.WithLabelValues("metrics", "invalid").Inc()
			http.Error(w, err.Error(), code)
			return
		}
		c := fault.HTTPError(w, fmt.Errorf("remote write not stored: %w", err))
		h.m.Rejected.WithLabelValues("metrics", c.Reason).Inc()
		if c.HTTP >= 500 {
			h.log.Warn("remote write not stored", zap.Error(err))
		}
		return
	}
	h.m.Stored.WithLabelValues("metrics").Add(float64(wr.appended))
	w.WriteHeader(http.StatusNoContent)
	if h.meta != nil {
		if md := v1Metadata(decoded); len(md) > 0 {
			if err := h.meta.SetMetadata(md); err != nil {
				h.log.Warn("metric metadata not stored", zap.Int("metrics", len(md)), zap.Error(err))
			}
		}
	}
}

// errBudget: readBody answered 429 itself (no room for the decoded body).
var errBudget = errors.New("no room in the byte budget")

// readBody reads the snappy body within the sent limit and the body
// deadline, checks the size it claims to decode to, so a small body cannot
// make the decoder allocate without bound, and reserves that size in the
// byte budget (held grows by it) before decoding.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, held *int64) (body, decoded []byte, err error) {
	body, err = admit.ReadBody(w, r, h.cfg.MaxRequestBytes, h.cfg.BodyTimeout)
	if errors.Is(err, admit.ErrReadTimeout) {
		return nil, nil, fmt.Errorf("%w: %w", fault.ErrTimeout, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", fault.ErrInvalid, err)
	}
	if int64(len(body)) > h.cfg.MaxRequestBytes {
		return nil, nil, fmt.Errorf("%w: body over %d bytes", fault.ErrTooLarge, h.cfg.MaxRequestBytes)
	}
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: body is not snappy-compressed (block format): %w", fault.ErrInvalid, err)
	}
	if int64(n) > h.cfg.MaxDecodedBytes {
		return nil, nil, fmt.Errorf("%w: body decodes to %d bytes, over %d", fault.ErrTooLarge, n, h.cfg.MaxDecodedBytes)
	}
	if !h.bytes.Acquire(w, r, int64(n)) {
		return nil, nil, errBudget
	}
	*held += int64(n)
	// A length header can look right on any bytes: decode once (snappy
	// decodes at GB/s) so that a body that is not snappy gets an error that
	// says so; the decoded bytes serve the metadata scan.
	if decoded, err = snappy.Decode(getDecoded(n), body); err != nil {
		return nil, nil, fmt.Errorf("%w: body is not snappy-compressed (block format): %w", fault.ErrInvalid, err)
	}
	return body, decoded, nil
}

// decodedPool holds the buffers of decoded bodies: nothing keeps a
// reference into one once its request is answered (labels and metadata are
// copied out of it).
var decodedPool sync.Pool

// maxPooledDecoded bounds the buffers kept.
const maxPooledDecoded = 8 << 20

func getDecoded(n int) []byte {
	if b, ok := decodedPool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

func putDecoded(b []byte) {
	if b != nil && cap(b) <= maxPooledDecoded {
		decodedPool.Put(&b)
	}
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
	failed, _ := ctx.Value(storeErrorKey{}).(*storeError)
	return &countingAppender{Appender: c.app.Appender(ctx), m: c.m, failed: failed}
}

type countingAppender struct {
	storage.Appender
	m      *telemetry.Ingest
	n      int
	failed *storeError
}

// storeError keeps the error of a request's commit, or of an append that
// Prometheus' handler does not classify, for ServeHTTP.
type storeError struct{ err error }

type storeErrorKey struct{}

func (a *countingAppender) note(err error) {
	if err != nil && a.failed != nil && a.failed.err == nil {
		a.failed.err = err
	}
}

func (a *countingAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	a.m.Received.WithLabelValues("metrics").Inc()
	ref, err := a.Appender.Append(ref, l, t, v)
	if err == nil {
		a.n++
	}
	a.note(err)
	return ref, err
}

func (a *countingAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	a.m.Received.WithLabelValues("metrics").Inc()
	ref, err := a.Appender.AppendHistogram(ref, l, t, h, fh)
	if err == nil {
		a.n++
	}
	a.note(err)
	return ref, err
}

func (a *countingAppender) Commit() error {
	err := a.Appender.Commit()
	if err == nil {
		a.m.Stored.WithLabelValues("metrics").Add(float64(a.n))
	}
	a.note(err)
	a.n = 0
	return err
}

// captured holds Prometheus' handler's answer until ServeHTTP decides to
// send it.
type captured struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (c *captured) Header() http.Header         { return c.header }
func (c *captured) WriteHeader(code int)        { c.code = code }
func (c *captured) Write(b []byte) (int, error) { return c.body.Write(b) }

func (c *captured) send(w http.ResponseWriter) {
	for k, v := range c.header {
		w.Header()[k] = v
	}
	w.WriteHeader(c.code)
	_, _ = w.Write(c.body.Bytes()) // the client went away; nothing to do
}
