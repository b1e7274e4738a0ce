package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.uber.org/zap"

	"github.com/lumenobs/lumen/internal/limits"
	"github.com/lumenobs/lumen/query/logql"
	"github.com/lumenobs/lumen/store"
)

// LogReader is the part of the store the Loki API reads.
type LogReader interface {
	SelectLogs(ctx context.Context, q store.LogSelect) ([]store.LogStream, error)
	LogSeries(ctx context.Context, ms []*labels.Matcher, start, end int64) ([]labels.Labels, error)
	LogLabelNames(ctx context.Context, ms []*labels.Matcher, start, end int64) ([]string, error)
	LogLabelValues(ctx context.Context, name string, ms []*labels.Matcher, start, end int64) ([]string, error)
	TailLogs(ms []*labels.Matcher, buffer int) *store.LogTail
}

// LokiAPI serves Loki's query API (/loki/api/v1/…) over the log store.
type LokiAPI struct {
	r     LogReader
	cfg   LokiConfig
	lim   *limits.Limiter // queries
	tails *limits.Limiter
	m     *Metrics
	log   *zap.Logger
	now   func() time.Time
	// upgrader is the live tail's websocket upgrader.
	upgrader websocket.Upgrader
}

// NewLoki returns the Loki API over r; m, if not nil, counts what its
// limits refuse.
func NewLoki(r LogReader, cfg LokiConfig, m *Metrics, log *zap.Logger) *LokiAPI {
	if log == nil {
		log = zap.NewNop()
	}
	return &LokiAPI{r: r, cfg: cfg, m: m, log: log.Named("query.loki"), now: time.Now,
		lim:   limits.New("LogQL queries", cfg.MaxConcurrent, cfg.MaxQueued),
		tails: limits.New("tails", cfg.MaxTails, 0), upgrader: newUpgrader(cfg.TrustedOrigins)}
}

// Admit admits a request that reads logs the way a LogQL query does (the
// alert evidence API): a slot of the LogQL queries' limiter, and their
// timeout on its context. done must be called once it is answered.
func (a *LokiAPI) Admit(r *http.Request) (ctx context.Context, done func(), err error) {
	ctx, done, err = admit(r, a.lim, a.cfg.Timeout)
	a.m.count(apiLoki, err)
	return ctx, done, err
}

// LokiReadRoutes are the Loki API's read routes (GET and POST each), the
// live tail aside.
var LokiReadRoutes = []string{
	"/loki/api/v1/labels",
	"/loki/api/v1/label",
	"/loki/api/v1/label/{name}/values",
	"/loki/api/v1/series",
	"/loki/api/v1/query",
	"/loki/api/v1/query_range",
	"/loki/api/v1/index/stats",
	"/loki/api/v1/index/volume",
	"/loki/api/v1/index/volume_range",
	"/loki/api/v1/detected_labels",
	"/loki/api/v1/detected_fields",
	"/loki/api/v1/detected_field/{name}/values",
	"/loki/api/v1/patterns",
}

// Register adds the Loki routes to mux; wrap instruments each handler.
func (a *LokiAPI) Register(mux Mux, wrap Wrap) {
	wrap = orPlain(wrap)
	handlers := []http.HandlerFunc{a.labels, a.labels, a.labelValues, a.series, a.query, a.queryRange,
		a.indexStats, a.indexVolume, a.indexVolumeRange, a.detectedLabels, a.detectedFields, a.detectedFieldValues, a.patterns}
	for i, path := range LokiReadRoutes {
		h := wrap(path, handlers[i])
		mux.Handle("GET "+path, h)
		mux.Handle("POST "+path, h)
	}
	mux.Handle("GET /loki/api/v1/tail", wrap("/loki/api/v1/tail", http.HandlerFunc(a.tail)))
}

// lokiError answers as Loki does: the status, and the message as text.
func (a *LokiAPI) lokiError(w http.ResponseWriter, err error) {
	a.m.count(apiLoki, err)
	http.Error(w, err.Error(), failStatus(w, a.log, err))
}

