package promrw_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/ingest/promrw"
	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/store"
)

func bodyAt(t *testing.T, ts ...time.Time) []byte {
	var req prompb.WriteRequest
	for i, at := range ts {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: fmt.Sprint(i)}},
			Samples: []prompb.Sample{{Timestamp: at.UnixMilli(), Value: 1}},
		})
	}
	pb, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, pb)
}

// A store refusal Prometheus' handler would answer 500 is answered as
// what it is: a full disk 507 with Retry-After, naming the floor.
func TestDiskFullIs507(t *testing.T) {
	o := store.DefaultOptions(t.TempDir())
	o.MinFreeDiskBytes = 1 << 62
	db, err := store.Open(o)
	require.NoError(t, err)
	defer db.Close()
	h, err := promrw.New(promrw.DefaultConfig(), db, db, nil, nil, nil)
	require.NoError(t, err)
	for _, v2 := range []bool{false, true} {
		body := bodyAt(t, time.Now())
		if v2 {
			body = v2BodyAt(t, time.Now())
		}
		rec := post(h, body, v2)
		require.Equal(t, http.StatusInsufficientStorage, rec.Code, rec.Body.String())
		require.Contains(t, rec.Body.String(), "below the floor of")
		require.Equal(t, "10", rec.Header().Get("Retry-After"))
	}
}

// Samples older than the retention — or from 1970 — are refused with a
// 400 that names their time.
func TestTooOldSamplesAre400(t *testing.T) {
	db, err := store.Open(store.DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	h, err := promrw.New(promrw.DefaultConfig(), db, db, nil, nil, nil)
	require.NoError(t, err)
	rec := post(h, bodyAt(t, time.Unix(2, 0)), false)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Contains(t, rec.Body.String(), "1970-01-01T00:00:02Z is older than")
	rec = post(h, bodyAt(t, time.Now()), false)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
}

// Clients that send headers and then dribble (or never send) their body
// hold neither a write slot nor more memory than they declared, and are
// cut off after the body timeout with 408; normal pushes go on meanwhile.
func TestSlowClientsDoNotBlockPushes(t *testing.T) {
	db, err := store.Open(store.DefaultOptions(t.TempDir()))
	require.NoError(t, err)
	defer db.Close()
	cfg := promrw.DefaultConfig()
	cfg.MaxInFlight = 2
	cfg.BodyTimeout = 500 * time.Millisecond
	h, err := promrw.New(cfg, db, db, nil, nil, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	wait := loopback.SlowClients(addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: 4096\r\n\r\nab", 16, 10*time.Second)
	time.Sleep(100 * time.Millisecond) // the slow ones are in
	start := time.Now()
	for i := range 5 {
		resp, err := http.Post(srv.URL, "application/x-protobuf", strings.NewReader(string(bodyAt(t, time.Now().Add(time.Duration(i)*time.Millisecond)))))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
	}
	require.Less(t, time.Since(start), 400*time.Millisecond, "normal pushes do not wait for the slow ones")
	for _, l := range wait() {
		require.Equal(t, "HTTP/1.1 408 Request Timeout", l)
	}
}

func v2BodyAt(t *testing.T, at time.Time) []byte {
	st := writev2.NewSymbolTable()
	req := writev2.Request{Timeseries: []writev2.TimeSeries{{
		LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "queue", "job", "y"), nil),
		Samples:    []writev2.Sample{{Value: 3, Timestamp: at.UnixMilli()}},
	}}}
	req.Symbols = st.Symbols()
	pb, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, pb)
}
