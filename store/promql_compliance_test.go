package store_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/promcache"
	"github.com/lumenobs/lumen/internal/promdirect"
	"github.com/lumenobs/lumen/internal/promsplit"
	"github.com/lumenobs/lumen/store"
)

// The PromQL compliance tester (prometheus/compliance, promql) scores a
// store by running its query set, as range queries, against it and against
// a Prometheus that scraped the same three PromLabs demo-service targets.
// TestPromQLCompliance does the same from the inside: demo-like scrapes go
// into Lumen and into Prometheus' own TSDB, and Prometheus' engine answers
// the same expressions over both. The expressions are Lumen's own, grouped
// by the tester's classes and widened to every PromQL function, operator
// and aggregation, native histograms and staleness.

// demoStart is 22:30 on the last day of February, so that the three hours of
// data cross a day and a month boundary (day_of_month, days_in_month, month
// change within the range).
var demoStart = time.Date(2026, 2, 28, 22, 30, 0, 0, time.UTC)

const (
	demoSpan     = 3 * time.Hour
	demoInterval = 15 * time.Second
	demoJob      = "demo"
)

// demoTarget is one demo-service instance as Prometheus scrapes it.
type demoTarget struct {
	instance string
	// offset is where in each interval Prometheus scrapes the target (its
	// scrape loops are spread over the interval): the first round creates
	// the series of :10001 first, then :10000, then :10002 — not in label
	// order, as in a real Prometheus head.
	offset time.Duration
	cpus   int
	ram    int64
	// down is when the target does not answer (relative to demoStart); it
	// restarts after, its counters from zero.
	down [2]time.Duration
}

var demoTargets = []demoTarget{
	{instance: "demo.promlabs.com:10000", offset: 7300 * time.Millisecond, cpus: 4, ram: 16 << 30},
	{instance: "demo.promlabs.com:10001", offset: 2100 * time.Millisecond, cpus: 8, ram: 32 << 30},
	{instance: "demo.promlabs.com:10002", offset: 12600 * time.Millisecond, cpus: 4, ram: 16 << 30,
		down: [2]time.Duration{90 * time.Minute, 100 * time.Minute}},
}

// The API handlers the demo service serves, with the latency histograms'
// classic bucket bounds.
var (
	demoRoutes = [][3]string{ // method, path, status
		{"GET", "/api/foo", "200"}, {"POST", "/api/foo", "200"}, {"GET", "/api/nonexistent", "404"},
	}
	demoBucketBounds = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
	// demoBatchBounds are the custom bounds of the batch-duration native
	// histogram (NHCB: what convert_classic_histograms_to_nhcb makes).
	demoBatchBounds = []float64{1, 5, 10, 30, 60}
)

// demoScraper holds what a target has served so far: counters (in integer
// units, so that values are the decimals a text scrape gives) and the series
// of the previous scrape, which get staleness markers when they go away.
type demoScraper struct {
	demoTarget
	idx      int
	counters map[string]int64
	native   map[string]map[int32]uint64 // bucket index -> count
	last     map[string]labels.Labels
	labels   map[string]labels.Labels // every series' labels, by name and labels joined
	up       bool
	batch    float64 // the last successful batch run, unix seconds
}

func newDemoScraper(idx int, t demoTarget) *demoScraper {
	return &demoScraper{demoTarget: t, idx: idx, counters: map[string]int64{}, native: map[string]map[int32]uint64{}, last: map[string]labels.Labels{}, labels: map[string]labels.Labels{}}
}

// demoScrapes returns the scrapes of every target, in time order, each one
// commit: 15 s apart per target, at the target's offset, with a few ms of
// jitter.
func demoScrapes(start time.Time) [][]sample {
	r := rand.New(rand.NewPCG(15, 539))
	var scrapers []*demoScraper
	for i, t := range demoTargets {
		scrapers = append(scrapers, newDemoScraper(i, t))
	}
	type scrape struct {
		t  int64
		ss []sample
	}
	var all []scrape
	for round := range int(demoSpan / demoInterval) {
		for _, s := range scrapers {
			at := start.Add(s.offset + time.Duration(round)*demoInterval + time.Duration(r.IntN(5)-2)*time.Millisecond)
			all = append(all, scrape{at.UnixMilli(), s.scrape(round, at)})
		}
	}
	slices.SortStableFunc(all, func(a, b scrape) int { return int(a.t - b.t) })
	out := make([][]sample, len(all))
	for i, s := range all {
		out[i] = s.ss
	}
	return out
}

// scrape returns round i's samples at t, with staleness markers for the
// series of the previous scrape that this one lacks.
func (s *demoScraper) scrape(i int, at time.Time) []sample {
	t := at.UnixMilli()
	since := at.Sub(demoStart)
	var out []sample
	seen := map[string]labels.Labels{}
	emit := func(smp sample) {
		out = append(out, smp)
		seen[string(smp.lset.Bytes(nil))] = smp.lset
	}
	up := !(since >= s.down[0] && since < s.down[1])
	emit(sample{lset: s.lbl("up"), t: t, v: map[bool]float64{false: 0, true: 1}[up]})
	emit(sample{lset: s.lbl("scrape_duration_seconds"), t: t, v: float64(2_000_000+(i*7919+s.idx*104729)%900_000) / 1e9})
	if up && !s.up && i > 0 { // the target restarted
		clear(s.counters)
		clear(s.native)
		s.batch = 0
	}
	s.up = up
	if up {
		s.series(i, t, emit)
	}
	for k, l := range s.last {
		if _, ok := seen[k]; !ok {
			out = append(out, sample{lset: l, t: t, v: math.Float64frombits(value.StaleNaN)})
		}
	}
	s.last = seen
	// A scrape appends in exposition order: by metric name, then labels.
	slices.SortStableFunc(out, func(a, b sample) int { return labels.Compare(a.lset, b.lset) })
	return out
}

// lbl returns the labels of the target's series name{kv...}.
func (s *demoScraper) lbl(name string, kv ...string) labels.Labels {
	key := name + "\xff" + strings.Join(kv, "\xff")
	l, ok := s.labels[key]
	if !ok {
		l = labels.FromStrings(append([]string{"__name__", name, "instance", s.instance, "job", demoJob}, kv...)...)
		s.labels[key] = l
	}
	return l
}

