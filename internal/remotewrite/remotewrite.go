// Package remotewrite writes metrics to a Prometheus remote-write receiver
// (Mimir, Thanos Receive, Cortex, VictoriaMetrics, Prometheus) through a
// durable queue: an appender's commit becomes remote write 1.0 requests —
// samples, native histograms, exemplars and the metric families' metadata
// — that are on disk when Commit returns and are sent by Prometheus' own
// remote-write client, retried until the receiver takes them.
package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/sendq"
)

// Config is where and how requests are sent.
type Config struct {
	// URL is the receiver's remote-write endpoint, e.g.
	// http://mimir:8080/api/v1/push.
	URL string
	// HTTP is the client's auth and TLS, as Prometheus' remote_write
	// takes them.
	HTTP config_util.HTTPClientConfig
	// Headers are sent with every request (e.g. X-Scope-OrgID).
	Headers map[string]string
	// Timeout bounds one request.
	Timeout time.Duration
	// MaxSamplesPerRequest splits a commit into requests of at most so
	// many samples and histograms (Prometheus' max_samples_per_send).
	MaxSamplesPerRequest int
}

// NewSend is the queue's send function for cfg: Prometheus' remote-write
// client; a 5xx, a 429 or a network error is retried, any other refusal
// drops the request (the receiver will never take it).
func NewSend(cfg Config) (sendq.Send, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("remote write URL %q: want http(s)://host/path", cfg.URL)
	}
	c, err := remote.NewWriteClient("lumen", &remote.ClientConfig{
		URL:              &config_util.URL{URL: u},
		Timeout:          model.Duration(cfg.Timeout),
		HTTPClientConfig: cfg.HTTP,
		Headers:          cfg.Headers,
		RetryOnRateLimit: true,
		WriteProtoMsg:    remoteapi.WriteV1MessageType,
	})
	if err != nil {
		return nil, fmt.Errorf("remote write to %s: %w", cfg.URL, err)
	}
	return func(ctx context.Context, body []byte) error {
		_, err := c.Store(ctx, body, 0)
		if err == nil {
			return nil
		}
		err = fmt.Errorf("remote write to %s: %w", cfg.URL, err)
		var rec remote.RecoverableError
		if errors.As(err, &rec) {
			return err
		}
		return sendq.Permanent(err)
	}, nil
}

// Appendable makes appenders whose commits go to the queues as remote
// write 1.0: each series always to the same queue (by its labels' hash),
// so that with one sender a queue its samples reach the backend in the
// order they were committed, as Prometheus' shards keep them.
type Appendable struct {
	qs  []*sendq.Queue
	max int
}

// New returns the appendable over qs (at least one); a commit is cut into
// requests of at most maxPerRequest samples and histograms.
func New(qs []*sendq.Queue, maxPerRequest int) *Appendable {
	return &Appendable{qs: qs, max: max(maxPerRequest, 1)}
}

// AppenderV2 implements storage.AppendableV2.
func (a *Appendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &appender{a: a, ctx: ctx, series: map[uint64][]int{}, families: map[string]bool{}}
}

// appender buffers one commit.
type appender struct {
	a        *Appendable
	ctx      context.Context
	series   map[uint64][]int // labels' hash → indexes in ts (a collision told apart by the labels)
	lsets    []labels.Labels  // of ts, by index
	hashes   []uint64         // of ts, by index
	ts       []prompb.TimeSeries
	meta     []prompb.MetricMetadata
	families map[string]bool
}

// Append implements storage.AppenderV2. The start timestamp is not sent
// (remote write 1.0 has no place for it).
func (a *appender) Append(ref storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	if ls.IsEmpty() {
		return 0, fmt.Errorf("%w: a series without labels", storage.ErrOutOfBounds)
	}
	s := a.seriesOf(ls)
	switch {
	case h != nil:
		s.Histograms = append(s.Histograms, prompb.FromIntHistogram(t, h))
	case fh != nil:
		s.Histograms = append(s.Histograms, prompb.FromFloatHistogram(t, fh))
	default:
		s.Samples = append(s.Samples, prompb.Sample{Timestamp: t, Value: v})
	}
	for _, e := range opts.Exemplars {
		s.Exemplars = append(s.Exemplars, exemplarOf(e))
	}
	if family := familyOf(ls, opts); family != "" && !opts.Metadata.IsEmpty() && !a.families[family] {
		a.families[family] = true
		a.meta = append(a.meta, metadataOf(family, opts.Metadata))
	}
	return ref, nil
}

// seriesOf is the commit's series of labels ls, added if new.
func (a *appender) seriesOf(ls labels.Labels) *prompb.TimeSeries {
	h := ls.Hash()
	for _, i := range a.series[h] {
		if labels.Equal(a.lsets[i], ls) {
			return &a.ts[i]
		}
	}
	i := len(a.ts)
	a.series[h] = append(a.series[h], i)
	a.lsets = append(a.lsets, ls)
	a.hashes = append(a.hashes, h)
	a.ts = append(a.ts, prompb.TimeSeries{Labels: prompb.FromLabels(ls, make([]prompb.Label, 0, ls.Len()))})
	return &a.ts[i]
}

func familyOf(ls labels.Labels, opts storage.AppendV2Options) string {
	if opts.MetricFamilyName != "" {
		return opts.MetricFamilyName
	}
	return ls.Get(labels.MetricName)
}

