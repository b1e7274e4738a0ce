// Command lumen-load drives a running `lumen serve` with OTLP trace batches
// over gRPC, then reads trace ids back through the HTTP API, and reports
// throughput, the server's CPU time per million spans, its memory and disk,
// and trace-by-id latency. Every loop is bounded in count and time.
package main

import (
	"bufio"
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"

	"github.com/lumenobs/lumen/internal/otlptest"
)

type options struct {
	grpcAddr, httpAddr string
	batch, perTrace    int
	concurrency        int
	total              int
	duration           time.Duration
	lookups            int
	idle               time.Duration
	pid                int
	compress           bool
	signal             string
	queries            []string
	queryRuns          int
	jaegerURL          string
	correlated         bool
	readyURL           string
	drainQueues        bool
	backendPID         int
	alsoQueues         string
	logqlLookups       int
	names              int
	series             int
	streams            int
	mix                string
	searches           int
	podsDir, agentAddr string
	rate, files        int
	tlsCA, token       string
	rules              int
	rulesFile          string
	disk               string
	otlpHTTP           string
}

func main() {
	var o options
	flag.StringVar(&o.grpcAddr, "grpc", "127.0.0.1:4317", "OTLP gRPC address of the server (loopback only)")
	flag.StringVar(&o.httpAddr, "http", "127.0.0.1:4320", "HTTP API address of the server")
	flag.StringVar(&o.otlpHTTP, "otlp-http", "", "traces: send OTLP/HTTP protobuf to this address's /v1/traces instead of OTLP gRPC to -grpc")
	flag.IntVar(&o.batch, "batch", 1000, "spans per request")
	flag.IntVar(&o.perTrace, "spans-per-trace", 10, "spans per trace")
	flag.IntVar(&o.concurrency, "concurrency", 4, "concurrent senders")
	flag.IntVar(&o.total, "total", 1_000_000, "spans to send at most")
	flag.DurationVar(&o.duration, "duration", 2*time.Minute, "longest time to send for")
	flag.IntVar(&o.lookups, "lookups", 2000, "trace-by-id requests after the load")
	flag.DurationVar(&o.idle, "idle", 0, "traces: after the lookups right after the load, wait this long and time them again (the server idle)")
	flag.IntVar(&o.pid, "pid", 0, "server process id, to report its peak RSS (VmHWM) and CPU time from /proc")
	flag.BoolVar(&o.compress, "gzip", false, "gzip-compress requests")
	flag.StringVar(&o.signal, "signal", "traces", "traces (OTLP gRPC), metrics (remote write 1.0 to --http), logs (Loki push to --http), podlogs (container log files for lumen agent), promql (time -query over --http's Prometheus API); for the rules benchmark: rulefile (write -rules recording rules to -rules-file), live (every -series once per 15 s, for -duration), ruleeval (watch --http's rule groups and -pid's CPU for -duration)")
	flag.IntVar(&o.streams, "streams", 100, "logs: streams")
	flag.IntVar(&o.searches, "searches", 0, "traces: Tempo searches to time after the load")
	flag.StringVar(&o.mix, "mix", "realistic", "logs: realistic (skewed values, as real traffic) or uniform (uniformly random values, a compressor's worst case)")
	flag.IntVar(&o.series, "series", 100_000, "metrics: active series")
	flag.StringVar(&o.podsDir, "pods-dir", "", "podlogs: the /var/log/pods-shaped directory to write container logs into")
	flag.StringVar(&o.agentAddr, "agent", "127.0.0.1:4321", "podlogs: the agent's HTTP address, for its /metrics")
	flag.IntVar(&o.rate, "rate", 5000, "podlogs: lines per second, over all files")
	flag.IntVar(&o.files, "files", 50, "podlogs: container log files")
	flag.StringVar(&o.disk, "disk", "", "the server's data directory: its bytes on disk are reported after the load")
	flag.Func("query", "promql: a query to time (repeat for several; default: a rate by job over one metric name and over all)", func(q string) error {
		o.queries = append(o.queries, q)
		return nil
	})
	flag.StringVar(&o.jaegerURL, "jaeger-url", "", "traces: time trace-by-id through this Jaeger API prefix (the id is appended), e.g. http://127.0.0.1:16686/api/traces/ or Lumen's http://127.0.0.1:4320/jaeger/api/traces/")
	flag.BoolVar(&o.correlated, "correlated", true, "traces and logs: also time Lumen's correlated trace by id (/api/v1/traces/{id})")
	flag.IntVar(&o.logqlLookups, "logql-lookups", 5, "logs: trace ids to look for with LogQL ({namespace=\"shop\"} |= \"<id>\") after the load, as a Loki user does")
	flag.StringVar(&o.readyURL, "ready-url", "", "traces and logs: the URL that answers 200 once the server is ready (default: --http's /-/ready)")
	flag.StringVar(&o.alsoQueues, "also-queues", "", "with -drain-queues, other servers' HTTP addresses (comma-separated: the other replicas) whose queues must be empty too")
	flag.IntVar(&o.backendPID, "backend-pid", 0, "traces and logs: with -drain-queues, the remote backend's process id, to report its CPU time from the start of the load until the queues are empty")
	flag.BoolVar(&o.drainQueues, "drain-queues", false, "traces and logs: before the lookups, wait until Lumen's queues to its remote backends are empty (otelcol_exporter_queue_size 0 on --http's /metrics) and report how long that took")
	flag.IntVar(&o.names, "names", 100, "metrics: metric names the series are spread over (app_metric_N; 1: all are http_requests_total)")
	flag.IntVar(&o.queryRuns, "query-runs", 20, "promql: runs of each query, instant and range")
	flag.IntVar(&o.rules, "rules", 1000, "rulefile: recording rules to write")
	flag.StringVar(&o.rulesFile, "rules-file", "rules.yml", "rulefile: where to write them")
	flag.StringVar(&o.tlsCA, "tls-ca", "", "traces: the server speaks TLS with a certificate of this CA")
	flag.StringVar(&o.token, "token", "", "traces: bearer token sent on every request")
	flag.Parse()
	if err := setSecure(o.tlsCA, o.token); err != nil {
		fmt.Fprintln(os.Stderr, "lumen-load:", err)
		os.Exit(1)
	}
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lumen-load:", err)
		os.Exit(1)
	}
}