// series emits the demo service's metrics for round i.
func (s *demoScraper) series(i int, t int64, emit func(sample)) {
	lbl := s.lbl
	f := float64(i)
	inst := float64(s.idx)
	counter := func(key string, inc int64) int64 { s.counters[key] += inc; return s.counters[key] }

	// CPU seconds by mode, in hundredths.
	for m, mode := range []string{"idle", "system", "user"} {
		share := []float64{0.7, 0.1, 0.2}[m]
		inc := int64(math.Round(15 * float64(s.cpus) * share * 100 * (1 + 0.2*math.Sin(f/17+inst))))
		emit(sample{lset: lbl("demo_cpu_usage_seconds_total", "mode", mode), t: t, v: float64(counter("cpu"+mode, inc)) / 100})
	}
	emit(sample{lset: lbl("demo_num_cpus"), t: t, v: float64(s.cpus)})

	// Memory: integer bytes; buffers take one of two sizes, so instances
	// tie (what topk and bottomk must break).
	used := (2<<30 + int64(s.idx)*100<<20 + int64(300<<20*math.Sin(f/40))) &^ 4095
	cached := int64(1<<30) + int64((i*7919)%50)<<20
	buffers := int64(64<<20) << ((i/20 + s.idx) % 2)
	for _, kv := range []struct {
		typ string
		v   int64
	}{{"buffers", buffers}, {"cached", cached}, {"free", s.ram - used - cached - buffers}, {"used", used}} {
		emit(sample{lset: lbl("demo_memory_usage_bytes", "type", kv.typ), t: t, v: float64(kv.v)})
	}

	// Disk: grows, and a cleanup every hour drops it.
	disk := int64(50e9) + int64(s.idx)*1e9 + int64(i%240)*123457 + int64((i*31)%7)*1000
	emit(sample{lset: lbl("demo_disk_usage_bytes"), t: t, v: float64(disk)})
	emit(sample{lset: lbl("demo_disk_total_bytes"), t: t, v: 100e9})

	// A batch job every 5 minutes, failing now and then; its durations
	// are computed floats (stored XOR, not decimal).
	if i%20 == s.idx*3 {
		if (i/20+s.idx)%4 != 3 {
			s.batch = float64(t) / 1000
		}
		d := 12 + 4*math.Sin(f/9+inst)
		b := 0
		for b < len(demoBatchBounds) && d > demoBatchBounds[b] {
			b++
		}
		if s.native["batch"] == nil {
			s.native["batch"] = map[int32]uint64{}
		}
		s.native["batch"][int32(b)]++
		s.counters["batchsum"] += int64(d * 1000)
	}
	if s.batch > 0 {
		emit(sample{lset: lbl("demo_batch_last_success_timestamp_seconds"), t: t, v: s.batch})
		emit(sample{lset: lbl("demo_batch_last_run_duration_seconds"), t: t, v: 12 + 4*math.Sin(float64(i/20)/9+inst)})
		emit(sample{lset: lbl("demo_batch_duration_seconds"), t: t, h: customBucketsHistogram(s.native["batch"], float64(s.counters["batchsum"])/1000)})
	}

	// A metric that comes and goes: staleness markers when it goes.
	if ((i+s.idx*17)/40)%3 != 2 {
		emit(sample{lset: lbl("demo_intermittent_metric"), t: t, v: float64(i % 10)})
	}

	// A clock skew gauge in [-0.5, 0.5], for the trigonometric functions,
	// and a queue capacity that is unbounded on one instance.
	emit(sample{lset: lbl("demo_clock_skew_seconds"), t: t, v: float64((i*37+s.idx*101)%1001-500) / 1000})
	capacity := 1000.0
	if s.idx == 0 {
		capacity = math.Inf(1)
	}
	emit(sample{lset: lbl("demo_queue_capacity"), t: t, v: capacity})

	// API latency as a summary, whose quantiles are NaN in quiet periods.
	quiet := (i/30)%5 == 4
	for q, quantile := range []string{"0.5", "0.9", "0.99"} {
		v := math.NaN()
		if !quiet {
			v = float64([]int{42, 120, 480}[q]+(i*(q*3+1))%[]int{10, 40, 100}[q]) / 1000
		}
		emit(sample{lset: lbl("demo_api_latency_seconds", "quantile", quantile), t: t, v: v})
	}
	var latencyInc int64
	if !quiet {
		latencyInc = int64(10 + i%7)
	}
	emit(sample{lset: lbl("demo_api_latency_seconds_count"), t: t, v: float64(counter("latcount", latencyInc))})
	emit(sample{lset: lbl("demo_api_latency_seconds_sum"), t: t, v: float64(counter("latsum", latencyInc*57)) / 1000})

	// Request durations by route: a classic histogram and, under the same
	// name, the native one (as scraped with classic histograms kept).
	for c, route := range demoRoutes {
		rl := []string{"method", route[0], "path", route[1], "status", route[2]}
		var cum, sumMs int64
		for b, le := range demoBucketBounds {
			inc := int64([]int{1, 3, 6, 8, 5, 2, 1}[b]*(2+(i+c)%3)) + int64((i*(b+3)+c*7+s.idx)%4)
			if route[2] == "404" {
				inc /= 3
			}
			cum += inc
			sumMs += inc * int64(le*700)
			key := fmt.Sprintf("bucket%d/%g", c, le)
			emit(sample{lset: lbl("demo_api_request_duration_seconds_bucket", append(rl, "le", strconv.FormatFloat(le, 'f', -1, 64))...), t: t, v: float64(counter(key, cum))})
		}
		over := int64((i + c) % 3)
		cum += over
		sumMs += over * 1800
		emit(sample{lset: lbl("demo_api_request_duration_seconds_bucket", append(rl, "le", "+Inf")...), t: t, v: float64(counter(fmt.Sprintf("bucket%d/+Inf", c), cum))})
		emit(sample{lset: lbl("demo_api_request_duration_seconds_count", rl...), t: t, v: float64(counter(fmt.Sprintf("count%d", c), cum))})
		emit(sample{lset: lbl("demo_api_request_duration_seconds_sum", rl...), t: t, v: float64(counter(fmt.Sprintf("sum%d", c), sumMs)) / 1000})

		key := fmt.Sprintf("native%d", c)
		nb := s.native[key]
		if nb == nil {
			nb = map[int32]uint64{}
			s.native[key] = nb
		}
		// Schema 2 buckets from about 0.01 s to 0.09 s, and now and then an
		// 8 s outlier in a far bucket (a new span: the chunk is recoded).
		for j := int32(-26); j <= -14; j++ {
			nb[j] += uint64((i*3 + int(j*j) + c) % 4)
		}
		if i%50 == 49 {
			nb[12]++
		}
		if i%7 == 0 {
			nb[math.MinInt32]++ // the zero bucket
		}
		counter(key+"sum", int64(sumMs))
		emit(sample{lset: lbl("demo_api_request_duration_seconds", rl...), t: t, h: exponentialHistogram(2, nb, float64(s.counters[key+"sum"])/1000)})
	}

	emit(sample{lset: lbl("target_info", "env", "prod", "version", []string{"1.4.2", "1.4.2", "1.5.0"}[s.idx]), t: t, v: 1})
}

// exponentialHistogram returns the integer native histogram of the given
// schema whose buckets (by index; math.MinInt32 is the zero bucket) hold
// counts.
func exponentialHistogram(schema int32, counts map[int32]uint64, sum float64) *histogram.Histogram {
	h := &histogram.Histogram{Schema: schema, ZeroThreshold: 1e-128, ZeroCount: counts[math.MinInt32], Sum: sum}
	h.Count = h.ZeroCount
	var idx []int32
	for j, n := range counts {
		if j != math.MinInt32 {
			idx = append(idx, j)
			h.Count += n
		}
	}
	slices.Sort(idx)
	h.PositiveSpans, h.PositiveBuckets = spansAndDeltas(idx, counts)
	return h
}

// customBucketsHistogram returns the NHCB histogram over demoBatchBounds
// whose buckets (0 to len(bounds), the last +Inf) hold counts.
func customBucketsHistogram(counts map[int32]uint64, sum float64) *histogram.Histogram {
	h := &histogram.Histogram{Schema: histogram.CustomBucketsSchema, Sum: sum, CustomValues: demoBatchBounds}
	var idx []int32
	for j := int32(0); j <= int32(len(demoBatchBounds)); j++ {
		idx = append(idx, j)
		h.Count += counts[j]
	}
	h.PositiveSpans, h.PositiveBuckets = spansAndDeltas(idx, counts)
	return h
}

// spansAndDeltas encodes the buckets at the sorted indexes idx as spans and
// delta-encoded counts.
func spansAndDeltas(idx []int32, counts map[int32]uint64) ([]histogram.Span, []int64) {
	var spans []histogram.Span
	var deltas []int64
	var prev int64
	for k, j := range idx {
		if k == 0 || j != idx[k-1]+1 {
			offset := j
			if k > 0 {
				offset = j - idx[k-1] - 1
			}
			spans = append(spans, histogram.Span{Offset: offset})
		}
		spans[len(spans)-1].Length++
		deltas = append(deltas, int64(counts[j])-prev)
		prev = int64(counts[j])
	}
	return spans, deltas
}

// outcome is what a case must answer in at least one evaluation, so that a
// case cannot pass by both stores answering nothing.
type outcome int

