package httpsend

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumererror"
)

// TestStatuses: 2xx taken; the protocol's retryable statuses retried (a
// Retry-After kept); any other refusal final; the body, type and headers
// sent as configured.
func TestStatuses(t *testing.T) {
	status := http.StatusNoContent
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "application/x-protobuf", r.Header.Get("Content-Type"))
		require.Equal(t, "team-a", r.Header.Get("X-Scope-OrgID"))
		got, _ = io.ReadAll(r.Body)
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "7")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "said the backend")
	}))
	defer srv.Close()
	for _, tc := range []struct {
		retryable func(int) bool
		status    int
		want      string // "", "retry" or "final"
	}{
		{OTLPRetryable, http.StatusOK, ""},
		{OTLPRetryable, http.StatusTooManyRequests, "retry"},
		{OTLPRetryable, http.StatusServiceUnavailable, "retry"},
		{OTLPRetryable, http.StatusInternalServerError, "final"},
		{OTLPRetryable, http.StatusBadRequest, "final"},
		{LokiRetryable, http.StatusInternalServerError, "retry"},
		{LokiRetryable, http.StatusBadRequest, "final"},
	} {
		send, err := New(Config{What: "test", URL: srv.URL + "/v1/traces", ContentType: "application/x-protobuf",
			Headers: map[string]string{"X-Scope-OrgID": "team-a"}, Timeout: time.Second, Retryable: tc.retryable})
		require.NoError(t, err)
		status = tc.status
		err = send(context.Background(), []byte("body"))
		require.Equal(t, "body", string(got))
		switch tc.want {
		case "":
			require.NoError(t, err)
		case "retry":
			require.Error(t, err)
			require.False(t, consumererror.IsPermanent(err), "%d", tc.status)
			require.Contains(t, err.Error(), "said the backend")
		case "final":
			require.True(t, consumererror.IsPermanent(err), "%d: %v", tc.status, err)
		}
	}
	send, err := New(Config{What: "test", URL: "http://127.0.0.1:1/x", Timeout: time.Second, Retryable: OTLPRetryable})
	require.NoError(t, err)
	err = send(context.Background(), nil)
	require.Error(t, err)
	require.False(t, consumererror.IsPermanent(err), "a network error is retried")
	_, err = New(Config{What: "test", URL: "not a url", Retryable: OTLPRetryable})
	require.ErrorContains(t, err, "want http(s)://host/path")
}
