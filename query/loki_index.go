package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/google/uuid"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/lumenobs/lumen/query/logql"
	"github.com/lumenobs/lumen/store"
)

// LogIndexReader is the part of the store the Loki index endpoints
// (/index/stats, /index/volume, /index/volume_range) read: each matching
// stream's chunks (blocks) with their line counts and sizes.
type LogIndexReader interface {
	LogChunks(ctx context.Context, ms []*labels.Matcher, start, end int64) ([]store.LogStreamChunks, error)
}

// lokiBadRequest is a 400 whose message is Loki's, word for word.
type lokiBadRequest struct{ msg string }

func (e lokiBadRequest) Error() string        { return e.msg }
func (e lokiBadRequest) Is(target error) bool { return target == errBadRequest }

func badRequestf(format string, a ...any) error {
	return lokiBadRequest{msg: fmt.Sprintf(format, a...)}
}

// lokiTimestamp reads a time as Loki does: unix seconds (10 digits or
// fewer) or nanoseconds, fractional seconds (to the millisecond), or
// RFC 3339.
func lokiTimestamp(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if strings.Contains(s, ".") {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			sec, frac := math.Modf(f)
			frac = math.Round(frac*1000) / 1000
			return time.Unix(int64(sec), int64(frac*float64(time.Second))), nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if t, terr := time.Parse(time.RFC3339Nano, s); terr == nil {
			return t, nil
		}
		return time.Time{}, err
	}
	if len(s) <= 10 {
		return time.Unix(n, 0), nil
	}
	return time.Unix(0, n), nil
}

// lokiBounds reads start, end and since as Loki does: end defaults to
// now, start to since (an hour by default) before end, or before now
// when end is in the future.
func (a *LokiAPI) lokiBounds(r *http.Request) (start, end time.Time, err error) {
	now := a.now()
	since := time.Hour
	if s := r.FormValue("since"); s != "" {
		d, perr := model.ParseDuration(s)
		if perr != nil {
			return start, end, badRequestf("could not parse 'since' parameter: %s", perr)
		}
		since = time.Duration(d)
	}
	if end, err = lokiTimestamp(r.FormValue("end"), now); err != nil {
		return start, end, badRequestf("could not parse 'end' parameter: %s", err)
	}
	base := end
	if end.After(now) {
		base = now
	}
	if start, err = lokiTimestamp(r.FormValue("start"), base.Add(-since)); err != nil {
		return start, end, badRequestf("could not parse 'start' parameter: %s", err)
	}
	return start, end, nil
}

const (
	msgEndBeforeStart = "end timestamp must not be before or equal to start time"
	msgBadStep        = "zero or negative query resolution step widths are not accepted. Try a positive integer"
	msgTooManySteps   = "exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter"
	msgOnlyMatchers   = "only label matchers are supported"
)

// lokiRangeStep reads start, end and step as Loki reads a range query's:
// step= is seconds or a duration, by default about 250 steps over the
// range.
func (a *LokiAPI) lokiRangeStep(r *http.Request) (start, end time.Time, step time.Duration, err error) {
	if start, end, err = a.lokiBounds(r); err != nil {
		return
	}
	if end.Before(start) {
		err = badRequestf(msgEndBeforeStart)
		return
	}
	if step, err = lokiStepOf(r.FormValue("step"), start, end); err != nil {
		return
	}
	if step <= 0 {
		err = badRequestf(msgBadStep)
		return
	}
	if end.Sub(start)/step > 11000 {
		err = badRequestf(msgTooManySteps)
	}
	return
}

