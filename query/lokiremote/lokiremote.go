// Package lokiremote reads logs from a remote Loki's query API within a
// budget (internal/remoteapi): a proxy for Lumen's own Loki API routes, a
// LogQL executor for what Lumen evaluates itself (its rules, an alert's
// evidence), and a trace's lines found by their trace_id structured
// metadata in the trace's window.
package lokiremote

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/internal/fault"
	"github.com/lumenobs/lumen/internal/logids"
	"github.com/lumenobs/lumen/internal/model"
	"github.com/lumenobs/lumen/internal/remoteapi"
	"github.com/lumenobs/lumen/query/logql"
	"github.com/lumenobs/lumen/store"
)

// Config is the backend, the budget of each read and how a trace's lines
// are asked for.
type Config struct {
	// URL is the base of Loki's API: /loki/api/v1/query is URL +
	// "/loki/api/v1/query" (e.g. http://loki-gateway).
	URL string
	// HTTP is the client's auth and TLS; Headers are sent with every read.
	HTTP    config_util.HTTPClientConfig
	Headers map[string]string
	// Timeout bounds one read; MaxConcurrent reads run at once;
	// MaxResponseBytes caps an answer's bytes.
	Timeout          time.Duration
	MaxConcurrent    int
	MaxResponseBytes int64
	// TraceSelector is the stream selector a trace's lines are looked for
	// in; $services stands for the trace's services (a regexp of them).
	TraceSelector string
	// MaxEntries is the most lines one query asks for (Loki's
	// max_entries_limit_per_query, 5000 by default).
	MaxEntries int
}

// Backend is one remote Loki.
type Backend struct {
	cfg Config
	c   *remoteapi.Client
}

// New returns the backend of cfg.
func New(cfg Config) (*Backend, error) {
	if !strings.Contains(cfg.TraceSelector, "{") {
		return nil, fmt.Errorf("logs backend %s: trace selector %q is not a stream selector", cfg.URL, cfg.TraceSelector)
	}
	if cfg.MaxEntries < 1 {
		return nil, fmt.Errorf("logs backend %s: max entries must be positive", cfg.URL)
	}
	c, err := remoteapi.New(remoteapi.Config{Name: "logs backend", URL: cfg.URL, HTTP: cfg.HTTP, Headers: cfg.Headers,
		Timeout: cfg.Timeout, MaxConcurrent: cfg.MaxConcurrent, MaxResponseBytes: cfg.MaxResponseBytes})
	if err != nil {
		return nil, err
	}
	return &Backend{cfg: cfg, c: c}, nil
}

// fail answers as Loki does: the status and the message as text.
func fail(w http.ResponseWriter, code int, _, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, msg)
}

// Proxy serves Lumen's Loki read routes with Loki's own answers: the path
// is asked of the backend as it is. A backend that cannot be reached, or
// answers too much, is an error naming it: 503, 504 on the timeout, 502
// past the cap.
func (b *Backend) Proxy() http.Handler {
	return b.c.Proxy(func(p string) string { return p }, fail)
}

// DialTail opens the backend's live tail for a query string: the
// configured headers, basic auth or authorization credentials, TLS and
// proxy go with it (not OAuth 2.0, which a WebSocket handshake is not
// given here). A refusal of the query is fault.ErrInvalid, the rest
// fault.ErrUnavailable, each naming the backend.
func (b *Backend) DialTail(ctx context.Context, rawQuery string) (*websocket.Conn, error) {
	u := *b.c.Base()
	u.Scheme = map[string]string{"https": "wss"}[u.Scheme]
	if u.Scheme == "" {
		u.Scheme = "ws"
	}
	u.Path += "/loki/api/v1/tail"
	u.RawQuery = rawQuery
	h, err := tailHeaders(b.cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: logs backend %s: tail: %w", fault.ErrUnavailable, b.cfg.URL, err)
	}
	d := websocket.Dialer{HandshakeTimeout: b.cfg.Timeout}
	if d.TLSClientConfig, err = config_util.NewTLSConfig(&b.cfg.HTTP.TLSConfig); err != nil {
		return nil, fmt.Errorf("%w: logs backend %s: tail: %w", fault.ErrUnavailable, b.cfg.URL, err)
	}
	if p := b.cfg.HTTP.ProxyURL.URL; p != nil {
		d.Proxy = http.ProxyURL(p)
	}
	conn, resp, err := d.DialContext(ctx, u.String(), h)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			_ = resp.Body.Close()
			return nil, b.readErr(&remoteapi.HTTPError{Backend: "logs backend " + b.cfg.URL, Status: resp.StatusCode, Body: strings.TrimSpace(string(body))})
		}
		return nil, fmt.Errorf("%w: logs backend %s: tail: %w", fault.ErrUnavailable, b.cfg.URL, err)
	}
	return conn, nil
}