func exemplarOf(e exemplar.Exemplar) prompb.Exemplar {
	return prompb.Exemplar{Labels: prompb.FromLabels(e.Labels, nil), Value: e.Value, Timestamp: e.Ts}
}

func metadataOf(family string, m metadata.Metadata) prompb.MetricMetadata {
	return prompb.MetricMetadata{Type: prompb.FromMetadataType(m.Type), MetricFamilyName: family, Help: m.Help, Unit: m.Unit}
}

// Commit queues the commit's requests, each series' samples on its own
// queue: when it returns nil they are on disk. The metric families'
// metadata goes with the first queue's. sendq.ErrFull when a queue has no
// room (what was queued before the full one stays queued: a retried
// commit sends those samples twice, which receivers take as duplicates).
func (a *appender) Commit() error {
	defer a.reset()
	n := len(a.a.qs)
	byQueue := make([][]int, n) // indexes in ts
	for i := range a.ts {
		q := int(a.hashes[i] % uint64(n))
		byQueue[q] = append(byQueue[q], i)
	}
	var req prompb.WriteRequest
	flush := func(q int, ts []prompb.TimeSeries, meta []prompb.MetricMetadata, items int) error {
		req.Timeseries, req.Metadata = ts, meta
		b, err := proto.Marshal(&req)
		if err != nil {
			return fmt.Errorf("remote write request: %w", err)
		}
		err = a.a.qs[q].Offer(a.ctx, snappy.Encode(nil, b), items)
		if errors.Is(err, sendq.ErrFull) {
			// The store's overload: 429 / RESOURCE_EXHAUSTED with a hint.
			return fmt.Errorf("%w: %w", fault.ErrOverloaded, err)
		}
		return err
	}
	ts := make([]prompb.TimeSeries, 0, len(a.ts))
	for q, idx := range byQueue {
		var meta []prompb.MetricMetadata
		if q == 0 {
			meta = a.meta
		}
		ts, items := ts[:0], 0
		for _, i := range idx {
			n := len(a.ts[i].Samples) + len(a.ts[i].Histograms)
			if items > 0 && items+n > a.a.max {
				if err := flush(q, ts, meta, items); err != nil {
					return err
				}
				ts, items, meta = ts[:0], 0, nil
			}
			ts = append(ts, a.ts[i])
			items += n
		}
		if len(ts) > 0 || len(meta) > 0 {
			if err := flush(q, ts, meta, items); err != nil {
				return err
			}
		}
	}
	return nil
}

// Rollback drops the commit.
func (a *appender) Rollback() error {
	a.reset()
	return nil
}

func (a *appender) reset() {
	clear(a.series)
	clear(a.families)
	a.ts, a.meta, a.lsets, a.hashes = nil, nil, nil, nil
}

// Appender implements storage.Appendable: Prometheus' first appender
// interface, which the remote-write handler and recording rules use, over
// the same commits.
func (a *Appendable) Appender(ctx context.Context) storage.Appender {
	return &appenderV1{appender: a.AppenderV2(ctx).(*appender)}
}

// appenderV1 is Prometheus' first appender interface over one commit.
type appenderV1 struct{ *appender }

func (a *appenderV1) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	return a.appender.Append(ref, l, 0, t, v, nil, nil, storage.AppendV2Options{})
}

func (a *appenderV1) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.appender.Append(ref, l, 0, t, 0, h, fh, storage.AppendV2Options{})
}

// AppendSTZeroSample and AppendHistogramSTZeroSample add the zero sample
// at the start timestamp, as Prometheus' TSDB does.
func (a *appenderV1) AppendSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64) (storage.SeriesRef, error) {
	if st >= t {
		return ref, storage.ErrOutOfOrderST
	}
	return a.appender.Append(ref, l, 0, st, 0, nil, nil, storage.AppendV2Options{})
}

func (a *appenderV1) AppendHistogramSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	if st >= t {
		return ref, storage.ErrOutOfOrderST
	}
	if h != nil {
		return a.appender.Append(ref, l, 0, st, 0, &histogram.Histogram{CounterResetHint: histogram.CounterReset, Schema: h.Schema, ZeroThreshold: h.ZeroThreshold, CustomValues: h.CustomValues}, nil, storage.AppendV2Options{})
	}
	return a.appender.Append(ref, l, 0, st, 0, nil, &histogram.FloatHistogram{CounterResetHint: histogram.CounterReset, Schema: fh.Schema, ZeroThreshold: fh.ZeroThreshold, CustomValues: fh.CustomValues}, storage.AppendV2Options{})
}

func (a *appenderV1) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	if l.IsEmpty() {
		return 0, fmt.Errorf("%w: an exemplar of a series without labels", storage.ErrOutOfBounds)
	}
	s := a.seriesOf(l)
	s.Exemplars = append(s.Exemplars, exemplarOf(e))
	return ref, nil
}

func (a *appenderV1) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	if family := l.Get(labels.MetricName); family != "" && !m.IsEmpty() && !a.families[family] {
		a.families[family] = true
		a.meta = append(a.meta, metadataOf(family, m))
	}
	return ref, nil
}

func (a *appenderV1) SetOptions(*storage.AppendOptions) {}
