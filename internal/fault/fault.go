// Package fault names the few kinds of failure every API of Lumen answers
// with, and maps each, in one table, to its HTTP status, its gRPC code,
// whether a client should retry, and after how long. The store wraps its
// errors in these, the ingest paths and the query APIs classify with
// Classify, so a full disk, an overload or a bad request reads the same
// over OTLP, remote write, Loki push and every query API.
package fault

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
)

// The kinds of failure. Wrap one with fmt.Errorf("%w: …") to classify an
// error; the message says what went wrong and, for a limit, which one.
var (
	// ErrInvalid: the request is wrong and retrying it cannot help.
	ErrInvalid = errors.New("invalid data")
	// ErrTooLarge: the request is over a size limit.
	ErrTooLarge = errors.New("request too large")
	// ErrNotFound: nothing is stored under what was asked for.
	ErrNotFound = errors.New("not found")
	// ErrLimit: the request would pass a limit (series, streams, labels,
	// query size); retrying the same request does not help until the
	// limit or the data changes, so it is answered as a bad request (as
	// Mimir answers its series limits: a 429 would make Prometheus retry
	// the same samples forever).
	ErrLimit = errors.New("limit exceeded")
	// ErrOverloaded: too much is in flight; retry after a while.
	ErrOverloaded = errors.New("overloaded")
	// ErrDiskFull: the disk is below its free-space floor; writes resume
	// by themselves when space returns.
	ErrDiskFull = errors.New("disk full")
	// ErrUnavailable: the store could not do it now; retry.
	ErrUnavailable = errors.New("store unavailable")
	// ErrClosed: the server is shutting down.
	ErrClosed = errors.New("store closed")
	// ErrTimeout: the client did not send its request in time.
	ErrTimeout = errors.New("timed out")
	// ErrNotImplemented: this server does not answer the request in its
	// configuration (a search of spans kept in a remote backend).
	ErrNotImplemented = errors.New("not implemented here")
)

// Class is how one kind of failure is answered.
type Class struct {
	// Reason is a short label value for metrics: invalid, too_large,
	// not_found, limit, overload, disk_full, unavailable, canceled,
	// timeout, not_implemented, internal.
	Reason string
	HTTP   int
	GRPC   codes.Code
	// RetryAfter is the hint sent to clients (Retry-After, gRPC
	// RetryInfo); zero for failures a retry does not fix.
	RetryAfter time.Duration
}

// StatusClientClosed is the status of a request the client gave up on, as
// nginx logs it.
const StatusClientClosed = 499

// The table. Retryable over OTLP (the specification's list): 429, 502,
// 503, 504 over HTTP; RESOURCE_EXHAUSTED with RetryInfo and UNAVAILABLE
// over gRPC. Prometheus and Loki clients retry every 5xx and 429.
var (
	invalid     = Class{"invalid", http.StatusBadRequest, codes.InvalidArgument, 0}
	tooLarge    = Class{"too_large", http.StatusRequestEntityTooLarge, codes.InvalidArgument, 0}
	notFound    = Class{"not_found", http.StatusNotFound, codes.NotFound, 0}
	limit       = Class{"limit", http.StatusBadRequest, codes.InvalidArgument, 0}
	overloaded  = Class{"overload", http.StatusTooManyRequests, codes.ResourceExhausted, time.Second}
	diskFull    = Class{"disk_full", http.StatusInsufficientStorage, codes.ResourceExhausted, 10 * time.Second}
	unavailable = Class{"unavailable", http.StatusServiceUnavailable, codes.Unavailable, time.Second}
	canceled    = Class{"canceled", StatusClientClosed, codes.Canceled, 0}
	timeout     = Class{"timeout", http.StatusGatewayTimeout, codes.DeadlineExceeded, 0}
	slowClient  = Class{"slow_client", http.StatusRequestTimeout, codes.DeadlineExceeded, 0}
	internal    = Class{"internal", http.StatusInternalServerError, codes.Internal, 0}
	notImpl     = Class{"not_implemented", http.StatusNotImplemented, codes.Unimplemented, 0}
)

// Classify returns the class of err; an error of no known kind is
// internal (500).
func Classify(err error) Class {
	switch {
	case errors.Is(err, ErrInvalid):
		return invalid
	case errors.Is(err, ErrTooLarge):
		return tooLarge
	case errors.Is(err, ErrNotFound):
		return notFound
	case errors.Is(err, ErrLimit):
		return limit
	case errors.Is(err, ErrOverloaded):
		return overloaded
	case errors.Is(err, ErrDiskFull):
		return diskFull
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed):
		return unavailable
	case errors.Is(err, ErrTimeout):
		return slowClient
	case errors.Is(err, context.Canceled):
		return canceled
	case errors.Is(err, context.DeadlineExceeded):
		return timeout
	case errors.Is(err, ErrNotImplemented):
		return notImpl
	}
	return internal
}

// SetRetryAfter sets the Retry-After header the class asks for, if any.
func (c Class) SetRetryAfter(h http.Header) {
	if c.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((c.RetryAfter+time.Second-1)/time.Second)))
	}
}

// HTTPError answers err as plain text with its class's status and retry
// hint, and returns the class.
func HTTPError(w http.ResponseWriter, err error) Class {
	c := Classify(err)
	c.SetRetryAfter(w.Header())
	http.Error(w, err.Error(), c.HTTP)
	return c
}