// tailHeaders are the handshake's headers: the configured ones and the
// client's credentials.
func tailHeaders(cfg Config) (http.Header, error) {
	h := http.Header{}
	for k, v := range cfg.Headers {
		h.Set(k, v)
	}
	c := cfg.HTTP
	switch {
	case c.OAuth2 != nil:
		return nil, errors.New("a tail is not opened with oauth2 credentials")
	case c.BasicAuth != nil:
		pw := string(c.BasicAuth.Password)
		if c.BasicAuth.PasswordFile != "" {
			b, err := os.ReadFile(c.BasicAuth.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("basic auth password file: %w", err)
			}
			pw = strings.TrimSpace(string(b))
		}
		req := &http.Request{Header: h}
		req.SetBasicAuth(c.BasicAuth.Username, pw)
	case c.Authorization != nil:
		cred := string(c.Authorization.Credentials)
		if c.Authorization.CredentialsFile != "" {
			b, err := os.ReadFile(c.Authorization.CredentialsFile)
			if err != nil {
				return nil, fmt.Errorf("authorization credentials file: %w", err)
			}
			cred = strings.TrimSpace(string(b))
		}
		typ := c.Authorization.Type
		if typ == "" {
			typ = "Bearer"
		}
		h.Set("Authorization", typ+" "+cred)
	}
	return h, nil
}

// categorized asks Loki to answer a line's structured metadata apart from
// its stream's labels.
var categorized = http.Header{"X-Loki-Response-Encoding-Flags": {"categorize-labels"}}

// Exec evaluates e in the backend, as logql.Exec does over Lumen's store:
// a metric query at End (Step 0) or over the range; a log query's Limit
// lines in the range.
func (b *Backend) Exec(ctx context.Context, e logql.Expr, p logql.Params) (logql.Result, error) {
	q := url.Values{"query": {e.String()}}
	path := "/loki/api/v1/query_range"
	_, isLog := e.(*logql.LogExpr)
	switch {
	case isLog:
		limit := p.Limit
		if limit <= 0 || limit > b.cfg.MaxEntries {
			limit = b.cfg.MaxEntries
		}
		q.Set("limit", strconv.Itoa(limit))
		q.Set("start", strconv.FormatInt(p.Start.UnixNano(), 10))
		q.Set("end", strconv.FormatInt(p.End.UnixNano(), 10))
		q.Set("direction", map[bool]string{true: "forward", false: "backward"}[p.Forward])
	case p.Step == 0:
		path = "/loki/api/v1/query"
		q.Set("time", strconv.FormatInt(p.End.UnixNano(), 10))
	default:
		q.Set("start", strconv.FormatInt(p.Start.UnixNano(), 10))
		q.Set("end", strconv.FormatInt(p.End.UnixNano(), 10))
		q.Set("step", strconv.FormatFloat(p.Step.Seconds(), 'f', -1, 64))
	}
	body, err := b.c.Get(ctx, path, q, nil)
	if err != nil {
		return logql.Result{}, b.readErr(err)
	}
	return decodeResult(body)
}