// lokiTime parses a Loki time parameter: unix nanoseconds (or seconds, when
// 10 digits or fewer), fractional unix seconds, or RFC 3339.
func lokiTime(name, s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if strings.Contains(s, ".") {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			sec, frac := math.Modf(f)
			return time.Unix(int64(sec), int64(frac*1e9)), nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if len(strings.TrimPrefix(s, "-")) <= 10 {
			return time.Unix(n, 0), nil
		}
		return time.Unix(0, n), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: %s=%q is not a time: use unix nanoseconds, unix seconds or RFC 3339", errBadRequest, name, s)
}

// lokiRange reads start and end, Loki's defaults being the last hour.
func (a *LokiAPI) lokiRange(r *http.Request) (start, end time.Time, err error) {
	now := a.now()
	if end, err = lokiTime("end", r.FormValue("end"), now); err != nil {
		return
	}
	if start, err = lokiTime("start", r.FormValue("start"), end.Add(-time.Hour)); err != nil {
		return
	}
	if s := r.FormValue("since"); s != "" && r.FormValue("start") == "" {
		d, perr := parseLokiDuration(s)
		if perr != nil {
			return start, end, fmt.Errorf("%w: since=%q: %w", errBadRequest, s, perr)
		}
		start = end.Add(-d)
	}
	if end.Before(start) {
		err = fmt.Errorf("%w: end (%s) is before start (%s)", errBadRequest, end.UTC().Format(time.RFC3339Nano), start.UTC().Format(time.RFC3339Nano))
	}
	return
}

// parseLokiDuration takes Go durations and Prometheus ones (1d, 1w).
func parseLokiDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("not a duration: %w", err)
	}
	return time.Duration(d), nil
}

var selectorParser = parser.NewParser(parser.Options{})

// streamSelector parses a stream selector ({app="x"}), for the query=
// and match[]= parameters of the label and series endpoints.
func streamSelector(param, s string) ([]*labels.Matcher, error) {
	ms, err := selectorParser.ParseMetricSelector(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s=%q: %w", errBadRequest, param, s, err)
	}
	return ms, nil
}

type lokiResponse struct {
	Status string `json:"status"`
	Data   any    `json:"data"`
}

// selectorAndRange reads the optional query= selector and the range.
func (a *LokiAPI) selectorAndRange(r *http.Request) (ms []*labels.Matcher, start, end time.Time, err error) {
	if start, end, err = a.lokiRange(r); err != nil {
		return nil, start, end, err
	}
	if q := r.FormValue("query"); q != "" {
		ms, err = streamSelector("query", q)
	}
	return ms, start, end, err
}

func (a *LokiAPI) labels(w http.ResponseWriter, r *http.Request) {
	ms, start, end, err := a.selectorAndRange(r)
	if err == nil {
		var names []string
		if names, err = a.r.LogLabelNames(r.Context(), ms, start.UnixNano(), end.UnixNano()); err == nil {
			writeJSON(w, http.StatusOK, lokiResponse{Status: "success", Data: names})
			return
		}
	}
	a.lokiError(w, err)
}

func (a *LokiAPI) labelValues(w http.ResponseWriter, r *http.Request) {
	ms, start, end, err := a.selectorAndRange(r)
	if err == nil {
		var values []string
		if values, err = a.r.LogLabelValues(r.Context(), r.PathValue("name"), ms, start.UnixNano(), end.UnixNano()); err == nil {
			writeJSON(w, http.StatusOK, lokiResponse{Status: "success", Data: values})
			return
		}
	}
	a.lokiError(w, err)
}