const (
	wantData     outcome = iota // no evaluation fails; some answer is not empty
	wantNoData                  // no evaluation fails; every answer is empty
	wantFailure                 // some evaluation fails, none has data
	wantAnything                // whatever Prometheus answers
	// wantInstantData: a range vector, answered by instant queries and refused
	// by range queries.
	wantInstantData
)

type demoCase struct {
	expr string
	want outcome
}

// Metric names of the demo service.
const (
	demoMem          = "demo_memory_usage_bytes"
	demoCPU          = "demo_cpu_usage_seconds_total"
	demoDisk         = "demo_disk_usage_bytes"
	demoNumCPUs      = "demo_num_cpus"
	demoBatchTS      = "demo_batch_last_success_timestamp_seconds"
	demoIntermittent = "demo_intermittent_metric"
	demoClassic      = "demo_api_request_duration_seconds_bucket"
	demoNative       = "demo_api_request_duration_seconds"
	demoNHCB         = "demo_batch_duration_seconds"
)

// Variant values, as the tester expands its templates.
var (
	demoRanges         = []string{"1s", "15s", "1m", "5m", "15m", "1h"}
	demoOffsets        = []string{"1m", "5m", "10m"}
	demoQuantiles      = []string{"-0.5", "0.1", "0.5", "0.75", "0.95", "0.90", "0.99", "1", "1.5"}
	demoArithOps       = []string{"+", "-", "*", "/", "%", "^", "atan2"}
	demoComparisonOps  = []string{"==", "!=", "<", ">", "<=", ">="}
	demoBinaryOps      = append(slices.Clone(demoArithOps), demoComparisonOps...)
	demoAggregations   = []string{"sum", "avg", "max", "min", "count", "stddev", "stdvar", "group"}
	demoGroupings      = []string{"", " by ()", " by (instance)", " by (instance, type)", " by (nonexistent)", " without ()", " without (instance)", " without (instance, type)", " without (nonexistent)"}
	demoOverTimeFuncs  = []string{"sum", "avg", "max", "min", "count", "stddev", "stdvar", "absent", "last", "present", "first", "mad", "ts_of_max", "ts_of_min", "ts_of_first", "ts_of_last"}
	demoCounterFuncs   = []string{"delta", "rate", "increase", "irate", "idelta", "resets"}
	demoMathFuncs      = []string{"abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "round", "sgn"}
	demoTrigFuncs      = []string{"acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad"}
	demoDateFuncs      = []string{"day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year"}
	demoSubqueryRanges = []string{"1m", "5m", "30m"}
	demoSubquerySteps  = []string{":", ":7s", ":10s", ":15s", ":1m"} // ":" is the default step
)

// demoCases returns the expressions, by the compliance tester's classes.
func demoCases(start time.Time) []demoCase {
	var cases []demoCase
	add := func(want outcome, format string, args ...any) {
		cases = append(cases, demoCase{fmt.Sprintf(format, args...), want})
	}
	// Over a range of 1s or 15s, expressions see no sample or one: whether
	// they answer depends on where the scrapes fall.
	rangeOutcome := func(r string) outcome {
		if r == "1s" || r == "15s" {
			return wantAnything
		}
		return wantData
	}
	at := func(d time.Duration) string {
		return strconv.FormatFloat(float64(start.Add(d).UnixMilli())/1000, 'f', -1, 64)
	}

	// Scalar literals.
	for _, lit := range []string{"42", "1.234", ".123", "1.23e-3", "0x3d", "Inf", "+Inf", "-Inf", "NaN", "1 * 2 + 4 / 6 - 10 % 2 ^ 2", "-1 ^ 2", "time()", "pi()", "vector(1.23)", "vector(time())"} {
		add(wantData, "%s", lit)
	}

	// Vector selectors.
	for _, sel := range []string{
		demoMem, `{__name__="demo_memory_usage_bytes"}`, demoMem + `{type="free"}`, demoMem + `{type!="free"}`,
		demoMem + `{instance=~"demo.promlabs.com:.*"}`, demoMem + `{instance!~".*:10000"}`,
		demoMem + `{type="free", instance!="demo.promlabs.com:10000"}`, `{type="free", instance!="demo.promlabs.com:10000"}`,
		demoMem + `{type=~"free|used"}`, demoMem + `{type=~"(?i)FREE|Cached"}`, demoMem + `{type=~"f.*", type!~"fre"}`,
		`{__name__=~"demo_(memory|demoDisk)_usage_bytes"}`, `{__name__!~"demo_.*", job="demo"}`, `{job=~".+"}`,
		"up", demoIntermittent, "demo_api_latency_seconds", "demo_queue_capacity", demoNative, demoNHCB,
		`{__name__=~"demo_api_request_duration_seconds.*", method="POST"}`,
	} {
		add(wantData, "%s", sel)
	}
	add(wantNoData, demoMem+`{instance=~"host"}`)
	add(wantNoData, "nonexistent_metric_name")
	add(wantFailure, `{__name__=~".*"}`)
	add(wantFailure, `{instance=""}`)
	for _, r := range []string{"1m", "5m"} {
		add(wantInstantData, "%s[%s]", demoMem, r)
		add(wantInstantData, "%s[%s]", demoIntermittent, r)
		add(wantInstantData, "%s[%s]", demoNative, r)
	}
	add(wantInstantData, "%s[1m] offset 10m", demoCPU)

	// Offsets and @.
	for _, o := range demoOffsets {
		add(wantData, "%s offset %s", demoMem, o)
		add(wantData, "%s offset -%s", demoMem, o)
		add(wantData, "rate(%s[5m] offset -%s)", demoCPU, o)
	}
	for _, mod := range []string{"@ start()", "@ end()", "@ " + at(time.Hour), "@ " + at(97*time.Minute+123*time.Millisecond), "offset 5m @ end()", "@ start() offset -5m"} {
		add(wantData, "%s %s", demoMem, mod)
		add(wantData, "rate(%s[5m] %s)", demoCPU, mod)
	}
	add(wantData, "sum(%s @ start()) / sum(%s)", demoMem, demoMem)
	add(wantData, "timestamp(%s offset 5m)", demoMem)
	add(wantData, "timestamp(%s @ end())", demoMem)
	add(wantData, "%s offset 5m", demoIntermittent)

	// Aggregation operators.
	for _, op := range demoAggregations {
		for _, g := range demoGroupings {
			add(wantData, "%s%s (%s)", op, g, demoMem)
		}
		add(wantNoData, "%s(nonexistent_metric_name)", op)
	}
	// Aggregations of rate and increase, the shape evaluated directly
	// (internal/promdirect).
	for _, op := range []string{"sum", "avg", "max", "min", "count"} {
		for _, g := range []string{"", " by (instance)", " without (mode)", " by (nonexistent)"} {
			add(wantData, "%s%s (rate(%s[5m]))", op, g, demoCPU)
		}
		add(wantData, "%s by (mode) (increase(%s[1m] offset 3m))", op, demoCPU)
		add(wantData, "%s by (instance) (irate(%s[2m]))", op, demoCPU)
		add(wantData, "%s without (instance) (max_over_time(%s[3m]))", op, demoMem)
		add(wantData, "%s (min_over_time(%s[1m] offset 1m))", op, demoMem)
		add(wantData, "%s by (type) (sum_over_time(%s[2m]))", op, demoMem)
		add(wantData, "%s by (job) (count_over_time(%s[5m]))", op, demoIntermittent)
	}
	for _, op := range []string{"topk", "bottomk"} {
		add(wantData, "%s(3, %s)", op, demoMem)
		add(wantData, "%s by (instance) (2, %s)", op, demoMem)
		add(wantData, "%s without (instance) (2, %s)", op, demoMem)
		add(wantData, "%s without () (2, %s)", op, demoMem)
		add(wantData, "%s(1, %s)", op, demoNumCPUs)
		add(wantData, "%s by (mode) (1, rate(%s[5m]))", op, demoCPU)
		add(wantData, "%s(2, demo_api_latency_seconds)", op)
	}
	for _, q := range demoQuantiles {
		add(wantData, "quantile(%s, %s)", q, demoMem)
	}
	add(wantData, "quantile by (type) (0.5, %s)", demoMem)
	add(wantData, "avg(max by (type) (%s))", demoMem)
	add(wantData, `count_values("value", %s)`, demoClassic)
	add(wantData, `count_values by (instance) ("cpus", %s)`, demoNumCPUs)
	add(wantData, "limitk(2, %s)", demoMem)
	add(wantData, "limitk by (instance) (1, %s)", demoMem)
	add(wantData, "limit_ratio(0.5, %s)", demoMem)
	add(wantData, "limit_ratio(-0.3, %s)", demoMem)
	add(wantData, "sum by (method) (%s)", demoNative)
	add(wantData, "avg(%s)", demoNative)
	add(wantData, "sum(rate(%s[5m]))", demoNative)
	add(wantNoData, "max(%s)", demoNative) // ignores histograms, with an annotation
	add(wantData, "sum by (le) (rate(%s[5m]))", demoClassic)
	add(wantData, "sum(demo_api_latency_seconds)")
	add(wantData, "stddev by (quantile) (demo_api_latency_seconds)")
	add(wantData, "max(demo_queue_capacity)")
	add(wantData, "avg(demo_queue_capacity)")

	// Binary operators.
	for _, op := range demoBinaryOps {
		filter := wantAnything // a comparison without bool may drop every sample
		if !slices.Contains(demoComparisonOps, op) {
			filter = wantData
		}
		add(filter, "%s %s 1.2345", demoMem, op)
		add(wantAnything, "0.12345 %s %s", op, demoMem)
		add(wantAnything, "(1 * 2 + 4 / 6 - (10%%7)^2) %s %s", op, demoMem)
		add(wantAnything, "%s %s (1 * 2 + 4 / 6 - 10)", demoMem, op)
		add(wantAnything, "%s %s on (instance, job, type) %s", demoMem, op, demoMem)
		add(wantAnything, "sum by (instance, type) (%s) %s on (instance, type) group_left (job) %s", demoMem, op, demoMem)
		add(wantAnything, "time() %s %s", op, demoMem)
		add(wantAnything, "%s %s time()", demoMem, op)
	}
	for _, op := range demoComparisonOps {
		add(wantData, "%s + (1 %s bool 2)", demoNumCPUs, op)
		add(wantData, "%s %s bool 1.2345", demoMem, op)
		add(wantData, "1.2345 %s bool %s", op, demoMem)
		add(wantData, "%s %s bool on (instance, job, type) %s", demoMem, op, demoMem)
		add(wantData, "time() %s bool 1", op)
		add(wantData, "1 %s bool time()", op)
		add(wantData, "time() %s bool time()", op)
	}
	for _, op := range demoArithOps[:6] {
		add(wantData, "1 %s time()", op)
		add(wantData, "time() %s 1", op)
		add(wantData, "time() %s time()", op)
	}
	for _, e := range []string{
		"timestamp(%[1]s * 1)", "timestamp(-%[1]s)", "-%[1]s", "%[1]s + -(1)",
		"%[1]s / on (instance, job, type, __name__) %[1]s",
		"sum without (job) (%[1]s) / on (instance, type) %[1]s",
		"sum without (job) (%[1]s) / on (instance, type) group_left %[1]s",
		"sum without (job) (%[1]s) / on (instance, type) group_left (job) %[1]s",
		"%[1]s / on (instance, job) group_left " + demoNumCPUs,
		demoNumCPUs + " * on (instance, job) group_right %[1]s",
		"%[1]s / on (instance, type, job, non_existent) %[1]s",
		"%[1]s / ignoring (type) group_left " + demoNumCPUs,
		"%[1]s and on (instance) " + demoNumCPUs + " > 4",
		"%[1]s or " + demoNumCPUs,
		"%[1]s unless %[1]s{type=\"free\"}",
		"%[1]s and ignoring (type) " + demoNumCPUs,
	} {
		add(wantData, e, demoMem)
	}
	add(wantData, "%s * Inf", demoNumCPUs)
	add(wantData, "%s * -Inf", demoNumCPUs)
	add(wantData, "%s * NaN", demoNumCPUs)
	add(wantData, "%s or on (instance) up", demoIntermittent)
	add(wantAnything, "up unless on (instance) %s", demoIntermittent)
	add(wantData, "rate(%s[5m]) / ignoring (mode) group_left %s", demoCPU, demoNumCPUs)
	add(wantData, "sum by (instance) (rate(%s[5m])) / on (instance) %s", demoCPU, demoNumCPUs)
	add(wantData, "demo_api_latency_seconds_sum / demo_api_latency_seconds_count")
	add(wantData, "rate(demo_api_latency_seconds_sum[5m]) / rate(demo_api_latency_seconds_count[5m])")
	add(wantData, "demo_queue_capacity - demo_queue_capacity")
	add(wantData, "up + fill(0) %s", demoIntermittent)
	add(wantData, "%s + fill_right(-1) up", demoIntermittent)
	add(wantFailure, "%s * on (instance) %s", demoMem, demoMem)          // many-to-many
	add(wantFailure, "%s / on (instance, job) %s", demoMem, demoNumCPUs) // many-to-one without group_left
	add(wantData, "%s * 2", demoNative)
	add(wantData, "2 * %s", demoNative)
	add(wantData, "%s / 4", demoNative)
	add(wantData, "%s + %s", demoNative, demoNative)
	add(wantData, "%s - %s offset 5m", demoNative, demoNative)
	add(wantAnything, "%s + 1", demoNative)
	add(wantData, "%s == %s", demoNative, demoNative)

	// Functions over time.
	for _, r := range demoRanges {
		for _, fn := range demoOverTimeFuncs {
			want := rangeOutcome(r)
			if fn == "absent" {
				want = wantAnything // only before the first scrape
			}
			add(want, "%s_over_time(%s[%s])", fn, demoMem, r)
		}
		for _, q := range demoQuantiles {
			add(rangeOutcome(r), "quantile_over_time(%s, %s[%s])", q, demoMem, r)
		}
		for _, fn := range demoCounterFuncs {
			add(rangeOutcome(r), "%s(%s[%s])", fn, demoCPU, r)
		}
		add(rangeOutcome(r), "changes(%s[%s])", demoBatchTS, r)
		add(rangeOutcome(r), "deriv(%s[%s])", demoDisk, r)
		add(rangeOutcome(r), "predict_linear(%s[%s], 600)", demoDisk, r)
		add(rangeOutcome(r), "rate(%s[%s])", demoNative, r)
	}
	for _, fn := range demoCounterFuncs[:3] {
		add(wantNoData, "%s(nonexistent_metric[5m])", fn)
	}
	for _, sf := range []string{"0.1", "0.5", "0.8"} {
		for _, tf := range []string{"0.1", "0.5", "0.8"} {
			add(wantData, "double_exponential_smoothing(%s[10m], %s, %s)", demoDisk, sf, tf)
		}
	}
	for _, fn := range []string{"sum", "avg", "count", "last", "first", "present"} {
		add(wantData, "%s_over_time(%s[5m])", fn, demoNative)
	}
	add(wantNoData, "max_over_time(%s[5m])", demoNative) // ignores histograms, with an annotation
	add(wantData, "count_over_time(%s[5m])", demoIntermittent)
	add(wantData, "last_over_time(%s[10m])", demoIntermittent)
	add(wantData, "present_over_time(%s[5m])", demoIntermittent)
	add(wantData, "absent_over_time(%s[5m])", demoIntermittent)
	add(wantData, "absent_over_time(nonexistent_metric[5m])")
	add(wantData, "max_over_time(demo_api_latency_seconds[5m])")
	add(wantData, "avg_over_time(demo_queue_capacity[5m])")

	// Functions over instant vectors.
	for _, fn := range demoMathFuncs {
		add(wantData, "%s(%s)", fn, demoMem)
		add(wantData, "%s(-%s)", fn, demoMem)
	}
	add(wantData, "round(%s, 1000)", demoMem)
	add(wantData, "round(demo_clock_skew_seconds, 0.03)")
	for _, fn := range demoTrigFuncs {
		add(wantData, "%s(demo_clock_skew_seconds)", fn)
	}
	add(wantData, "clamp_min(%s, 2)", demoMem)
	add(wantData, "clamp_max(%s, 2)", demoMem)
	add(wantData, "clamp(%s, 0, 1)", demoMem)
	add(wantData, "clamp(%s, 0, 1000000000000)", demoMem)
	add(wantNoData, "clamp(%s, 1000000000000, 0)", demoMem)
	add(wantData, "clamp(%s, 1000000000000, 1000000000000)", demoMem)
	add(wantData, "timestamp(%s)", demoNumCPUs)
	add(wantData, "timestamp(timestamp(%s))", demoNumCPUs)
	add(wantData, "timestamp(%s)", demoIntermittent)
	add(wantData, "timestamp(%s)", demoNative)
	for _, lr := range []string{
		`"job", "destination-value-$1", "instance", "demo.promlabs.com:(.*)"`,
		`"job", "destination-value-$1", "instance", "host:(.*)"`,
		`"job", "$1-$2", "instance", "demo.(.*):(.*)"`,
		`"job", "value-$1", "nonexistent-src", "source-value-(.*)"`,
		`"job", "value-$1", "nonexistent-src", "(.*)"`,
		`"job", "value-$1", "instance", "non-matching-regex"`,
		`"job", "", "dst", ".*"`,
	} {
		add(wantData, "label_replace(%s, %s)", demoNumCPUs, lr)
	}
	add(wantFailure, `label_replace(%s, "job", "value-$1", "src", "(.*")`, demoNumCPUs)
	add(wantFailure, `label_replace(%s, "instance", "", "", "")`, demoNumCPUs)
	add(wantData, `label_join(%s, "new_label", "-", "instance", "job")`, demoNumCPUs)
	add(wantData, `label_join(%s, "job", "-", "instance", "job")`, demoNumCPUs)
	add(wantData, `label_join(%s, "job", "-", "instance")`, demoNumCPUs)
	add(wantFailure, `label_join(%s, "instance", "-", "job")`, demoNumCPUs)
	for _, fn := range demoDateFuncs {
		add(wantData, "%s()", fn)
		for _, o := range demoOffsets {
			add(wantData, "%s(%s offset %s)", fn, demoBatchTS, o)
		}
	}
	add(wantData, "hour(timestamp(up))")
	add(wantData, "scalar(%s)", demoNumCPUs)
	add(wantData, "scalar(sum(%s))", demoNumCPUs)
	add(wantData, `scalar(up{instance="demo.promlabs.com:10002"})`)
	add(wantData, "absent(%s)", demoMem) // before the first scrape and after the last
	add(wantData, "absent(nonexistent_metric_name)")
	add(wantData, `absent(nonexistent_metric_name{job="demo", instance=~"x"})`)
	add(wantData, "sort(%s)", demoMem)
	add(wantData, "sort_desc(%s)", demoMem)
	add(wantData, "sort(rate(%s[5m]))", demoCPU)
	add(wantData, "sort_desc(%s)", demoNumCPUs)
	add(wantData, "sort(demo_api_latency_seconds)")
	add(wantData, `sort_by_label(%s, "type", "instance")`, demoMem)
	add(wantData, `sort_by_label_desc(%s, "instance")`, demoMem)
	add(wantData, "info(rate(%s[5m]))", demoCPU)
	add(wantData, `info(%s, {version=~".+"})`, demoNumCPUs)

	// Histograms: classic, demoNative (exponential), demoNative with custom
	// demoClassic.
	for _, q := range demoQuantiles {
		add(wantData, "histogram_quantile(%s, rate(%s[1m]))", q, demoClassic)
	}
	add(wantNoData, "histogram_quantile(0.9, nonexistent_metric)")
	add(wantNoData, "histogram_quantile(0.9, %s)", demoMem)
	add(wantData, `histogram_quantile(0.9, {__name__=~"demo_api_request_duration_seconds_.+"})`)
	add(wantData, "histogram_quantile(0.9, sum by (le) (rate(%s[5m])))", demoClassic)
	for _, q := range []string{"0", "0.5", "0.99", "1"} {
		add(wantData, "histogram_quantile(%s, sum by (le, instance) (rate(%s[1m])))", q, demoClassic)
		add(wantData, "histogram_quantile(%s, sum by (path, le) (increase(%s[5m] offset 2m)))", q, demoClassic)
	}
	add(wantData, "histogram_fraction(0, 0.1, rate(%s[5m]))", demoClassic)
	for _, q := range []string{"0.1", "0.5", "0.9", "0.99"} {
		add(wantData, "histogram_quantile(%s, rate(%s[5m]))", q, demoNative)
		add(wantData, "histogram_quantile(%s, sum by (path) (rate(%s[5m])))", q, demoNative)
	}
	add(wantData, `histogram_quantiles(rate(%s[5m]), "q", 0.5, 0.9)`, demoNative)
	for _, fn := range []string{"count", "sum", "avg", "stddev", "stdvar"} {
		add(wantData, "histogram_%s(rate(%s[5m]))", fn, demoNative)
		add(wantData, "histogram_%s(%s)", fn, demoNHCB)
	}
	add(wantData, "histogram_fraction(0, 0.1, rate(%s[5m]))", demoNative)
	add(wantData, "histogram_count(increase(%s[10m]))", demoNative)
	add(wantData, "resets(%s[30m])", demoNative)
	add(wantData, "delta(%s[5m])", demoNative)
	add(wantData, "histogram_quantile(0.9, rate(%s[15m]))", demoNHCB)
	add(wantData, "histogram_count(increase(%s[1h]))", demoNHCB)
	add(wantData, "histogram_fraction(0, 10, %s)", demoNHCB)
	add(wantData, "histogram_quantile(0.5, %s)", demoNative)

	// Subqueries.
	add(wantAnything, "max_over_time((time() - max(%s) < 1000)[5m:10s] offset 5m)", demoBatchTS)
	add(wantData, "avg_over_time(rate(%s[1m])[2m:10s])", demoCPU)
	for i, r := range demoSubqueryRanges {
		for _, step := range demoSubquerySteps {
			for _, fn := range []string{"max_over_time", "avg_over_time", "count_over_time"}[:i+1] {
				add(wantData, "%s(rate(%s[1m])[%s%s])", fn, demoCPU, r, step)
			}
		}
	}
	for _, mod := range []string{"offset 10m", "offset -5m", "@ end()", "@ start()", "@ " + at(100*time.Minute+500*time.Millisecond)} {
		add(wantData, "max_over_time(rate(%s[1m])[5m:15s] %s)", demoCPU, mod)
	}
	add(wantData, "max_over_time(deriv(rate(%s[1m])[5m:15s])[10m:1m])", demoCPU)
	add(wantData, "sum_over_time(rate(%s[5m])[10m:30s])", demoNative)
	add(wantData, "min_over_time((%s > 5e9)[10m:7s])", demoMem)
	add(wantData, "count_over_time(%s[10m:15s])", demoIntermittent)
	add(wantData, "last_over_time(%s[5m:1m])", demoIntermittent)
	add(wantData, "rate(%s[5m:15s])", demoCPU)

	// Duration expressions and extended range selectors.
	add(wantData, "rate(%s[5m+1m])", demoCPU)
	add(wantData, "%s offset (2 * 5m)", demoMem)
	add(wantData, "increase(%s[1m] anchored)", demoCPU)
	add(wantData, "rate(%s[5m] smoothed)", demoCPU)
	add(wantData, "delta(%s[5m] anchored)", demoDisk)

	// Staleness: a metric that comes and goes, a target that goes down
	// and restarts.
	add(wantData, "count(%s)", demoIntermittent)
	add(wantData, `absent(%s{instance="demo.promlabs.com:10002"})`, demoIntermittent)
	add(wantData, "up == 0")
	add(wantData, "changes(up[15m])")
	add(wantData, `%s{instance="demo.promlabs.com:10002"}`, demoNumCPUs)
	add(wantData, `rate(%s{instance="demo.promlabs.com:10002"}[5m])`, demoCPU)
	add(wantData, `resets(%s{instance="demo.promlabs.com:10002"}[30m])`, demoCPU)
	add(wantData, `increase(%s{instance="demo.promlabs.com:10002"}[15m])`, demoNative)
	add(wantData, `%s{instance="demo.promlabs.com:10002"}`, demoNHCB)
	add(wantData, "count_over_time(up[10m])")
	return cases
}

// evaluation is one way a case is asked: an instant query (step 0) or a
// range query.
type evaluation struct {
	name     string
	from, to time.Time
	step     time.Duration
	// tester: the answer is also compared as the compliance tester
	// compares it, with Prometheus' head as it is.
	tester bool
}

func (e evaluation) instant() bool { return e.step == 0 }

// demoEvaluations are instant queries at a few times, some fractional, and
// range queries whose steps do (15s, 1m) and do not (7s) divide the scrape
// interval, with fractional starts and ends as the tester's. The ranges
// take in the restart of :10002 (+1h30m..+1h40m), midnight (+1h30m) and the
// store's reopening (+1h52m); the 1m one the first and last scrapes.
//
// Under the race detector, which makes the engine about ten times slower,
// every case is asked three ways only: at the reopening, after the last
// scrape, and over six minutes around the restart's staleness markers
// with the tester's 7 s step.
func demoEvaluations(start time.Time) []evaluation {
	at := func(d time.Duration) time.Time { return start.Add(d) }
	ms := time.Millisecond
	if raceEnabled {
		return []evaluation{
			{name: "instant at +1h52m", from: at(112 * time.Minute), to: at(112 * time.Minute)},
			{name: "instant at +3h4m59.999s", from: at(184*time.Minute + 59999*ms), to: at(184*time.Minute + 59999*ms)},
			{name: "range +1h28m0.25s..+1h34m3.517s step 7s", from: at(88*time.Minute + 250*ms), to: at(94*time.Minute + 3517*ms), step: 7 * time.Second, tester: true},
		}
	}
	return []evaluation{
		{name: "instant at +1h", from: at(time.Hour), to: at(time.Hour)},
		// :10002 is down: its series are stale.
		{name: "instant at +1h31m7.412s", from: at(91*time.Minute + 7412*ms), to: at(91*time.Minute + 7412*ms)},
		// Where the store was closed and reopened.
		{name: "instant at +1h52m", from: at(112 * time.Minute), to: at(112 * time.Minute)},
		{name: "instant at +2h41m0.5s", from: at(161*time.Minute + 500*ms), to: at(161*time.Minute + 500*ms)},
		// After the last scrape, within the lookback.
		{name: "instant at +3h4m59.999s", from: at(184*time.Minute + 59999*ms), to: at(184*time.Minute + 59999*ms)},
		{name: "range +1h25m..+2h25m step 15s", from: at(85 * time.Minute), to: at(145 * time.Minute), step: 15 * time.Second},
		{name: "range +1h28m0.25s..+1h58m3.517s step 7s", from: at(88*time.Minute + 250*ms), to: at(118*time.Minute + 3517*ms), step: 7 * time.Second, tester: true},
		{name: "range +0..+3h10m0.777s step 1m", from: at(0), to: at(190*time.Minute + 777*ms), step: time.Minute},
	}
}

// promqlParser parses every expression the cases use: experimental
// functions, duration expressions, anchored and smoothed ranges, fill
// modifiers.
var promqlParser = parser.NewParser(parser.Options{
	EnableExperimentalFunctions: true, ExperimentalDurationExpr: true, EnableExtendedRangeSelectors: true, EnableBinopFillModifiers: true,
})

// TestPromQLCompliance: demo-service scrapes (three targets, 15 s apart with
// jitter, counters that reset, a target that goes down and restarts, a
// metric that comes and goes, classic and native histograms, NaN and Inf)
// go into Lumen — closed and reopened half-way, so answers come from
// partitions and the head — and into Prometheus' TSDB. Every case, at every
// evaluation, must get the same answer from both.
//
// The order of series. Prometheus' engine asks for series unsorted; its head
// returns them in creation order, Lumen in label order. PromQL leaves the
// order of its inputs unobservable except through ties and rounding: which
// of equally valued series topk, bottomk and limitk keep, the order sort and
// sort_desc give equal values, the last bits of sums and averages. So the
// reference answers are Prometheus' TSDB read in label order (labelOrder),
// and then any difference at all is a store difference: series, samples,
// values to the bit, histograms, annotations, errors. Instant vectors are
// compared as sets, except under a top-level sort function, whose order
// PromQL defines.
//
// The compliance tester instead compares range answers with Prometheus'
// head read in its own order, values within a relative 1e-5. The answers of
// the tester's 7 s step are compared so too, for the cases that aggregate
// (elsewhere the order cannot show): they may differ only where a
// top-level topk, bottomk or limitk broke a tie — at some step, within one
// group, series of equal value swapped, each with that value in the
// aggregation's input (tiesOnly). That is the tester's one known miss (538
// of 539 with a 7 s step and a fractional end time): bottomk without
// (instance) (2, demo_memory_usage_bytes) keeps the other of two equal
// values. The test logs those cases.
//
// On success the test logs "PromQL agreement: N expressions × M
// evaluations, all equal to Prometheus' TSDB", and writes that line to the
// directory LUMEN_REPORT_DIR names, if set, for `make test` to print.
func TestPromQLCompliance(t *testing.T) {
	scrapes := demoScrapes(demoStart)
	reopen := demoStart.Add(112 * time.Minute).UnixMilli()
	split := slices.IndexFunc(scrapes, func(s []sample) bool { return s[0].t >= reopen })
	dir := t.TempDir()
	// Durability is not under test: no fsync per scrape.
	opts := func(o *store.Options) { o.Retention, o.SyncWrites = 0, false }
	db := openStore(t, dir, opts)
	appendRounds(t, db, scrapes[:split])
	require.NoError(t, db.Close())
	db = openStore(t, dir, opts)
	defer db.Close()
	appendRounds(t, db, scrapes[split:])
	ref := teststorage.New(t)
	defer ref.Close()
	appendRounds(t, ref, scrapes)

	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples: 5e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
		EnableAtModifier: true, EnableNegativeOffset: true, Parser: promqlParser,
		// A subquery without a step ([5m:]) takes this one; Prometheus'
		// is its global evaluation interval (1m by default). Without it
		// the engine dereferences a nil func.
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
	})
	counted := &countingEngine{Engine: engine}
	inParts := &promsplit.Engine{QueryEngine: counted, Parser: promqlParser, Parts: 3}
	cacheMetrics := prometheus.NewRegistry()
	direct := promdirect.New(inParts, promqlParser, 5e7, time.Minute, 2, cacheMetrics)
	cached := promcache.New(direct, db, 5*time.Minute, 256<<20, promqlParser, cacheMetrics)
	cases := demoCases(demoStart)
	evals := demoEvaluations(demoStart)
	seen := map[string]bool{}
	for _, c := range cases {
		require.False(t, seen[c.expr], "%s is listed twice", c.expr)
		seen[c.expr] = true
	}
	var (
		ranges int
		ties   []string // the cases whose answer breaks a tie otherwise than Prometheus' head
	)
	for _, c := range cases {
		t.Run(c.expr, func(t *testing.T) {
			answers := make([]answer, len(evals))
			for i, ev := range evals {
				got := evaluate(engine, db, c.expr, ev)
				want := evaluate(engine, labelOrder{ref}, c.expr, ev)
				if !want.equal(got) {
					t.Fatalf("%s: Prometheus' TSDB and Lumen differ:\n%s", ev.name, firstDifference(want.String(), got.String()))
				}
				if ev.instant() {
					// Asked as Lumen's API asks an instant query: evaluated
					// directly (internal/promdirect) or by the engine.
					if direct := evaluate(cached, db, c.expr, ev); !direct.equal(got) {
						t.Fatalf("%s: the query asked as the API asks it and of the engine differ:\n%s", ev.name, firstDifference(got.String(), direct.String()))
					}
				} else {
					// Asked as Lumen's API asks a range query: evaluated
					// directly (internal/promdirect) or in parts
					// (internal/promsplit), through the results cache
					// (internal/promcache), which the first ask fills and
					// the second is answered from: the same answer, to the
					// bit.
					for _, ask := range []string{"in 3 parts", "again, from the results cache"} {
						if parts := evaluate(cached, db, c.expr, ev); !parts.equal(got) {
							t.Fatalf("%s: the query asked %s and whole differ:\n%s", ev.name, ask, firstDifference(got.String(), parts.String()))
						}
					}
				}
				answers[i] = got
				if !ev.tester || !aggregates(c.expr) {
					continue
				}
				ranges++
				head := evaluate(engine, ref, c.expr, ev)
				if testerEqual(head, got) {
					continue
				}
				agg := selection(c.expr)
				if agg == nil || !tiesOnly(agg, got, head, evaluate(engine, db, agg.Expr.String(), ev)) {
					t.Fatalf("%s: Prometheus' head, read in its own order, and Lumen differ beyond ties:\n%s", ev.name, firstDifference(head.String(), got.String()))
				}
				ties = append(ties, c.expr)
			}
			checkOutcome(t, c.want, evals, answers)
		})
	}
	if t.Failed() {
		return
	}
	// Nearly every range case was asked in 3 parts (not those with
	// @ start() or @ end()).
	rangeEvals := 0
	for _, ev := range evals {
		if !ev.instant() {
			rangeEvals++
		}
	}
	hits, err := cacheMetrics.Gather()
	require.NoError(t, err)
	steps, evaluated := map[string]float64{}, map[string]float64{}
	for _, mf := range hits {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "lumen_promql_results_cache_steps_total":
				steps[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			case "lumen_promql_direct_queries_total":
				evaluated[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	require.Greater(t, counted.ranges+int(evaluated["direct"]), 2*len(cases)*rangeEvals, "range queries asked in parts or evaluated directly")
	require.Greater(t, evaluated["direct"], 0.0, "range queries evaluated directly")
	require.Greater(t, steps["hit"], steps["miss"]/2, "answers asked again came from the results cache")
	line := fmt.Sprintf("PromQL agreement: %d expressions × %d evaluations, all equal to Prometheus' TSDB", len(cases), len(evals))
	t.Log(line)
	t.Logf("PromQL agreement: %d of %d range answers compared as the compliance tester does differ from Prometheus' head, each only in how topk, bottomk or limitk broke a tie: %s",
		len(ties), ranges, strings.Join(ties, "; "))
	if dir := os.Getenv("LUMEN_REPORT_DIR"); dir != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "promql.txt"), []byte(line+"\n"), 0o644))
	}
}