func run(o options, out io.Writer) error {
	switch o.signal {
	case "metrics":
		return runMetrics(o, out)
	case "logs":
		return runLogs(o, out)
	case "podlogs":
		return runPodLogs(o, out)
	case "rulefile":
		return writeRuleFile(o.rulesFile, o.rules)
	case "live":
		return runLive(o, out)
	case "ruleeval":
		return runRuleEval(o, out)
	case "promql":
		return runPromQL(o, out)
	}
	if err := loopbackOnly(o.grpcAddr); err != nil {
		return err
	}
	ready := o.readyURL
	if ready == "" {
		ready = httpURL(o.httpAddr, "/-/ready")
	}
	if err := waitURL(ready, 10*time.Second); err != nil {
		return err
	}
	conn, err := grpc.NewClient(o.grpcAddr, grpcOptions()...)
	if err != nil {
		return fmt.Errorf("dial %s: %w", o.grpcAddr, err)
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	var callOpts []grpc.CallOption
	if o.compress {
		callOpts = append(callOpts, grpc.UseCompressor(gzip.Name))
	}
	export := func(ctx context.Context, td ptrace.Traces) error {
		_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(td), callOpts...)
		return err
	}
	if o.otlpHTTP != "" {
		if err := loopbackOnly(o.otlpHTTP); err != nil {
			return err
		}
		export = otlpHTTPExporter(httpURL(o.otlpHTTP, "/v1/traces"), o.compress)
	}

	// Payloads are built before the clock starts: the generator's work is
	// not the server's.
	const distinct = 64
	reqs := make([]ptrace.Traces, distinct)
	g := otlptest.New(uint64(time.Now().UnixNano()))
	for i := range reqs {
		reqs[i] = g.Traces(o.batch/o.perTrace, o.perTrace)
	}
	cpu0, _ := procCPUSeconds(o.pid)
	backend0, _ := procCPUSeconds(o.backendPID)
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	var (
		sent, refused atomic.Int64
		next          atomic.Int64
		idsMu         sync.Mutex
		ids           []pcommon.TraceID
		wg            sync.WaitGroup
		firstErr      atomic.Value
	)
	requests := int64(o.total / o.batch)
	start := time.Now()
	for w := range o.concurrency {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= requests {
					return
				}
				// Fresh trace ids for every request: copy a template and
				// rewrite ids, so the server sees new traces throughout.
				td := ptrace.NewTraces()
				reqs[i%distinct].CopyTo(td)
				first := otlptest.Renumber(td, rnd)
				// And times of now, as live traffic has: traces spread
				// over the run, not all in the minute the templates were made.
				shift(td, pcommon.Timestamp(time.Since(g.Start)))
				if err := export(ctx, td); err != nil {
					if ctx.Err() != nil {
						return
					}
					refused.Add(int64(o.batch))
					firstErr.CompareAndSwap(nil, err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				sent.Add(int64(o.batch))
				if i%10 == 0 {
					idsMu.Lock()
					ids = append(ids, first)
					idsMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, cpuErr := procCPUSeconds(o.pid)
	fmt.Fprintf(out, "sent %d spans in %s: %.0f spans/s (batch %d, %d spans/trace, %d senders)\n",
		sent.Load(), elapsed.Round(time.Millisecond), float64(sent.Load())/elapsed.Seconds(), o.batch, o.perTrace, o.concurrency)
	if n := refused.Load(); n > 0 {
		fmt.Fprintf(out, "refused %d spans; first error: %v\n", n, firstErr.Load())
	}
	if cpuErr == nil && sent.Load() > 0 {
		fmt.Fprintf(out, "server CPU: %.1f s, %.1f CPU-seconds per million spans\n", cpu1-cpu0, (cpu1-cpu0)/float64(sent.Load())*1e6)
	}
	if rss, err := procStatus(o.pid, "VmHWM"); err == nil {
		anon, _ := procStatus(o.pid, "RssAnon")
		file, _ := procStatus(o.pid, "RssFile")
		fmt.Fprintf(out, "server peak RSS: %s (now: %s anonymous, %s file-backed: Badger's memory-mapped files)\n", rss, anon, file)
	}
	if o.disk != "" && sent.Load() > 0 {
		n, err := dirBytes(o.disk)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "on disk: %d bytes in %s, %.1f bytes per span\n", n, o.disk, float64(n)/float64(sent.Load()))
	}
	if m, err := scrape(o.httpAddr); err == nil && o.jaegerURL == "" {
		disk := m["lumen_store_disk_bytes"]
		fmt.Fprintf(out, "server RSS now: %.0f MiB; store on disk: %.1f MiB", m["process_resident_memory_bytes"]/(1<<20), disk/(1<<20))
		if s := m[`lumen_ingest_items_stored_total{signal="traces"}`]; s > 0 {
			fmt.Fprintf(out, ", %.1f bytes per stored span (%.0f spans stored in all)", disk/s, s)
		}
		fmt.Fprintln(out)
	}
	if o.drainQueues {
		if err := drainQueues(o, sent.Load(), "spans", start, cpu0, backend0, out); err != nil {
			return err
		}
		if err := awaitReadable(o, ids, out); err != nil {
			return err
		}
	}
	if err := lookups(o, ids, out); err != nil {
		return err
	}
	if o.idle > 0 && o.lookups > 0 {
		time.Sleep(o.idle)
		fmt.Fprintf(out, "-- after %s idle\n", o.idle)
		if err := lookups(o, ids, out); err != nil {
			return err
		}
	}
	return searches(o, start.Add(-5*time.Minute), time.Now().Add(time.Minute), out)
}

// searches times Tempo searches over everything sent: service + span
// duration + attribute (a TraceQL filter), and service alone.
func searches(o options, from, to time.Time, out io.Writer) error {
	if o.searches == 0 {
		return nil
	}
	client := &http.Client{Timeout: 30 * time.Second}
	rnd := rand.New(rand.NewPCG(7, 8))
	routes := []string{"/api/orders", "/api/orders/{id}", "/api/cart", "/api/users/{id}", "/healthz", "/api/checkout"}
	for _, kind := range []string{"service + duration + attribute", "service"} {
		found := 0
		lat, err := timedGets(client, o.searches, func() string {
			q := fmt.Sprintf(`{ resource.service.name = "svc-%d" && duration > 4ms && span.http.route = %q }`, rnd.IntN(4), routes[rnd.IntN(len(routes))])
			if kind == "service" {
				q = fmt.Sprintf(`{ resource.service.name = "svc-%d" }`, rnd.IntN(4))
			}
			return "http://" + o.httpAddr + "/api/search?" + url.Values{"q": {q}, "start": {fmt.Sprint(from.Unix())}, "end": {fmt.Sprint(to.Unix())}, "limit": {"20"}}.Encode()
		}, func(u string, code int, body []byte) error {
			if code != http.StatusOK {
				return fmt.Errorf("%s: HTTP %d: %.200s", u, code, body)
			}
			found += strings.Count(string(body), `"traceID"`)
			return nil
		})
		if err != nil {
			return fmt.Errorf("search: %w", err)
		}
		fmt.Fprintf(out, "search (%s), %d queries, %.1f traces each: %s\n", kind, len(lat), float64(found)/float64(len(lat)), quantiles(lat))
	}
	return nil
}

// shift moves every span and event of td later by d.
func shift(td ptrace.Traces, d pcommon.Timestamp) {
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				sp.SetStartTimestamp(sp.StartTimestamp() + d)
				sp.SetEndTimestamp(sp.EndTimestamp() + d)
				for _, ev := range sp.Events().All() {
					ev.SetTimestamp(ev.Timestamp() + d)
				}
			}
		}
	}
}

