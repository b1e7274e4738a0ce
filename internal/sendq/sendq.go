// Package sendq is a durable queue of requests to a remote backend: a
// request offered is on disk (written with fsync) when Offer returns, and is
// deleted only once the backend took it or refused it for good; sending
// retries with backoff for as long as it takes, across restarts. It is the
// Collector's exporter helper with its persistent queue on the contrib
// file_storage extension (docs/decisions.md, "Remote backends"), carrying
// requests already encoded for the backend, so that what is sent is what
// was acknowledged, byte for byte.
package sendq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exporterhelper/xexporterhelper"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Signal is what a queue carries: it names the queue's metrics as the
// Collector's exporters name them (otelcol_exporter_sent_metric_points,
// …_log_records, …_spans).
type Signal string

// The signals.
const (
	Metrics Signal = "metrics"
	Logs    Signal = "logs"
	Traces  Signal = "traces"
)

// Config is one queue's settings.
type Config struct {
	// Dir holds the queue's files (created if missing).
	Dir string
	// MaxBytes bounds the bytes queued (encoded requests): past it Offer
	// fails with ErrFull.
	MaxBytes int64
	// Senders is how many requests are sent at once.
	Senders int
	// Timeout bounds one send.
	Timeout time.Duration
	// InitialInterval and MaxInterval bound the backoff between retries
	// of a request; a request is retried until it is sent or refused for
	// good, however long that takes.
	InitialInterval, MaxInterval time.Duration
}

// Send sends one request's bytes. An error made by Permanent (the backend
// refused the request for good: a 4xx) drops the request; any other is
// retried. A Retry-After the backend gave may be returned with RetryAfter.
type Send func(ctx context.Context, body []byte) error

// Permanent marks err as the backend refusing a request for good.
func Permanent(err error) error { return consumererror.NewPermanent(err) }

// RetryAfter marks err as retryable after at least d (the backend's
// Retry-After).
func RetryAfter(err error, d time.Duration) error { return exporterhelper.NewThrottleRetry(err, d) }

// ErrFull is Offer's error when the queue holds MaxBytes.
var ErrFull = errors.New("the queue to the remote backend is full")

// Queue is one durable queue and its senders.
type Queue struct {
	name    string
	storage extension.Extension
	exp     component.Component
	offer   func(ctx context.Context) error
}

// Open opens (or creates) the queue in cfg.Dir and starts sending what it
// holds — what an earlier process left unsent too — with send. name tells
// the queue's metrics and logs apart (e.g. "metrics"); mp takes its
// metrics (the Collector's exporter metrics: queue size and capacity, items
// sent and failed).
func Open(ctx context.Context, name string, signal Signal, cfg Config, send Send, log *zap.Logger, mp metric.MeterProvider) (*Queue, error) {
	if cfg.MaxBytes <= 0 || cfg.Senders <= 0 || cfg.Timeout <= 0 {
		return nil, fmt.Errorf("queue %s: max bytes, senders and timeout must be positive", name)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("queue %s: %w", name, err)
	}
	log = log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return keptAtShutdown{c} }))
	tel := component.TelemetrySettings{Logger: log, TracerProvider: nooptrace.NewTracerProvider(), MeterProvider: mp, Resource: pcommon.NewResource()}

	storageID := component.MustNewIDWithName("file_storage", name)
	sf := filestorage.NewFactory()
	scfg := sf.CreateDefaultConfig().(*filestorage.Config)
	scfg.Directory = cfg.Dir
	scfg.FSync = true
	scfg.Timeout = time.Second
	storage, err := sf.Create(ctx, extension.Settings{ID: storageID, TelemetrySettings: tel, BuildInfo: component.NewDefaultBuildInfo()}, scfg)
	if err != nil {
		return nil, fmt.Errorf("queue %s: its storage: %w", name, err)
	}
	h := host{storageID: storage}
	if err := storage.Start(ctx, h); err != nil {
		return nil, fmt.Errorf("queue %s: its storage in %s: %w", name, cfg.Dir, err)
	}

	qcfg := exporterhelper.NewDefaultQueueConfig()
	qcfg.Sizer = exporterhelper.RequestSizerTypeBytes
	qcfg.QueueSize = cfg.MaxBytes
	qcfg.NumConsumers = cfg.Senders
	qcfg.StorageID = &storageID
	qcfg.Batch = configoptional.None[exporterhelper.BatchConfig]()
	retry := configretry.NewDefaultBackOffConfig()
	retry.InitialInterval = cfg.InitialInterval
	retry.MaxInterval = cfg.MaxInterval
	retry.MaxElapsedTime = 0 // until sent: the default gives up after 5 minutes
	opts := []exporterhelper.Option{
		exporterhelper.WithRetry(retry),
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{Timeout: cfg.Timeout}),
		xexporterhelper.WithQueueBatch(configoptional.Some(qcfg), xexporterhelper.QueueBatchSettings{Encoding: encoding{}}),
	}
	push := func(ctx context.Context, r xexporterhelper.Request) error {
		return send(ctx, r.(*request).body)
	}
	set := exporter.Settings{ID: component.MustNewIDWithName("lumen", name), TelemetrySettings: tel, BuildInfo: component.NewDefaultBuildInfo()}
	q := &Queue{name: name, storage: storage}
	switch signal {
	case Metrics:
		exp, err := xexporterhelper.NewMetricsRequest(ctx, set, fromContext[pmetric.Metrics], push, opts...)
		q.exp, q.offer = exp, func(ctx context.Context) error { return exp.ConsumeMetrics(ctx, pmetric.NewMetrics()) }
		if err != nil {
			return nil, q.failed(ctx, err)
		}
	case Logs:
		exp, err := xexporterhelper.NewLogsRequest(ctx, set, fromContext[plog.Logs], push, opts...)
		q.exp, q.offer = exp, func(ctx context.Context) error { return exp.ConsumeLogs(ctx, plog.NewLogs()) }
		if err != nil {
			return nil, q.failed(ctx, err)
		}
	case Traces:
		exp, err := xexporterhelper.NewTracesRequest(ctx, set, fromContext[ptrace.Traces], push, opts...)
		q.exp, q.offer = exp, func(ctx context.Context) error { return exp.ConsumeTraces(ctx, ptrace.NewTraces()) }
		if err != nil {
			return nil, q.failed(ctx, err)
		}
	default:
		return nil, q.failed(ctx, fmt.Errorf("unknown signal %q", signal))
	}
	if err := q.exp.Start(ctx, h); err != nil {
		return nil, q.failed(ctx, err)
	}
	return q, nil
}