// countingEngine counts the range queries made.
type countingEngine struct {
	*promql.Engine
	ranges int
}

func (c *countingEngine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	c.ranges++
	return c.Engine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
}

// labelOrder reads a Queryable's series in label order (as Lumen returns
// them), whatever order the engine asks for.
type labelOrder struct{ storage.Queryable }

func (l labelOrder) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := l.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return labelOrderQuerier{q}, nil
}

type labelOrderQuerier struct{ storage.Querier }

func (q labelOrderQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return q.Querier.Select(ctx, true, hints, ms...)
}

// answer is a query's result in a form that compares exactly: series (of a
// matrix), samples (of a vector) or one point (of a scalar or string), the
// annotations, or the error.
type answer struct {
	err         string
	annotations []string
	series      []answerSeries
}

type answerSeries struct {
	lset   labels.Labels
	points []answerPoint
}

// answerPoint is a float, a histogram or a string at t.
type answerPoint struct {
	t   int64
	f   float64
	h   *histogram.FloatHistogram
	str string
}

func (a answer) empty() bool { return a.err == "" && len(a.series) == 0 }

// equal reports whether a and b are the same answer: the same series,
// points, values to the bit (NaN equal to NaN), histograms with the same
// buckets (as the API shows them: empty buckets left out), annotations.
func (a answer) equal(b answer) bool {
	if a.err != b.err || !slices.Equal(a.annotations, b.annotations) || len(a.series) != len(b.series) {
		return false
	}
	for i, s := range a.series {
		o := b.series[i]
		if !labels.Equal(s.lset, o.lset) || len(s.points) != len(o.points) {
			return false
		}
		for j, p := range s.points {
			if !p.near(o.points[j], sameFloat) {
				return false
			}
		}
	}
	return true
}

