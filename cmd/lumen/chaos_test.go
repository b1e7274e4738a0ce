package main

// The chaos suite: the real `lumen serve` (this test binary re-run as
// lumen, in a child process) under mixed load, killed with SIGKILL at
// random moments, on a disk that fills, under churn and under overload.
// `make test` runs it short; `make chaos` long (LUMEN_CHAOS=long). Every
// acknowledged span, line and sample must be readable after each restart,
// and every restart must succeed. Results and the commands that produced
// them are in RELIABILITY.md.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/lumenobs/lumen/internal/loopback"
	"github.com/lumenobs/lumen/internal/otlptest"
	"github.com/lumenobs/lumen/internal/smalldisk"
)

// chaosLong reports whether the long suite (make chaos) runs.
func chaosLong() bool { return os.Getenv("LUMEN_CHAOS") == "long" }

// chaosCycles is how many kill -9 cycles a test runs: short in make test,
// long with LUMEN_CHAOS=long, or LUMEN_CHAOS_CYCLES when set.
func chaosCycles(short, long int) int {
	if v, err := strconv.Atoi(os.Getenv("LUMEN_CHAOS_CYCLES")); err == nil {
		return v
	}
	if chaosLong() {
		return long
	}
	return short
}

// chaosNode is `lumen serve` in a child process on loopback ports over one
// data dir, started and killed again and again.
type chaosNode struct {
	t       *testing.T
	cfg     Config
	extra   string   // more flags
	env     []string // more environment
	logPath string
	proc    *os.Process
	exited  chan struct{}
}

func newChaosNode(t *testing.T, dataDir, extra string, env ...string) *chaosNode {
	n := &chaosNode{t: t, cfg: testConfig(t, dataDir), extra: extra, env: env, logPath: filepath.Join(t.TempDir(), "lumen.log")}
	t.Cleanup(func() {
		if n.proc != nil {
			n.kill()
		}
	})
	return n
}

func (n *chaosNode) url(path string) string { return "http://" + n.cfg.HTTPAddr + path }

// start runs the node and waits until it is ready; an error when it does
// not get there in 60 s — a refused restart.
func (n *chaosNode) start() error {
	args := fmt.Sprintf("serve --data-dir %s --http-addr %s --otlp-grpc-addr %s --otlp-http-addr %s --log-level info %s",
		n.cfg.DataDir, n.cfg.HTTPAddr, n.cfg.OTLP.GRPCAddr, n.cfg.OTLP.HTTPAddr, n.extra)
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), n.env...), childEnv+"="+args)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return err
	}
	n.proc, n.exited = cmd.Process, make(chan struct{})
	exited := n.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			n.proc = nil
			return fmt.Errorf("lumen exited while starting (%s):\n%s", cmd.ProcessState, n.tail())
		default:
		}
		if resp, err := http.Get(n.url("/-/ready")); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("lumen not ready in 60s:\n%s", n.tail())
}

// kill stops the node with SIGKILL, as a crash or the OOM killer would.
func (n *chaosNode) kill() {
	_ = n.proc.Signal(syscall.SIGKILL)
	<-n.exited
	n.proc = nil
}

// alive reports whether the process still runs.
func (n *chaosNode) alive() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// tail is the end of the node's log, for failures.
func (n *chaosNode) tail() string {
	b, _ := os.ReadFile(n.logPath)
	for _, crash := range []string{"fatal error", "panic:", "unexpected fault"} {
		if i := bytes.LastIndex(b, []byte(crash)); i >= 0 {
			b = b[i:]
			break
		}
	}
	if len(b) > 4000 {
		b = b[:4000]
	}
	return string(b)
}

