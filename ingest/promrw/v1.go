package promrw

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lumenobs/lumen/store"
)

// Remote write 1.0 is stored here rather than by Prometheus' handler, which
// unmarshals the whole request into messages and builds every series'
// labels before it looks the series up: on Prometheus' own queue manager's
// requests (one sample per series, series sent again every scrape) that
// was half of the CPU ingest took. This writer walks the decoded body
// once, finds a series the store's head holds from its label bytes
// (store.AppendLabelKey), and builds labels only for series new to the
// head. What it accepts and refuses, and the answers, are those of
// Prometheus' handler (storage/remote.writeHandler.write, v0.315.0):
//   - a series without __name__, with a name or value that is not UTF-8 or
//     an empty name, or with a name twice is skipped (logged, counted in
//     prometheus_api_remote_write_invalid_labels_samples_total), the rest
//     of the request stored;
//   - a sample more than 10 minutes ahead of the clock, out of order, a
//     duplicate or too old fails the request with 400, nothing stored;
//   - an invalid native histogram: 400; any other store error fails the
//     request as internal/fault classifies it;
//   - exemplars that cannot be stored are dropped (logged at debug).
// A series with exemplars or histograms is decoded with Prometheus' own
// messages and written as its handler writes it.

// maxAhead is how far ahead of the clock a sample may be (Prometheus'
// handler's maxAheadTime).
const maxAhead = 10 * time.Minute

// errFuture is Prometheus' handler's error for such a sample.
var errFuture = fmt.Errorf("%w: timestamp is too far in the future", storage.ErrOutOfBounds)

// encodedAppender is the store's appender's path for series it holds.
type encodedAppender interface {
	AppendEncoded(key []byte, t int64, v float64) (found bool, err error)
}

// errDecode marks a body that is not a 1.0 WriteRequest.
var errDecode = errors.New("remote write 1.0 request does not decode")

// v1Writer writes one request; its buffers are reused across series.
type v1Writer struct {
	app     storage.Appender
	enc     encodedAppender // nil: every series through Append
	log     *zap.Logger
	maxTime int64
	// offered counts the samples and histograms offered to the store,
	// appended those it took; invalid the samples of skipped series.
	offered, appended, invalid int
	outOfOrderExemplars        int

	pairs   []labelPair
	samples []prompb.Sample
	key     []byte
	b       labels.ScratchBuilder
}

type labelPair struct{ name, value []byte }

// writeV1 stores the decoded 1.0 WriteRequest body through app: all of it
// or, on an error, nothing (the appender is rolled back). The error wraps
// errDecode, one of the errors Prometheus' handler answers 400, or a store
// error. A body this decoder refuses is decoded again by Prometheus'
// messages, so that what is a valid request is exactly what it is to
// Prometheus' handler (its decoder skips some malformed unknown fields).
func (h *Handler) writeV1(ctx context.Context, body []byte) (*v1Writer, error) {
	w, err := h.writeV1With(ctx, body, false)
	if errors.Is(err, errDecode) {
		var req prompb.WriteRequest
		if perr := req.Unmarshal(body); perr != nil {
			return w, fmt.Errorf("%w: %w", errDecode, perr)
		}
		return h.writeV1With(ctx, body, true)
	}
	return w, err
}

// writeV1With is writeV1 by this package's decoder or, full, by
// Prometheus' messages.
func (h *Handler) writeV1With(ctx context.Context, body []byte, full bool) (w *v1Writer, err error) {
	app := h.app.Appender(ctx)
	w = &v1Writer{app: app, log: h.log, maxTime: timestamp.FromTime(time.Now().Add(maxAhead)), b: labels.NewScratchBuilder(0)}
	w.enc, _ = app.(encodedAppender)
	defer func() {
		if err != nil {
			_ = app.Rollback()
			return
		}
		err = app.Commit()
	}()
	if full {
		var req prompb.WriteRequest
		if err := req.Unmarshal(body); err != nil {
			return w, fmt.Errorf("%w: %w", errDecode, err)
		}
		for i := range req.Timeseries {
			if err := w.full(&req.Timeseries[i]); err != nil {
				return w, err
			}
		}
		w.done()
		return w, nil
	}
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return w, fmt.Errorf("%w: %w", errDecode, protowire.ParseError(n))
		}
		body = body[n:]
		if num == 1 {
			if typ != protowire.BytesType {
				return w, fmt.Errorf("%w: timeseries (field 1) has wire type %d", errDecode, typ)
			}
			ts, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return w, fmt.Errorf("%w: %w", errDecode, protowire.ParseError(n))
			}
			body = body[n:]
			if err := w.series(ts); err != nil {
				return w, err
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, body)
		if n < 0 {
			return w, fmt.Errorf("%w: %w", errDecode, protowire.ParseError(n))
		}
		if num == 3 {
			// Metadata, kept by v1Metadata once stored: here only
			// checked, as Prometheus' handler decodes it.
			if typ != protowire.BytesType {
				return w, fmt.Errorf("%w: metadata (field 3) has wire type %d", errDecode, typ)
			}
			var mm prompb.MetricMetadata
			v, _ := protowire.ConsumeBytes(body)
			if err := mm.Unmarshal(v); err != nil {
				return w, fmt.Errorf("%w: metadata: %w", errDecode, err)
			}
		}
		body = body[n:]
	}
	w.done()
	return w, nil
}