func sameFloat(x, y float64) bool {
	return math.Float64bits(x) == math.Float64bits(y) || (math.IsNaN(x) && math.IsNaN(y))
}

// near reports whether p and q are at the same time with values that eq
// holds equal: floats, or histograms' counts, sums and non-empty buckets
// (with the same bounds).
func (p answerPoint) near(q answerPoint, eq func(x, y float64) bool) bool {
	switch {
	case p.t != q.t || p.str != q.str || (p.h == nil) != (q.h == nil):
		return false
	case p.h == nil:
		return eq(p.f, q.f)
	}
	if !eq(p.h.Count, q.h.Count) || !eq(p.h.Sum, q.h.Sum) {
		return false
	}
	next := func(it histogram.BucketIterator[float64]) (histogram.Bucket[float64], bool) {
		for it.Next() {
			if b := it.At(); b.Count != 0 {
				return b, true
			}
		}
		return histogram.Bucket[float64]{}, false
	}
	ip, iq := p.h.AllBucketIterator(), q.h.AllBucketIterator()
	for {
		bp, okp := next(ip)
		bq, okq := next(iq)
		switch {
		case okp != okq:
			return false
		case !okp:
			return true
		case bp.Lower != bq.Lower || bp.Upper != bq.Upper || bp.LowerInclusive != bq.LowerInclusive || bp.UpperInclusive != bq.UpperInclusive || !eq(bp.Count, bq.Count):
			return false
		}
	}
}