// rss is the node's resident memory, from /proc.
func (n *chaosNode) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.proc.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// metric reads one of the node's own metrics.
func (n *chaosNode) metric(series string) float64 {
	resp, err := http.Get(n.url("/metrics"))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// ledger is what the load generators had acknowledged.
type ledger struct {
	mu      sync.Mutex
	traces  map[pcommon.TraceID]int    // spans per trace
	cycleOf map[pcommon.TraceID]int    // the cycle a trace was sent in
	routeOf map[pcommon.TraceID]string // the http.route its spans carry, which search finds it by
	lines   map[string][]int           // "cycle/writer" -> line numbers
	samples map[string]int             // "cycle/writer" -> samples
	rolled  map[string]int             // "cycle/writer" -> series first sent in a refused request, then acknowledged
	olines  map[string][]int           // "cycle/writer" -> OTLP log record numbers
	opoints map[string]int             // "cycle/writer" -> OTLP gauge points
	codes   map[string]int             // "signal status" -> requests
	batch   int                        // samples or lines per request
	// tenant is sent as X-Scope-OrgID with every write and read (none:
	// the default tenant).
	tenant string
}

// tenantName is the ledger's tenant, "default" for the default one.
func (l *ledger) tenantName() string {
	if l.tenant == "" {
		return "default"
	}
	return l.tenant
}

// header is what names the ledger's tenant on a request.
func (l *ledger) header() []string {
	if l.tenant == "" {
		return nil
	}
	return []string{"X-Scope-OrgID", l.tenant}
}

func newLedger() *ledger {
	return &ledger{traces: map[pcommon.TraceID]int{}, cycleOf: map[pcommon.TraceID]int{}, routeOf: map[pcommon.TraceID]string{}, lines: map[string][]int{}, samples: map[string]int{}, rolled: map[string]int{}, codes: map[string]int{}, batch: 10,
		olines: map[string][]int{}, opoints: map[string]int{}}
}

func (l *ledger) code(signal string, code int) {
	l.mu.Lock()
	l.codes[fmt.Sprintf("%s %d", signal, code)]++
	l.mu.Unlock()
}

// load sends mixed traffic — OTLP gRPC traces, remote write 1.0 samples,
// Loki push lines — to n until ctx ends, recording what was acknowledged.
// Each writer sends at most max requests.
func (l *ledger) load(ctx context.Context, n *chaosNode, cycle, writers, max int) {
	var wg sync.WaitGroup
	conn, err := grpc.NewClient(n.cfg.OTLP.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err == nil {
		defer conn.Close()
		client := ptraceotlp.NewGRPCClient(conn)
		wg.Go(func() {
			g := otlptest.New(uint64(cycle)*1000 + 7 + uint64(len(l.tenant))<<32 + uint64(crc32.ChecksumIEEE([]byte(l.tenant)))) // other traces for each tenant
			for i := 0; i < max && ctx.Err() == nil; i++ {
				td := g.Traces(5, 3)
				// An indexed attribute per hundred requests (at most 500
				// traces), so that one search per route finds them all.
				route := fmt.Sprintf("/chaos/%d/%d", cycle, i/100)
				for _, rs := range td.ResourceSpans().All() {
					for _, ss := range rs.ScopeSpans().All() {
						for _, sp := range ss.Spans().All() {
							sp.Attributes().PutStr("http.route", route)
						}
					}
				}
				ids := otlptest.TraceIDs(td)
				rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if h := l.header(); h != nil {
					rctx = metadata.AppendToOutgoingContext(rctx, h...)
				}
				_, err := client.Export(rctx, ptraceotlp.NewExportRequestFromTraces(td))
				cancel()
				if err == nil {
					l.mu.Lock()
					for _, id := range ids {
						l.traces[id] += 3
						l.cycleOf[id] = cycle
						l.routeOf[id] = route
					}
					l.mu.Unlock()
				}
			}
		})
	}
	start := time.Now()
	for w := range writers {
		key := fmt.Sprintf("%d/%d", cycle, w)
		wg.Go(func() { l.pushSamples(ctx, n, key, start, max) })
		wg.Go(func() { l.pushLines(ctx, n, key, start, max) })
		wg.Go(func() { l.pushOTLP(ctx, n, key, start, max) })
	}
	wg.Wait()
}

func (l *ledger) pushSamples(ctx context.Context, n *chaosNode, key string, start time.Time, max int) {
	cycle, writer, _ := strings.Cut(key, "/")
	for i := 0; i < max && ctx.Err() == nil; i++ {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "chaos_samples"}, {Name: "cycle", Value: cycle}, {Name: "writer", Value: writer}}}
		for j := range l.batch {
			seq := i*l.batch + j
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: start.UnixMilli() + int64(seq), Value: float64(seq)})
		}
		code := l.write(n, ts)
		l.code("metrics", code)
		if code == http.StatusNoContent {
			l.mu.Lock()
			l.samples[key] += l.batch
			l.mu.Unlock()
		}
		if i%10 == 5 {
			l.rollBack(n, key, i)
		}
	}
}

// rollBack sends a new series in a request that is refused whole (remote
// write 1.0 rolls a request back for one sample an hour ahead), then the
// same series alone: once acknowledged it must survive a crash.
func (l *ledger) rollBack(n *chaosNode, key string, i int) {
	cycle, writer, _ := strings.Cut(key, "/")
	now := time.Now()
	series := func(name string, t time.Time) prompb.TimeSeries {
		return prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}, {Name: "cycle", Value: cycle}, {Name: "n", Value: strconv.Itoa(i)}, {Name: "writer", Value: writer}},
			Samples: []prompb.Sample{{Timestamp: t.UnixMilli(), Value: 1}}}
	}
	l.code("metrics", l.write(n, series("chaos_rolled", now.Add(-time.Second)), series("chaos_future", now.Add(time.Hour))))
	if l.write(n, series("chaos_rolled", now)) == http.StatusNoContent {
		l.mu.Lock()
		l.rolled[key]++
		l.mu.Unlock()
	}
}

func (l *ledger) write(n *chaosNode, ts ...prompb.TimeSeries) int {
	pb, _ := (&prompb.WriteRequest{Timeseries: ts}).Marshal()
	return postBody(n.url("/api/v1/write"), "application/x-protobuf", snappy.Encode(nil, pb),
		append([]string{"Content-Encoding", "snappy", "X-Prometheus-Remote-Write-Version", "0.1.0"}, l.header()...)...)
}

