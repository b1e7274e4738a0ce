package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/snappy"
)

// runLogs pushes Loki protobuf batches, as promtail sends them, of a
// realistic mix of lines (JSON and logfmt application logs, nginx access
// lines, stack traces; 100 bytes to 1 KiB; a fifth carrying a trace id in
// one of the forms Lumen reads), then measures trace-id lookups and a
// needle query over everything sent.
func runLogs(o options, out io.Writer) error {
	if err := loopbackOnly(o.httpAddr); err != nil {
		return err
	}
	if o.mix != "realistic" && o.mix != "uniform" {
		return fmt.Errorf("--mix %q: realistic or uniform", o.mix)
	}
	ready := o.readyURL
	if ready == "" {
		ready = httpURL(o.httpAddr, "/-/ready")
	}
	if err := waitURL(ready, 3*time.Minute); err != nil {
		return err
	}
	requests := int64(o.total / o.batch)
	cpu0, _ := procCPUSeconds(o.pid)
	backend0, _ := procCPUSeconds(o.backendPID)
	client := &http.Client{Timeout: 30 * time.Second}
	var (
		next, sent, rawBytes atomic.Int64
		refused              atomic.Int64
		firstErr             atomic.Value
		wg                   sync.WaitGroup
		idsMu                sync.Mutex
		ids                  []string // a sample of the trace ids sent
		first                = time.Now()
	)
	deadline := time.Now().Add(o.duration)
	t0 := time.Now()
	for w := range o.concurrency {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			gen := &lineGen{rnd: rnd}
			if o.mix == "realistic" {
				gen.zipf = map[string][]int{}
			}
			for time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= requests {
					return
				}
				req, raw, traced := gen.request(o, i)
				pb, err := req.Marshal()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				hr, _ := http.NewRequest(http.MethodPost, "http://"+o.httpAddr+"/loki/api/v1/push", bytes.NewReader(snappy.Encode(nil, pb)))
				hr.Header.Set("Content-Type", "application/x-protobuf")
				resp, err := client.Do(hr)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusNoContent {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					refused.Add(int64(o.batch))
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				sent.Add(int64(o.batch))
				rawBytes.Add(int64(raw))
				if i%16 == 0 && len(traced) > 0 {
					idsMu.Lock()
					ids = append(ids, traced[0])
					idsMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	cpu1, cpuErr := procCPUSeconds(o.pid)
	n := sent.Load()
	fmt.Fprintf(out, "sent %d lines (%d MiB of lines, %s mix) in %s: %.0f lines/s (%d streams, %d lines per request, %d senders)\n",
		n, rawBytes.Load()>>20, o.mix, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), o.streams, o.batch, o.concurrency)
	if r := refused.Load(); r > 0 {
		fmt.Fprintf(out, "refused %d lines; first error: %v\n", r, firstErr.Load())
	}
	if cpuErr == nil && n > 0 {
		fmt.Fprintf(out, "server CPU: %.1f s, %.2f CPU-seconds per million lines\n", cpu1-cpu0, (cpu1-cpu0)/float64(n)*1e6)
	}
	if rss, err := procStatus(o.pid, "VmHWM"); err == nil {
		anon, _ := procStatus(o.pid, "RssAnon")
		fmt.Fprintf(out, "server peak RSS: %s (anonymous now: %s)\n", rss, anon)
	}
	fmt.Fprintf(out, "raw line bytes: %d (divide by the data dir's size after a clean stop for the compression ratio)\n", rawBytes.Load())
	if o.disk != "" && n > 0 {
		b, err := dirBytes(o.disk)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "on disk right after the load: %d bytes in %s, %.1f bytes per line\n", b, o.disk, float64(b)/float64(n))
	}
	if o.drainQueues {
		if err := drainQueues(o, n, "lines", t0, cpu0, backend0, out); err != nil {
			return err
		}
	}
	if o.correlated {
		if err := traceLookups(o, ids, out); err != nil {
			return err
		}
	}
	from, to := first.Add(-time.Minute), time.Now().Add(time.Minute)
	if err := logqlTraceLookups(o, ids, from, to, out); err != nil {
		return err
	}
	for _, q := range []string{`{namespace="shop"} |= "needle"`, `{app="app-7"} |= "needle"`} {
		if err := needleQuery(o, q, from, to, out); err != nil {
			return err
		}
	}
	return nil
}

// logqlTraceLookups times what a Loki user asks to find a trace's lines
// without Lumen's index: {namespace="shop"} |= "<id>" over the whole load,
// for -logql-lookups of the ids sent; each answer must hold the id.
func logqlTraceLookups(o options, ids []string, from, to time.Time, out io.Writer) error {
	if o.logqlLookups == 0 || len(ids) == 0 {
		return nil
	}
	rnd := rand.New(rand.NewPCG(7, 8))
	var id string
	lat, err := timedGets(&http.Client{Timeout: 2 * time.Minute}, o.logqlLookups, func() string {
		id = ids[rnd.IntN(len(ids))]
		q := url.Values{"query": {`{namespace="shop"} |= "` + id + `"`}, "start": {fmt.Sprint(from.UnixNano())}, "end": {fmt.Sprint(to.UnixNano())}, "limit": {"100"}}
		return "http://" + o.httpAddr + "/loki/api/v1/query_range?" + q.Encode()
	}, func(u string, code int, body []byte) error {
		if code != http.StatusOK || !bytes.Contains(body, []byte(id)) {
			return fmt.Errorf("%s: HTTP %d without the id: %.300s", u, code, body)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("trace id by LogQL: %w", err)
	}
	fmt.Fprintf(out, "a trace's lines by LogQL {namespace=\"shop\"} |= \"<id>\" (%d ids): %s\n", len(lat), quantiles(lat))
	return nil
}

// queuedBytes is what the server at addr holds in its queues to remote
// backends.
func queuedBytes(addr string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("drain: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("drain: %w", err)
	}
	queued, seen := 0.0, false
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "otelcol_exporter_queue_size{") {
			seen = true
			if f := strings.Fields(line); len(f) == 2 {
				v, _ := strconv.ParseFloat(f[1], 64)
				queued += v
			}
		}
	}
	if !seen {
		return 0, fmt.Errorf("drain: no otelcol_exporter_queue_size on %s/metrics: no remote backend", addr)
	}
	return queued, nil
}

// drainQueues waits until every queue to a remote backend is empty (what
// the load sent is in the backend) and reports when, and the server's CPU
// up to then per million lines.
func drainQueues(o options, n int64, unit string, t0 time.Time, cpu0, backend0 float64, out io.Writer) error {
	loadEnd := time.Now()
	deadline := loadEnd.Add(10 * time.Minute)
	addrs := []string{o.httpAddr}
	if o.alsoQueues != "" {
		addrs = append(addrs, strings.Split(o.alsoQueues, ",")...)
	}
	for {
		queued := 0.0
		for _, addr := range addrs {
			q, err := queuedBytes(addr)
			if err != nil {
				return err
			}
			queued += q
		}
		if queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("drain: %.0f bytes still queued after 10 minutes", queued)
		}
		time.Sleep(100 * time.Millisecond)
	}
	done := time.Now()
	fmt.Fprintf(out, "queues empty %.1f s after the load: %.0f %s/s end to end\n", done.Sub(loadEnd).Seconds(), float64(n)/done.Sub(t0).Seconds(), unit)
	if cpu, err := procCPUSeconds(o.pid); err == nil && n > 0 {
		fmt.Fprintf(out, "server CPU until sent: %.1f s, %.2f CPU-seconds per million %s\n", cpu-cpu0, (cpu-cpu0)/float64(n)*1e6, unit)
	}
	if o.backendPID > 0 && n > 0 {
		if cpu, err := procCPUSeconds(o.backendPID); err == nil {
			fmt.Fprintf(out, "backend CPU until sent: %.1f s, %.2f CPU-seconds per million %s\n", cpu-backend0, (cpu-backend0)/float64(n)*1e6, unit)
		}
	}
	return nil
}

