// Package otlp runs the OpenTelemetry Collector's OTLP receiver in-process
// (gRPC and HTTP, protobuf and JSON, gzip) and writes what it receives to the
// store before the client is answered.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/lumenobs/lumen/internal/auth"
	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/otlprecv"
	"github.com/lumenobs/lumen/internal/telemetry"
	"github.com/lumenobs/lumen/internal/tlsconf"
	"github.com/lumenobs/lumen/store"
)

// Writer is the part of the store the receiver writes to. Metrics go
// through Prometheus' OTLP translator into an AppenderV2.
type Writer interface {
	WriteTraces(ctx context.Context, td ptrace.Traces) error
	// WriteTraceRequest writes a trace request that came as protobuf,
	// read in place.
	WriteTraceRequest(ctx context.Context, req *store.TraceRequest) error
	WriteLogs(ctx context.Context, ld plog.Logs) error
	AppenderV2(ctx context.Context) storage.AppenderV2
}

// Config configures the OTLP endpoints.
type Config struct {
	// GRPCAddr is the gRPC listen address; empty disables gRPC.
	GRPCAddr string `yaml:"grpc_addr"`
	// HTTPAddr is the HTTP listen address; empty disables HTTP.
	HTTPAddr string `yaml:"http_addr"`
	// MaxRequestBytes bounds one request's size, after decompression for HTTP.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxInFlightItems bounds the spans and log records being written at
	// once. Past it, requests wait up to QueueWait, then are refused with
	// RESOURCE_EXHAUSTED / HTTP 429 and a retry hint.
	MaxInFlightItems int64 `yaml:"max_in_flight_items"`
	// QueueWait is how long a request may wait for room before it is refused.
	QueueWait time.Duration `yaml:"queue_wait"`
	// MaxInFlightBytes bounds the OTLP/HTTP request bytes admitted at once,
	// before they are decoded (as each declares them; compressed bodies
	// count eight times their size); MaxInFlightRequests bounds the
	// OTLP/gRPC requests, admitted as their stream opens. Past them, 429 /
	// RESOURCE_EXHAUSTED with a retry hint.
	MaxInFlightBytes    int64 `yaml:"max_in_flight_bytes"`
	MaxInFlightRequests int   `yaml:"max_in_flight_requests"`
	// GRPCTLS and HTTPTLS, when set, replace the server's shared tls block
	// for one listener.
	GRPCTLS *tlsconf.Server `yaml:"grpc_tls"`
	HTTPTLS *tlsconf.Server `yaml:"http_tls"`
	// Auth, when set, asks every request for the write scope.
	Auth *auth.Authenticator `yaml:"-"`
	// DefaultTenant, when set, turns tenants on: each request is its
	// tenant's (X-Scope-OrgID, or its token's), this one when it names none.
	DefaultTenant string `yaml:"-"`
}

// DefaultConfig returns the standard OTLP ports on all interfaces.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:         "0.0.0.0:4317",
		HTTPAddr:         "0.0.0.0:4318",
		MaxRequestBytes:  32 << 20,
		MaxInFlightItems: 200_000,
		QueueWait:        2 * time.Second,

		MaxInFlightBytes:    256 << 20,
		MaxInFlightRequests: 256,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.GRPCAddr == "" && c.HTTPAddr == "":
		return errors.New("otlp: both the gRPC and the HTTP address are empty")
	case c.MaxRequestBytes < 1024:
		return fmt.Errorf("otlp: max request bytes %d is below 1 KiB", c.MaxRequestBytes)
	case c.MaxInFlightItems < 1:
		return fmt.Errorf("otlp: max in-flight items %d is not positive", c.MaxInFlightItems)
	case c.QueueWait < 0:
		return fmt.Errorf("otlp: queue wait %s is negative", c.QueueWait)
	case c.MaxInFlightBytes < c.MaxRequestBytes || c.MaxInFlightRequests < 1:
		return fmt.Errorf("otlp: max in-flight bytes %d must hold one largest request (%d) and max in-flight requests %d must be positive", c.MaxInFlightBytes, c.MaxRequestBytes, c.MaxInFlightRequests)
	}
	if err := c.GRPCTLS.Or(tlsconf.Server{}).Validate("otlp.grpc_tls"); err != nil {
		return err
	}
	return c.HTTPTLS.Or(tlsconf.Server{}).Validate("otlp.http_tls")
}