// waitReady waits for the server's /-/ready, so a load run does not start
// against a server that is not there.
func waitReady(addr string, limit time.Duration) error {
	return waitURL(httpURL(addr, "/-/ready"), limit)
}

// waitURL waits for u to answer 200.
func waitURL(u string, limit time.Duration) error {
	addr := u
	deadline := time.Now().Add(limit)
	for {
		resp, err := httpClient(5 * time.Second).Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server at %s is not ready after %s: %v", addr, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// awaitReadable waits, once the queues to a remote backend are empty,
// until every trace the lookups will ask for is read whole through Lumen
// — a backend may answer a push before what it took can be read (Tempo
// does) — and reports how long that took (at most two minutes).
func awaitReadable(o options, ids []pcommon.TraceID, out io.Writer) error {
	if o.lookups == 0 || len(ids) == 0 {
		return nil
	}
	t0 := time.Now()
	client := httpClient(10 * time.Second)
	for _, id := range ids {
		u := fmt.Sprintf(httpURL(o.httpAddr, "/api/v1/traces/%s?include=trace"), id.String())
		for {
			resp, err := client.Get(u)
			if err != nil {
				return fmt.Errorf("await readable: %w", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			if resp.StatusCode != http.StatusNotFound || time.Since(t0) > 2*time.Minute {
				return fmt.Errorf("await readable: %s: HTTP %d after %s", u, resp.StatusCode, time.Since(t0).Round(time.Millisecond))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	fmt.Fprintf(out, "every looked-up trace readable %.1f s after the queues emptied (%d traces)\n", time.Since(t0).Seconds(), len(ids))
	return nil
}

// lookups times trace-by-id requests: the spans alone (what a tracing
// backend's trace-by-id answers: Lumen's /api/v1/traces/{id}?include=trace,
// or, with -jaeger-url, the Jaeger API of Lumen or of Jaeger itself) and,
// with -correlated, Lumen's correlated answer (spans, log lines and
// metrics).
func lookups(o options, ids []pcommon.TraceID, out io.Writer) error {
	if o.lookups == 0 || len(ids) == 0 {
		return nil
	}
	type kind struct{ what, url string }
	kinds := []kind{{"trace by id over HTTP, spans only", httpURL(o.httpAddr, "/api/v1/traces/%s?include=trace")}}
	if o.jaegerURL != "" {
		kinds = []kind{{"trace by id, Jaeger API " + o.jaegerURL, o.jaegerURL + "%s"}}
	}
	if o.correlated {
		kinds = append(kinds, kind{"correlated trace by id over HTTP (spans, logs, metrics)", httpURL(o.httpAddr, "/api/v1/traces/%s")})
	}
	for _, k := range kinds {
		rnd := rand.New(rand.NewPCG(3, 4))
		lat, err := timedGets(httpClient(10*time.Second), o.lookups, func() string {
			return fmt.Sprintf(k.url, ids[rnd.IntN(len(ids))].String())
		}, func(u string, code int, body []byte) error {
			if code != http.StatusOK {
				return fmt.Errorf("%s: HTTP %d", u, code)
			}
			if !bytes.Contains(body, []byte("spanID")) && !bytes.Contains(body, []byte("spanId")) && !bytes.Contains(body, []byte("span_id")) {
				return fmt.Errorf("%s: no spans in the answer: %.200s", u, body)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", k.what, err)
		}
		fmt.Fprintf(out, "%s (%d lookups): %s\n", k.what, len(lat), quantiles(lat))
	}
	return nil
}

// timedGets issues up to n GETs of the URLs next gives, for at most a
// minute, checks each answer, and returns their latencies, sorted.
func timedGets(client *http.Client, n int, next func() string, check func(u string, code int, body []byte) error) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	deadline := time.Now().Add(time.Minute)
	for range n {
		if time.Now().After(deadline) {
			break
		}
		u := next()
		t0 := time.Now()
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		authorize(req)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if err := check(u, resp.StatusCode, body); err != nil {
			return nil, err
		}
	}
	slices.Sort(lat)
	return lat, nil
}

// quantiles writes sorted latencies as p50, p99 and max.
func quantiles(lat []time.Duration) string {
	return fmt.Sprintf("p50 %s, p99 %s, max %s", lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
}

// loopbackOnly refuses to send load anywhere but this machine.
func loopbackOnly(addr string) error {
	if !strings.HasPrefix(addr, "127.") && !strings.HasPrefix(addr, "[::1]") && !strings.HasPrefix(addr, "localhost") {
		return fmt.Errorf("refusing to send load to %s: loopback addresses only", addr)
	}
	return nil
}

// procCPUSeconds is the user+system CPU time of process pid.
func procCPUSeconds(pid int) (float64, error) {
	if pid == 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

func procStatus(pid int, key string) (string, error) {
	if pid == 0 {
		return "", errors.New("no pid")
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s not in /proc/%d/status", key, pid)
}

// scrape reads the server's own metrics as name{labels} -> value.
func scrape(addr string) (map[string]float64, error) {
	resp, err := httpClient(10 * time.Second).Get(httpURL(addr, "/metrics"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// otlpHTTPExporter posts each request to url as OTLP/HTTP protobuf,
// gzipped when compress is set, as the Collector's otlphttp exporter does.
func otlpHTTPExporter(url string, compress bool) func(context.Context, ptrace.Traces) error {
	client := httpClient(time.Minute)
	return func(ctx context.Context, td ptrace.Traces) error {
		body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		if err != nil {
			return err
		}
		if compress {
			var buf bytes.Buffer
			zw := stdgzip.NewWriter(&buf)
			_, _ = zw.Write(body)
			if err := zw.Close(); err != nil {
				return err
			}
			body = buf.Bytes()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		if compress {
			req.Header.Set("Content-Encoding", "gzip")
		}
		authorize(req)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("post %s: %s: %q", url, resp.Status, msg)
		}
		return nil
	}
}
