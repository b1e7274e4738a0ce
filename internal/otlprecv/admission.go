package otlprecv

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"golang.org/x/sync/semaphore"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"
)

// admission bounds what the OTLP receiver takes on before it decodes a
// request — the consumers' own limits only see requests already decoded.
// It is a Collector server middleware (extensionmiddleware), so the
// receiver's HTTP handler and gRPC server are wrapped where the Collector
// expects it:
//
//   - HTTP: bytes in flight, as each request declares them (its
//     Content-Length, eight times that when compressed, at most the request
//     limit; the limit when it does not say). Past the budget a request
//     waits up to wait, then gets 429 with Retry-After.
//   - gRPC: requests in flight across every connection, admitted when
//     their stream opens (a tap handle, which must not block): past the
//     bound, RESOURCE_EXHAUSTED with RetryInfo at once. Each request is at
//     most the message limit, so bytes are bounded too.
type admission struct {
	bytes    *semaphore.Weighted
	maxBytes int64
	maxReq   int64
	wait     time.Duration

	streams  atomic.Int64
	maxGRPC  int64
	refused  atomic.Uint64
	admitted atomic.Uint64
}

var admissionID = component.MustNewID("lumen_admission")

func newAdmission(cfg Config) *admission {
	return &admission{bytes: semaphore.NewWeighted(cfg.MaxInFlightBytes), maxBytes: cfg.MaxInFlightBytes, maxReq: cfg.MaxRequestBytes,
		wait: cfg.QueueWait, maxGRPC: int64(cfg.MaxInFlightRequests)}
}

func (*admission) Start(context.Context, component.Host) error { return nil }
func (*admission) Shutdown(context.Context) error              { return nil }

var (
	_ extensionmiddleware.HTTPServer = (*admission)(nil)
	_ extensionmiddleware.GRPCServer = (*admission)(nil)
)

// weight is what an HTTP request is counted for.
func (a *admission) weight(r *http.Request) int64 {
	n := r.ContentLength
	switch {
	case n < 0:
		n = a.maxReq
	case r.Header.Get("Content-Encoding") != "":
		n *= 8
	}
	return min(max(n, 1), a.maxReq, a.maxBytes)
}

// GetHTTPHandler wraps the receiver's HTTP handler.
func (a *admission) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(_ context.Context, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := a.weight(r)
			if !a.bytes.TryAcquire(n) {
				ctx, cancel := context.WithTimeout(r.Context(), a.wait)
				err := a.bytes.Acquire(ctx, n)
				cancel()
				if err != nil {
					a.refused.Add(1)
					w.Header().Set("Retry-After", "1")
					http.Error(w, fmt.Sprintf("lumen is overloaded: %d MiB of OTLP requests are in flight; retry later", a.maxBytes>>20), http.StatusTooManyRequests)
					return
				}
			}
			defer a.bytes.Release(n)
			a.admitted.Add(1)
			next.ServeHTTP(w, r)
		}), nil
	}, nil
}

// GetGRPCServerOptions admits gRPC requests as their streams open and lets
// them go when they end.
func (a *admission) GetGRPCServerOptions(context.Context) ([]grpc.ServerOption, error) {
	return []grpc.ServerOption{grpc.InTapHandle(a.tap), grpc.StatsHandler(admissionStats{a})}, nil
}

type admittedKey struct{}

func (a *admission) tap(ctx context.Context, _ *tap.Info) (context.Context, error) {
	if a.streams.Add(1) > a.maxGRPC {
		a.streams.Add(-1)
		a.refused.Add(1)
		st := status.New(codes.ResourceExhausted, "lumen is overloaded: "+strconv.FormatInt(a.maxGRPC, 10)+" OTLP requests are in flight; retry later")
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}); err == nil {
			st = d
		}
		return ctx, st.Err()
	}
	a.admitted.Add(1)
	return context.WithValue(ctx, admittedKey{}, true), nil
}

// admissionStats releases an admitted gRPC request when it ends.
type admissionStats struct{ a *admission }

func (admissionStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (admissionStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (admissionStats) HandleConn(context.Context, stats.ConnStats) {}

func (s admissionStats) HandleRPC(ctx context.Context, st stats.RPCStats) {
	if _, end := st.(*stats.End); end && ctx.Value(admittedKey{}) != nil {
		s.a.streams.Add(-1)
	}
}
