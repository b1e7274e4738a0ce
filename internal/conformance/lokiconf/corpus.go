// Package lokiconf is the LogQL conformance corpus: log streams pushed
// alike to a real Loki and to Lumen, the queries run against both, and the
// normalisation that makes their answers comparable. The goldens in
// testdata/ are Loki's answers (`make logql-goldens` regenerates them with
// a Loki built from its Go module); cmd/lumen's conformance test compares
// Lumen's answers with them.
//
// Times are offsets from a base time T0 that each run chooses (a whole hour
// a few hours back), so that the same goldens hold on any day and "the
// future" is the future on both servers.
package lokiconf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Span is how long the corpus lasts from T0.
const Span = time.Hour

// Entry is one log line.
type Entry struct {
	Offset   time.Duration     // from T0
	Line     string            //
	Metadata map[string]string // structured metadata
}

// Stream is a label set and its lines, in time order.
type Stream struct {
	Labels  map[string]string
	Entries []Entry
}

// T0 is the base time of a run at now: the whole hour two hours back, so
// that the corpus lies in the past (but within the 3 h Loki's queriers ask
// its ingesters about) and three hours after T0 lies in the future.
func T0(now time.Time) time.Time { return now.UTC().Truncate(time.Hour).Add(-2 * time.Hour) }

var (
	levels  = []string{"info", "info", "info", "debug", "warn", "error"}
	methods = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	paths   = []string{"/api/cart", "/api/checkout", "/api/users/42", "/health", "/api/search?q=a+b", "/static/app.js"}
	codes   = []int{200, 200, 200, 201, 204, 301, 400, 404, 500, 503}
	users   = []string{"alice", "bob", "carol", "dave", "émile", "zoë"}
	agents  = []string{"curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)", "Go-http-client/1.1", "kube-probe/1.31"}
	colours = []string{"\x1b[31m", "\x1b[32m", "\x1b[33;1m", "\x1b[0m"}
	words   = []string{"héllo wörld", "日本語のログ", "données reçues ✓", "Ελληνικά", "emoji 🚀 launched", "tab\tseparated", "quote \" inside", "ascii only"}
)

