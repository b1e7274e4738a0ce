package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"
)

// RelayConfig bounds what the OTLP relay takes from the node's pods, so
// that no pod can run the agent out of memory or fill its buffer. A pod
// is a source address, as the relay finds the sending pod by it.
type RelayConfig struct {
	// MaxRequestBytes bounds one request, after decompression (for gRPC,
	// rounded up to whole MiB). A larger one is refused as too large.
	MaxRequestBytes int64
	// MaxInFlightBytes bounds the bytes of the requests being read,
	// decoded and written to the buffer at once, on the node. A request
	// past it is refused with 429 / RESOURCE_EXHAUSTED and a retry hint.
	MaxInFlightBytes int64
	// PodShare is the part of MaxInFlightBytes (at least MaxRequestBytes)
	// and of the buffer's size that one pod may hold: past it, that pod's
	// requests are refused while the others' are taken.
	PodShare float64
}

// DefaultRelayConfig fits the agent's 128 MiB memory limit: a request
// takes about four times its size in memory while it is decoded, copied
// and compressed, so 8 MiB in flight is some 35 MiB of heap. Requests are
// up to 4 MiB (gRPC's default); a pod holds a quarter of the buffer, and
// of the bytes in flight at least one request of the largest size.
func DefaultRelayConfig() RelayConfig {
	return RelayConfig{MaxRequestBytes: 4 << 20, MaxInFlightBytes: 8 << 20, PodShare: 0.25}
}

// Validate reports the first setting that cannot work.
func (c RelayConfig) Validate() error {
	switch {
	case c.MaxRequestBytes < 64<<10:
		return fmt.Errorf("relay: max_request_bytes %d is below 64KiB", c.MaxRequestBytes)
	case c.MaxInFlightBytes < c.MaxRequestBytes:
		return fmt.Errorf("relay: max_in_flight_bytes %d is below max_request_bytes %d", c.MaxInFlightBytes, c.MaxRequestBytes)
	case c.PodShare <= 0 || c.PodShare > 1:
		return fmt.Errorf("relay: pod_share %g is not in (0, 1]", c.PodShare)
	}
	return nil
}

// Why a relayed request was refused: lumen_agent_relay_refused_total's
// reason label.
const (
	refusedTooLarge    = "too_large"
	refusedInFlight    = "in_flight"
	refusedPodInFlight = "pod_in_flight"
	refusedPodBuffer   = "pod_buffer"
	refusedBuffer      = "buffer"
)

// How long a refused client is told to wait: bytes in flight come and go
// in milliseconds, a pod's share of the buffer frees as it is shipped.
const (
	retryInFlight  = time.Second
	retryPodBuffer = 5 * time.Second
)

// readGranule is how much more of the in-flight bytes an HTTP request
// takes each time its body outgrows what it holds.
const readGranule = 64 << 10

// limiter enforces RelayConfig. A request holds a reservation of
// in-flight bytes from before its body is read (an HTTP middleware, a gRPC
// tap handle; see relayMiddleware) until it is answered; a pod's records
// count against its share of the buffer until they are shipped.
type limiter struct {
	cfg       RelayConfig
	grpcMax   int64 // MaxRequestBytes as gRPC enforces it
	podFlight int64 // a pod's bound on bytes in flight
	podBuffer int64 // a pod's bound on unshipped bytes in the buffer
	spanBytes int64 // see podUse
	buf       *Buffer
	m         *Metrics
	log       *zap.Logger

	mu       sync.Mutex
	inFlight int64
	pods     map[string]*podUse
	swept    time.Time
	warned   map[string]*warning
}

// warning rate-limits the log line about refusals: one per reason every
// ten seconds, with the count since the last.
type warning struct {
	at time.Time
	n  int
}