// Receiver is the embedded OTLP receiver.
type Receiver struct{ *otlprecv.Receiver }

// New builds the Collector's OTLP receiver with consumers that write to w.
func New(cfg Config, w Writer, log *zap.Logger, m *telemetry.Ingest, version string) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("ingest.otlp")
	if m == nil {
		m = telemetry.NewIngest(nil)
	}
	c := &sink{w: w, log: log, m: m, sem: semaphore.NewWeighted(cfg.MaxInFlightItems), max: cfg.MaxInFlightItems, wait: cfg.QueueWait}
	tc, err := consumer.NewTraces(c.consumeTraces, consumer.WithCapabilities(consumer.Capabilities{MutatesData: true}))
	if err != nil {
		return nil, fmt.Errorf("traces consumer: %w", err)
	}
	lc, err := consumer.NewLogs(c.consumeLogs, consumer.WithCapabilities(consumer.Capabilities{MutatesData: true}))
	if err != nil {
		return nil, fmt.Errorf("logs consumer: %w", err)
	}
	mc, err := consumer.NewMetrics(c.consumeMetrics)
	if err != nil {
		return nil, fmt.Errorf("metrics consumer: %w", err)
	}
	r, err := otlprecv.New(otlprecv.Config{GRPCAddr: cfg.GRPCAddr, HTTPAddr: cfg.HTTPAddr, MaxRequestBytes: cfg.MaxRequestBytes,
		MaxInFlightBytes: cfg.MaxInFlightBytes, MaxInFlightRequests: cfg.MaxInFlightRequests, QueueWait: cfg.QueueWait,
		Auth: cfg.Auth, DefaultTenant: cfg.DefaultTenant, GRPCTLS: cfg.GRPCTLS.Or(tlsconf.Server{}), HTTPTLS: cfg.HTTPTLS.Or(tlsconf.Server{})},
		otlprecv.Consumers{Traces: tc, Logs: lc, Metrics: mc, TraceRequests: c.consumeTraceRequest}, log, "lumen", version)
	if err != nil {
		return nil, err
	}
	return &Receiver{r}, nil
}

// sink writes what the receiver decoded to the store and turns store errors
// into the gRPC statuses the receiver maps to HTTP codes (400, 429, 503).
type sink struct {
	w    Writer
	log  *zap.Logger
	m    *telemetry.Ingest
	sem  *semaphore.Weighted
	max  int64
	wait time.Duration
}

func (s *sink) consumeTraces(ctx context.Context, td ptrace.Traces) error {
	n := td.SpanCount()
	return s.consume(ctx, "traces", n, func(ctx context.Context) error { return s.w.WriteTraces(ctx, td) })
}

// consumeTraceRequest writes a trace request that came as protobuf
// without decoding it into pdata (store.ParseTraceRequest).
func (s *sink) consumeTraceRequest(ctx context.Context, body []byte) error {
	req, err := store.ParseTraceRequest(body)
	if err != nil {
		c := fault.Classify(err)
		s.log.Debug("request refused", zap.String("signal", "traces"), zap.String("reason", c.Reason), zap.Error(err))
		return grpcStatus(c, err.Error())
	}
	defer req.Release()
	return s.consume(ctx, "traces", req.SpanCount(), func(ctx context.Context) error { return s.w.WriteTraceRequest(ctx, req) })
}

func (s *sink) consumeLogs(ctx context.Context, ld plog.Logs) error {
	n := ld.LogRecordCount()
	return s.consume(ctx, "logs", n, func(ctx context.Context) error { return s.w.WriteLogs(ctx, ld) })
}

