// Package otlprecv builds the OpenTelemetry Collector's OTLP receiver
// (gRPC and HTTP, protobuf and JSON, compressed or not) in-process, with
// the caller's consumers: `lumen serve` writes what it receives to the
// store, `lumen agent` to its buffer.
package otlprecv

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
)

// Config is where the receiver listens and how large a request may be.
type Config struct {
	GRPCAddr        string // empty disables gRPC
	HTTPAddr        string // empty disables HTTP
	MaxRequestBytes int64  // after decompression, for HTTP
}

// Consumers receive what the receiver decoded; the client is answered
// with their error (mapped to gRPC and HTTP statuses by the receiver).
type Consumers struct {
	Traces  consumer.Traces
	Logs    consumer.Logs
	Metrics consumer.Metrics
}

// Receiver is the embedded OTLP receiver.
type Receiver struct {
	traces receiver.Traces
}

// New builds the receiver. The factory shares one receiver per config, so
// the three signals are served by the same listeners.
func New(cfg Config, c Consumers, log *zap.Logger, command, version string) (*Receiver, error) {
	f := otlpreceiver.NewFactory()
	rc := f.CreateDefaultConfig().(*otlpreceiver.Config)
	if cfg.GRPCAddr != "" {
		g := rc.Protocols.GRPC.GetOrInsertDefault()
		g.NetAddr.Endpoint = cfg.GRPCAddr
		g.MaxRecvMsgSizeMiB = int((cfg.MaxRequestBytes + 1<<20 - 1) >> 20)
	} else {
		rc.Protocols.GRPC = configoptional.None[configgrpc.ServerConfig]()
	}
	if cfg.HTTPAddr != "" {
		h := rc.Protocols.HTTP.GetOrInsertDefault()
		h.ServerConfig.NetAddr.Endpoint = cfg.HTTPAddr
		h.ServerConfig.MaxRequestBodySize = cfg.MaxRequestBytes
	} else {
		rc.Protocols.HTTP = configoptional.None[otlpreceiver.HTTPConfig]()
	}
	if err := rc.Validate(); err != nil {
		return nil, fmt.Errorf("otlp receiver config: %w", err)
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
	ctx := context.Background()
	r := &Receiver{}
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
	if err := r.traces.Start(ctx, host{}); err != nil {
		return fmt.Errorf("start otlp receiver: %w", err)
	}
	return nil
}

// Shutdown stops accepting requests and waits for those in progress. Safe
// without Start.
func (r *Receiver) Shutdown(ctx context.Context) error {
	if err := r.traces.Shutdown(ctx); err != nil {
		return fmt.Errorf("stop otlp receiver: %w", err)
	}
	return nil
}

type host struct{}

func (host) GetExtensions() map[component.ID]component.Component { return nil }