// traceLookups asks the correlated API for traces known from logs.
func traceLookups(o options, ids []string, out io.Writer) error {
	if o.lookups == 0 || len(ids) == 0 {
		return nil
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	lat, err := timedGets(&http.Client{Timeout: 10 * time.Second}, o.lookups, func() string {
		return "http://" + o.httpAddr + "/api/v1/traces/" + ids[rnd.IntN(len(ids))] + "?include=logs"
	}, func(u string, code int, body []byte) error {
		if code != http.StatusOK || !bytes.Contains(body, []byte(`"logCount":`)) {
			return fmt.Errorf("%s: HTTP %d: %.200s", u, code, body)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("trace by id: %w", err)
	}
	fmt.Fprintf(out, "trace's logs by id over HTTP (%d lookups): %s\n", len(lat), quantiles(lat))
	return nil
}

// needleQuery times a rare-string query over the whole load: every
// stream ({namespace="shop"}) or one of them.
func needleQuery(o options, query string, from, to time.Time, out io.Writer) error {
	q := url.Values{"query": {query}, "start": {fmt.Sprint(from.UnixNano())}, "end": {fmt.Sprint(to.UnixNano())}, "limit": {"1000"}}
	first := true
	lat, err := timedGets(&http.Client{Timeout: 2 * time.Minute}, 5, func() string {
		return "http://" + o.httpAddr + "/loki/api/v1/query_range?" + q.Encode()
	}, func(_ string, code int, body []byte) error {
		if code != http.StatusOK {
			return fmt.Errorf("HTTP %d: %.300s", code, body)
		}
		if first {
			fmt.Fprintf(out, "%s: %d matching lines\n", query, bytes.Count(body, []byte(" needle")))
			first = false
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("needle query: %w", err)
	}
	fmt.Fprintf(out, "%s (%d runs): min %s, median %s, max %s\n", query, len(lat), lat[0].Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	return nil
}

type lineGen struct {
	rnd *rand.Rand
	n   int
	// zipf, when set, draws user ids, items, client addresses, paths and
	// sizes from skewed distributions, as real traffic is (a few hot
	// users and pages); otherwise uniformly, the worst case for a
	// compressor.
	zipf map[string][]int
}

// pick draws a value in [0, n): Zipf-distributed in the realistic mix,
// uniform otherwise.
func (g *lineGen) pick(what string, n int) int {
	if g.zipf == nil {
		return g.rnd.IntN(n)
	}
	// Draws are taken from a table made once per field: sampling a Zipf
	// distribution costs more than the rest of a line, and the generator
	// shares the machine with the server.
	t := g.zipf[what]
	if t == nil {
		z := rand.NewZipf(g.rnd, 1.2, 1, uint64(n-1))
		t = make([]int, 1<<16)
		for i := range t {
			t[i] = int(z.Uint64())
		}
		g.zipf[what] = t
	}
	return t[g.rnd.IntN(len(t))]
}

var (
	paths  = []string{"/api/v1/cart", "/api/v1/cart/items", "/api/v1/checkout", "/api/v1/products/%d", "/healthz", "/api/v1/users/%d/orders", "/static/app.%d.js"}
	agents = []string{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36", "curl/8.5.0", "kube-probe/1.31", "Go-http-client/1.1"}
	msgs   = []string{"added item to cart", "payment authorized", "cache miss, loading from database", "user session refreshed", "order persisted", "retrying upstream call", "rate limit applied"}
	levels = []string{"info", "info", "info", "info", "debug", "warn", "error"}
)

func (g *lineGen) hex(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rnd.Uint32())
	}
	return hex.EncodeToString(b)
}

// duration is a request's duration in ms: log-normal around 20 ms in the
// realistic mix, uniform up to 300 ms otherwise.
func (g *lineGen) duration() float64 {
	if g.zipf == nil {
		return g.rnd.Float64() * 300
	}
	return math.Round(math.Exp(3+g.rnd.NormFloat64())*10) / 10
}

// line returns one log line; with a trace id, in one of the forms a real
// application writes it.
func (g *lineGen) line(ts time.Time, traceID, spanID string) (string, push.LabelsAdapter) {
	g.n++
	r := g.rnd
	pi := g.pick("path", len(paths))
	path := paths[pi]
	if strings.Contains(path, "%d") {
		path = fmt.Sprintf(path, g.pick("id", 5000))
	}
	var md push.LabelsAdapter
	var s string
	switch k := r.IntN(10); {
	case k < 4: // JSON application log
		s = fmt.Sprintf(`{"ts":%q,"level":%q,"logger":"cart.service","msg":%q,"user_id":"u-%d","item":"sku-%d","qty":%d,"duration_ms":%.1f`,
			ts.UTC().Format(time.RFC3339Nano), levels[r.IntN(len(levels))], msgs[g.pick("msg", len(msgs))], g.pick("user", 100000), g.pick("item", 20000), 1+g.pick("qty", 5), g.duration())
		if traceID != "" {
			s += fmt.Sprintf(`,"trace_id":%q,"span_id":%q`, traceID, spanID)
		}
		s += "}"
	case k < 7: // logfmt
		s = fmt.Sprintf(`ts=%s level=%s caller=db.go:%d msg="slow query" query="SELECT id, total, status FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT %d" duration=%dms rows=%d`,
			ts.UTC().Format(time.RFC3339Nano), levels[r.IntN(len(levels))], 100+g.pick("line", 400), 10+g.pick("limit", 90), int(g.duration()), g.pick("rows", 100))
		if traceID != "" {
			s += " traceID=" + traceID + " spanID=" + spanID
		}
	case k < 9: // nginx access log
		client := g.pick("client", 1<<24)
		size := r.IntN(50000)
		if g.zipf != nil {
			size = 512 + 997*pi + g.pick("size", 64) // a page's size varies little
		}
		s = fmt.Sprintf(`10.%d.%d.%d - - [%s] "GET %s HTTP/1.1" %d %d "-" %q %.3f`,
			client>>16, client>>8&255, client&255, ts.UTC().Format("02/Jan/2006:15:04:05 -0700"), path, []int{200, 200, 200, 304, 404, 500}[g.pick("status", 6)], size, agents[g.pick("agent", len(agents))], g.duration()/1000)
		if traceID != "" {
			s += " traceparent=00-" + traceID + "-" + spanID + "-01"
		}
	default: // an exception with a stack
		s = fmt.Sprintf("ERROR [%s] c.e.cart.CheckoutController - checkout failed for order %d\njava.lang.IllegalStateException: inventory reservation expired\n\tat com.example.cart.InventoryClient.reserve(InventoryClient.java:%d)\n\tat com.example.cart.CheckoutService.checkout(CheckoutService.java:%d)\n\tat com.example.cart.CheckoutController.post(CheckoutController.java:61)\n\tat jdk.internal.reflect.GeneratedMethodAccessor112.invoke(Unknown Source)\n\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)",
			ts.UTC().Format(time.RFC3339Nano), r.IntN(1000000), 100+g.pick("line", 200), 40+g.pick("line2", 100))
		if traceID != "" {
			md = push.LabelsAdapter{{Name: "trace_id", Value: traceID}, {Name: "span_id", Value: spanID}}
		}
	}
	if g.n%100000 == 0 {
		s += " needle"
	}
	return s, md
}

// request builds one push of o.batch lines over 10 of the o.streams
// streams; a fifth of the lines belong to traces of 5 lines each.
func (g *lineGen) request(o options, i int64) (push.PushRequest, int, []string) {
	now := time.Now()
	per := max(o.batch/10, 1)
	var req push.PushRequest
	raw := 0
	var traced []string
	for s := range 10 {
		app := (int(i)*10 + s) % o.streams
		st := push.Stream{Labels: fmt.Sprintf(`{app="app-%d", env="prod", namespace="shop", pod="app-%d-7d9f8c6b5-x%d"}`, app, app, app%3)}
		traceID, spanID, left := "", "", 0
		for j := range per {
			if left == 0 && g.rnd.IntN(25) == 0 {
				traceID, spanID, left = g.hex(16), g.hex(8), 5
				traced = append(traced, traceID)
			}
			tid, sid := "", ""
			if left > 0 {
				tid, sid = traceID, spanID
				left--
			}
			ts := now.Add(time.Duration(j) * time.Microsecond)
			line, md := g.line(ts, tid, sid)
			raw += len(line)
			st.Entries = append(st.Entries, push.Entry{Timestamp: ts, Line: line, StructuredMetadata: md})
		}
		req.Streams = append(req.Streams, st)
	}
	return req, raw, traced
}