// promSettings are Prometheus' defaults for OTLP ingestion: metric names
// with unit and type suffixes, escaped to the classic character set;
// service.name and service.instance.id become job and instance, the other
// resource attributes go to target_info.
var promSettings = prometheusremotewrite.Settings{AddMetricSuffixes: true, LookbackDelta: 5 * time.Minute}

func (s *sink) consumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	n := md.DataPointCount()
	return s.consume(ctx, "metrics", n, func(ctx context.Context) error {
		app := s.w.AppenderV2(ctx)
		_, convErr := prometheusremotewrite.NewPrometheusConverter(app).FromMetrics(ctx, md, promSettings)
		if err := ctx.Err(); err != nil {
			_ = app.Rollback()
			return fmt.Errorf("convert OTLP metrics: %w", err)
		}
		// As Prometheus' OTLP endpoint: what converts and is accepted is
		// stored; points refused (too old, too far ahead, out of order, a
		// limit) and metrics that do not convert are the client's to fix,
		// answered as invalid so that exporters do not retry them forever.
		refused := splitAppendErrors(convErr)
		if err := app.Commit(); err != nil {
			return err
		}
		if len(refused) > 0 {
			return fmt.Errorf("%w: %d of %d data points refused, the rest stored; first: %w", fault.ErrInvalid, len(refused), n, refused[0])
		}
		return nil
	})
}

// splitAppendErrors lists the errors joined in err, one per refused data
// point or metric.
func splitAppendErrors(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if parts, ok := joined(e); ok {
			for _, x := range parts {
				walk(x)
			}
			return
		}
		out = append(out, e)
	}
	walk(err)
	return out
}

// joined returns the parts of an error made by errors.Join (whose message is
// its parts' messages, one per line) — not those of an error that wraps
// several with fmt.Errorf, which is one error with several causes.
func joined(e error) ([]error, bool) {
	j, ok := e.(interface{ Unwrap() []error })
	if !ok {
		return nil, false
	}
	parts := j.Unwrap()
	msgs := make([]string, len(parts))
	for i, p := range parts {
		msgs[i] = p.Error()
	}
	return parts, e.Error() == strings.Join(msgs, "\n")
}

func (s *sink) consume(ctx context.Context, signal string, n int, write func(context.Context) error) error {
	s.m.Received.WithLabelValues(signal).Add(float64(n))
	if n == 0 {
		return nil
	}
	weight := min(int64(n), s.max)
	if !s.sem.TryAcquire(weight) {
		wctx, cancel := context.WithTimeout(ctx, s.wait)
		err := s.sem.Acquire(wctx, weight)
		cancel()
		if err != nil {
			s.m.Rejected.WithLabelValues(signal, "overload").Add(float64(n))
			s.log.Warn("overloaded: request refused", zap.String("signal", signal), zap.Int("items", n))
			return grpcStatus(fault.Classify(fault.ErrOverloaded), fmt.Sprintf("lumen is overloaded: more than %d items are being written; retry later", s.max))
		}
	}
	defer s.sem.Release(weight)
	err := write(ctx)
	if err == nil {
		s.m.Stored.WithLabelValues(signal).Add(float64(n))
		return nil
	}
	c := fault.Classify(err)
	s.m.Rejected.WithLabelValues(signal, c.Reason).Add(float64(n))
	if c.HTTP >= 500 {
		s.log.Error("write failed", zap.String("signal", signal), zap.Int("items", n), zap.Error(err))
	} else {
		s.log.Debug("request refused", zap.String("signal", signal), zap.String("reason", c.Reason), zap.Error(err))
	}
	return grpcStatus(c, err.Error())
}

// grpcStatus is the status the receiver answers a class of failure with
// (and maps to HTTP: 400, 429 or 503): a retryable one carries RetryInfo
// over gRPC and becomes a Retry-After header over HTTP.
func grpcStatus(c fault.Class, msg string) error {
	st := status.New(c.GRPC, msg)
	if c.RetryAfter > 0 {
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(c.RetryAfter)}); err == nil {
			st = d
		}
	}
	return st.Err()
}
