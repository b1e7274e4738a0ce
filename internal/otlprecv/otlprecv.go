// Package otlprecv builds the OpenTelemetry Collector's OTLP receiver
// (gRPC and HTTP, protobuf and JSON, compressed or not) in-process, with
// the caller's consumers: `lumen serve` writes what it receives to the
// store, `lumen agent` to its buffer.
package otlprecv

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configauth"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configmiddleware"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/auth"
	"github.com/lumenobs/lumen/internal/tlsconf"
)

// Config is where the receiver listens and how large a request may be.
type Config struct {
	GRPCAddr        string // empty disables gRPC
	HTTPAddr        string // empty disables HTTP
	MaxRequestBytes int64  // after decompression, for HTTP
	// MaxInFlightBytes bounds the HTTP request bytes admitted at once,
	// before decoding, and MaxInFlightRequests the gRPC requests (see
	// admission); QueueWait is how long an HTTP request may wait for room.
	// Zero: no admission.
	MaxInFlightBytes    int64
	MaxInFlightRequests int
	QueueWait           time.Duration
	// Middleware, when set, is the caller's Collector server middleware
	// (an extension implementing extensionmiddleware.HTTPServer and
	// GRPCServer), run before a request's body is read and before the
	// admission: `lumen agent` bounds its relay with it. It may add a gRPC
	// tap handle only when the admission is off (gRPC takes one).
	Middleware component.Component
	// Auth, when set, asks every request for credentials holding the
	// write scope (auth.go).
	Auth *auth.Authenticator
	// DefaultTenant, when set, turns tenants on: each request's context
	// carries its tenant (X-Scope-OrgID, or its token's), this one when it
	// names none.
	DefaultTenant string
	// GRPCTLS and HTTPTLS are the listeners' TLS (off when they have no
	// certificate).
	GRPCTLS, HTTPTLS tlsconf.Server
}

// Connection hygiene on both listeners: a client must send its request
// within a minute and may keep an idle connection two; gRPC connections
// carry at most 100 streams at once, and clients may not ping more often
// than every 10 s (gRPC's keepalive enforcement; abusers are closed).
const (
	readTimeout          = time.Minute
	readHeaderTimeout    = 10 * time.Second
	idleTimeout          = 2 * time.Minute
	maxConcurrentStreams = 100
	minPingInterval      = 10 * time.Second
)

// Consumers receive what the receiver decoded; the client is answered
// with their error (mapped to gRPC and HTTP statuses by the receiver).
type Consumers struct {
	Traces  consumer.Traces
	Logs    consumer.Logs
	Metrics consumer.Metrics
	// TraceRequests, when set, takes trace requests that arrive as
	// protobuf (gRPC) as their bytes, an ExportTraceServiceRequest,
	// instead of Traces; it must not keep body. Its error is answered as
	// a consumer's.
	TraceRequests func(ctx context.Context, body []byte) error
}

// Receiver is the embedded OTLP receiver.
type Receiver struct {
	traces     receiver.Traces // HTTP; nil when off
	grpc       *grpcServer     // nil when off
	telemetry  component.TelemetrySettings
	admission  *admission
	middleware component.Component
	auth       *authn
	traceBytes *traceBytes
}