func (l *ledger) pushLines(ctx context.Context, n *chaosNode, key string, start time.Time, max int) {
	cycle, writer, _ := strings.Cut(key, "/")
	for i := 0; i < max && ctx.Err() == nil; i++ {
		var vals []string
		var seqs []int
		for j := range l.batch {
			seq := i*l.batch + j
			seqs = append(seqs, seq)
			// The line writes its own time, as a pipeline that takes the
			// entry's time from the line does: stored as a stamp.
			at := start.UnixNano() + int64(seq)
			vals = append(vals, fmt.Sprintf(`["%d","ts=%s level=info tenant=%s seq=%d"]`, at, time.Unix(0, at).UTC().Format(time.RFC3339Nano), l.tenantName(), seq))
		}
		body := fmt.Sprintf(`{"streams":[{"stream":{"chaos":"mixed","cycle":%q,"writer":%q},"values":[%s]}]}`, cycle, writer, strings.Join(vals, ","))
		code := postBody(n.url("/loki/api/v1/push"), "application/json", []byte(body), l.header()...)
		l.code("logs", code)
		if code == http.StatusNoContent {
			l.mu.Lock()
			l.lines[key] = append(l.lines[key], seqs...)
			l.mu.Unlock()
		}
	}
}

// pushOTLP sends log records and gauge points over OTLP/HTTP (protobuf).
func (l *ledger) pushOTLP(ctx context.Context, n *chaosNode, key string, start time.Time, max int) {
	cycle, writer, _ := strings.Cut(key, "/")
	for i := 0; i < max && ctx.Err() == nil; i++ {
		logs, md := plog.NewLogs(), pmetric.NewMetrics()
		rl := logs.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("service.name", "chaos-otlp-"+cycle+"-"+writer)
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "chaos-otlp")
		g := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		g.SetName("chaos_otlp_gauge")
		points := g.SetEmptyGauge().DataPoints()
		var seqs []int
		for j := range l.batch {
			seq := i*l.batch + j
			seqs = append(seqs, seq)
			at := pcommon.NewTimestampFromTime(start.Add(time.Duration(seq) * time.Millisecond))
			lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
			lr.SetTimestamp(at)
			lr.Body().SetStr(fmt.Sprintf("otlp seq=%d", seq))
			p := points.AppendEmpty()
			p.SetTimestamp(at)
			p.SetDoubleValue(float64(seq))
			p.Attributes().PutStr("cycle", cycle)
			p.Attributes().PutStr("writer", writer)
		}
		lb, _ := (&plog.ProtoMarshaler{}).MarshalLogs(logs)
		code := postBody("http://"+n.cfg.OTLP.HTTPAddr+"/v1/logs", "application/x-protobuf", lb, l.header()...)
		l.code("otlp-logs", code)
		if code == http.StatusOK {
			l.mu.Lock()
			l.olines[key] = append(l.olines[key], seqs...)
			l.mu.Unlock()
		}
		mb, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
		code = postBody("http://"+n.cfg.OTLP.HTTPAddr+"/v1/metrics", "application/x-protobuf", mb, l.header()...)
		l.code("otlp-metrics", code)
		if code == http.StatusOK {
			l.mu.Lock()
			l.opoints[key] += l.batch
			l.mu.Unlock()
		}
	}
}