func (p answerPoint) String() string { return p.value() + "@" + strconv.FormatInt(p.t, 10) }

func (p answerPoint) value() string {
	switch {
	case p.h != nil:
		return p.h.String()
	case p.str != "":
		return strconv.Quote(p.str)
	}
	return strconv.FormatFloat(p.f, 'g', -1, 64)
}

func (a answer) String() string {
	if a.err != "" {
		return "error: " + a.err
	}
	var b strings.Builder
	for _, s := range a.series {
		b.WriteString(s.lset.String())
		for _, p := range s.points {
			fmt.Fprintf(&b, " %s", p)
		}
		b.WriteByte('\n')
	}
	for _, w := range a.annotations {
		fmt.Fprintf(&b, "annotation: %s\n", w)
	}
	return b.String()
}

// firstDifference shows the first line where want and got differ.
func firstDifference(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	clip := func(s string) string {
		if len(s) > 600 {
			return s[:600] + "…"
		}
		return s
	}
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d\nwant %s\ngot  %s", i+1, clip(wl), clip(gl))
		}
	}
	return "no difference"
}

// testerEqual compares as the compliance tester does: both fail, or both
// answer the same series with the same points, values within a relative
// 1e-5 of each other (NaN equal to NaN); annotations are not compared.
func testerEqual(a, b answer) bool {
	if a.err != "" || b.err != "" {
		return (a.err != "") == (b.err != "")
	}
	if len(a.series) != len(b.series) {
		return false
	}
	near := func(x, y float64) bool {
		return sameFloat(x, y) || math.Abs(x-y) <= 1e-5*min(math.Abs(x), math.Abs(y))
	}
	for i, s := range a.series {
		o := b.series[i]
		if !labels.Equal(s.lset, o.lset) || len(s.points) != len(o.points) {
			return false
		}
		for j, p := range s.points {
			if !p.near(o.points[j], near) {
				return false
			}
		}
	}
	return true
}

