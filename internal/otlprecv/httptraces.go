package otlprecv

import (
	"context"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// traceBytes is the innermost middleware of the HTTP listener: a POST of
// protobuf to /v1/traces (decompressed, size-checked, authenticated and
// admitted by then) is handed to Consumers.TraceRequests as its bytes and
// answered as the Collector's receiver answers, its status code from the
// consumer's gRPC status, Retry-After from its RetryInfo, a google.rpc.Status
// body. Every other request (JSON, other paths, other methods) goes on to
// the Collector's receiver.
type traceBytes struct {
	consume func(ctx context.Context, body []byte) error
}

var traceBytesID = component.MustNewID("lumen_trace_bytes")

// tracesPath is the receiver's default traces path, which Lumen keeps.
const tracesPath = "/v1/traces"

func (*traceBytes) Start(context.Context, component.Host) error { return nil }
func (*traceBytes) Shutdown(context.Context) error              { return nil }

var _ extensionmiddleware.HTTPServer = (*traceBytes)(nil)

var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

func (t *traceBytes) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(_ context.Context, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != tracesPath || !isProtobuf(r.Header.Get("Content-Type")) {
				next.ServeHTTP(w, r)
				return
			}
			bp := bodyPool.Get().(*[]byte)
			defer func() {
				if cap(*bp) <= 16<<20 {
					bodyPool.Put(bp)
				}
			}()
			body, err := readAll((*bp)[:0], r.Body)
			*bp = body
			if err != nil {
				writeStatus(w, http.StatusBadRequest, status.New(codes.InvalidArgument, err.Error()))
				return
			}
			if err := t.consume(r.Context(), body); err != nil {
				st, _ := status.FromError(statusOf(err))
				writeStatus(w, httpCode(st.Code()), st)
				return
			}
			// An ExportTraceServiceResponse without partial_success.
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(http.StatusOK)
		}), nil
	}, nil
}

// readAll reads r to its end, appending to b.
func readAll(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

func isProtobuf(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-protobuf"
}

// httpCode is the HTTP status the Collector's receiver answers a gRPC
// code with (OTLP/HTTP's failures: 503 and 429 retryable).
func httpCode(c codes.Code) int {
	switch c {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		return http.StatusServiceUnavailable
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unimplemented:
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// writeStatus answers st as protobuf, with Retry-After (in seconds) when
// a retryable answer carries a RetryInfo.
func writeStatus(w http.ResponseWriter, code int, st *status.Status) {
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				w.Header().Set("Retry-After", strconv.FormatInt(int64(ri.GetRetryDelay().AsDuration()/time.Second), 10))
			}
		}
	}
	msg, err := proto.Marshal(st.Proto())
	if err != nil {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"code": 13, "message": "failed to marshal error message"}`))
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(code)
	_, _ = w.Write(msg)
}