// done logs what the request dropped.
func (w *v1Writer) done() {
	if w.outOfOrderExemplars > 0 {
		w.log.Warn("out-of-order exemplars dropped", zap.Int("exemplars", w.outOfOrderExemplars))
	}
}

// series writes one TimeSeries message.
func (w *v1Writer) series(b []byte) error {
	w.pairs, w.samples = w.pairs[:0], w.samples[:0]
	whole := b
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: timeseries: %w", errDecode, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 || num == 2:
			if typ != protowire.BytesType {
				return fmt.Errorf("%w: timeseries field %d has wire type %d", errDecode, num, typ)
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: timeseries: %w", errDecode, protowire.ParseError(n))
			}
			b = b[n:]
			if num == 1 {
				p, err := decodeLabel(v)
				if err != nil {
					return err
				}
				w.pairs = append(w.pairs, p)
			} else {
				s, err := decodeSample(v)
				if err != nil {
					return err
				}
				w.samples = append(w.samples, s)
			}
		case num == 3 || num == 4:
			// Exemplars or histograms: Prometheus' messages and path.
			var ts prompb.TimeSeries
			if err := ts.Unmarshal(whole); err != nil {
				return fmt.Errorf("%w: timeseries: %w", errDecode, err)
			}
			return w.full(&ts)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: timeseries: %w", errDecode, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	if w.enc != nil && len(w.samples) > 0 {
		done, err := w.appendEncoded()
		if done || err != nil {
			return err
		}
	}
	ls := w.labels()
	if !w.validLabels(ls, len(w.samples)) {
		return nil
	}
	return w.appendSamples(ls, w.samples)
}

// appendEncoded appends the series' samples to the series the head holds
// with its labels, found by their bytes; done is false when the head holds
// no such series, w.samples then being those left to append.
func (w *v1Writer) appendEncoded() (done bool, err error) {
	w.key = w.key[:0]
	for _, p := range w.pairs {
		w.key = store.AppendLabelKey(w.key, p.name, p.value)
	}
	for i, s := range w.samples {
		found, err := w.enc.AppendEncoded(w.key, s.Timestamp, s.Value)
		if !found {
			w.samples = w.samples[i:]
			return false, nil
		}
		w.offered++
		// Checked after the series is found, as Prometheus' handler checks
		// a series' labels first; a sample appended meanwhile is rolled
		// back with the request.
		if s.Timestamp > w.maxTime {
			return true, w.sampleError(errFuture, s)
		}
		if err != nil {
			return true, w.sampleError(err, s)
		}
		w.appended++
	}
	return true, nil
}