// evaluate answers expr over q.
func evaluate(e promql.QueryEngine, q storage.Queryable, expr string, ev evaluation) answer {
	ctx := context.Background()
	var (
		qry promql.Query
		err error
	)
	if ev.instant() {
		qry, err = e.NewInstantQuery(ctx, q, nil, expr, ev.from)
	} else {
		qry, err = e.NewRangeQuery(ctx, q, nil, expr, ev.from, ev.to, ev.step)
	}
	if err != nil {
		return answer{err: err.Error()}
	}
	defer qry.Close() // the result's points go back to the engine's pools: read them first
	res := qry.Exec(ctx)
	if res.Err != nil {
		return answer{err: res.Err.Error()}
	}
	var a answer
	warnings, infos := res.Warnings.AsStrings(expr, 0, 0)
	a.annotations = append(warnings, infos...)
	slices.Sort(a.annotations)
	point := func(t int64, f float64, h *histogram.FloatHistogram) answerPoint {
		if h != nil {
			return answerPoint{t: t, h: h.Copy()} // the engine reuses its histograms
		}
		return answerPoint{t: t, f: f}
	}
	switch v := res.Value.(type) {
	case promql.Matrix:
		for _, s := range v {
			as := answerSeries{lset: s.Metric}
			for _, p := range s.Floats {
				as.points = append(as.points, point(p.T, p.F, nil))
			}
			for _, p := range s.Histograms {
				as.points = append(as.points, point(p.T, 0, p.H))
			}
			slices.SortStableFunc(as.points, func(a, b answerPoint) int { return int(a.t - b.t) })
			a.series = append(a.series, as)
		}
	case promql.Vector:
		for _, s := range v {
			a.series = append(a.series, answerSeries{lset: s.Metric, points: []answerPoint{point(s.T, s.F, s.H)}})
		}
		if !sortedBySortFunc(expr) {
			slices.SortFunc(a.series, func(a, b answerSeries) int { return labels.Compare(a.lset, b.lset) })
		}
	case promql.Scalar:
		a.series = []answerSeries{{points: []answerPoint{point(v.T, v.V, nil)}}}
	case promql.String:
		a.series = []answerSeries{{points: []answerPoint{{t: v.T, str: v.V}}}}
	default:
		return answer{err: fmt.Sprintf("unexpected result %T", res.Value)}
	}
	return a
}