func newLimiter(cfg RelayConfig, buf *Buffer, bufferBytes int64, m *Metrics, log *zap.Logger) *limiter {
	podBuffer := int64(cfg.PodShare * float64(bufferBytes))
	return &limiter{
		cfg:       cfg,
		grpcMax:   (cfg.MaxRequestBytes + 1<<20 - 1) >> 20 << 20,
		podFlight: max(int64(cfg.PodShare*float64(cfg.MaxInFlightBytes)), cfg.MaxRequestBytes),
		podBuffer: podBuffer,
		spanBytes: max(podBuffer/64, 4<<10),
		buf:       buf, m: m, log: log,
		pods:   map[string]*podUse{},
		warned: map[string]*warning{},
	}
}

// podUse is what one pod holds: bytes in flight, and bytes in the buffer
// not yet shipped, in spans by where their last record ends (oldest
// first; a span grows up to spanBytes, so that a pod has few).
type podUse struct {
	inFlight int64
	held     int64
	spans    []heldSpan
}

type heldSpan struct {
	end   mark
	bytes int64
}

func (p *podUse) add(end mark, n, spanBytes int64) {
	if k := len(p.spans); k > 0 && p.spans[k-1].bytes < spanBytes {
		p.spans[k-1].end = end
		p.spans[k-1].bytes += n
	} else {
		p.spans = append(p.spans, heldSpan{end: end, bytes: n})
	}
	p.held += n
}

// drain lets go of the spans the shipper got past (or the buffer dropped).
func (p *podUse) drain(shipped mark) {
	i := 0
	for ; i < len(p.spans) && p.spans[i].end.atOrBefore(shipped); i++ {
		p.held -= p.spans[i].bytes
	}
	p.spans = p.spans[i:]
}

// pod is key's use, made when new (under mu), drained of what was shipped.
func (l *limiter) pod(key string) *podUse {
	p := l.pods[key]
	if p == nil {
		p = &podUse{}
		l.pods[key] = p
	}
	p.drain(l.buf.shipped())
	return p
}

// sweep forgets the pods that hold nothing, at most once a second (under
// mu).
func (l *limiter) sweep(now time.Time) {
	if now.Sub(l.swept) < time.Second {
		return
	}
	l.swept = now
	shipped := l.buf.shipped()
	for k, p := range l.pods {
		p.drain(shipped)
		if p.inFlight == 0 && p.held == 0 {
			delete(l.pods, k)
		}
	}
}

// refuse counts a refusal and returns what the client is answered:
// RESOURCE_EXHAUSTED with a RetryInfo, which the receiver turns into 429
// with Retry-After over HTTP (under mu).
func (l *limiter) refuse(reason, pod string, retry time.Duration, format string, args ...any) error {
	l.count(reason, pod)
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(format, args...))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
		st = d
	}
	return st.Err()
}

// tooLarge counts a request over MaxRequestBytes and returns its answer:
// 400 over HTTP, as the client must make its requests smaller (under mu).
func (l *limiter) tooLarge(pod string) error {
	l.count(refusedTooLarge, pod)
	return status.Errorf(codes.InvalidArgument, "request body over the agent's %d-byte limit (relay max_request_bytes)", l.cfg.MaxRequestBytes)
}

// count counts a refusal, and logs one line per reason every ten seconds
// (under mu).
func (l *limiter) count(reason, pod string) {
	l.m.relayRefused.WithLabelValues(reason).Inc()
	w := l.warned[reason]
	if w == nil {
		w = &warning{}
		l.warned[reason] = w
	}
	w.n++
	if now := time.Now(); now.Sub(w.at) >= 10*time.Second {
		l.log.Warn("refused OTLP requests from the node's pods", zap.String("reason", reason), zap.Int("refused", w.n), zap.String("last_pod", pod))
		w.at, w.n = now, 0
	}
}

// reservation is the in-flight bytes one request holds. Once refused, it
// returns its refusal from every call.
type reservation struct {
	l        *limiter
	pod      string
	held     int64
	refusal  error
	consumed bool // the request reached the relay's consumer
	done     bool
}

// open starts a request from pod: refused at once if the pod holds its
// share of the buffer already.
func (l *limiter) open(pod string) *reservation {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(time.Now())
	r := &reservation{l: l, pod: pod}
	if p := l.pod(pod); p.held >= l.podBuffer {
		r.refusal = l.refuse(refusedPodBuffer, pod, retryPodBuffer,
			"this pod's %d MiB of the node agent's buffer are not shipped yet; retry later", l.podBuffer>>20)
	}
	return r
}