// Corpus returns the streams, the same on every call.
func Corpus() []Stream {
	rng := rand.New(rand.NewPCG(7, 13))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	every := 10 * time.Second
	n := int(Span / every)
	var out []Stream

	// JSON API logs, with structured metadata on most lines, in two envs;
	// one line in ten is not JSON.
	for si, env := range []string{"prod", "staging"} {
		s := Stream{Labels: map[string]string{"job": "json", "app": "api", "env": env, "cluster": "eu-1"}}
		for i := 0; i < n; i++ {
			off := time.Duration(i)*every + time.Duration(si*7+1)*time.Millisecond
			if i%10 == 9 {
				s.Entries = append(s.Entries, Entry{Offset: off, Line: "panic: runtime error: index out of range [3] with length 3"})
				continue
			}
			code := codes[rng.IntN(len(codes))]
			lvl := "info"
			if code >= 500 {
				lvl = "error"
			} else if code >= 400 {
				lvl = "warn"
			}
			dur := time.Duration(rng.IntN(2000)) * time.Millisecond
			line := fmt.Sprintf(`{"level":%q,"status":%d,"method":%q,"path":%q,"duration":%q,"latency_ms":%.1f,"bytes":%d,"user":{"id":"u%d","name":%q,"geo":{"country":%q}},"tags":["a","b"],"msg":"request served"}`,
				lvl, code, pick(methods), pick(paths), dur.String(), float64(dur.Microseconds())/1000, rng.IntN(50000), rng.IntN(20), pick(users), pick([]string{"FR", "DE", "US"}))
			if i%7 == 3 {
				// A field whose value is not a number, and one missing status.
				line = fmt.Sprintf(`{"level":"info","status":"n/a","method":"GET","path":"/health","duration":"soon","msg":"health check %d"}`, i)
			}
			md := map[string]string{}
			if i%3 != 0 {
				md["trace_id"] = fmt.Sprintf("%032x", rng.Uint64())
				md["pod"] = fmt.Sprintf("api-%d", i%3)
			}
			s.Entries = append(s.Entries, Entry{Offset: off, Line: line, Metadata: md})
		}
		out = append(out, s)
	}

	// logfmt worker logs: some lines lack duration, some have one that is
	// not a duration, some are not valid logfmt.
	{
		s := Stream{Labels: map[string]string{"job": "logfmt", "service": "worker", "env": "prod", "cluster": "eu-1"}}
		for i := 0; i < n; i++ {
			off := time.Duration(i)*every + 3*time.Millisecond
			lvl := pick(levels)
			var line string
			switch {
			case i%11 == 5:
				line = fmt.Sprintf(`level=%s msg="job skipped" user=%s`, lvl, pick(users))
			case i%13 == 7:
				line = fmt.Sprintf(`level=%s msg="job timed out" duration=n/a size=big`, lvl)
			case i%17 == 2:
				line = `level=error msg="unterminated quote`
			default:
				line = fmt.Sprintf(`ts=2026-11-30T10:%02d:%02dZ level=%s caller=worker.go:%d msg="processed job" job_id=%d duration=%dms size=%dKB status=%d user=%s retry`,
					i/60%60, i%60, lvl, 10+rng.IntN(90), 1000+i, rng.IntN(3000), rng.IntN(900), codes[rng.IntN(len(codes))], pick(users))
			}
			s.Entries = append(s.Entries, Entry{Offset: off, Line: line})
		}
		out = append(out, s)
	}

	// Access logs for pattern and regexp, in two clusters.
	for si, cluster := range []string{"eu-1", "us-2"} {
		s := Stream{Labels: map[string]string{"job": "nginx", "container": "nginx", "env": "prod", "cluster": cluster}}
		for i := 0; i < n; i++ {
			off := time.Duration(i)*every + time.Duration(5+si)*time.Millisecond
			ts := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC).Add(off)
			line := fmt.Sprintf(`10.0.%d.%d - %s [%s] "%s %s HTTP/1.1" %d %d "-" "%s" %.3f`,
				si, rng.IntN(255), pick([]string{"-", "frank"}), ts.Format("02/Jan/2006:15:04:05 -0700"), pick(methods), pick(paths),
				codes[rng.IntN(len(codes))], rng.IntN(100000), pick(agents), rng.Float64()*2)
			s.Entries = append(s.Entries, Entry{Offset: off, Line: line})
		}
		out = append(out, s)
	}

	// Multi-line entries (stack traces), and colours.
	{
		s := Stream{Labels: map[string]string{"job": "java", "app_kubernetes_io_name": "billing", "namespace": "pay"}}
		for i := 0; i < n/3; i++ {
			off := time.Duration(i)*3*every + 9*time.Millisecond
			line := fmt.Sprintf("%sERROR%s [main] c.e.Billing - charge failed for order %d", pick(colours), "\x1b[0m", 5000+i)
			if i%2 == 0 {
				line += fmt.Sprintf("\njava.lang.IllegalStateException: card %d declined\n\tat com.example.Billing.charge(Billing.java:%d)\n\tat com.example.Main.main(Main.java:12)", i, 40+i%9)
			} else {
				line = fmt.Sprintf("%sINFO%s [main] c.e.Billing - charged order %d amount=%d.%02d", pick(colours), "\x1b[0m", 5000+i, rng.IntN(300), rng.IntN(100))
			}
			s.Entries = append(s.Entries, Entry{Offset: off, Line: line})
		}
		out = append(out, s)
	}

	// Unicode lines with no service label at all, and packed lines for
	// unpack.
	{
		s := Stream{Labels: map[string]string{"source": "i18n", "env": "dev"}}
		for i := 0; i < n/2; i++ {
			off := time.Duration(i)*2*every + 11*time.Millisecond
			s.Entries = append(s.Entries, Entry{Offset: off, Line: fmt.Sprintf("%s #%d user=%s level=%s", pick(words), i, pick(users), pick(levels))})
		}
		out = append(out, s)
	}
	{
		s := Stream{Labels: map[string]string{"job": "packed", "namespace": "pay"}}
		for i := 0; i < n/2; i++ {
			off := time.Duration(i)*2*every + 13*time.Millisecond
			inner := fmt.Sprintf("level=%s msg=\"order %d\" amount=%d", pick(levels), i, rng.IntN(500))
			b, _ := json.Marshal(map[string]string{"_entry": inner, "container": pick([]string{"pay-api", "pay-worker"}), "pod": fmt.Sprintf("pay-%d", i%4)})
			s.Entries = append(s.Entries, Entry{Offset: off, Line: string(b)})
		}
		out = append(out, s)
	}
	return out
}

// PushBody is the corpus as one Loki JSON push request, at base time t0.
func PushBody(streams []Stream, t0 time.Time) ([]byte, error) {
	type js struct {
		Stream map[string]string `json:"stream"`
		Values [][]any           `json:"values"`
	}
	var req struct {
		Streams []js `json:"streams"`
	}
	for _, s := range streams {
		j := js{Stream: s.Labels}
		for _, e := range s.Entries {
			v := []any{fmt.Sprint(t0.Add(e.Offset).UnixNano()), e.Line}
			if len(e.Metadata) > 0 {
				v = append(v, e.Metadata)
			}
			j.Values = append(j.Values, v)
		}
		req.Streams = append(req.Streams, j)
	}
	return json.Marshal(req)
}

// labelString is a label set as {a="1", b="2"}, sorted.
func labelString(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, fmt.Sprint(m[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// Push sends the corpus at t0 to a Loki push endpoint at base.
func Push(ctx context.Context, c *http.Client, base string, t0 time.Time) error {
	body, err := PushBody(Corpus(), t0)
	if err != nil {
		return fmt.Errorf("push body: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("push: %s: %s", resp.Status, msg)
	}
	return nil
}