func (a *LokiAPI) series(w http.ResponseWriter, r *http.Request) {
	start, end, err := a.lokiRange(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	if err := r.ParseForm(); err != nil {
		a.lokiError(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	matches := r.Form["match[]"]
	if len(matches) == 0 {
		matches = r.Form["match"]
	}
	if len(matches) == 0 {
		a.lokiError(w, fmt.Errorf("%w: match[] is required: give at least one stream selector", errBadRequest))
		return
	}
	seen := map[string]bool{}
	data := []map[string]string{}
	for _, m := range matches {
		ms, err := streamSelector("match[]", m)
		if err != nil {
			a.lokiError(w, err)
			return
		}
		series, err := a.r.LogSeries(r.Context(), ms, start.UnixNano(), end.UnixNano())
		if err != nil {
			a.lokiError(w, err)
			return
		}
		for _, ls := range series {
			if k := ls.String(); !seen[k] {
				seen[k] = true
				data = append(data, ls.Map())
			}
		}
	}
	writeJSON(w, http.StatusOK, lokiResponse{Status: "success", Data: data})
}

// LokiConfig bounds LogQL queries.
type LokiConfig struct {
	// MaxLines bounds the lines one query may read (after the line filters
	// that run as the store reads); past it the query is a 400.
	MaxLines int `yaml:"max_lines"`
	// MaxLimit bounds limit=, as Loki's max_entries_limit_per_query does.
	MaxLimit int `yaml:"max_limit"`
	// Timeout bounds a query's time, its wait for a slot included.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrent bounds the queries evaluated at once, as Loki's
	// querier max_concurrent; MaxQueued more wait for a slot (up to
	// Timeout), and past them a query is a 503 with Retry-After.
	MaxConcurrent int `yaml:"max_concurrent"`
	MaxQueued     int `yaml:"max_queued"`
	// MaxQueryLength bounds end - start of a range query, as Loki's
	// max_query_length; 0: no bound.
	MaxQueryLength time.Duration `yaml:"max_query_length"`
	// MaxTails bounds the live tails at once, as Loki's
	// max_concurrent_tail_requests; past it a tail is a 503.
	MaxTails int `yaml:"max_tails"`
	// TailMaxDuration is how long a tail runs before the server closes it,
	// as Loki's tail_max_duration.
	TailMaxDuration time.Duration `yaml:"tail_max_duration"`
	// MaxQuerySeries bounds the series a metric query returns, as Loki's
	// max_query_series; past it the query is a 400. 0: none.
	MaxQuerySeries int `yaml:"max_query_series"`
	// TrustedOrigins are the other sites (scheme://host[:port]) whose
	// pages may open the live tail's websocket (the server's
	// http.trusted_origins).
	TrustedOrigins []string `yaml:"-"`
}

// DefaultLokiConfig returns Loki's defaults where it has them.
func DefaultLokiConfig() LokiConfig {
	return LokiConfig{MaxLines: 5_000_000, MaxLimit: 5000, Timeout: time.Minute, MaxConcurrent: 4, MaxQueued: 100,
		MaxTails: 10, TailMaxDuration: time.Hour, MaxQuerySeries: 500}
}

// Validate reports the first setting that cannot work.
func (c LokiConfig) Validate() error {
	if c.MaxLines <= 0 || c.MaxLimit <= 0 || c.Timeout <= 0 || c.MaxConcurrent <= 0 || c.MaxTails <= 0 || c.TailMaxDuration <= 0 {
		return fmt.Errorf("logql: max_lines %d, max_limit %d, timeout %s, max_concurrent %d, max_tails %d and tail_max_duration %s must be positive",
			c.MaxLines, c.MaxLimit, c.Timeout, c.MaxConcurrent, c.MaxTails, c.TailMaxDuration)
	}
	if c.MaxQueued < 0 || c.MaxQueryLength < 0 {
		return fmt.Errorf("logql: max_queued %d and max_query_length %s must not be negative", c.MaxQueued, c.MaxQueryLength)
	}
	return nil
}

type lokiData struct {
	ResultType string   `json:"resultType"`
	Result     any      `json:"result"`
	Stats      struct{} `json:"stats"`
}

type lokiStream struct {
	Stream map[string]string `json:"stream"`
	Values [][2]string       `json:"values"`
}

type lokiSeries struct {
	Metric map[string]string `json:"metric"`
	Values []lokiPoint       `json:"values,omitempty"`
	Value  *lokiPoint        `json:"value,omitempty"`
}

// lokiPoint is [seconds, "value"], as Prometheus and Loki write samples.
type lokiPoint logql.Point

func (p lokiPoint) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(`[%s,%q]`, strconv.FormatFloat(float64(p.T)/1000, 'f', -1, 64), strconv.FormatFloat(p.V, 'f', -1, 64))), nil
}

func lokiStreams(in []logql.Stream) []lokiStream {
	out := make([]lokiStream, 0, len(in))
	for _, s := range in {
		ls := lokiStream{Stream: s.Labels.Map(), Values: make([][2]string, len(s.Entries))}
		for i, e := range s.Entries {
			ls.Values[i] = [2]string{strconv.FormatInt(e.T, 10), e.Line}
		}
		out = append(out, ls)
	}
	return out
}

// parseLogQL parses the query= parameter; errors are 400s with Loki's
// "parse error at line L, col C" message.
func parseLogQL(r *http.Request) (logql.Expr, error) {
	q := r.FormValue("query")
	if q == "" {
		return nil, fmt.Errorf("%w: query= is required", errBadRequest)
	}
	e, err := logql.Parse(q)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return e, nil
}

func (a *LokiAPI) limitAndDirection(r *http.Request) (int, bool, error) {
	limit := 100
	if s := r.FormValue("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, false, fmt.Errorf("%w: limit=%q is not a non-negative integer", errBadRequest, s)
		}
		if n > a.cfg.MaxLimit {
			return 0, false, overLimit(reasonLimit, "max entries limit per query exceeded, limit > max_entries_limit (%d > %d)", n, a.cfg.MaxLimit)
		}
		limit = n
	}
	switch strings.ToLower(r.FormValue("direction")) {
	case "", "backward":
		return limit, false, nil
	case "forward":
		return limit, true, nil
	}
	return 0, false, fmt.Errorf("%w: direction=%q: use forward or backward", errBadRequest, r.FormValue("direction"))
}