// New builds the receiver. The factory shares one receiver per config, so
// the three signals are served by the same listeners.
func New(cfg Config, c Consumers, log *zap.Logger, command, version string) (*Receiver, error) {
	f := otlpreceiver.NewFactory()
	rc := f.CreateDefaultConfig().(*otlpreceiver.Config)
	r := &Receiver{}
	var middlewares []configmiddleware.Config
	if cfg.MaxInFlightBytes > 0 && cfg.MaxInFlightRequests > 0 {
		r.admission = newAdmission(cfg)
		middlewares = []configmiddleware.Config{{ID: admissionID}}
	}
	if cfg.Middleware != nil {
		r.middleware = cfg.Middleware
		middlewares = append([]configmiddleware.Config{{ID: middlewareID}}, middlewares...)
	}
	httpMiddlewares := middlewares
	if cfg.Auth != nil || cfg.DefaultTenant != "" {
		r.auth = &authn{a: cfg.Auth, defaultTenant: cfg.DefaultTenant}
		// First on HTTP: credentials are checked before anything is read.
		httpMiddlewares = append([]configmiddleware.Config{{ID: authID}}, middlewares...)
	}
	rc.Protocols.GRPC = configoptional.None[configgrpc.ServerConfig]()
	if cfg.GRPCAddr != "" {
		// The Collector's OTLP receiver's defaults.
		g := configgrpc.NewDefaultServerConfig()
		g.ReadBufferSize = 512 * 1024
		g.NetAddr.Endpoint = cfg.GRPCAddr
		g.MaxRecvMsgSizeMiB = int((cfg.MaxRequestBytes + 1<<20 - 1) >> 20)
		g.MaxConcurrentStreams = maxConcurrentStreams
		g.Keepalive = configoptional.Some(configgrpc.KeepaliveServerConfig{
			ServerParameters:  configoptional.Some(configgrpc.KeepaliveServerParameters{MaxConnectionIdle: idleTimeout}),
			EnforcementPolicy: configoptional.Some(configgrpc.KeepaliveEnforcementPolicy{MinTime: minPingInterval, PermitWithoutStream: true}),
		})
		g.Middlewares = middlewares
		if r.auth != nil {
			g.Auth = configoptional.Some(configauth.Config{AuthenticatorID: authID})
		}
		if cfg.GRPCTLS.Enabled() {
			g.TLS = configoptional.Some(cfg.GRPCTLS.Collector())
		}
		if err := g.Validate(); err != nil {
			return nil, fmt.Errorf("otlp grpc config: %w", err)
		}
		r.grpc = &grpcServer{cfg: g, c: c, log: log}
	}
	if cfg.HTTPAddr != "" && c.TraceRequests != nil {
		// Innermost: it sees the request as the receiver would.
		r.traceBytes = &traceBytes{consume: c.TraceRequests}
		httpMiddlewares = append(slices.Clip(httpMiddlewares), configmiddleware.Config{ID: traceBytesID})
	}
	if cfg.HTTPAddr != "" {
		h := rc.Protocols.HTTP.GetOrInsertDefault()
		h.ServerConfig.NetAddr.Endpoint = cfg.HTTPAddr
		h.ServerConfig.MaxRequestBodySize = cfg.MaxRequestBytes
		h.ServerConfig.ReadTimeout = readTimeout
		h.ServerConfig.ReadHeaderTimeout = readHeaderTimeout
		h.ServerConfig.Keepalive = configoptional.Some(confighttp.KeepaliveServerConfig{IdleTimeout: idleTimeout})
		h.ServerConfig.Middlewares = httpMiddlewares
		if cfg.HTTPTLS.Enabled() {
			h.ServerConfig.TLS = configoptional.Some(cfg.HTTPTLS.Collector())
		}
	} else {
		rc.Protocols.HTTP = configoptional.None[otlpreceiver.HTTPConfig]()
	}
	set := receiver.Settings{
		ID: component.NewID(f.Type()),
		TelemetrySettings: component.TelemetrySettings{
			Logger:         log.Named("collector"),
			TracerProvider: tracenoop.NewTracerProvider(),
			MeterProvider:  metricnoop.NewMeterProvider(),
			Resource:       pcommon.NewResource(),
		},
		BuildInfo: component.BuildInfo{Command: command, Description: "Lumen", Version: version},
	}
	r.telemetry = set.TelemetrySettings
	if cfg.HTTPAddr == "" {
		return r, nil
	}
	if err := rc.Validate(); err != nil {
		return nil, fmt.Errorf("otlp receiver config: %w", err)
	}
	ctx := context.Background()
	var err error
	if r.traces, err = f.CreateTraces(ctx, set, rc, c.Traces); err != nil {
		return nil, fmt.Errorf("otlp traces receiver: %w", err)
	}
	if _, err = f.CreateLogs(ctx, set, rc, c.Logs); err != nil {
		return nil, fmt.Errorf("otlp logs receiver: %w", err)
	}
	if _, err = f.CreateMetrics(ctx, set, rc, c.Metrics); err != nil {
		return nil, fmt.Errorf("otlp metrics receiver: %w", err)
	}
	return r, nil
}

// Start opens the listeners. It fails if an address cannot be bound.
func (r *Receiver) Start(ctx context.Context) error {
	h := host{admission: r.admission, middleware: r.middleware, auth: r.auth, traceBytes: r.traceBytes}
	if r.grpc != nil {
		if err := r.grpc.start(ctx, h, r.telemetry); err != nil {
			return fmt.Errorf("start otlp receiver: %w", err)
		}
	}
	if r.traces != nil {
		if err := r.traces.Start(ctx, h); err != nil {
			if r.grpc != nil {
				r.grpc.shutdown()
			}
			return fmt.Errorf("start otlp receiver: %w", err)
		}
	}
	return nil
}

// Shutdown stops accepting requests and waits for those in progress. Safe
// without Start.
func (r *Receiver) Shutdown(ctx context.Context) error {
	var err error
	if r.traces != nil {
		err = r.traces.Shutdown(ctx)
	}
	if r.grpc != nil {
		r.grpc.shutdown()
	}
	if err != nil {
		return fmt.Errorf("stop otlp receiver: %w", err)
	}
	return nil
}

// host offers the receiver the admission middleware and the caller's,
// when there are.
type host struct {
	admission  *admission
	middleware component.Component
	auth       *authn
	traceBytes *traceBytes
}

var middlewareID = component.MustNewID("lumen_middleware")

func (h host) GetExtensions() map[component.ID]component.Component {
	ext := map[component.ID]component.Component{}
	if h.admission != nil {
		ext[admissionID] = h.admission
	}
	if h.middleware != nil {
		ext[middlewareID] = h.middleware
	}
	if h.auth != nil {
		ext[authID] = *h.auth
	}
	if h.traceBytes != nil {
		ext[traceBytesID] = h.traceBytes
	}
	if len(ext) == 0 {
		return nil
	}
	return ext
}

// Refused counts the requests the admission refused before decoding.
func (r *Receiver) Refused() uint64 {
	if r.admission == nil {
		return 0
	}
	return r.admission.refused.Load()
}