// decodeLabel reads a Label message (last of a repeated field wins, as
// protobuf decoders do).
func decodeLabel(b []byte) (labelPair, error) {
	var p labelPair
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return p, fmt.Errorf("%w: label: %w", errDecode, protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 || num == 2 {
			if typ != protowire.BytesType {
				return p, fmt.Errorf("%w: label field %d has wire type %d", errDecode, num, typ)
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return p, fmt.Errorf("%w: label: %w", errDecode, protowire.ParseError(n))
			}
			b = b[n:]
			if num == 1 {
				p.name = v
			} else {
				p.value = v
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return p, fmt.Errorf("%w: label: %w", errDecode, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return p, nil
}

// decodeSample reads a Sample message.
func decodeSample(b []byte) (prompb.Sample, error) {
	var s prompb.Sample
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return s, fmt.Errorf("%w: sample: %w", errDecode, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return s, fmt.Errorf("%w: sample value: %w", errDecode, protowire.ParseError(n))
			}
			s.Value, b = math.Float64frombits(v), b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return s, fmt.Errorf("%w: sample timestamp: %w", errDecode, protowire.ParseError(n))
			}
			s.Timestamp, b = int64(v), b[n:]
		case num == 1 || num == 2:
			return s, fmt.Errorf("%w: sample field %d has wire type %d", errDecode, num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return s, fmt.Errorf("%w: sample: %w", errDecode, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return s, nil
}

// labels builds the series' labels as Prometheus' handler does (sorted).
func (w *v1Writer) labels() labels.Labels {
	w.b.Reset()
	for _, p := range w.pairs {
		w.b.Add(string(p.name), string(p.value))
	}
	w.b.Sort()
	return w.b.Labels()
}

// validLabels is Prometheus' handler's check of a series; a series that
// fails is skipped with its n samples counted.
func (w *v1Writer) validLabels(ls labels.Labels, n int) bool {
	if !ls.Has(labels.MetricName) || !ls.IsValid(validation) {
		w.log.Warn("remote write series skipped: no metric name, or a name or value that is not UTF-8", zap.Stringer("labels", ls))
		w.invalid += n
		return false
	}
	if name, dup := ls.HasDuplicateLabelNames(); dup {
		w.log.Warn("remote write series skipped: a label name twice", zap.Stringer("labels", ls), zap.String("label", name))
		w.invalid += n
		return false
	}
	return true
}

// appendSamples appends float samples through Append.
func (w *v1Writer) appendSamples(ls labels.Labels, ss []prompb.Sample) error {
	var ref storage.SeriesRef
	for _, s := range ss {
		w.offered++
		if s.Timestamp > w.maxTime {
			return w.sampleError(errFuture, s)
		}
		var err error
		if ref, err = w.app.Append(ref, ls, s.Timestamp, s.Value); err != nil {
			return w.sampleError(err, s)
		}
		w.appended++
	}
	return nil
}

// sampleError logs what Prometheus' handler logs of a refused sample.
func (w *v1Writer) sampleError(err error, s prompb.Sample) error {
	if outOfOrder(err) {
		w.log.Warn("remote write sample refused", zap.Error(err), zap.Int64("timestamp", s.Timestamp))
	}
	return err
}

// full writes a series with exemplars or histograms as Prometheus' handler
// does.
func (w *v1Writer) full(ts *prompb.TimeSeries) error {
	ls := ts.ToLabels(&w.b, nil)
	if !w.validLabels(ls, len(ts.Samples)) {
		return nil
	}
	if err := w.appendSamples(ls, ts.Samples); err != nil {
		return err
	}
	for _, ep := range ts.Exemplars {
		e := ep.ToExemplar(&w.b, nil)
		var err error
		if e.Ts > w.maxTime {
			err = errFuture
		} else {
			_, err = w.app.AppendExemplar(0, ls, e)
		}
		if errors.Is(err, storage.ErrOutOfOrderExemplar) {
			w.outOfOrderExemplars++
		} else if err != nil {
			w.log.Debug("exemplar not stored", zap.Stringer("series", ls), zap.Error(err))
		}
	}
	for _, hp := range ts.Histograms {
		w.offered++
		if hp.Timestamp > w.maxTime {
			return errFuture
		}
		var h *histogram.Histogram
		var fh *histogram.FloatHistogram
		if hp.IsFloatHistogram() {
			fh = hp.ToFloatHistogram()
		} else {
			h = hp.ToIntHistogram()
		}
		// Schemas above the exponential maximum are reduced to it, as
		// Prometheus' handler does.
		if h != nil && histogram.IsExponentialSchemaReserved(h.Schema) && h.Schema > histogram.ExponentialSchemaMax {
			if err := h.ReduceResolution(histogram.ExponentialSchemaMax); err != nil {
				return err
			}
		}
		if fh != nil && histogram.IsExponentialSchemaReserved(fh.Schema) && fh.Schema > histogram.ExponentialSchemaMax {
			if err := fh.ReduceResolution(histogram.ExponentialSchemaMax); err != nil {
				return err
			}
		}
		if _, err := w.app.AppendHistogram(0, ls, hp.Timestamp, h, fh); err != nil {
			if outOfOrder(err) {
				w.log.Warn("remote write histogram refused", zap.Error(err), zap.Int64("timestamp", hp.Timestamp))
			}
			return err
		}
		w.appended++
	}
	return nil
}

// outOfOrder: the errors Prometheus' handler answers 400 so that the
// sender does not retry.
func outOfOrder(err error) bool {
	return errors.Is(err, storage.ErrOutOfOrderSample) || errors.Is(err, storage.ErrOutOfBounds) ||
		errors.Is(err, storage.ErrDuplicateSampleForTimestamp) || errors.Is(err, storage.ErrTooOldSample)
}

// v1Status is Prometheus' handler's status for writeV1's error: 400 for a
// body that does not decode, a sample out of order or out of bounds, an
// invalid histogram; 0 for the rest (store errors, classified by fault).
func v1Status(err error) int {
	var he histogram.Error
	if errors.Is(err, errDecode) || outOfOrder(err) || errors.As(err, &he) {
		return http.StatusBadRequest
	}
	return 0
}

// invalidLabelsCounter finds the counter Prometheus' write handler
// registers for samples of series with invalid labels, so that the 1.0
// path counts in it too.
type invalidLabelsCounter struct {
	prometheus.Registerer
	c prometheus.Counter
}

const invalidLabelsMetric = "prometheus_api_remote_write_invalid_labels_samples_total"

func (r *invalidLabelsCounter) keep(c prometheus.Collector) {
	if ctr, ok := c.(prometheus.Counter); ok && r.c == nil && strings.Contains(ctr.Desc().String(), `"`+invalidLabelsMetric+`"`) {
		r.c = ctr
	}
}

func (r *invalidLabelsCounter) Register(c prometheus.Collector) error {
	r.keep(c)
	return r.Registerer.Register(c)
}

func (r *invalidLabelsCounter) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		r.keep(c)
	}
	r.Registerer.MustRegister(cs...)
}

// validation is the name and value check of Prometheus' handler.
var validation = model.UTF8Validation
