package lokiconf

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Query is one request of the corpus: an endpoint, its parameters (times
// as offsets from T0) and a LogQL expression.
type Query struct {
	// Key identifies the query in the goldens: its block in the queries
	// file, normalised.
	Key    string
	Kind   string            // range, instant, labels, values, series, stats, volume, volume_range, detected_fields, patterns
	Params map[string]string // start, end, time (offsets), step, limit, direction, name, …
	Exprs  []string          // the query; for series, each match[]
	Line   int               // where it starts in the file
	// Refused is why Lumen answers this query with a 400 instead of Loki's
	// answer (a `! reason` line in the block), empty when it must match.
	Refused string
}

var urlPaths = map[string]string{
	"range": "/loki/api/v1/query_range", "instant": "/loki/api/v1/query", "labels": "/loki/api/v1/labels",
	"values": "/loki/api/v1/label/%s/values", "series": "/loki/api/v1/series", "stats": "/loki/api/v1/index/stats",
	"volume": "/loki/api/v1/index/volume", "volume_range": "/loki/api/v1/index/volume_range",
	"detected_fields": "/loki/api/v1/detected_fields", "patterns": "/loki/api/v1/patterns",
	"detected_labels": "/loki/api/v1/detected_labels",
}

// LoadQueries reads a queries file: blocks separated by blank lines, each
// a line `kind key=value …` and the expression on the lines after it
// (joined with spaces; for series, one match[] per line). A line `! why`
// in a block says Lumen refuses the query with a 400 and why. Lines
// starting with # are comments.
func LoadQueries(path string) ([]Query, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("queries: %w", err)
	}
	defer f.Close()
	var (
		out []Query
		cur *Query
	)
	flush := func() error {
		if cur == nil {
			return nil
		}
		if err := cur.finish(); err != nil {
			return fmt.Errorf("%s:%d: %w", path, cur.Line, err)
		}
		out = append(out, *cur)
		cur = nil
		return nil
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t")
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "#"):
		case strings.TrimSpace(line) == "":
			if err := flush(); err != nil {
				return nil, err
			}
		case cur == nil:
			fields := strings.Fields(line)
			cur = &Query{Kind: fields[0], Params: map[string]string{}, Line: n}
			if _, ok := urlPaths[cur.Kind]; !ok {
				return nil, fmt.Errorf("%s:%d: unknown kind %q", path, n, cur.Kind)
			}
			for _, kv := range fields[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return nil, fmt.Errorf("%s:%d: %q is not key=value", path, n, kv)
				}
				cur.Params[k] = v
			}
		case strings.HasPrefix(line, "! "):
			cur.Refused = strings.TrimSpace(line[2:])
		default:
			cur.Exprs = append(cur.Exprs, strings.TrimSpace(line))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("queries: %w", err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	seen := map[string]int{}
	for _, q := range out {
		if l, ok := seen[q.Key]; ok {
			return nil, fmt.Errorf("%s:%d: the same query as line %d", path, q.Line, l)
		}
		seen[q.Key] = q.Line
	}
	return out, nil
}

func (q *Query) finish() error {
	if q.Kind != "series" && len(q.Exprs) > 1 {
		q.Exprs = []string{strings.Join(q.Exprs, " ")}
	}
	switch q.Kind {
	case "range", "volume_range", "patterns":
		setDefault(q.Params, "start", "0s")
		setDefault(q.Params, "end", "60m")
		setDefault(q.Params, "step", "60s")
	case "instant":
		setDefault(q.Params, "time", "60m")
	default:
		setDefault(q.Params, "start", "0s")
		setDefault(q.Params, "end", "60m")
	}
	if (q.Kind == "range" || q.Kind == "instant" || q.Kind == "stats" || q.Kind == "volume" || q.Kind == "volume_range" || q.Kind == "detected_fields" || q.Kind == "patterns") && len(q.Exprs) != 1 {
		return fmt.Errorf("a %s query needs one expression", q.Kind)
	}
	if q.Kind == "values" && q.Params["name"] == "" {
		return fmt.Errorf("values needs name=")
	}
	if st, ok := q.Params["step"]; ok {
		// Loki aligns steps to the epoch and T0 is a whole hour: a step
		// that does not divide an hour would tie the answer to the hour
		// of the run. (0s is kept: a query Loki refuses.)
		d, err := time.ParseDuration(st)
		if err != nil {
			return fmt.Errorf("step=%s: %w", st, err)
		}
		if d > 0 && time.Hour%d != 0 {
			return fmt.Errorf("step=%s does not divide an hour", st)
		}
	}
	for _, k := range []string{"start", "end", "time"} {
		if v, ok := q.Params[k]; ok {
			if _, err := parseOffset(v); err != nil {
				return fmt.Errorf("%s=%s: %w", k, v, err)
			}
		}
	}
	keys := make([]string, 0, len(q.Params))
	for k := range q.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(q.Kind)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, q.Params[k])
	}
	for _, e := range q.Exprs {
		b.WriteString(" | ")
		b.WriteString(e)
	}
	q.Key = b.String()
	return nil
}

