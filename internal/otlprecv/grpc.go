package otlprecv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The gRPC listener is the Collector's gRPC server (configgrpc: TLS,
// authentication, keepalive, compression, the middlewares) with OTLP's
// three services registered by Lumen rather than by the Collector's
// receiver, so that a trace request can reach the store as the bytes it
// came in (Consumers.TraceRequests) instead of decoded into pdata
// (docs/decisions.md). Logs and metrics are decoded by pdata as the
// receiver does; every service answers a consumer's error as it does
// (GetStatusFromError below).

// grpcServer serves OTLP over gRPC.
type grpcServer struct {
	cfg  configgrpc.ServerConfig
	c    Consumers
	log  *zap.Logger
	srv  *grpc.Server
	wg   sync.WaitGroup
	stop sync.Once
}

func (g *grpcServer) start(ctx context.Context, host component.Host, set component.TelemetrySettings) error {
	srv, err := g.cfg.ToServer(ctx, host.GetExtensions(), set)
	if err != nil {
		return fmt.Errorf("otlp grpc server: %w", err)
	}
	if g.c.Traces != nil || g.c.TraceRequests != nil {
		srv.RegisterService(&traceServiceDesc, &traceService{c: g.c})
	}
	if g.c.Metrics != nil {
		pmetricotlp.RegisterGRPCServer(srv, &metricsService{next: g.c.Metrics})
	}
	if g.c.Logs != nil {
		plogotlp.RegisterGRPCServer(srv, &logsService{next: g.c.Logs})
	}
	ln, err := g.cfg.NetAddr.Listen(ctx)
	if err != nil {
		return fmt.Errorf("otlp grpc listener: %w", err)
	}
	g.srv = srv
	g.log.Info("OTLP gRPC listening", zap.String("endpoint", ln.Addr().String()))
	g.wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, net.ErrClosed) {
			g.log.Error("OTLP gRPC server stopped", zap.Error(err))
		}
	})
	return nil
}

func (g *grpcServer) shutdown() {
	if g.srv != nil {
		g.stop.Do(g.srv.GracefulStop)
	}
	g.wg.Wait()
}

// traceServiceDesc is OTLP's TraceService, its request handed over as
// bytes.
var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: exportTracesHandler}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
}

const exportTracesMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

func exportTracesHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := rawRequestPool.Get().(*rawRequest)
	if err := dec(in); err != nil {
		in.release()
		return nil, err
	}
	h := func(ctx context.Context, req any) (any, error) {
		r := req.(*rawRequest)
		defer r.release()
		return emptyResponse{}, srv.(*traceService).export(ctx, r.b)
	}
	if interceptor == nil {
		return h(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: exportTracesMethod}, h)
}

// rawRequest is a request's protobuf bytes. The Collector's gRPC codec
// hands them to UnmarshalProto from a buffer it reuses, so they are
// copied into one of a pool.
type rawRequest struct{ b []byte }

var rawRequestPool = sync.Pool{New: func() any { return new(rawRequest) }}

func (r *rawRequest) UnmarshalProto(b []byte) error {
	r.b = append(r.b[:0], b...)
	return nil
}
func (r *rawRequest) SizeProto() int              { return len(r.b) }
func (r *rawRequest) MarshalProto(buf []byte) int { return copy(buf, r.b) }

func (r *rawRequest) release() {
	if cap(r.b) > 16<<20 {
		r.b = nil
	}
	rawRequestPool.Put(r)
}

// emptyResponse is an Export*ServiceResponse without partial_success: a
// request is taken whole or refused.
type emptyResponse struct{}

func (emptyResponse) UnmarshalProto([]byte) error { return nil }
func (emptyResponse) SizeProto() int              { return 0 }
func (emptyResponse) MarshalProto([]byte) int     { return 0 }

type traceService struct{ c Consumers }

func (s *traceService) export(ctx context.Context, body []byte) error {
	if s.c.TraceRequests != nil {
		return statusOf(s.c.TraceRequests(ctx, body))
	}
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		return status.Error(codes.InvalidArgument, "decode OTLP trace request: "+err.Error())
	}
	td := req.Traces()
	return consume(td.SpanCount(), func() error { return s.c.Traces.ConsumeTraces(ctx, td) })
}

type metricsService struct {
	pmetricotlp.UnimplementedGRPCServer
	next consumer.Metrics
}

func (s *metricsService) Export(ctx context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	md := req.Metrics()
	return pmetricotlp.NewExportResponse(), consume(md.DataPointCount(), func() error { return s.next.ConsumeMetrics(ctx, md) })
}

type logsService struct {
	plogotlp.UnimplementedGRPCServer
	next consumer.Logs
}

func (s *logsService) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	ld := req.Logs()
	return plogotlp.NewExportResponse(), consume(ld.LogRecordCount(), func() error { return s.next.ConsumeLogs(ctx, ld) })
}

// consume hands a decoded request of n items to its consumer, as the
// Collector's receiver does: an empty one is taken without it, an error
// answered with statusOf.
func consume(n int, next func() error) error {
	if n == 0 {
		return nil
	}
	return statusOf(next())
}

// statusOf is a consumer's error as the Collector's receiver answers it: a
// gRPC status as it is, a permanent error without one Internal, any other
// Unavailable (retryable).
func statusOf(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	code := codes.Unavailable
	if consumererror.IsPermanent(err) {
		code = codes.Internal
	}
	return status.New(code, err.Error()).Err()
}