// queryRange answers /loki/api/v1/query_range: a log query's lines
// (limit, direction) or a metric query's matrix.
func (a *LokiAPI) queryRange(w http.ResponseWriter, r *http.Request) {
	e, p, err := a.rangeParams(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	a.exec(w, r, e, p)
}

// rangeParams reads and checks a range query's parameters. A metric
// query's start is aligned down and its end up to a multiple of the step
// (in milliseconds, as Loki's query frontend aligns them before it splits
// the query), and every step from start to end is evaluated, the future
// included.
func (a *LokiAPI) rangeParams(r *http.Request) (logql.Expr, logql.Params, error) {
	e, err := parseLogQL(r)
	if err != nil {
		return nil, logql.Params{}, err
	}
	start, end, err := a.lokiRange(r)
	if err == nil {
		err = checkLength(start, end, a.cfg.MaxQueryLength)
	}
	if err != nil {
		return nil, logql.Params{}, err
	}
	limit, forward, err := a.limitAndDirection(r)
	if err != nil {
		return nil, logql.Params{}, err
	}
	p := logql.Params{Start: start, End: end, Limit: limit, Forward: forward, MaxLines: a.cfg.MaxLines}
	if logql.IsLogQuery(e) {
		return e, p, nil
	}
	step, err := lokiStep(r.FormValue("step"), start, end)
	if err == nil {
		err = checkStep(r.FormValue("step"), step, start, end)
	}
	if err != nil {
		return nil, logql.Params{}, err
	}
	p.Step = time.Duration(step.Milliseconds()) * time.Millisecond
	p.Start, p.End = alignToStep(start, end, p.Step)
	return e, p, nil
}

// alignToStep rounds start down and end up to multiples of step since the
// epoch.
func alignToStep(start, end time.Time, step time.Duration) (time.Time, time.Time) {
	s, e, n := start.UnixNano(), end.UnixNano(), step.Nanoseconds()
	if m := e % n; m != 0 {
		e += n - m
	}
	return time.Unix(0, s-s%n), time.Unix(0, e)
}

// query answers /loki/api/v1/query: a metric query at one time (a
// vector, or a scalar for a number). Log queries are range queries only,
// as in Loki 3.
func (a *LokiAPI) query(w http.ResponseWriter, r *http.Request) {
	e, err := parseLogQL(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	if logql.IsLogQuery(e) {
		a.lokiError(w, fmt.Errorf("%w: log queries are not supported as an instant query type, please change your query to a range query type", errBadRequest))
		return
	}
	t, err := lokiTime("time", r.FormValue("time"), a.now())
	if err != nil {
		a.lokiError(w, err)
		return
	}
	a.exec(w, r, e, logql.Params{Start: t, End: t, MaxLines: a.cfg.MaxLines})
}

// exec evaluates a query once one of the API's slots is free, within the
// LogQL timeout, and answers its result as Loki does.
func (a *LokiAPI) exec(w http.ResponseWriter, r *http.Request, e logql.Expr, p logql.Params) {
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	defer done()
	res, err := logql.Exec(ctx, a.r, e, p)
	if err == nil && a.cfg.MaxQuerySeries > 0 && len(res.Series) > a.cfg.MaxQuerySeries {
		err = overLimit(reasonLimit, "maximum number of series (%d) reached for a single query; consider reducing query cardinality by adding more specific stream selectors, reducing the time range, or aggregating results with functions like sum(), count() or topk()", a.cfg.MaxQuerySeries)
	}
	if errors.Is(err, logql.ErrPipeline) {
		err = fmt.Errorf("%w: %w", errBadRequest, err)
	}
	if err != nil {
		a.lokiError(w, err)
		return
	}
	data := lokiData{ResultType: res.Type}
	switch res.Type {
	case logql.ResultStreams:
		data.Result = lokiStreams(res.Streams)
	case logql.ResultScalar:
		data.Result = lokiScalar(res.Scalar)
	case logql.ResultVector:
		out := make([]lokiSeries, 0, len(res.Series))
		for _, s := range res.Series {
			pt := lokiPoint(s.Points[0])
			out = append(out, lokiSeries{Metric: s.Metric.Map(), Value: &pt})
		}
		data.Result = out
	default:
		out := make([]lokiSeries, 0, len(res.Series))
		for _, s := range res.Series {
			ls := lokiSeries{Metric: s.Metric.Map(), Values: make([]lokiPoint, len(s.Points))}
			for i, pt := range s.Points {
				ls.Values[i] = lokiPoint(pt)
			}
			out = append(out, ls)
		}
		data.Result = out
	}
	writeJSON(w, http.StatusOK, lokiResponse{Status: "success", Data: data})
}

// lokiScalar is an instant query's number as Loki 3.7 answers it, time
// included: its querier writes a scalar's time in milliseconds where
// seconds belong (model.TimeFromUnix), its frontend reads that back as
// seconds and turns it into nanoseconds, which overflows int64, and
// writes the result in milliseconds where seconds belong again. Grafana
// ignores a scalar's time; the value is right.
type lokiScalar logql.Point

func (p lokiScalar) MarshalJSON() ([]byte, error) {
	ms := p.T * 1_000_000_000 // wraps, as in Loki
	ms /= 1_000_000
	return []byte(fmt.Sprintf(`[%d,%q]`, ms, strconv.FormatFloat(p.V, 'f', -1, 64))), nil
}

// lokiStep reads step= (a duration or seconds); Loki's default gives about
// 250 points over the range, at least a second apart.
func lokiStep(s string, start, end time.Time) (time.Duration, error) {
	if s == "" {
		return time.Duration(max(math.Floor(end.Sub(start).Seconds()/250), 1)) * time.Second, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f <= 0 {
			return 0, fmt.Errorf("%w: step=%q: zero or negative query resolution step widths are not accepted. Try a positive integer", errBadRequest, s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := parseLokiDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: step=%q is not a positive duration", errBadRequest, s)
	}
	return d, nil
}
