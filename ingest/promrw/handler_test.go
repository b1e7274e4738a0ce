package promrw_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/ingest/promrw"
	"github.com/lumenobs/lumen/store"
)

func openStore(t testing.TB) *store.DB {
	t.Helper()
	o := store.DefaultOptions(t.TempDir())
	o.Retention = 0
	db, err := store.Open(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func v1Body(t testing.TB, n int) []byte {
	var req prompb.WriteRequest
	ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "x"}}}
	for i := range n {
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: int64(1_700_000_000_000 + i*1000), Value: float64(i)})
	}
	req.Timeseries = append(req.Timeseries, ts)
	pb, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, pb)
}

func v2Body(t testing.TB) []byte {
	st := writev2.NewSymbolTable()
	req := writev2.Request{Timeseries: []writev2.TimeSeries{{
		LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "queue", "job", "y"), nil),
		Samples:    []writev2.Sample{{Value: 3, Timestamp: 1_700_000_000_000}},
	}}}
	req.Symbols = st.Symbols()
	pb, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, pb)
}

func post(h http.Handler, body []byte, v2 bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Encoding", "snappy")
	if v2 {
		req.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	} else {
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// slowAppendable is the real store behind a gate, to hold requests in flight.
type slowAppendable struct {
	db   *store.DB
	gate chan struct{}
	in   chan struct{}
}

func (s slowAppendable) Appender(ctx context.Context) storage.Appender {
	s.in <- struct{}{}
	<-s.gate
	return s.db.Appender(ctx)
}

func TestOverloadGets429(t *testing.T) {
	db := openStore(t)
	slow := slowAppendable{db: db, gate: make(chan struct{}), in: make(chan struct{}, 4)}
	cfg := promrw.DefaultConfig()
	cfg.MaxInFlight, cfg.QueueWait = 1, 20*time.Millisecond
	h, err := promrw.New(cfg, slow, slow.db, nil, nil, nil)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() { require.Equal(t, http.StatusNoContent, post(h, v1Body(t, 5), false).Code) })
	<-slow.in
	rec := post(h, v1Body(t, 1), false)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), "overloaded")
	close(slow.gate)
	wg.Wait()
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, promrw.DefaultConfig().Validate())
	c := promrw.DefaultConfig()
	c.MaxDecodedBytes = c.MaxRequestBytes - 1
	require.ErrorContains(t, c.Validate(), "in that order")
	c = promrw.DefaultConfig()
	c.MaxInFlight = 0
	require.ErrorContains(t, c.Validate(), "not positive")
}

// FuzzRemoteWrite sends arbitrary bodies, as 1.0 and as 2.0, through the
// handler into a real store: never a panic, never a 5xx, and the store
// answers afterwards.
func FuzzRemoteWrite(f *testing.F) {
	f.Add(v1Body(f, 3), false)
	f.Add(v2Body(f), true)
	f.Add([]byte("not snappy"), false)
	f.Add(snappy.Encode(nil, []byte{0x0a, 0xff, 0xff}), true)
	db := openStore(f)
	h, err := promrw.New(promrw.DefaultConfig(), db, db, nil, nil, nil)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, body []byte, v2 bool) {
		rec := post(h, body, v2)
		require.Less(t, rec.Code, 500, rec.Body.String())
		q, err := db.Querier(0, 1<<62)
		require.NoError(t, err)
		ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
		for ss.Next() {
		}
		require.NoError(t, ss.Err())
	})
}