func setDefault(m map[string]string, k, v string) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

// parseOffset reads an offset from T0: a Go duration, possibly negative,
// with a fraction of a second where wanted (30m0.5s).
func parseOffset(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

// Request is the HTTP request of q at base time t0 against base (a URL).
func (q Query) Request(ctx context.Context, base string, t0 time.Time) (*http.Request, error) {
	v := url.Values{}
	for k, p := range q.Params {
		switch k {
		case "start", "end", "time":
			d, _ := parseOffset(p)
			v.Set(k, strconv.FormatInt(t0.Add(d).UnixNano(), 10))
		case "name":
		default:
			v.Set(k, p)
		}
	}
	switch q.Kind {
	case "series":
		for _, e := range q.Exprs {
			v.Add("match[]", e)
		}
	default:
		if len(q.Exprs) == 1 {
			v.Set("query", q.Exprs[0])
		}
	}
	path := urlPaths[q.Kind]
	if q.Kind == "values" {
		path = fmt.Sprintf(path, url.PathEscape(q.Params["name"]))
	}
	return http.NewRequestWithContext(ctx, http.MethodGet, base+path+"?"+v.Encode(), nil)
}

// Answer is a normalised answer: the status code and, on success, the
// result with times as offsets from T0; on an error, its message (which is
// not compared).
type Answer struct {
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
	Result any    `json:"result,omitempty"`
}

// Run sends q to base and normalises the answer.
func Run(ctx context.Context, c *http.Client, base string, q Query, t0 time.Time) (Answer, error) {
	req, err := q.Request(ctx, base, t0)
	if err != nil {
		return Answer{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("%s: %w", q.Key, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return Answer{}, fmt.Errorf("%s: read answer: %w", q.Key, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Answer{Status: resp.StatusCode, Error: strings.TrimSpace(string(body))}, nil
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return Answer{}, fmt.Errorf("%s: answer is not JSON: %w: %.200s", q.Key, err, body)
	}
	res, err := normalise(q, doc, t0)
	if err != nil {
		return Answer{}, fmt.Errorf("%s: %w: %.300s", q.Key, err, body)
	}
	return Answer{Status: http.StatusOK, Result: res}, nil
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }
func arr(v any) []any          { a, _ := v.([]any); return a }
func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// offsetNs turns a unix-ns string into milliseconds after t0 (as a
// string, with the nanoseconds kept as a fraction when there are any).
func offsetNs(s string, t0 time.Time) string {
	ns, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return "bad:" + s
	}
	d := ns - t0.UnixNano()
	return strconv.FormatFloat(float64(d)/1e6, 'f', -1, 64)
}

// offsetSec turns unix seconds (a JSON number, maybe fractional) into
// milliseconds after t0.
func offsetSec(v any, t0 time.Time) string {
	f, err := strconv.ParseFloat(str(v), 64)
	if err != nil {
		return "bad:" + str(v)
	}
	ms := math.Round(f*1000) - float64(t0.UnixMilli())
	return strconv.FormatFloat(ms, 'f', -1, 64)
}

func normalise(q Query, doc any, t0 time.Time) (any, error) {
	root := obj(doc)
	switch q.Kind {
	case "range", "instant":
		data := obj(root["data"])
		if data == nil {
			return nil, fmt.Errorf("no data")
		}
		return normaliseQuery(q, str(data["resultType"]), arr(data["result"]), t0), nil
	case "labels", "values":
		var out []string
		for _, v := range arr(root["data"]) {
			out = append(out, str(v))
		}
		sort.Strings(out)
		return out, nil
	case "series":
		var out []string
		for _, v := range arr(root["data"]) {
			out = append(out, labelString(obj(v)))
		}
		sort.Strings(out)
		return out, nil
	case "stats":
		// chunks depends on how each stores lines; the rest does not.
		return map[string]string{"streams": str(root["streams"]), "entries": str(root["entries"]), "bytes": str(root["bytes"])}, nil
	case "volume", "volume_range":
		data := obj(root["data"])
		return normaliseQuery(q, str(data["resultType"]), arr(data["result"]), t0), nil
	case "detected_fields":
		var out []string
		for _, f := range arr(root["fields"]) {
			m := obj(f)
			var parsers []string
			for _, p := range arr(m["parsers"]) {
				parsers = append(parsers, str(p))
			}
			sort.Strings(parsers)
			out = append(out, fmt.Sprintf("%s type=%s cardinality=%s parsers=%s", str(m["label"]), str(m["type"]), str(m["cardinality"]), strings.Join(parsers, ",")))
		}
		sort.Strings(out)
		return out, nil
	case "detected_labels":
		var out []string
		for _, f := range arr(root["detectedLabels"]) {
			m := obj(f)
			out = append(out, fmt.Sprintf("%s cardinality=%s", str(m["label"]), str(m["cardinality"])))
		}
		sort.Strings(out)
		return out, nil
	case "patterns":
		var out []string
		for _, p := range arr(root["data"]) {
			m := obj(p)
			total := 0.0
			for _, s := range arr(m["samples"]) {
				f, _ := strconv.ParseFloat(str(arr(s)[1]), 64)
				total += f
			}
			out = append(out, fmt.Sprintf("%s %s total=%g", str(m["level"]), str(m["pattern"]), total))
		}
		sort.Strings(out)
		return out, nil
	}
	return nil, fmt.Errorf("unknown kind %q", q.Kind)
}

// Series is one normalised stream or series.
type Series struct {
	Labels string     `json:"labels"`
	Points [][]string `json:"points"` // [offset ms, line or value]
}

func normaliseQuery(q Query, typ string, result []any, t0 time.Time) any {
	switch typ {
	case "streams":
		out := make([]Series, 0, len(result))
		for _, r := range result {
			m := obj(r)
			s := Series{Labels: labelString(obj(m["stream"]))}
			for _, v := range arr(m["values"]) {
				p := arr(v)
				s.Points = append(s.Points, []string{offsetNs(str(p[0]), t0), str(p[1])})
			}
			out = append(out, s)
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].Labels < out[j].Labels })
		return map[string]any{"type": typ, "series": out}
	case "matrix", "vector":
		out := make([]Series, 0, len(result))
		for _, r := range result {
			m := obj(r)
			s := Series{Labels: labelString(obj(m["metric"]))}
			if typ == "vector" {
				p := arr(m["value"])
				s.Points = append(s.Points, []string{offsetSec(p[0], t0), str(p[1])})
			}
			for _, v := range arr(m["values"]) {
				p := arr(v)
				s.Points = append(s.Points, []string{offsetSec(p[0], t0), str(p[1])})
			}
			out = append(out, s)
		}
		// Order is part of the answer only for sort and sort_desc, and
		// then only between different values: the order of equal values
		// is undefined (Loki's changes from run to run), so equal values
		// are put in label order on both sides.
		sort.SliceStable(out, func(i, j int) bool { return out[i].Labels < out[j].Labels })
		expr := strings.TrimSpace(strings.Join(q.Exprs, " "))
		if desc := strings.HasPrefix(expr, "sort_desc("); typ == "vector" && (desc || strings.HasPrefix(expr, "sort(")) {
			val := func(s Series) float64 {
				if len(s.Points) == 0 {
					return math.NaN()
				}
				f, _ := strconv.ParseFloat(s.Points[0][1], 64)
				return f
			}
			sort.SliceStable(out, func(i, j int) bool {
				a, b := val(out[i]), val(out[j])
				if desc {
					return a > b
				}
				return a < b
			})
		}
		return map[string]any{"type": typ, "series": out}
	case "scalar":
		// Loki's instant scalar carries a time its querier and frontend
		// garble (milliseconds read as seconds), which depends on the
		// absolute time: only the value is compared.
		p := result
		if len(p) == 2 {
			return map[string]any{"type": typ, "series": []Series{{Points: [][]string{{"-", str(p[1])}}}}}
		}
	}
	return map[string]any{"type": typ, "raw": result}
}