// readErr marks a refusal of the query itself (a 4xx but 429) as the
// client's, the rest as the backend being unavailable.
func (b *Backend) readErr(err error) error {
	var he *remoteapi.HTTPError
	if errors.As(err, &he) && he.Status/100 == 4 && he.Status != http.StatusTooManyRequests {
		return fmt.Errorf("%w: %w", fault.ErrInvalid, err)
	}
	return fmt.Errorf("%w: %w", fault.ErrUnavailable, err)
}

// TraceLogs reads the lines whose trace_id is id in [start, end) (unix
// ns), the newest limit of them (Loki's max entries at most): streams
// sorted by labels, each one's lines by time. cut says whether lines were
// left out.
func (b *Backend) TraceLogs(ctx context.Context, id model.TraceID, services []string, start, end int64, limit int) (streams []store.LogStream, cut bool, err error) {
	if limit <= 0 || limit > b.cfg.MaxEntries {
		limit = b.cfg.MaxEntries
	}
	q := url.Values{
		"query":     {TraceQuery(b.cfg.TraceSelector, services, id)},
		"start":     {strconv.FormatInt(start, 10)},
		"end":       {strconv.FormatInt(end, 10)},
		"limit":     {strconv.Itoa(limit)},
		"direction": {"backward"},
	}
	body, err := b.c.Get(ctx, "/loki/api/v1/query_range", q, categorized)
	if err != nil {
		return nil, false, b.readErr(err)
	}
	res, err := decode(body)
	if err != nil {
		return nil, false, err
	}
	if res.Data.ResultType != logql.ResultStreams {
		return nil, false, fmt.Errorf("logs backend %s: a %s answers a log query", b.cfg.URL, res.Data.ResultType)
	}
	var raw []rawStream
	if err := json.Unmarshal(res.Data.Result, &raw); err != nil {
		return nil, false, fmt.Errorf("logs backend %s: streams: %w", b.cfg.URL, err)
	}
	byLabels := map[string]*store.LogStream{}
	n := 0
	for _, rs := range raw {
		lset := labels.FromMap(rs.Stream)
		key := lset.String()
		st := byLabels[key]
		if st == nil {
			st = &store.LogStream{Labels: lset}
			byLabels[key] = st
		}
		for _, v := range rs.Values {
			e, err := v.entry()
			if err != nil {
				return nil, false, fmt.Errorf("logs backend %s: %w", b.cfg.URL, err)
			}
			// The ids as the store finds them in a line it keeps.
			ids := logids.Extract(e.Metadata, lset, e.Line)
			e.TraceID, e.SpanID = ids.Trace, ids.Span
			st.Entries = append(st.Entries, e)
			n++
		}
	}
	streams = make([]store.LogStream, 0, len(byLabels))
	for _, st := range byLabels {
		slices.SortStableFunc(st.Entries, func(a, b store.LogEntry) int { return cmp.Compare(a.T, b.T) })
		streams = append(streams, *st)
	}
	slices.SortFunc(streams, func(a, b store.LogStream) int { return labels.Compare(a.Labels, b.Labels) })
	return streams, n >= limit, nil
}

// TraceQuery is the LogQL query of a trace's lines: selector, with
// $services replaced by a regexp of the trace's services (any service when
// none is known), then the trace_id filter.
func TraceQuery(selector string, services []string, id model.TraceID) string {
	re := ".+"
	if len(services) > 0 {
		qs := make([]string, len(services))
		for i, s := range services {
			qs[i] = regexp.QuoteMeta(s)
		}
		re = strings.Join(qs, "|")
	}
	// The regexp goes inside a LogQL string: its quotes and backslashes
	// escaped as Go's (and LogQL's) double-quoted strings escape them.
	quoted := strconv.Quote(re)
	return strings.ReplaceAll(selector, "$services", quoted[1:len(quoted)-1]) + ` | trace_id="` + id.String() + `"`
}

// answer is Loki's envelope.
type answer struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

func decode(body []byte) (answer, error) {
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return a, fmt.Errorf("logs backend answer: %w", err)
	}
	if a.Status != "success" {
		return a, fmt.Errorf("logs backend answer: status %q", a.Status)
	}
	return a, nil
}

