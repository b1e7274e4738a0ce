package jaegerconf

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/lumenobs/lumen/internal/conformance/golden"
)

// Query is one request of the corpus.
type Query struct {
	// Name is the query's key in the goldens.
	Name string
	// Path is under the API's root (Jaeger's /, Lumen's /jaeger).
	Path   string
	Params url.Values
	// Differs, when set, says how Lumen's answer differs from Jaeger's
	// by design (docs/api.md lists it); adjust brings Jaeger's answer to
	// what Lumen answers instead before comparing.
	Differs string
	adjust  func(data any) any
	// sameAs names the query whose reference answer Lumen's is compared
	// with instead (a documented difference where the reference is wrong).
	sameAs string
}

// Queries are the corpus' requests for a run with base t0 made at now.
func Queries(t0, now time.Time) []Query {
	us := func(d time.Duration) string { return strconv.FormatInt(t0.Add(d).UnixMicro(), 10) }
	window := func(kv ...string) url.Values {
		v := url.Values{"start": {us(-time.Minute)}, "end": {us(Span)}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	qs := []Query{{Name: "services", Path: "/api/services"}}
	for _, svc := range []string{"web", "cart", "payment", "worker", "users", "nope"} {
		qs = append(qs,
			Query{Name: "operations of " + svc + " (legacy)", Path: "/api/services/" + svc + "/operations"},
			Query{Name: "operations of " + svc, Path: "/api/operations", Params: url.Values{"service": {svc}}})
	}
	for _, kind := range []string{"server", "client", "producer", "consumer", "internal"} {
		for _, svc := range []string{"web", "worker"} {
			qs = append(qs, Query{Name: "operations of " + svc + " spanKind=" + kind, Path: "/api/operations",
				Params: url.Values{"service": {svc}, "spanKind": {kind}}})
		}
	}
	for n := 1; n <= Traces; n++ {
		id := TraceID(n)
		qs = append(qs, Query{Name: fmt.Sprintf("trace %d", n), Path: "/api/traces/" + hexID(id[:])})
	}
	short := TraceID(7)
	qs = append(qs,
		Query{Name: "trace 7 by its 16-digit id", Path: "/api/traces/" + hexID(short[8:])},
		Query{Name: "unknown trace", Path: "/api/traces/4a650000000000000000000000000c63"},
		Query{Name: "search web", Path: "/api/traces", Params: window("service", "web")},
		Query{Name: "search web GET /checkout", Path: "/api/traces", Params: window("service", "web", "operation", "GET /checkout")},
		Query{Name: "search payment error=true", Path: "/api/traces", Params: window("service", "payment", "tags", `{"error":"true"}`),
			Differs: `Jaeger v1.76's in-memory store reads tags={"error":"true"} as error=false (the tag arrives as a string, which reads as a false boolean) and returns the traces with an ok span; Lumen returns those with an error span, as Jaeger's other storages do: compared with Jaeger's answer to the search by the error's event attribute, which finds the one failed trace`,
			sameAs:  "search payment event attribute"},
		Query{Name: "search payment error=false", Path: "/api/traces", Params: window("service", "payment", "tags", `{"error":"false"}`)},
		Query{Name: "search web status 500", Path: "/api/traces", Params: window("service", "web", "tags", `{"http.response.status_code":"500"}`)},
		Query{Name: "search web two tags", Path: "/api/traces", Params: window("service", "web", "tags", `{"http.route":"/checkout","http.request.method":"GET"}`)},
		Query{Name: "search cart process tag", Path: "/api/traces", Params: window("service", "cart", "tags", `{"host.name":"cart-1"}`)},
		Query{Name: "search payment event attribute", Path: "/api/traces", Params: window("service", "payment", "tags", `{"exception.type":"CardDeclined"}`)},
		Query{Name: "search web messaging", Path: "/api/traces", Params: window("service", "web", "tags", `{"messaging.system":"kafka"}`)},
		Query{Name: "search web minDuration", Path: "/api/traces", Params: window("service", "web", "minDuration", "1s")},
		Query{Name: "search web maxDuration", Path: "/api/traces", Params: window("service", "web", "maxDuration", "2ms")},
		Query{Name: "search web limit", Path: "/api/traces", Params: window("service", "web", "limit", "2")},
		Query{Name: "search cart operation, tag, minDuration", Path: "/api/traces",
			Params: window("service", "cart", "operation", "POST /cart", "tags", `{"http.route":"/cart"}`, "minDuration", "10ms")},
		Query{Name: "search worker", Path: "/api/traces", Params: window("service", "worker")},
		Query{Name: "search users", Path: "/api/traces", Params: window("service", "users")},
		Query{Name: "search unknown service", Path: "/api/traces", Params: window("service", "nope")},
		Query{Name: "search before the corpus", Path: "/api/traces",
			Params: url.Values{"service": {"web"}, "start": {us(-2 * time.Hour)}, "end": {us(-time.Hour)}}},
		Query{Name: "dependencies", Path: "/api/dependencies",
			Params:  url.Values{"endTs": {strconv.FormatInt(now.Add(time.Minute).UnixMilli(), 10)}, "lookback": {strconv.FormatInt((24 * time.Hour).Milliseconds(), 10)}},
			Differs: "calls within a service (a parent and child span of one service) are not dependencies: Lumen's come from the service graph, which counts calls between services, where Jaeger's in-memory store counts every parent → child pair",
			adjust: func(data any) any {
				links, _ := data.([]any)
				return slices.DeleteFunc(slices.Clone(links), func(l any) bool {
					m, _ := l.(map[string]any)
					return m["parent"] == m["child"]
				})
			}},
	)
	return qs
}

func hexID(b []byte) string { return fmt.Sprintf("%x", b) }

// Answer is a server's normalised answer to a query.
type Answer struct {
	Status int `json:"status"`
	// Body is the envelope with its data normalised (times from T0,
	// processes numbered by service, lists sorted where their order is
	// not defined); error messages are left out (they are in Error).
	Body  any    `json:"body"`
	Error string `json:"error,omitempty"`
}

// Run makes a query of the API at base and normalises the answer.
func Run(ctx context.Context, c *http.Client, base string, q Query, t0 time.Time) (Answer, error) {
	u := base + q.Path
	if len(q.Params) > 0 {
		u += "?" + q.Params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Answer{}, fmt.Errorf("%s: %w", q.Name, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return Answer{}, fmt.Errorf("%s: read answer: %w", q.Name, err)
	}
	a := Answer{Status: resp.StatusCode}
	var env map[string]any
	if err := json.Unmarshal(b, &env); err != nil {
		a.Error = golden.Trim(string(b))
		return a, nil
	}
	if errs, ok := env["errors"].([]any); ok {
		var codes []any
		for _, e := range errs {
			m, _ := e.(map[string]any)
			codes = append(codes, map[string]any{"code": m["code"]})
			if msg, ok := m["msg"].(string); ok {
				a.Error += msg
			}
		}
		env["errors"] = codes
	}
	env["data"] = normalise(q.Path, env["data"], t0)
	a.Body = env
	return a, nil
}

// normalise makes data comparable: sorted where Jaeger's order is not
// defined, times as µs from t0, processes renumbered.
func normalise(path string, data any, t0 time.Time) any {
	list, isList := data.([]any)
	if !isList {
		return data
	}
	switch {
	case path == "/api/services" || len(path) > len("/operations") && path[len(path)-len("/operations"):] == "/operations":
		slices.SortFunc(list, func(a, b any) int { return cmp.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	case path == "/api/operations":
		key := func(v any) string { m, _ := v.(map[string]any); return fmt.Sprint(m["name"], "\x00", m["spanKind"]) }
		slices.SortFunc(list, func(a, b any) int { return cmp.Compare(key(a), key(b)) })
	case path == "/api/dependencies":
		key := func(v any) string { m, _ := v.(map[string]any); return fmt.Sprint(m["parent"], "\x00", m["child"]) }
		slices.SortFunc(list, func(a, b any) int { return cmp.Compare(key(a), key(b)) })
	default: // traces
		for _, t := range list {
			if m, ok := t.(map[string]any); ok {
				normaliseTrace(m, t0)
			}
		}
		key := func(v any) string { m, _ := v.(map[string]any); return fmt.Sprint(m["traceID"]) }
		slices.SortFunc(list, func(a, b any) int { return cmp.Compare(key(a), key(b)) })
	}
	return list
}

func normaliseTrace(t map[string]any, t0 time.Time) {
	base := float64(t0.UnixMicro())
	rel := func(m map[string]any, k string) {
		if v, ok := m[k].(float64); ok {
			m[k] = v - base
		}
	}
	// Processes: numbered p1, p2… in the order of their JSON (service
	// name first), which does not depend on the spans' order.
	procs, _ := t["processes"].(map[string]any)
	type proc struct {
		id, key string
		v       any
	}
	var ps []proc
	for id, p := range procs {
		b, _ := json.Marshal(p)
		ps = append(ps, proc{id, string(b), p})
	}
	slices.SortFunc(ps, func(a, b proc) int { return cmp.Compare(a.key, b.key) })
	rename := map[string]string{}
	newProcs := map[string]any{}
	for i, p := range ps {
		id := "p" + strconv.Itoa(i+1)
		rename[p.id] = id
		newProcs[id] = p.v
	}
	if procs != nil {
		t["processes"] = newProcs
	}
	spans, _ := t["spans"].([]any)
	for _, s := range spans {
		m, ok := s.(map[string]any)
		if !ok {
			continue
		}
		rel(m, "startTime")
		if id, ok := m["processID"].(string); ok {
			m["processID"] = rename[id]
		}
		logs, _ := m["logs"].([]any)
		for _, l := range logs {
			if lm, ok := l.(map[string]any); ok {
				rel(lm, "timestamp")
			}
		}
	}
	key := func(v any) string {
		m, _ := v.(map[string]any)
		st, _ := m["startTime"].(float64)
		return fmt.Sprintf("%020.0f %v", st+1e15, m["spanID"])
	}
	slices.SortFunc(spans, func(a, b any) int { return cmp.Compare(key(a), key(b)) })
}
