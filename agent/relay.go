package agent

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lumenobs/lumen/internal/otlprecv"
)

// relay takes OTLP from the node's pods, adds the sending pod's Kubernetes
// attributes (found by the connection's address) and writes it to the
// buffer before the pod is answered, so what a pod was told was received
// survives the agent's restart and the server's absence.
type relay struct {
	node string
	pods *podCache
	buf  *Buffer
	m    *Metrics
	log  *zap.Logger
	enc  sync.Pool
}

func newRelay(grpcAddr, httpAddr string, node string, pods *podCache, buf *Buffer, log *zap.Logger, m *Metrics, version string) (*otlprecv.Receiver, error) {
	r := &relay{node: node, pods: pods, buf: buf, m: m, log: log.Named("relay")}
	r.enc.New = func() any {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		return e
	}
	mut := consumer.WithCapabilities(consumer.Capabilities{MutatesData: true})
	tc, err := consumer.NewTraces(r.traces, mut)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	lc, err := consumer.NewLogs(r.logs, mut)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	mc, err := consumer.NewMetrics(r.metrics, mut)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	return otlprecv.New(otlprecv.Config{GRPCAddr: grpcAddr, HTTPAddr: httpAddr, MaxRequestBytes: 16 << 20},
		otlprecv.Consumers{Traces: tc, Logs: lc, Metrics: mc}, r.log, "lumen agent", version)
}

// podOf finds the sending pod by the connection's address.
func (r *relay) podOf(ctx context.Context) *PodMeta {
	if r.pods == nil {
		return nil
	}
	addr := client.FromContext(ctx).Addr
	if addr == nil {
		return nil
	}
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return r.pods.byIP(host)
}

func (r *relay) traces(ctx context.Context, td ptrace.Traces) error {
	meta := r.podOf(ctx)
	for _, rs := range td.ResourceSpans().All() {
		relayResource(rs.Resource().Attributes(), r.node, meta)
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	return r.append(SignalTraces, td.SpanCount(), body, err)
}

func (r *relay) logs(ctx context.Context, ld plog.Logs) error {
	meta := r.podOf(ctx)
	for _, rl := range ld.ResourceLogs().All() {
		relayResource(rl.Resource().Attributes(), r.node, meta)
	}
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	return r.append(SignalLogs, ld.LogRecordCount(), body, err)
}

func (r *relay) metrics(ctx context.Context, md pmetric.Metrics) error {
	meta := r.podOf(ctx)
	for _, rm := range md.ResourceMetrics().All() {
		relayResource(rm.Resource().Attributes(), r.node, meta)
	}
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	return r.append(SignalMetrics, md.DataPointCount(), body, err)
}

func (r *relay) append(s Signal, items int, body []byte, err error) error {
	if err != nil {
		return status.Errorf(codes.Internal, "encode %s: %v", s, err)
	}
	if items == 0 {
		return nil
	}
	enc := r.enc.Get().(*zstd.Encoder)
	z := enc.EncodeAll(body, nil)
	r.enc.Put(enc)
	if err := r.buf.Append(Record{Signal: s, Items: items, Body: z}); err != nil {
		r.log.Error("write relayed telemetry to the buffer", zap.Error(err))
		return status.Errorf(codes.Unavailable, "the agent cannot buffer: %v", err)
	}
	r.m.relayed.WithLabelValues(s.String()).Add(float64(items))
	return nil
}