// postBody posts and returns the status, 0 when the request failed.
func postBody(u, contentType string, body []byte, header ...string) int {
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// verify checks that every acknowledged span, line and sample (of the
// cycles given, all when nil) is readable from n.
func (l *ledger) verify(t *testing.T, n *chaosNode, cycles map[string]bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, spans := range l.traces {
		if cycles != nil && !cycles[strconv.Itoa(l.cycleOf[id])] {
			continue
		}
		code, body := getBody(n.url("/api/v1/traces/"+id.String()+"?include=trace"), l.header()...)
		require.Equal(t, http.StatusOK, code, "acknowledged trace %s: %s", id, body)
		var tr struct {
			SpanCount int `json:"spanCount"`
		}
		require.NoError(t, json.Unmarshal(body, &tr))
		require.GreaterOrEqual(t, tr.SpanCount, spans, "trace %s", id)
	}
	// Every acknowledged trace is found by search too: its index entries
	// survived with its spans.
	byRoute := map[string][]pcommon.TraceID{}
	for id, route := range l.routeOf {
		if cycles == nil || cycles[strconv.Itoa(l.cycleOf[id])] {
			byRoute[route] = append(byRoute[route], id)
		}
	}
	for route, ids := range byRoute {
		q := url.Values{"tags": {"http.route=" + route}, "limit": {"1000"},
			"start": {fmt.Sprint(time.Now().Add(-time.Hour).Unix())}, "end": {fmt.Sprint(time.Now().Add(time.Hour).Unix())}}
		code, body := getBody(n.url("/api/search?"+q.Encode()), l.header()...)
		require.Equal(t, http.StatusOK, code, string(body))
		var res struct {
			Traces []struct {
				TraceID string `json:"traceID"`
			} `json:"traces"`
		}
		require.NoError(t, json.Unmarshal(body, &res))
		found := map[string]bool{}
		for _, tr := range res.Traces {
			found[tr.TraceID] = true
		}
		for _, id := range ids {
			require.True(t, found[id.String()], "acknowledged trace %s is not found by searching http.route=%s (%d of %d found)", id, route, len(found), len(ids))
		}
	}
	for key, seqs := range l.lines {
		cycle, writer, _ := strings.Cut(key, "/")
		if cycles != nil && !cycles[cycle] {
			continue
		}
		got := readLines(t, n, fmt.Sprintf(`{chaos="mixed",cycle=%q,writer=%q}`, cycle, writer), l.header()...)
		for _, seq := range seqs {
			require.True(t, got[seq], "acknowledged line %d of %s is missing (%d of %d read)", seq, key, len(got), len(seqs))
		}
	}
	for key, seqs := range l.olines {
		cycle, writer, _ := strings.Cut(key, "/")
		if cycles != nil && !cycles[cycle] {
			continue
		}
		got := readLines(t, n, fmt.Sprintf(`{service_name="chaos-otlp-%s-%s"}`, cycle, writer), l.header()...)
		for _, seq := range seqs {
			require.True(t, got[seq], "acknowledged OTLP log record %d of %s is missing (%d of %d read)", seq, key, len(got), len(seqs))
		}
	}
	l.verifySamples(t, n, cycles, l.opoints, `count_over_time(chaos_otlp_gauge{cycle=%q,writer=%q}[7h])`)
	l.verifySamples(t, n, cycles, l.samples, `count_over_time(chaos_samples{cycle=%q,writer=%q}[7h])`)
	l.verifySamples(t, n, cycles, l.rolled, `count(count_over_time(chaos_rolled{cycle=%q,writer=%q}[7h]))`)
}

// verifySamples checks that query (formatted with cycle and writer) counts
// at least as many samples or series as were acknowledged.
func (l *ledger) verifySamples(t *testing.T, n *chaosNode, cycles map[string]bool, acked map[string]int, query string) {
	t.Helper()
	for key, want := range acked {
		cycle, writer, _ := strings.Cut(key, "/")
		if cycles != nil && !cycles[cycle] {
			continue
		}
		got := instantValue(t, n, "/api/v1/query", fmt.Sprintf(query, cycle, writer), time.Now().Add(time.Hour), l.header()...)
		require.GreaterOrEqual(t, got, want, "acknowledged samples of %s", key)
	}
}

// readLines reads every line of a selector, 5000 at a time, oldest
// first, and returns their sequence numbers.
func readLines(t *testing.T, n *chaosNode, selector string, header ...string) map[int]bool {
	t.Helper()
	got := map[int]bool{}
	from := time.Now().Add(-6 * time.Hour).UnixNano()
	for {
		q := url.Values{"query": {selector}, "limit": {"5000"}, "direction": {"forward"},
			"start": {fmt.Sprint(from)}, "end": {fmt.Sprint(time.Now().Add(time.Hour).UnixNano())}}
		code, body := getBody(n.url("/loki/api/v1/query_range?"+q.Encode()), header...)
		require.Equal(t, http.StatusOK, code, string(body))
		var res struct {
			Data struct {
				Result []struct {
					Values [][2]string `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(body, &res))
		read := 0
		for _, s := range res.Data.Result {
			for _, v := range s.Values {
				_, num, _ := strings.Cut(v[1], "seq=")
				seq, _ := strconv.Atoi(num)
				got[seq] = true
				ts, _ := strconv.ParseInt(v[0], 10, 64)
				if strings.HasPrefix(v[1], "ts=") { // a line's own time comes back as it was pushed
					require.True(t, strings.HasPrefix(v[1], "ts="+time.Unix(0, ts).UTC().Format(time.RFC3339Nano)+" "), "line %q at %d", v[1], ts)
				}
				from = max(from, ts+1)
				read++
			}
		}
		if read < 5000 {
			return got
		}
	}
}

// instantValue runs an instant query — PromQL or LogQL, whose APIs answer
// alike — that must return one series, and returns its value.
func instantValue(t *testing.T, n *chaosNode, path, query string, at time.Time, header ...string) int {
	t.Helper()
	q := url.Values{"query": {query}, "time": {fmt.Sprint(at.Unix())}}
	code, body := getBody(n.url(path+"?"+q.Encode()), header...)
	require.Equal(t, http.StatusOK, code, string(body))
	var res struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &res))
	require.Len(t, res.Data.Result, 1, "%s: %s", query, body)
	v, _ := strconv.Atoi(res.Data.Result[0].Value[1].(string))
	return v
}

func getBody(u string, header ...string) (int, []byte) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, []byte(err.Error())
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestChaosKill9: mixed load, SIGKILL at a random moment, restart, and
// every acknowledged item is read back; the restart always succeeds.
func TestChaosKill9(t *testing.T) {
	cycles := chaosCycles(20, 200)
	n := newChaosNode(t, t.TempDir(), "--checkpoint-interval 3s")
	require.NoError(t, n.start())
	l := newLedger()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	began := time.Now()
	for c := range cycles {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.load(ctx, n, c, 2, 200); close(done) }()
		wait := time.Duration(100+rng.IntN(700)) * time.Millisecond
		if c%5 == 4 {
			// Past a checkpoint (every 3 s): the open metric chunks it
			// carried into the new WAL generation replay.
			wait = time.Duration(3200+rng.IntN(1300)) * time.Millisecond
		}
		time.Sleep(wait)
		n.kill() // while requests are in flight
		cancel()
		<-done
		require.NoError(t, n.start(), "restart after SIGKILL %d refused", c+1)
		l.verify(t, n, map[string]bool{strconv.Itoa(c): true})
	}
	l.verify(t, n, nil)
	l.mu.Lock()
	defer l.mu.Unlock()
	lines, samples := 0, 0
	for _, s := range l.lines {
		lines += len(s)
	}
	for _, s := range l.olines {
		lines += len(s)
	}
	for _, s := range l.samples {
		samples += s
	}
	for _, s := range l.opoints {
		samples += s
	}
	t.Logf("kill -9 cycles: %d in %s; acknowledged and read back (and found by search): %d traces, %d log lines (Loki push and OTLP), %d samples (remote write and OTLP); lost 0; restarts refused 0; statuses %v",
		cycles, time.Since(began).Round(time.Second), len(l.traces), lines, samples, l.codes)
}

// TestChaosKill9Tenants: the same, with tenants on and three of them
// writing at once — two named by X-Scope-OrgID and the default one —, so
// that a kill lands while several tenants' stores and write-ahead logs are
// mid-write: after every restart each tenant reads back everything it was
// acknowledged, and no tenant reads another's lines or traces.
func TestChaosKill9Tenants(t *testing.T) {
	cycles := chaosCycles(6, 60)
	n := newChaosNode(t, t.TempDir(), "--tenants --checkpoint-interval 3s")
	require.NoError(t, n.start())
	var ledgers []*ledger
	for _, tenant := range []string{"team-a", "team-b", ""} {
		l := newLedger()
		l.tenant = tenant
		ledgers = append(ledgers, l)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	for c := range cycles {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, l := range ledgers {
			wg.Go(func() { l.load(ctx, n, c, 1, 100) })
		}
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		n.kill()
		cancel()
		wg.Wait()
		require.NoError(t, n.start(), "restart after SIGKILL %d refused", c+1)
		for _, l := range ledgers {
			l.verify(t, n, map[string]bool{strconv.Itoa(c): true})
		}
		// Each tenant's lines and traces are its own: the others read
		// none of them (a line names its writer's tenant).
		for i, l := range ledgers {
			other := ledgers[(i+1)%len(ledgers)]
			q := url.Values{"query": {fmt.Sprintf(`{chaos="mixed",cycle="%d"} |= "tenant=%s "`, c, l.tenantName())}, "limit": {"10"},
				"start": {fmt.Sprint(time.Now().Add(-time.Hour).UnixNano())}, "end": {fmt.Sprint(time.Now().Add(time.Hour).UnixNano())}}
			code, body := getBody(n.url("/loki/api/v1/query_range?"+q.Encode()), other.header()...)
			require.Equal(t, http.StatusOK, code, string(body))
			require.NotContains(t, string(body), "tenant="+l.tenantName()+" ", "tenant %q reads lines of %q", other.tenantName(), l.tenantName())
			code, body = getBody(n.url("/loki/api/v1/query_range?"+q.Encode()), l.header()...)
			require.Equal(t, http.StatusOK, code, string(body))
			l.mu.Lock()
			var id pcommon.TraceID
			for tid, cycle := range l.cycleOf {
				if cycle == c {
					id = tid
					break
				}
			}
			acked := len(l.lines[strconv.Itoa(c)+"/0"])
			l.mu.Unlock()
			if acked > 0 { // the check above could fail
				require.Contains(t, string(body), "tenant="+l.tenantName()+" ", "tenant %q reads its own lines", l.tenantName())
			}
			if !id.IsEmpty() {
				code, body := getBody(n.url("/api/v1/traces/"+id.String()+"?include=trace"), other.header()...)
				require.Equal(t, http.StatusNotFound, code, "tenant %q reads trace %s of %q: %s", other.tenantName(), id, l.tenantName(), body)
			}
		}
	}
	for _, l := range ledgers {
		l.verify(t, n, nil)
		t.Logf("tenant %q: %d traces acknowledged and read back after %d kill -9 cycles; statuses %v", l.tenant, len(l.traces), cycles, l.codes)
	}
}

// incompressibleLines is a Loki push of n lines of random text, so that
// what it takes on disk is about what it weighs.
func incompressibleLines(rng *rand.Rand, stream string, n, size int) []byte {
	var vals []string
	now := time.Now().UnixNano()
	for i := range n {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte('a' + rng.IntN(26))
		}
		vals = append(vals, fmt.Sprintf(`["%d","%s"]`, now+int64(i), b))
	}
	return []byte(fmt.Sprintf(`{"streams":[{"stream":{"fill":%q},"values":[%s]}]}`, stream, strings.Join(vals, ",")))
}

// TestChaosDiskFull: on a small file system that fills, writes are
// refused (507, naming the floor) and never crash the server; queries go
// on; a kill -9 while full restarts; writes resume by themselves when space
// returns; everything acknowledged is readable.
func TestChaosDiskFull(t *testing.T) {
	disk := smalldisk.Mount(t, 420<<20)
	// The rest of the disk is taken by someone else's file, leaving room
	// for about 24 MiB of logs above the floor (and what the value-log
	// file being written holds, reserved already), besides what the store
	// holds ahead: the files of the partition being written (a value-log
	// file and a memtable's log, 2 × 32 + 2 × 8 MiB), room for the next
	// ones (as much again), and the disk reserve (that and 16 MiB).
	filler := filepath.Join(disk, "someone-elses-file")
	require.NoError(t, os.WriteFile(filler, nil, 0o644))
	free := smalldisk.Free(t, disk)
	require.NoError(t, exec.Command("fallocate", "-l", strconv.FormatInt(free-(48+80+80+96)<<20, 10), filler).Run())
	n := newChaosNode(t, filepath.Join(disk, "data"), "--min-free-disk-bytes 24MiB --checkpoint-interval 2s")
	require.NoError(t, n.start())
	rng := rand.New(rand.NewPCG(1, 2))
	acked := 0
	began := time.Now()
	var refusedAt time.Duration
	var refusal string
	const linesPerPush = 128 // of 4 KiB
	for i := 0; i < 600 && time.Since(began) < 3*time.Minute; i++ {
		code, body := post(t, n.url("/loki/api/v1/push"), "application/json", incompressibleLines(rng, strconv.Itoa(i), linesPerPush, 4096))
		if code == http.StatusInsufficientStorage {
			refusedAt, refusal = time.Since(began), body
			break
		}
		require.Equal(t, http.StatusNoContent, code, body)
		acked++
	}
	require.NotZero(t, refusedAt, "writes were refused before the disk filled (free now %d bytes)", smalldisk.Free(t, disk))
	require.Contains(t, refusal, "below the floor of 24.0 MiB (--min-free-disk-bytes)")
	require.True(t, n.alive())
	low := smalldisk.Free(t, disk)
	t.Logf("disk full: writes refused after %s and %d pushes of 512 KiB (%d MiB free then): %s", refusedAt.Round(time.Millisecond), acked, low>>20, strings.TrimSpace(refusal))
	require.Greater(t, low, int64(8<<20), "writes stop well before the disk is full")
	// Someone else takes more: the disk stays below the floor whatever
	// Lumen's checkpoints give back.
	st, err := os.Stat(filler)
	require.NoError(t, err)
	require.NoError(t, exec.Command("fallocate", "-l", strconv.FormatInt(st.Size()+low-12<<20, 10), filler).Run())

	// Every write path refuses; queries are answered.
	now := time.Now()
	pb, _ := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "up"}},
		Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: 1}}}}}).Marshal()
	require.Equal(t, http.StatusInsufficientStorage, postBody(n.url("/api/v1/write"), "application/x-protobuf", snappy.Encode(nil, pb), "Content-Encoding", "snappy"))
	code, body := post(t, "http://"+n.cfg.OTLP.HTTPAddr+"/v1/traces", "application/json", []byte(jsonTrace))
	require.Equal(t, http.StatusTooManyRequests, code, body)
	countLines := func() int {
		return instantValue(t, n, "/loki/api/v1/query", `sum(count_over_time({fill=~".+"}[1h]))`, time.Now().Add(time.Minute))
	}
	require.Equal(t, acked*linesPerPush, countLines(), "queries answer while the disk is full")
	require.Equal(t, 1.0, n.metric("lumen_store_disk_full"))

	// A crash while full: it comes back, still refusing writes.
	n.kill()
	require.NoError(t, n.start(), "restart on a full disk")
	require.Equal(t, acked*linesPerPush, countLines())
	t.Logf("restarted on the full disk: disk reserve spent %v times, %v bytes in place",
		n.metric("lumen_store_disk_reserve_spent_total"), n.metric("lumen_store_disk_reserve_bytes"))
	code, _ = post(t, n.url("/loki/api/v1/push"), "application/json", incompressibleLines(rng, "after-restart", 1, 16))
	require.Equal(t, http.StatusInsufficientStorage, code)

	// Space comes back: writes resume by themselves, and the disk reserve
	// is made again.
	require.NoError(t, os.Remove(filler))
	freed := time.Now()
	for {
		code, _ = post(t, n.url("/loki/api/v1/push"), "application/json", incompressibleLines(rng, "resumed", 1, 16))
		if code == http.StatusNoContent || time.Since(freed) > 10*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, http.StatusNoContent, code, "writes resume when space returns")
	t.Logf("disk full: writes resumed %s after space returned", time.Since(freed).Round(time.Millisecond))
	require.Equal(t, acked*linesPerPush+1, countLines())
	require.Eventually(t, func() bool { return n.metric("lumen_store_disk_reserve_bytes") > 0 }, 10*time.Second, 100*time.Millisecond,
		"the disk reserve is made again")
	require.True(t, n.alive())
}

// churnWave sends one sample for each of series new series (a rollout's
// new pod names) over remote write, and one line for each of streams new
// streams over Loki push.
func churnWave(t *testing.T, n *chaosNode, wave, series, streams int) {
	t.Helper()
	now := time.Now()
	for first := 0; first < series; first += 2000 {
		var req prompb.WriteRequest
		for i := first; i < min(first+2000, series); i++ {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels: []prompb.Label{{Name: "__name__", Value: "container_cpu_seconds_total"}, {Name: "namespace", Value: "shop"},
					{Name: "pod", Value: fmt.Sprintf("web-%d-%d", wave, i)}},
				Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: float64(i)}},
			})
		}
		pb, err := req.Marshal()
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, postBody(n.url("/api/v1/write"), "application/x-protobuf", snappy.Encode(nil, pb), "Content-Encoding", "snappy"))
	}
	for first := 0; first < streams; first += 500 {
		var ss []string
		for i := first; i < min(first+500, streams); i++ {
			ss = append(ss, fmt.Sprintf(`{"stream":{"namespace":"shop","pod":"web-%d-%d"},"values":[["%d","started"]]}`, wave, i, now.UnixNano()))
		}
		code, body := post(t, n.url("/loki/api/v1/push"), "application/json", []byte(`{"streams":[`+strings.Join(ss, ",")+`]}`))
		require.Equal(t, http.StatusNoContent, code, body)
	}
}

// TestChaosChurn: waves of new series and streams, each idle after its
// wave, as pods churn through rollouts; the head holds only the recent
// ones and memory plateaus. Time is compressed: series idle for 2 s leave
// at checkpoints every second.
func TestChaosChurn(t *testing.T) {
	waves, series, streams := 10, 20_000, 2_000
	if chaosLong() {
		waves = 50 // 1M series, 100k streams
	}
	extra := "--head-idle-timeout 2s --checkpoint-interval 1s"
	heapPath := os.Getenv("LUMEN_CHAOS_HEAP") // where to save a heap profile after the last wave
	if heapPath != "" {
		extra += " --pprof"
	}
	n := newChaosNode(t, t.TempDir(), extra)
	require.NoError(t, n.start())
	var rss []int64
	var heads []float64
	for w := range waves {
		churnWave(t, n, w, series, streams)
		time.Sleep(1500 * time.Millisecond)
		rss = append(rss, n.rss())
		heads = append(heads, n.metric("lumen_head_series"))
	}
	if heapPath != "" {
		code, body := getBody(n.url("/debug/pprof/heap?gc=1"))
		require.Equal(t, http.StatusOK, code)
		require.NoError(t, os.WriteFile(heapPath, body, 0o644))
	}
	t.Logf("churn: %d series and %d streams in %d waves; RSS MiB by wave %v; head series by wave %v; removed %v series, %v streams",
		waves*series, waves*streams, waves, mib(rss), heads, n.metric("lumen_head_series_removed_total"), n.metric("lumen_head_streams_removed_total"))
	// The head keeps only the waves of the last seconds: once the load
	// stops, it drains to none (under the race detector, which slows
	// every checkpoint many times, this takes longer than the waves).
	if !raceEnabled {
		require.LessOrEqual(t, heads[len(heads)-1], float64(4*series), "the head holds the last few waves only")
	}
	drain := time.Minute
	if raceEnabled {
		drain = 3 * time.Minute // every checkpoint is many times slower, beside other packages' tests
	}
	require.Eventually(t, func() bool { return n.metric("lumen_head_series") == 0 }, drain, 200*time.Millisecond,
		"idle series leave the head: %v left", n.metric("lumen_head_series"))
	require.Equal(t, float64(waves*series), n.metric("lumen_head_series_removed_total"))
	// Streams leave the log head at its own checkpoints, which may come a
	// moment after the metric head's.
	require.Eventually(t, func() bool { return n.metric("lumen_head_streams_removed_total") == float64(waves*streams) }, drain, 200*time.Millisecond,
		"idle streams leave the head: %v removed", n.metric("lumen_head_streams_removed_total"))
	// The head is flat (above); what grows with the churned data is Badger's
	// compaction of the day partition's index (RELIABILITY.md), bounded here
	// absolutely: under 1 GiB for a million series. The race detector's
	// shadow memory makes RSS meaningless.
	if !raceEnabled {
		early := max(rss[2], rss[3], rss[4])
		if !chaosLong() {
			require.Less(t, rss[len(rss)-1], early*3/2+(64<<20), "memory plateaus: %v MiB", mib(rss))
		}
		require.Less(t, slices.Max(rss), int64(1<<30), "memory stays bounded: %v MiB", mib(rss))
	}
	// What churned out is still there to query.
	q := url.Values{"query": {`count(container_cpu_seconds_total{pod=~"web-0-.*"})`}, "time": {fmt.Sprint(time.Now().Unix())}}
	code, body := getBody(n.url("/api/v1/query?" + q.Encode()))
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), fmt.Sprintf(`"%d"`, series), "the first wave's series are read from the partitions")
}

func mib(v []int64) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = x >> 20
	}
	return out
}

// flood sends, from senders goroutines per path, prebuilt bodies of 2000
// samples or lines again and again: cheap for the sender, so that the
// server is what saturates, not the generator sharing its cores.
func flood(ctx context.Context, wg *sync.WaitGroup, n *chaosNode, l *ledger, senders int) {
	now := time.Now()
	var rw, loki [][]byte
	for b := range 32 {
		var req prompb.WriteRequest
		var ss []string
		for i := range 2000 {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels:  []prompb.Label{{Name: "__name__", Value: "flood_total"}, {Name: "body", Value: strconv.Itoa(b)}, {Name: "i", Value: strconv.Itoa(i)}},
				Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: float64(i)}}})
			ss = append(ss, fmt.Sprintf(`["%d","flood line %d of body %d"]`, now.UnixNano()+int64(i), i, b))
		}
		pb, _ := req.Marshal()
		rw = append(rw, snappy.Encode(nil, pb))
		loki = append(loki, []byte(fmt.Sprintf(`{"streams":[{"stream":{"flood":"%d"},"values":[%s]}]}`, b, strings.Join(ss, ","))))
	}
	for s := range senders {
		wg.Go(func() {
			for i := s; ctx.Err() == nil; i++ {
				l.code("flood-metrics", postBody(n.url("/api/v1/write"), "application/x-protobuf", rw[i%len(rw)], "Content-Encoding", "snappy"))
			}
		})
		wg.Go(func() {
			for i := s; ctx.Err() == nil; i++ {
				l.code("flood-logs", postBody(n.url("/loki/api/v1/push"), "application/json", loki[i%len(loki)]))
			}
		})
	}
}

// TestChaosOverload: unthrottled pushers on every ingest path — many times
// what the server can write — while 64 slow clients hold connections open
// with bodies they never finish. The server sheds load with 429 (and 408
// for the slow ones), memory stays under its limit, normal pushes keep
// being served, and everything acknowledged is readable after.
func TestChaosOverload(t *testing.T) {
	load := 10 * time.Second
	if chaosLong() {
		load = time.Minute
	}
	conf := filepath.Join(t.TempDir(), "lumen.yaml")
	require.NoError(t, os.WriteFile(conf, []byte("remote_write: {body_timeout: 5s}\nloki_push: {body_timeout: 5s}\n"), 0o644))
	n := newChaosNode(t, t.TempDir(), "--checkpoint-interval 5s --config "+conf, "GOMEMLIMIT=512MiB")
	require.NoError(t, n.start())
	ctx, cancel := context.WithTimeout(context.Background(), load)
	defer cancel()
	var peak int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			peak = max(peak, n.rss())
			time.Sleep(100 * time.Millisecond)
		}
	}()
	slowHead := func(path string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: 1048576\r\n\r\nx"
	}
	var slow []func() []string
	for i := range 64 {
		path := "/api/v1/write"
		if i%2 == 1 {
			path = "/loki/api/v1/push"
		}
		slow = append(slow, loopback.SlowClients(n.cfg.HTTPAddr, slowHead(path), 1, load+30*time.Second))
	}
	l := newLedger()
	var wg sync.WaitGroup
	for w := range 4 { // normal pushers, whose every acknowledged item is checked
		wg.Go(func() { l.load(ctx, n, 1000+w, 2, 1_000_000) })
	}
	flood(ctx, &wg, n, l, 128)
	wg.Wait()
	<-sampled
	require.True(t, n.alive())
	for _, wait := range slow {
		for _, line := range wait() {
			require.Contains(t, []string{"HTTP/1.1 408 Request Timeout", ""}, line, "a slow client is cut off, never served")
		}
	}
	l.mu.Lock()
	codes := maps.Clone(l.codes)
	l.mu.Unlock()
	var ok, shed, other int
	for k, v := range codes {
		switch {
		case strings.HasSuffix(k, " 204"), strings.HasSuffix(k, " 200"):
			if !strings.HasPrefix(k, "flood") {
				ok += v
			}
		case strings.HasSuffix(k, " 429"):
			shed += v
		case strings.HasSuffix(k, " 400") && strings.HasPrefix(k, "metrics"): // the refused-request probes of rollBack
		case strings.HasSuffix(k, " 0"): // the client's own 30 s timeout while queued in the kernel
		default:
			other += v
		}
	}
	t.Logf("overload: %s; peak RSS %d MiB (GOMEMLIMIT 512 MiB); requests %v", load, peak>>20, codes)
	require.Positive(t, ok, "normal pushes are still served")
	require.Positive(t, shed, "overload is shed with 429")
	require.Zero(t, other, "no request failed otherwise: %v", codes)
	bound := int64(768 << 20)
	if raceEnabled {
		bound *= 4 // the race detector's shadow memory
	}
	require.Less(t, peak, bound, "memory stays bounded")
	l.verify(t, n, nil)
}
