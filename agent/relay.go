package agent

import (
	"context"
	"fmt"
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

	"github.com/lumenobs/lumen/internal/auth"
	"github.com/lumenobs/lumen/internal/otlprecv"
)

// relay takes OTLP from the node's pods, adds the sending pod's Kubernetes
// attributes (found by the connection's address) and writes it to the
// buffer before the pod is answered, so what a pod was told was received
// survives the agent's restart and the server's absence. Its limiter
// bounds the requests' size, the bytes in flight, and each pod's share of
// both and of the buffer.
type relay struct {
	node  string
	pods  *podCache
	limit *limiter
	m     *Metrics
	log   *zap.Logger
	enc   sync.Pool
}

// relayZstdWindow is the relay's zstd window: an encoder keeps twice its
// window of history (4 MiB by default at this level, 8 MiB held), and one
// is pooled for each request being compressed at once.
const relayZstdWindow = 512 << 10

func newRelay(cfg Config, authn *auth.Authenticator, pods *podCache, buf *Buffer, log *zap.Logger, m *Metrics) (*otlprecv.Receiver, error) {
	log = log.Named("relay")
	r := &relay{node: cfg.NodeName, pods: pods, m: m, log: log,
		limit: newLimiter(cfg.Relay, buf, cfg.BufferMaxBytes, m, log)}
	r.enc.New = func() any {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(relayZstdWindow))
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
	return otlprecv.New(otlprecv.Config{GRPCAddr: cfg.OTLPGRPCAddr, HTTPAddr: cfg.OTLPHTTPAddr, MaxRequestBytes: cfg.Relay.MaxRequestBytes,
		Middleware: relayMiddleware{r.limit}, Auth: authn, GRPCTLS: cfg.TLS, HTTPTLS: cfg.TLS},
		otlprecv.Consumers{Traces: tc, Logs: lc, Metrics: mc}, log, "lumen agent", cfg.Version)
}

// sender is the sending pod's address (its key for the limits) and what
// the API says of the pod at that address.
func (r *relay) sender(ctx context.Context) (string, *PodMeta) {
	addr := client.FromContext(ctx).Addr
	if addr == nil {
		return "", nil
	}
	ip := hostOf(addr.String())
	if r.pods == nil {
		return ip, nil
	}
	return ip, r.pods.byIP(ip)
}

func (r *relay) traces(ctx context.Context, td ptrace.Traces) error {
	ip, meta := r.sender(ctx)
	for _, rs := range td.ResourceSpans().All() {
		relayResource(rs.Resource().Attributes(), r.node, meta)
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	return r.append(ctx, ip, SignalTraces, td.SpanCount(), body, err)
}

func (r *relay) logs(ctx context.Context, ld plog.Logs) error {
	ip, meta := r.sender(ctx)
	for _, rl := range ld.ResourceLogs().All() {
		relayResource(rl.Resource().Attributes(), r.node, meta)
	}
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	return r.append(ctx, ip, SignalLogs, ld.LogRecordCount(), body, err)
}

func (r *relay) metrics(ctx context.Context, md pmetric.Metrics) error {
	ip, meta := r.sender(ctx)
	for _, rm := range md.ResourceMetrics().All() {
		relayResource(rm.Resource().Attributes(), r.node, meta)
	}
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	return r.append(ctx, ip, SignalMetrics, md.DataPointCount(), body, err)
}

// append compresses a decoded request and writes it to the buffer, within
// the pod's share of it.
func (r *relay) append(ctx context.Context, ip string, s Signal, items int, body []byte, err error) error {
	if res := reservationFrom(ctx); res != nil {
		res.settle(int64(len(body)))
	}
	if err != nil {
		return status.Errorf(codes.Internal, "encode %s: %v", s, err)
	}
	if items == 0 {
		return nil
	}
	enc := r.enc.Get().(*zstd.Encoder)
	z := enc.EncodeAll(body, nil)
	r.enc.Put(enc)
	if err := r.limit.append(ip, Record{Signal: s, Items: items, Body: z}); err != nil {
		if status.Code(err) == codes.ResourceExhausted {
			return err
		}
		r.log.Error("write relayed telemetry to the buffer", zap.Error(err))
		return status.Errorf(codes.Unavailable, "the agent cannot buffer: %v", err)
	}
	r.m.relayed.WithLabelValues(s.String()).Add(float64(items))
	return nil
}