func (q *Queue) failed(ctx context.Context, err error) error {
	_ = q.storage.Shutdown(ctx)
	return fmt.Errorf("queue %s: %w", q.name, err)
}

// Offer queues one request of items items, encoded for the backend. When
// it returns nil the request is on disk and will be sent; ErrFull when the
// queue holds MaxBytes.
func (q *Queue) Offer(ctx context.Context, body []byte, items int) error {
	err := q.offer(context.WithValue(ctx, offered{}, &request{body: body, items: items}))
	if errors.Is(err, exporterhelper.ErrQueueIsFull) {
		return ErrFull
	}
	if err != nil {
		return fmt.Errorf("queue %s: %w", q.name, err)
	}
	return nil
}

// Close stops sending (what is queued stays on disk for the next start)
// and closes the queue's files.
func (q *Queue) Close(ctx context.Context) error {
	err := q.exp.Shutdown(ctx)
	return errors.Join(err, q.storage.Shutdown(ctx))
}

// offered is the context key that carries an offered request to the
// exporter helper's converter: the helper takes pdata, the queue takes
// requests already encoded.
type offered struct{}

func fromContext[T any](ctx context.Context, _ T) (xexporterhelper.Request, error) {
	r, ok := ctx.Value(offered{}).(*request)
	if !ok {
		return nil, errors.New("no request offered")
	}
	return r, nil
}

// request is one encoded request and how many items it holds.
type request struct {
	body  []byte
	items int
}

func (r *request) ItemsCount() int { return r.items }
func (r *request) BytesSize() int  { return len(r.body) }

// MergeSplit is not used: the queue does not batch (each request was made
// whole by its writer).
func (r *request) MergeSplit(context.Context, int, exporterhelper.RequestSizerType, xexporterhelper.Request) ([]xexporterhelper.Request, error) {
	return nil, errors.New("requests of the queue are not merged or split")
}

// encoding stores a request as its item count (uvarint) and its bytes.
type encoding struct{}

func (encoding) Marshal(_ context.Context, r xexporterhelper.Request) ([]byte, error) {
	req := r.(*request)
	b := binary.AppendUvarint(make([]byte, 0, len(req.body)+binary.MaxVarintLen64), uint64(req.items))
	return append(b, req.body...), nil
}

func (encoding) Unmarshal(b []byte) (context.Context, xexporterhelper.Request, error) {
	items, n := binary.Uvarint(b)
	if n <= 0 || items > math.MaxInt32 {
		return context.Background(), nil, errors.New("queued request: bad item count")
	}
	return context.Background(), &request{body: b[n:], items: int(items)}, nil
}

// host serves the queue's storage extension to the exporter helper.
type host map[component.ID]component.Component

func (h host) GetExtensions() map[component.ID]component.Component { return h }

// Dir is where a queue named name keeps its files under dataDir.
func Dir(dataDir, name string) string { return filepath.Join(dataDir, "queue", name) }

// MeterProvider is an OpenTelemetry meter provider whose instruments are
// served by reg, for the queues' metrics (otelcol_exporter_queue_size,
// otelcol_exporter_queue_capacity, otelcol_exporter_sent_*,
// otelcol_exporter_send_failed_*, labelled exporter="lumen/<name>").
func MeterProvider(reg prometheus.Registerer) (metric.MeterProvider, error) {
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("queue metrics: %w", err)
	}
	return sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)), nil
}

// keptAtShutdown rewrites the exporter helper's "Exporting failed.
// Dropping data." for a send the shutdown interrupted: the persistent queue
// keeps that request for the next start, so it is said as such, at info.
type keptAtShutdown struct{ zapcore.Core }

func (c keptAtShutdown) With(fs []zapcore.Field) zapcore.Core { return keptAtShutdown{c.Core.With(fs)} }

func (c keptAtShutdown) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c keptAtShutdown) Write(e zapcore.Entry, fs []zapcore.Field) error {
	if strings.HasPrefix(e.Message, "Exporting failed. Dropping data.") {
		for _, f := range fs {
			if err, ok := f.Interface.(error); ok && f.Key == "error" && strings.Contains(err.Error(), "interrupted due to shutdown") {
				e.Level, e.Message = zapcore.InfoLevel, "sending interrupted by the shutdown: the request stays queued for the next start"
				fs = slices.DeleteFunc(slices.Clone(fs), func(f zapcore.Field) bool { return f.Key == "dropped_items" })
				if !c.Core.Enabled(e.Level) {
					return nil
				}
				break
			}
		}
	}
	return c.Core.Write(e, fs)
}
