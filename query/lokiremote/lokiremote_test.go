package lokiremote_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/httpsend"
	"github.com/lumenobs/lumen/internal/lokitest"
	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/sendq"
	"github.com/lumenobs/lumen/query/logql"
	"github.com/lumenobs/lumen/query/lokiremote"
	"github.com/lumenobs/lumen/store"
	"github.com/lumenobs/lumen/store/lokipush"
)

func openWriter(t *testing.T, pushURL string, maxRequestBytes int) *lokipush.Writer {
	t.Helper()
	send, err := lokipush.NewSend(httpsend.Config{URL: pushURL, Timeout: 5 * time.Second})
	require.NoError(t, err)
	mp, err := sendq.MeterProvider(prometheus.NewRegistry())
	require.NoError(t, err)
	q, err := sendq.Open(context.Background(), "logs", sendq.Logs, sendq.Config{Dir: t.TempDir(), MaxBytes: 64 << 20, Senders: 2,
		Timeout: 5 * time.Second, InitialInterval: 20 * time.Millisecond, MaxInterval: 200 * time.Millisecond}, send, zap.NewNop(), mp)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q.Close(context.Background())) })
	return lokipush.New(q, maxRequestBytes)
}

func newBackend(t *testing.T, base string) *lokiremote.Backend {
	t.Helper()
	b, err := lokiremote.New(lokiremote.Config{URL: base, Timeout: 10 * time.Second, MaxConcurrent: 4, MaxResponseBytes: 16 << 20,
		TraceSelector: `{service_name=~"$services"}`, MaxEntries: 5000})
	require.NoError(t, err)
	return b
}

func mustID(t *testing.T, s string) model.TraceID {
	t.Helper()
	id, err := model.ParseTraceID(s)
	require.NoError(t, err)
	return id
}