// cover makes the reservation hold n bytes, or refuses the request when
// the node's or the pod's bytes in flight would go past their bound.
func (r *reservation) cover(n int64) error {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.refusal != nil || r.done || n <= r.held {
		return r.refusal
	}
	add := n - r.held
	p := l.pod(r.pod)
	switch {
	case l.inFlight+add > l.cfg.MaxInFlightBytes:
		r.refusal = l.refuse(refusedInFlight, r.pod, retryInFlight,
			"the node agent has %d MiB of OTLP requests in flight; retry later", l.cfg.MaxInFlightBytes>>20)
	case p.inFlight+add > l.podFlight:
		r.refusal = l.refuse(refusedPodInFlight, r.pod, retryInFlight,
			"this pod has %d MiB of OTLP requests in flight at the node agent; retry later", l.podFlight>>20)
	default:
		l.inFlight += add
		p.inFlight += add
		r.held = n
		l.m.relayInFlight.Set(float64(l.inFlight))
	}
	return r.refusal
}

// refuseTooLarge refuses the request as over MaxRequestBytes.
func (r *reservation) refuseTooLarge() error {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	if r.refusal == nil {
		r.refusal = r.l.tooLarge(r.pod)
	}
	return r.refusal
}

// settle shrinks the reservation to n bytes, the request's size once it
// is decoded (a gRPC request holds the largest size until then).
func (r *reservation) settle(n int64) {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	r.consumed = true
	if !r.done && n < r.held {
		r.l.give(r.pod, r.held-n)
		r.held = n
	}
}

// release gives back what the reservation holds; it may be called more
// than once.
func (r *reservation) release() {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	if !r.done {
		r.done = true
		r.l.give(r.pod, r.held)
		r.held = 0
	}
}

func (r *reservation) reachedConsumer() bool {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	return r.consumed
}

// give returns n bytes in flight of pod (under mu).
func (l *limiter) give(pod string, n int64) {
	l.inFlight -= n
	if p := l.pods[pod]; p != nil {
		p.inFlight -= n
	}
	l.m.relayInFlight.Set(float64(l.inFlight))
}

// append writes a relayed record to the buffer, unless pod holds its
// share of the buffer already (a pod may always have one record in it).
func (l *limiter) append(pod string, rec Record) error {
	n := int64(len(rec.Body))
	l.mu.Lock()
	p := l.pod(pod)
	if p.held > 0 && p.held+n > l.podBuffer {
		err := l.refuse(refusedPodBuffer, pod, retryPodBuffer,
			"this pod's %d MiB of the node agent's buffer are not shipped yet; retry later", l.podBuffer>>20)
		l.mu.Unlock()
		return err
	}
	p.held += n // while it is written, so that the pod's other requests see it
	l.mu.Unlock()

	end, err := l.buf.append(rec)

	l.mu.Lock()
	defer l.mu.Unlock()
	p = l.pod(pod)
	p.held -= n
	if err != nil {
		l.count(refusedBuffer, pod)
		return err
	}
	p.add(end, n, l.spanBytes)
	return nil
}

type reservationKey struct{}

func withReservation(ctx context.Context, r *reservation) context.Context {
	return context.WithValue(ctx, reservationKey{}, r)
}

// reservationFrom is the request's reservation; nil when it has none.
func reservationFrom(ctx context.Context) *reservation {
	r, _ := ctx.Value(reservationKey{}).(*reservation)
	return r
}

