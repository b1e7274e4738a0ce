package promrw_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/ingest/promrw"
	"github.com/lumenobs/lumen/internal/telemetry"
)

const (
	v1Type = "application/x-protobuf"
	v2Type = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

// corrupt returns body with its first byte changed, as the remote-write
// compliance suite sends it: the snappy length header no longer matches.
func corrupt(body []byte) []byte {
	b := bytes.Clone(body)
	b[0] = '0'
	return b
}

// A body sent with a Content-Type or Content-Encoding remote write does
// not use is answered 415 naming the header, whatever the body holds (the
// remote-write compliance suite sends them with a body that is not valid
// snappy, which must not turn the answer into a 400); valid requests, and
// a valid body with a broken snappy header, are answered as before.
func TestMediaType(t *testing.T) {
	db := openStore(t)
	m := telemetry.NewIngest(nil)
	h, err := promrw.New(promrw.DefaultConfig(), db, db, nil, nil, m)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	v1, v2 := bodyAt(t, time.Now()), v2BodyAt(t, time.Now())
	for _, tc := range []struct {
		name        string
		contentType string
		encoding    string
		body        []byte
		code        int
		says        string
		samples     string // X-Prometheus-Remote-Write-Samples-Written
	}{
		{"json content type", "application/json", "snappy", corrupt(v2), 415, `content type "application/json"`, ""},
		{"png content type", "image/png", "snappy", corrupt(v2), 415, `content type "image/png"`, ""},
		{"json content type, valid body", "application/json", "snappy", v2, 415, "expected application/x-protobuf", ""},
		{"unknown proto message", "application/x-protobuf;proto=io.prometheus.write.v3.Request", "snappy", v2, 415, "io.prometheus.write.v3.Request", ""},
		{"gzip encoding", v2Type, "gzip", corrupt(v2), 415, `content encoding "gzip"`, ""},
		{"deflate encoding", v2Type, "deflate", corrupt(v2), 415, `content encoding "deflate"`, ""},
		{"zstd encoding, valid body", v1Type, "zstd", v1, 415, `content encoding "zstd"`, ""},
		{"corrupt snappy", v2Type, "snappy", corrupt(v2), 400, "not snappy-compressed", ""},
		{"1.0", v1Type, "snappy", v1, 204, "", ""},
		{"1.0 without content type or encoding", "", "", bodyAt(t, time.Now().Add(time.Millisecond)), 204, "", ""},
		{"2.0", v2Type, "snappy", v2, 204, "", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", bytes.NewReader(tc.body))
			require.NoError(t, err)
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			msg, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tc.code, resp.StatusCode, string(msg))
			require.Contains(t, string(msg), tc.says)
			if tc.code == http.StatusUnsupportedMediaType {
				require.Contains(t, string(msg), "unsupported media type")
			}
			require.Equal(t, tc.samples, resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"))
		})
	}
	require.Equal(t, 8.0, testutil.ToFloat64(m.Rejected.WithLabelValues("metrics", "invalid")), "the 415s and the 400 are counted")
}

// A 415 is decided from the headers alone: a client that declares a body
// it never sends gets it at once, not a 408 after the body timeout, and
// holds no slot or memory meanwhile.
func TestMediaTypeBeforeBody(t *testing.T) {
	db := openStore(t)
	cfg := promrw.DefaultConfig()
	cfg.BodyTimeout = 10 * time.Second
	h, err := promrw.New(cfg, db, db, nil, nil, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprint(conn, "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: snappy\r\nContent-Length: 4096\r\n\r\nab")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(2*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "answered before the body timeout")
	defer resp.Body.Close()
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
}