// TestLinesInRealLoki: lines written while Loki is not running are pushed
// once it runs, with their trace and span ids as structured metadata; a
// trace's lines come back by id with their stream labels and metadata
// apart, LogQL is evaluated by Loki as Lumen's rules ask it, and the proxy
// answers as Loki does, byte for byte.
func TestLinesInRealLoki(t *testing.T) {
	addr := loopback.FreeAddr(t)
	loki := lokitest.New(t, addr)
	// Small requests: the write is cut into several.
	w := openWriter(t, loki.URL+"/loki/api/v1/push", 300)
	id := mustID(t, "4bf92f3577b34da6a3ce929d0e0e4736")
	other := mustID(t, "00f067aa0ba902b7aaaaaaaaaaaaaaaa")
	t0 := time.Now().Add(-5 * time.Minute).Truncate(time.Second)
	checkout := labels.FromStrings("service_name", "checkout", "env", "prod")
	billing := labels.FromStrings("service_name", "billing")
	var streams []store.LogStream
	co := store.LogStream{Labels: checkout}
	for i := range 10 {
		e := store.LogEntry{T: t0.Add(time.Duration(i) * time.Second).UnixNano(), Line: "checkout step " + strconv.Itoa(i) + " trace_id=" + id.String()}
		e.TraceID, e.SpanID = id, model.SpanID{1, 2, 3, 4, 5, 6, 7, byte(i + 1)}
		if i%2 == 1 {
			e.TraceID, e.Line = other, "other work"
		}
		co.Entries = append(co.Entries, e)
	}
	streams = append(streams, co, store.LogStream{Labels: billing, Entries: []store.LogEntry{{
		T: t0.Add(3 * time.Second).UnixNano(), Line: "charged", TraceID: id,
		Metadata: labels.FromStrings("severity_text", "INFO", "trace_id", id.String()),
	}}})
	require.NoError(t, w.Write(context.Background(), streams), "queued while loki is down")

	loki.Start()
	b := newBackend(t, loki.URL)
	var got []store.LogStream
	require.Eventually(t, func() bool {
		var err error
		got, _, err = b.TraceLogs(context.Background(), id, []string{"billing", "checkout"}, t0.Add(-time.Minute).UnixNano(), t0.Add(time.Minute).UnixNano(), 100)
		return err == nil && len(got) == 2 && len(got[0].Entries)+len(got[1].Entries) == 6
	}, time.Minute, 200*time.Millisecond, "the trace's six lines in loki: %v", got)
	// Streams in label order, as the store answers them.
	require.Equal(t, billing, got[1].Labels, "stream labels apart from the metadata")
	require.Equal(t, "charged", got[1].Entries[0].Line)
	// Loki adds detected_level (as Lumen's own ingest does).
	require.Equal(t, labels.FromStrings("detected_level", "info", "severity_text", "INFO", "trace_id", id.String()), got[1].Entries[0].Metadata, "the metadata it came with, trace_id not twice")
	require.Equal(t, checkout, got[0].Labels)
	for i, e := range got[0].Entries {
		require.Equal(t, t0.Add(time.Duration(2*i)*time.Second).UnixNano(), e.T, "in time order")
		require.Equal(t, id, e.TraceID)
		require.Equal(t, model.SpanID{1, 2, 3, 4, 5, 6, 7, byte(2*i + 1)}, e.SpanID)
		require.Equal(t, e.SpanID.String(), e.Metadata.Get("span_id"), "the ids found in the line, as metadata")
		require.Equal(t, id.String(), e.Metadata.Get("trace_id"))
	}
	// The newest lines when there are more than the limit.
	cut, more, err := b.TraceLogs(context.Background(), id, nil, t0.Add(-time.Minute).UnixNano(), t0.Add(time.Minute).UnixNano(), 2)
	require.NoError(t, err)
	require.True(t, more)
	require.Len(t, cut, 1)
	require.Equal(t, t0.Add(8*time.Second).UnixNano(), cut[0].Entries[1].T)

	// Lumen's rules and evidence: Loki evaluates.
	e, err := logql.Parse(`sum by (service_name) (count_over_time({env="prod"} | trace_id="` + other.String() + `" [1h]))`)
	require.NoError(t, err)
	res, err := b.Exec(context.Background(), e, logql.Params{Start: t0.Add(time.Minute), End: t0.Add(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, logql.ResultVector, res.Type)
	require.Len(t, res.Series, 1)
	require.Equal(t, labels.FromStrings("service_name", "checkout"), res.Series[0].Metric)
	require.InDelta(t, 5, res.Series[0].Points[0].V, 0)
	require.Equal(t, t0.Add(time.Minute).UnixMilli(), res.Series[0].Points[0].T)
	e, err = logql.Parse(`{service_name="checkout"} |= "step 4"`)
	require.NoError(t, err)
	res, err = b.Exec(context.Background(), e, logql.Params{Start: t0, End: t0.Add(time.Minute), Limit: 10})
	require.NoError(t, err)
	require.Equal(t, logql.ResultStreams, res.Type)
	require.Len(t, res.Streams, 1)
	require.Len(t, res.Streams[0].Entries, 1)
	require.Contains(t, res.Streams[0].Entries[0].Line, "checkout step 4")
	e, err = logql.Parse(`sum(rate({service_name="checkout"}[1m]))`)
	require.NoError(t, err)
	res, err = b.Exec(context.Background(), e, logql.Params{Start: t0, End: t0.Add(2 * time.Minute), Step: time.Minute})
	require.NoError(t, err)
	require.Equal(t, logql.ResultMatrix, res.Type)
	require.Len(t, res.Series, 1)
	require.NotEmpty(t, res.Series[0].Points)
	e, err = logql.Parse(`{service_name="checkout"} | json | foo=`)
	require.Error(t, err, "parse error") // the query is refused before it is sent
	bad, _ := logql.Parse(`{service_name="checkout"}`)
	_, err = b.Exec(context.Background(), bad, logql.Params{Start: t0, End: t0.Add(-time.Hour)})
	require.ErrorIs(t, err, fault.ErrInvalid, "loki's 400 is the query's fault: %v", err)
	require.Contains(t, err.Error(), "logs backend "+loki.URL)

	// The proxy answers as Loki does.
	proxy := httptest.NewServer(b.Proxy())
	defer proxy.Close()
	start := strconv.FormatInt(t0.Add(-time.Minute).UnixNano(), 10)
	for _, q := range []string{
		"/loki/api/v1/query_range?" + url.Values{"query": {`{service_name="checkout"}`}, "start": {start}, "limit": {"5"}}.Encode(),
		"/loki/api/v1/labels?start=" + start,
		"/loki/api/v1/label/service_name/values?start=" + start,
		"/loki/api/v1/series?" + url.Values{"match[]": {`{env="prod"}`}, "start": {start}}.Encode(),
		"/loki/api/v1/query?query=" + url.QueryEscape(`{service_name="nope"}`) + "&direction=sideways",
	} {
		require.Equal(t, get(t, loki.URL+q), get(t, proxy.URL+q), q)
	}
	loki.Stop()
	code, body := fetch(t, proxy.URL+"/loki/api/v1/labels")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "logs backend "+loki.URL)
	_, _, err = b.TraceLogs(context.Background(), id, nil, 0, 1, 10)
	require.ErrorIs(t, err, fault.ErrUnavailable)
}

func fetch(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// get is the status and body of u, comparable with another answer.
func get(t *testing.T, u string) string {
	code, body := fetch(t, u)
	return strconv.Itoa(code) + " " + lokitest.Comparable(body)
}

// TestTraceQuery: the services go into the selector as a regexp inside a
// LogQL string, any service when none is known.
func TestTraceQuery(t *testing.T) {
	id := mustID(t, "4bf92f3577b34da6a3ce929d0e0e4736")
	require.Equal(t, `{service_name=~"a\\.b|c\"d"} | trace_id="4bf92f3577b34da6a3ce929d0e0e4736"`,
		lokiremote.TraceQuery(`{service_name=~"$services"}`, []string{"a.b", `c"d`}, id))
	require.Equal(t, `{service_name=~".+"} | trace_id="4bf92f3577b34da6a3ce929d0e0e4736"`,
		lokiremote.TraceQuery(`{service_name=~"$services"}`, nil, id))
	q := lokiremote.TraceQuery(`{service_name=~"$services", env="prod"}`, []string{"a.b", `c"d`}, id)
	e, err := logql.Parse(q)
	require.NoError(t, err, q)
	le := e.(*logql.LogExpr)
	require.True(t, le.Matchers[0].Matches("a.b"))
	require.True(t, le.Matchers[0].Matches(`c"d`))
	require.False(t, le.Matchers[0].Matches("axb"))
}