type rawStream struct {
	Stream map[string]string `json:"stream"`
	Values []rawEntry        `json:"values"`
}

// rawEntry is [ns, line] or, categorized, [ns, line, {structuredMetadata,
// parsed}].
type rawEntry []json.RawMessage

func (v rawEntry) entry() (store.LogEntry, error) {
	if len(v) < 2 {
		return store.LogEntry{}, fmt.Errorf("a line of %d fields", len(v))
	}
	var ts, line string
	if err := json.Unmarshal(v[0], &ts); err != nil {
		return store.LogEntry{}, fmt.Errorf("a line's time: %w", err)
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return store.LogEntry{}, fmt.Errorf("a line's time %q: %w", ts, err)
	}
	if err := json.Unmarshal(v[1], &line); err != nil {
		return store.LogEntry{}, fmt.Errorf("a line: %w", err)
	}
	e := store.LogEntry{T: t, Line: line}
	if len(v) > 2 {
		var cat struct {
			StructuredMetadata map[string]string `json:"structuredMetadata"`
		}
		if err := json.Unmarshal(v[2], &cat); err != nil {
			return store.LogEntry{}, fmt.Errorf("a line's metadata: %w", err)
		}
		if len(cat.StructuredMetadata) > 0 {
			e.Metadata = labels.FromMap(cat.StructuredMetadata)
		}
	}
	return e, nil
}

// decodeResult turns Loki's answer into logql's Result.
func decodeResult(body []byte) (logql.Result, error) {
	a, err := decode(body)
	if err != nil {
		return logql.Result{}, err
	}
	res := logql.Result{Type: a.Data.ResultType}
	switch a.Data.ResultType {
	case logql.ResultStreams:
		var raw []rawStream
		if err := json.Unmarshal(a.Data.Result, &raw); err != nil {
			return res, fmt.Errorf("logs backend answer: streams: %w", err)
		}
		for _, rs := range raw {
			s := logql.Stream{Labels: labels.FromMap(rs.Stream)}
			for _, v := range rs.Values {
				e, err := v.entry()
				if err != nil {
					return res, fmt.Errorf("logs backend answer: %w", err)
				}
				s.Entries = append(s.Entries, logql.Entry{T: e.T, Line: e.Line})
			}
			res.Streams = append(res.Streams, s)
		}
	case logql.ResultVector, logql.ResultMatrix:
		var raw []struct {
			Metric map[string]string `json:"metric"`
			Value  samplePair        `json:"value"`
			Values []samplePair      `json:"values"`
		}
		if err := json.Unmarshal(a.Data.Result, &raw); err != nil {
			return res, fmt.Errorf("logs backend answer: %s: %w", a.Data.ResultType, err)
		}
		for _, r := range raw {
			s := logql.Series{Metric: labels.FromMap(r.Metric)}
			if a.Data.ResultType == logql.ResultVector {
				r.Values = []samplePair{r.Value}
			}
			for _, p := range r.Values {
				s.Points = append(s.Points, logql.Point(p))
			}
			res.Series = append(res.Series, s)
		}
	case logql.ResultScalar:
		var p samplePair
		if err := json.Unmarshal(a.Data.Result, &p); err != nil {
			return res, fmt.Errorf("logs backend answer: scalar: %w", err)
		}
		res.Scalar = logql.Point(p)
	default:
		return res, fmt.Errorf("logs backend answer: result type %q", a.Data.ResultType)
	}
	return res, nil
}

// samplePair is [seconds, "value"].
type samplePair logql.Point

func (p *samplePair) UnmarshalJSON(b []byte) error {
	var pair [2]json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil {
		return fmt.Errorf("a sample: %w", err)
	}
	var sec float64
	if err := json.Unmarshal(pair[0], &sec); err != nil {
		return fmt.Errorf("a sample's time: %w", err)
	}
	var v string
	if err := json.Unmarshal(pair[1], &v); err != nil {
		return fmt.Errorf("a sample's value: %w", err)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("a sample's value %q: %w", v, err)
	}
	p.T, p.V = int64(math.Round(sec*1000)), f
	return nil
}
