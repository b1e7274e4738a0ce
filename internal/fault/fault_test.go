package fault_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/lumenobs/lumen/internal/fault"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err        error
		http       int
		grpc       codes.Code
		retryAfter string
	}{
		{fault.ErrInvalid, 400, codes.InvalidArgument, ""},
		{fault.ErrTooLarge, 413, codes.InvalidArgument, ""},
		{fault.ErrNotFound, 404, codes.NotFound, ""},
		{fault.ErrLimit, 400, codes.InvalidArgument, ""},
		{fault.ErrOverloaded, 429, codes.ResourceExhausted, "1"},
		{fault.ErrDiskFull, 507, codes.ResourceExhausted, "10"},
		{fault.ErrUnavailable, 503, codes.Unavailable, "1"},
		{fault.ErrClosed, 503, codes.Unavailable, "1"},
		{fault.ErrTimeout, 408, codes.DeadlineExceeded, ""},
		{context.Canceled, 499, codes.Canceled, ""},
		{context.DeadlineExceeded, 504, codes.DeadlineExceeded, ""},
		{errors.New("something else"), 500, codes.Internal, ""},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			wrapped := fmt.Errorf("write logs: stream 3: %w", tc.err)
			c := fault.Classify(wrapped)
			require.Equal(t, tc.http, c.HTTP)
			require.Equal(t, tc.grpc, c.GRPC)
			rec := httptest.NewRecorder()
			require.Equal(t, c, fault.HTTPError(rec, wrapped))
			require.Equal(t, tc.http, rec.Code)
			require.Equal(t, tc.retryAfter, rec.Header().Get("Retry-After"))
			require.Contains(t, rec.Body.String(), "stream 3")
			require.NotEmpty(t, c.Reason)
		})
	}
}