func lokiStepOf(s string, start, end time.Time) (time.Duration, error) {
	if s == "" {
		return time.Duration(max(math.Floor(end.Sub(start).Seconds()/250), 1)) * time.Second, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		d := f * float64(time.Second)
		if d > math.MaxInt64 || d < math.MinInt64 {
			return 0, badRequestf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(d), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, badRequestf("cannot parse %q to a valid duration", s)
}

// lokiInt reads an integer parameter, def when absent; Loki answers a
// bad one with Go's strconv error.
func lokiInt(r *http.Request, name string, def int) (int, error) {
	s := r.FormValue(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, lokiBadRequest{msg: err.Error()}
	}
	return n, nil
}

// lokiMatchers parses a query that must be a bare stream selector, as
// Loki's index endpoints take; anyEmpty allows {} (every stream).
func lokiMatchers(q string, anyEmpty bool) ([]*labels.Matcher, error) {
	if anyEmpty && strings.TrimSpace(q) == "{}" {
		return nil, nil
	}
	e, err := logql.Parse(q)
	if err != nil {
		return nil, lokiBadRequest{msg: err.Error()}
	}
	le, ok := e.(*logql.LogExpr)
	if !ok || len(le.Stages) > 0 {
		return nil, badRequestf(msgOnlyMatchers)
	}
	return le.Matchers, nil
}

// rangeSelector is a request for a range over a bare stream selector,
// as /index/stats and /patterns read it.
type rangeSelector struct {
	start, end time.Time
	step       time.Duration
	ms         []*labels.Matcher
}

// readRangeSelector reads start, end and step (lokiRangeStep) and the
// selector (query=, {} refused).
func (a *LokiAPI) readRangeSelector(r *http.Request) (rangeSelector, error) {
	var p rangeSelector
	var err error
	if p.start, p.end, p.step, err = a.lokiRangeStep(r); err != nil {
		return p, err
	}
	p.ms, err = lokiMatchers(r.FormValue("query"), false)
	return p, err
}

// indexReader is the store as LogIndexReader.
func (a *LokiAPI) indexReader() (LogIndexReader, error) {
	ir, ok := a.r.(LogIndexReader)
	if !ok {
		return nil, errors.New("loki index: the store cannot sum up chunks")
	}
	return ir, nil
}

// indexChunks admits the request and reads the chunks of the streams ms
// selects over [from, through] (ns); done ends the admission.
func (a *LokiAPI) indexChunks(r *http.Request, ms []*labels.Matcher, from, through int64) (streams []store.LogStreamChunks, done func(), err error) {
	ir, err := a.indexReader()
	if err != nil {
		return nil, nil, err
	}
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		return nil, nil, err
	}
	if streams, err = ir.LogChunks(ctx, ms, from, through); err != nil {
		done()
		return nil, nil, err
	}
	return streams, done, nil
}

// chunkStats sums chunks as Loki's ingester sums its chunks for
// /index/stats and /index/volume: a stream counts when its span reaches
// into [from, through] (ns), a chunk when it overlaps the range strictly,
// and a chunk that overlaps in part counts the share of its time span
// inside the range (Loki's estimate, kept so that answers are Loki's).
type chunkStats struct {
	considered bool // the stream's span reaches into the range
	chunks     uint64
	entries    uint64
	bytes      uint64
}

func sumChunks(cs []store.LogChunk, from, through int64) chunkStats {
	var st chunkStats
	if len(cs) == 0 {
		return st
	}
	lo, hi := cs[0].MinT, cs[0].MaxT
	for _, c := range cs {
		lo, hi = min(lo, c.MinT), max(hi, c.MaxT)
	}
	st.considered = through > lo && from <= hi
	if !st.considered {
		return st
	}
	for _, c := range cs {
		if !(from < c.MaxT && through > c.MinT) {
			continue
		}
		f := timeShare(from, through, c.MinT, c.MaxT)
		st.chunks++
		st.entries += uint64(f * float64(c.Entries))
		st.bytes += uint64(float64(c.Bytes) * f)
	}
	return st
}

// timeShare is the share of [minT, maxT] inside [from, through]; 1 for a
// chunk of one instant.
func timeShare(from, through, minT, maxT int64) float64 {
	if from > maxT || through < minT {
		return 0
	}
	if minT == maxT {
		return 1
	}
	total := maxT - minT
	lead := max(0, from-minT)
	trail := max(0, maxT-through)
	return float64(total-(lead+trail)) / float64(total)
}

// msRange is [start, end] rounded to milliseconds as Loki rounds a
// request's (end up), in ns.
func msRange(start, end time.Time) (int64, int64) {
	from := start.UnixNano() / int64(time.Millisecond)
	through := end.UnixNano() / int64(time.Millisecond)
	if end.Nanosecond()%int(time.Millisecond) != 0 {
		through++
	}
	return from * int64(time.Millisecond), through * int64(time.Millisecond)
}

type indexStatsResponse struct {
	Streams uint64 `json:"streams"`
	Chunks  uint64 `json:"chunks"`
	Bytes   uint64 `json:"bytes"`
	Entries uint64 `json:"entries"`
}

// indexStats answers /loki/api/v1/index/stats: how many streams, chunks,
// lines and bytes (lines and structured metadata, uncompressed) a
// selector reads over the range.
func (a *LokiAPI) indexStats(w http.ResponseWriter, r *http.Request) {
	p, err := a.readRangeSelector(r)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	from, through := msRange(p.start, p.end)
	streams, done, err := a.indexChunks(r, p.ms, from, through)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	defer done()
	var out indexStatsResponse
	for _, s := range streams {
		st := sumChunks(s.Chunks, from, through)
		if st.chunks > 0 {
			out.Streams++
		}
		out.Chunks += st.chunks
		out.Entries += st.entries
		out.Bytes += st.bytes
	}
	writeJSON(w, http.StatusOK, out)
}

// volumeParams are a volume request's, read as Loki reads them.
type volumeParams struct {
	start, end   time.Time
	step         time.Duration // 0: instant
	ms           []*labels.Matcher
	limit        int
	targets      []string
	bySeries     bool
	matchAnyName bool
}

func (a *LokiAPI) readVolumeParams(r *http.Request, ranged bool) (volumeParams, error) {
	var p volumeParams
	limit, err := lokiInt(r, "limit", 100)
	if err != nil {
		return p, err
	}
	switch {
	case limit == 0:
		limit = 100
	case limit < 0:
		return p, badRequestf("limit must be a positive value")
	}
	p.limit = limit
	if ranged {
		if p.start, p.end, p.step, err = a.lokiRangeStep(r); err != nil {
			return p, err
		}
	} else {
		if _, err := lokiTimestamp(r.FormValue("time"), a.now()); err != nil {
			return p, lokiBadRequest{msg: err.Error()}
		}
		if _, err := parseLokiDirection(r.FormValue("direction")); err != nil {
			return p, err
		}
		if p.start, p.end, err = a.lokiBounds(r); err != nil {
			return p, err
		}
		if p.end.Before(p.start) {
			return p, badRequestf(msgEndBeforeStart)
		}
	}
	switch by := r.FormValue("aggregateBy"); by {
	case "", "series":
		p.bySeries = true
	case "labels":
	default:
		return p, badRequestf("invalid aggregation option")
	}
	if t := r.FormValue("targetLabels"); t != "" {
		p.targets = strings.Split(t, ",")
	}
	if p.ms, err = lokiMatchers(r.FormValue("query"), true); err != nil {
		return p, err
	}
	// Each target label is matched (name=~".+") unless the selector
	// matches it already; without targets, a series is named by the
	// labels the selector names (all of them for {}).
	names := map[string]bool{}
	for _, m := range p.ms {
		names[m.Name] = true
	}
	for _, t := range p.targets {
		if !names[t] {
			p.ms = append(p.ms, labels.MustNewMatcher(labels.MatchRegexp, t, ".+"))
		}
	}
	p.matchAnyName = len(p.targets) == 0 && len(p.ms) == 0
	return p, nil
}

func parseLokiDirection(s string) (bool, error) {
	switch strings.ToUpper(s) {
	case "", "BACKWARD":
		return false, nil
	case "FORWARD":
		return true, nil
	}
	return false, badRequestf("invalid direction '%s'", s)
}

// volumes sums the bytes of each series (or label name) over [from,
// through] (ns), keeping the limit largest, as Loki's ingester does.
func (p volumeParams) volumes(streams []store.LogStreamChunks, from, through int64) map[string]uint64 {
	keep := map[string]bool{}
	for _, t := range p.targets {
		keep[t] = true
	}
	if len(p.targets) == 0 {
		for _, m := range p.ms {
			keep[m.Name] = true
		}
	}
	vols := map[string]uint64{}
	for _, s := range streams {
		st := sumChunks(s.Chunks, from, through)
		if !st.considered {
			continue
		}
		if p.bySeries {
			b := labels.NewScratchBuilder(s.Labels.Len())
			s.Labels.Range(func(l labels.Label) {
				if p.matchAnyName || keep[l.Name] {
					b.Add(l.Name, l.Value)
				}
			})
			vols[b.Labels().String()] += st.bytes
			continue
		}
		s.Labels.Range(func(l labels.Label) {
			if len(p.targets) == 0 || keep[l.Name] {
				vols[l.Name] += st.bytes
			}
		})
	}
	return topVolumes(vols, p.limit)
}

func topVolumes(vols map[string]uint64, limit int) map[string]uint64 {
	if len(vols) <= limit {
		return vols
	}
	names := make([]string, 0, len(vols))
	for n := range vols {
		names = append(names, n)
	}
	slices.SortFunc(names, func(x, y string) int {
		if vols[x] != vols[y] {
			if vols[x] > vols[y] {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	})
	out := make(map[string]uint64, limit)
	for _, n := range names[:limit] {
		out[n] = vols[n]
	}
	return out
}

func (a *LokiAPI) indexVolume(w http.ResponseWriter, r *http.Request) {
	a.volume(w, r, false)
}

func (a *LokiAPI) indexVolumeRange(w http.ResponseWriter, r *http.Request) {
	a.volume(w, r, true)
}

// volume answers /index/volume (one sample at end) and
// /index/volume_range (one sample per step, at each step's end): the
// bytes of each series the selector names, or of each label name with
// aggregateBy=labels, as a Prometheus vector or matrix.
func (a *LokiAPI) volume(w http.ResponseWriter, r *http.Request, ranged bool) {
	p, err := a.readVolumeParams(r, ranged)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	// Loki asks its index in whole seconds.
	lo, hi := p.start.Unix()*int64(time.Second), p.end.Unix()*int64(time.Second)
	streams, done, err := a.indexChunks(r, p.ms, lo, hi)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	defer done()
	type bucket struct {
		at       time.Time // the sample's time
		from, to time.Time
	}
	var buckets []bucket
	if p.step <= 0 {
		buckets = []bucket{{at: p.end, from: p.start, to: p.end}}
	} else {
		// Steps aligned to multiples of step; each ends a millisecond
		// before the next begins, the last at end.
		first := true
		for s := time.Unix(0, p.start.UnixNano()-p.start.UnixNano()%int64(p.step)); s.Before(p.end); s = s.Add(p.step) {
			e := s.Add(p.step)
			if !e.Before(p.end) {
				e = p.end
			} else {
				e = e.Add(-time.Millisecond)
			}
			from := s
			if first {
				from, first = p.start, false
			}
			buckets = append(buckets, bucket{at: e, from: from, to: e})
		}
	}
	samples := map[string][]lokiPoint{}
	for _, b := range buckets {
		from, to := b.from.Unix()*int64(time.Second), b.to.Unix()*int64(time.Second)
		for name, v := range p.volumes(streams, from, to) {
			samples[name] = append(samples[name], lokiPoint{T: b.at.UnixMilli(), V: float64(v)})
		}
	}
	a.writeVolumes(w, samples, p.bySeries)
}

func (a *LokiAPI) writeVolumes(w http.ResponseWriter, samples map[string][]lokiPoint, bySeries bool) {
	type named struct {
		name   string
		metric map[string]string
		pts    []lokiPoint
	}
	resultType := "vector"
	all := make([]named, 0, len(samples))
	for name, pts := range samples {
		if len(pts) > 1 {
			resultType = "matrix"
		}
		metric := map[string]string{name: ""}
		if bySeries {
			ls, err := selectorParser.ParseMetric(name)
			if err != nil {
				continue
			}
			metric = ls.Map()
		}
		slices.SortFunc(pts, func(x, y lokiPoint) int { return int(x.T - y.T) })
		all = append(all, named{name: name, metric: metric, pts: pts})
	}
	slices.SortFunc(all, func(x, y named) int {
		if x.pts[0].V != y.pts[0].V {
			if x.pts[0].V > y.pts[0].V {
				return -1
			}
			return 1
		}
		return strings.Compare(x.name, y.name)
	})
	out := make([]lokiSeries, 0, len(all))
	for _, n := range all {
		s := lokiSeries{Metric: n.metric}
		if resultType == "vector" {
			pt := n.pts[0]
			s.Value = &pt
		} else {
			s.Values = n.pts
		}
		out = append(out, s)
	}
	writeJSON(w, http.StatusOK, lokiResponse{Status: "success", Data: lokiData{ResultType: resultType, Result: out}})
}

// Labels Loki keeps in /detected_labels whatever their values.
var staticDetectedLabels = map[string]bool{"cluster": true, "namespace": true, "instance": true, "pod": true}

type detectedLabel struct {
	Label       string `json:"label"`
	Cardinality uint64 `json:"cardinality"`
}

// detectedLabels answers /loki/api/v1/detected_labels: the stream labels
// of the streams with lines in the range, with how many values each has
// (a HyperLogLog estimate, exact for small sets, as Loki's). Labels whose
// values all look like ids (numbers, UUIDs) are left out, unless they
// are cluster, namespace, instance or pod.
func (a *LokiAPI) detectedLabels(w http.ResponseWriter, r *http.Request) {
	start, end, err := a.lokiBounds(r)
	if err == nil && end.Before(start) {
		err = badRequestf(msgEndBeforeStart)
	}
	var ms []*labels.Matcher
	if q := r.FormValue("query"); err == nil && q != "" {
		ms, err = lokiMatchers(q, false)
	}
	if err != nil {
		a.lokiError(w, err)
		return
	}
	ctx, done, err := admit(r, a.lim, a.cfg.Timeout)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	defer done()
	series, err := a.r.LogSeries(ctx, ms, start.UnixNano(), end.UnixNano()+1)
	if err != nil {
		a.lokiError(w, err)
		return
	}
	values := map[string]map[string]bool{}
	for _, ls := range series {
		ls.Range(func(l labels.Label) {
			if values[l.Name] == nil {
				values[l.Name] = map[string]bool{}
			}
			if l.Value != "" {
				values[l.Name][l.Value] = true
			}
		})
	}
	var out []detectedLabel
	for name, set := range values {
		vs := make([]string, 0, len(set))
		for v := range set {
			vs = append(vs, v)
		}
		if !(staticDetectedLabels[name] && len(vs) > 0) && rejectLabel(vs) {
			continue
		}
		out = append(out, detectedLabel{Label: name, Cardinality: cardinality(vs)})
	}
	slices.SortFunc(out, func(x, y detectedLabel) int { return strings.Compare(x.Label, y.Label) })
	writeJSON(w, http.StatusOK, struct {
		DetectedLabels []detectedLabel `json:"detectedLabels,omitempty"`
	}{out})
}

// rejectLabel: a label with no values, or whose values are all numbers or
// UUIDs (but not just 0 and 1), says nothing worth filtering by.
func rejectLabel(vs []string) bool {
	if len(vs) == 0 {
		return true
	}
	if len(vs) <= 2 && !slices.ContainsFunc(vs, func(v string) bool { return v != "0" && v != "1" }) {
		return false
	}
	for _, v := range vs {
		if _, err := strconv.ParseFloat(v, 64); err == nil {
			continue
		}
		if _, err := uuid.Parse(v); err == nil {
			continue
		}
		return false
	}
	return true
}

// cardinality is the HyperLogLog estimate of the distinct values, as Loki
// sketches them.
func cardinality(vs []string) uint64 {
	s := hyperloglog.New()
	for _, v := range vs {
		s.Insert([]byte(v))
	}
	return s.Estimate()
}