// hostOf is the host part of a host:port address.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// wrapHTTP admits HTTP requests: it runs after the Collector set up the
// body's decompression and its size limit, before the body is read. A
// request that declares its length holds it from the start; one that does
// not (compressed, chunked) takes more as its body is read. A refusal is
// the error of the body's next read, which the receiver answers with
// the status it carries (429 with Retry-After, or 400).
func (l *limiter) wrapHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := l.open(hostOf(r.RemoteAddr))
		defer res.release()
		switch n := r.ContentLength; {
		case n > l.cfg.MaxRequestBytes:
			_ = res.refuseTooLarge()
		case n > 0:
			_ = res.cover(n)
		}
		r.Body = &meteredBody{ReadCloser: r.Body, res: res, max: l.cfg.MaxRequestBytes}
		next.ServeHTTP(w, r.WithContext(withReservation(r.Context(), res)))
	})
}

// meteredBody takes in-flight bytes for what is read from a request body.
type meteredBody struct {
	io.ReadCloser
	res  *reservation
	max  int64
	read int64
}

func (b *meteredBody) Read(p []byte) (int, error) {
	if err := b.res.cover(b.read); err != nil {
		return 0, err
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if n > 0 {
		want := max(b.read, min((b.read+readGranule-1)/readGranule*readGranule, b.max))
		if cerr := b.res.cover(want); cerr != nil {
			return 0, cerr
		}
	}
	if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
		return n, b.res.refuseTooLarge()
	}
	return n, err
}

// The gRPC methods the relay serves.
var relayMethods = map[string]bool{
	"/opentelemetry.proto.collector.trace.v1.TraceService/Export":     true,
	"/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": true,
	"/opentelemetry.proto.collector.logs.v1.LogsService/Export":       true,
}

// tap admits a gRPC request as its stream opens, before its message is
// read: gRPC does not tell a message's size before that, so it holds the
// largest a message may be until it is decoded (see settle). It must not
// block. The reservation is released when the stream ends, however it
// ends.
func (l *limiter) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if !relayMethods[info.FullMethodName] {
		return ctx, nil
	}
	pod := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		pod = hostOf(p.Addr.String())
	}
	res := l.open(pod)
	if err := res.cover(l.grpcMax); err != nil {
		return ctx, err
	}
	context.AfterFunc(ctx, res.release)
	return withReservation(ctx, res), nil
}

// grpcStats releases a gRPC request's reservation when it ends, and
// counts the requests gRPC refused as too large (RESOURCE_EXHAUSTED
// before the relay saw them; without a retry hint, so that clients do not
// send them again).
type grpcStats struct{ l *limiter }

func (grpcStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (grpcStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (grpcStats) HandleConn(context.Context, stats.ConnStats)                       {}

func (s grpcStats) HandleRPC(ctx context.Context, st stats.RPCStats) {
	end, ok := st.(*stats.End)
	res := reservationFrom(ctx)
	if !ok || res == nil {
		return
	}
	if status.Code(end.Error) == codes.ResourceExhausted && !res.reachedConsumer() {
		s.l.mu.Lock()
		s.l.count(refusedTooLarge, res.pod)
		s.l.mu.Unlock()
	}
	res.release()
}

// grpcReadBuffer is each relay gRPC connection's read buffer: gRPC's
// default, not the Collector's 512 KiB, which a pod opening many
// connections would turn into memory.
const grpcReadBuffer = 32 << 10

// relayMiddleware gives the limiter to the Collector's OTLP servers, as a
// server middleware extension.
type relayMiddleware struct{ l *limiter }

var (
	_ extensionmiddleware.HTTPServer = relayMiddleware{}
	_ extensionmiddleware.GRPCServer = relayMiddleware{}
	_ component.Component            = relayMiddleware{}
)

func (relayMiddleware) Start(context.Context, component.Host) error { return nil }
func (relayMiddleware) Shutdown(context.Context) error              { return nil }

func (m relayMiddleware) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(_ context.Context, h http.Handler) (http.Handler, error) { return m.l.wrapHTTP(h), nil }, nil
}

func (m relayMiddleware) GetGRPCServerOptions(context.Context) ([]grpc.ServerOption, error) {
	return []grpc.ServerOption{grpc.InTapHandle(m.l.tap), grpc.StatsHandler(grpcStats{m.l}), grpc.ReadBufferSize(grpcReadBuffer)}, nil
}