// outermost returns expr's outermost node that is not parentheses, nil if expr
// does not parse.
func outermost(expr string) parser.Expr {
	e, err := promqlParser.ParseExpr(expr)
	if err != nil {
		return nil
	}
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

// sortedBySortFunc reports whether expr's instant vector comes in an order PromQL
// defines: that of a sort function.
func sortedBySortFunc(expr string) bool {
	c, ok := outermost(expr).(*parser.Call)
	return ok && slices.Contains([]string{"sort", "sort_desc", "sort_by_label", "sort_by_label_desc"}, c.Func.Name)
}

// aggregates reports whether expr aggregates: only then can the order in
// which the engine reads series show in a range answer (which series topk,
// bottomk, limitk keep; the last bits of sums, averages, deviations).
// Elsewhere series are worked on one by one, or matched by labels, and the
// range answer is sorted.
func aggregates(expr string) bool {
	e := outermost(expr)
	if e == nil {
		return false
	}
	found := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if _, ok := n.(*parser.AggregateExpr); ok {
			found = true
		}
		return nil
	})
	return found
}

// selection returns expr's topk, bottomk or limitk aggregation if it is the
// outermost node, nil otherwise.
func selection(expr string) *parser.AggregateExpr {
	a, ok := outermost(expr).(*parser.AggregateExpr)
	if !ok || (a.Op != parser.TOPK && a.Op != parser.BOTTOMK && a.Op != parser.LIMITK) {
		return nil
	}
	return a
}

// tiesOnly reports whether got and want, range answers of agg, differ only
// in ties: at every step, the samples only one of them has pair up, by the
// group agg puts them in and their value, with samples only the other has,
// and each has its value in agg's input at that step (in, the answer of
// agg's argument). limitk keeps any k series of a group: its samples pair
// up by group alone.
func tiesOnly(agg *parser.AggregateExpr, got, want, in answer) bool {
	if got.err != "" || want.err != "" || in.err != "" {
		return false
	}
	type sampleAt struct {
		t    int64
		lset string
	}
	values := func(a answer) map[sampleAt]string {
		m := map[sampleAt]string{}
		for _, s := range a.series {
			for _, p := range s.points {
				m[sampleAt{p.t, s.lset.String()}] = p.value()
			}
		}
		return m
	}
	g, w, input := values(got), values(want), values(in)
	group := func(lset labels.Labels) string {
		b := labels.NewBuilder(lset)
		if agg.Without {
			b.Del(append([]string{labels.MetricName}, agg.Grouping...)...)
		} else {
			b.Keep(agg.Grouping...)
		}
		return b.Labels().String()
	}
	type swap struct {
		t     int64
		group string
		v     string
	}
	unpaired := map[swap]int{}
	note := func(a answer, other map[sampleAt]string, sign int) bool {
		for _, s := range a.series {
			for _, p := range s.points {
				at := sampleAt{p.t, s.lset.String()}
				if v, ok := other[at]; ok && v == p.value() {
					continue
				}
				if v, ok := input[at]; !ok || (agg.Op != parser.LIMITK && v != p.value()) {
					return false
				}
				k := swap{p.t, group(s.lset), p.value()}
				if agg.Op == parser.LIMITK {
					k.v = "" // limitk keeps any k series of a group
				}
				unpaired[k] += sign
			}
		}
		return true
	}
	if !note(got, w, 1) || !note(want, g, -1) {
		return false
	}
	for _, n := range unpaired {
		if n != 0 {
			return false
		}
	}
	return true
}

// checkOutcome checks that a case answers as it should somewhere, so that
// it does not pass by both stores answering nothing.
func checkOutcome(t *testing.T, want outcome, evals []evaluation, answers []answer) {
	t.Helper()
	var failed, data, instants, instantFailed, instantHasData int
	for i, a := range answers {
		switch {
		case a.err != "":
			failed++
		case !a.empty():
			data++
		}
		if evals[i].instant() {
			instants++
			switch {
			case a.err != "":
				instantFailed++
			case !a.empty():
				instantHasData++
			}
		}
	}
	switch want {
	case wantData:
		require.Zero(t, failed, "no evaluation wantFailure: %v", answers)
		require.NotZero(t, data, "some evaluation has data")
	case wantNoData:
		require.Zero(t, failed, "no evaluation wantFailure: %v", answers)
		require.Zero(t, data, "no evaluation has data: %v", answers)
	case wantFailure:
		require.NotZero(t, failed, "some evaluation fails")
		require.Zero(t, data, "no evaluation has data: %v", answers)
	case wantInstantData:
		require.Zero(t, instantFailed, "no instant query wantFailure: %v", answers)
		require.NotZero(t, instantHasData, "some instant query has data")
		require.Equal(t, len(answers)-instants, failed-instantFailed, "every range query of a range vector fails")
	}
}
